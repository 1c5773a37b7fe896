"""Corpus v2's real-voice dialogues: LibriSpeech speakers, the scheduler's timeline, clean tracks for
the teacher and recorded tracks (room tone, bleed) for the model; the held-out speakers stay out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from model_export.corpus.voices import LIBRISPEECH, real_voice_dialogue, speakers

pytestmark = pytest.mark.skipif(
    not (LIBRISPEECH / "train-clean-100").is_dir(),
    reason=f"{LIBRISPEECH} is absent (the LibriSpeech fixtures live in ../shared, not in a fresh clone)",
)


def _frame_db(x: np.ndarray, hop: int = 640) -> np.ndarray:
    n = len(x) // hop
    return 10 * np.log10((x[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(1) + 1e-20)


def test_dialogue_has_real_speech_only_inside_its_timeline_and_room_tone_everywhere() -> None:
    d = real_voice_dialogue("train-clean-100", seed=3, seconds=40.0)
    assert all(v["kind"] == "librispeech" for v in d.voices) and d.voices[0] != d.voices[1]
    kinds = {s.kind for s in d.timeline}
    assert {"turn", "quick"} & kinds and len({s.speaker for s in d.timeline}) == 2
    n = round(40.0 * 16000)
    assert all(len(x) == n for x in (*d.clean, *d.tracks))
    for k in range(2):
        inside = np.zeros(n, bool)
        for s in d.timeline:
            if s.speaker == k:
                inside[round(s.start * 16000) : round(s.end * 16000)] = True
        assert not np.any(d.clean[k][~inside]), "clean speech outside the speaker's timeline"
        assert np.sqrt(np.mean(d.clean[k][inside] ** 2)) > 0.01
        rec = _frame_db(d.tracks[k])
        assert rec.min() > -100, "a recorded track is digitally silent somewhere (no room tone)"
        assert -80 < d.acoustics[f"speaker{k + 1}"]["tone_dbfs"] < -35


def test_backchannels_are_short_and_the_dialogue_is_reproducible() -> None:
    a = real_voice_dialogue("train-clean-100", seed=11, seconds=60.0)
    b = real_voice_dialogue("train-clean-100", seed=11, seconds=60.0)
    c = real_voice_dialogue("train-clean-100", seed=12, seconds=60.0)
    assert a.timeline == b.timeline and np.array_equal(a.tracks[1], b.tracks[1])
    assert a.timeline != c.timeline
    for s in a.timeline + c.timeline:
        if s.kind == "backchannel":
            assert s.end - s.start <= 1.0


def test_held_out_speakers_never_reach_the_training_split() -> None:
    train, held = set(speakers("train-clean-100")), set(speakers("test-other"))
    assert len(train) == 251 and len(held) >= 10 and not train & held
    used = {v["name"] for s in range(40) for v in real_voice_dialogue("train-clean-100", s, 8.0).voices}
    assert used and not {f"librispeech:{h}" for h in held} & used
    d = real_voice_dialogue("test-other", seed=0, seconds=20.0)
    assert {v["name"].split(":")[1] for v in d.voices} <= held and d.acoustics["profile"] == "eval"


def test_corpus_v2_keeps_clean_tracks_for_the_teacher_and_attributes_librispeech(tmp_path: Path) -> None:
    from model_export.corpus.build import build
    from model_export.data import load_flame56, scan_folder

    s = build(tmp_path, dialogues=2, seconds=12.0, seed=4, voices="real", tts_share=0.0)
    assert len(scan_folder(tmp_path).directions) == 4  # clean/ is not read as training data
    lib = json.loads((tmp_path / "corpus.json").read_text())["sources"]["librispeech"]
    assert "CC BY 4.0" in lib["license"] and "Panayotov" in lib["copyright"] and lib["speakers"] == 4
    assert s["sources"]["librispeech"]["speakers"] == 4
    meta = json.loads((tmp_path / "dlg00004_timeline.json").read_text())
    clean = sf.read(tmp_path / "clean" / "dlg00004_speaker2.flac", dtype="float32")[0]
    rec = sf.read(tmp_path / "dlg00004_speaker2.wav", dtype="float32")[0]
    assert len(clean) == len(rec) and not np.allclose(clean, rec, atol=1e-3)
    jaw = load_flame56(tmp_path / "dlg00004_speaker2.npz")[:, 50]
    talk = np.zeros(len(jaw), bool)
    for seg in meta["segments"]:
        if seg["speaker"] == 1:
            talk[round(seg["start"] * 25) : round(seg["end"] * 25)] = True
    if talk.sum() > 25 and (~talk).sum() > 25:  # the teacher opens the jaw where the timeline says speech
        assert jaw[talk].mean() > jaw[~talk].mean()
