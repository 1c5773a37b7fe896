"""The corpus builder writes a DualTalk-format folder the project's own reader and trainer accept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model_export.corpus.build import build
from model_export.data import load_conversation, load_flame56, scan_folder

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng sox flite)"
)


def test_corpus_is_dualtalk_format_with_motion_for_both_speakers(tmp_path: Path) -> None:
    summary = build(tmp_path, dialogues=2, seconds=12.0, seed=5, voices="tts")
    assert summary["dialogues"] == 2 and abs(summary["hours"] - 24 / 3600) < 1e-9
    assert json.loads((tmp_path / "corpus.json").read_text())["seed"] == 5
    report = scan_folder(tmp_path)  # strict: every speaker has audio and motion
    assert len(report.directions) == 4
    conv = load_conversation(report.directions[0])
    assert conv.agent_motion.shape == (300, 56) and conv.user_motion.shape == (300, 56)
    with np.load(tmp_path / "dlg00005_speaker1.npz") as z:  # DualTalk stores pose as [neck | jaw]
        m = load_flame56(tmp_path / "dlg00005_speaker1.npz")
        assert np.array_equal(m[:, 50:53], z["pose"][:, 3:6]) and np.array_equal(m[:, 53:56], z["pose"][:, 0:3])
    again = tmp_path / "again"
    build(again, dialogues=1, seconds=12.0, seed=5, voices="tts")
    assert np.array_equal(
        load_flame56(again / "dlg00005_speaker2.npz"), load_flame56(tmp_path / "dlg00005_speaker2.npz")
    )


def test_fold_calibration_real_audio_and_shared_audio(tmp_path: Path) -> None:
    from model_export.corpus.teacher import load_calibration

    demo = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "dualtalk_demo"
    if not demo.is_dir():
        pytest.skip(f"{demo} is absent (../shared fixtures are not in a fresh clone)")
    calib = load_calibration()
    keep, other = sorted(calib["folds"])[1], sorted(calib["folds"])[0]
    a = build(tmp_path / "a", dialogues=2, seconds=10.0, seed=7, fold=keep, real=True, jobs=2, demo=demo, voices="tts")
    conv = keep.rsplit("_speaker", 1)[0]
    assert a["calibration"] == keep and a["real_dialogues"] == [f"real_{conv}"]
    held_out = other.rsplit("_speaker", 1)[0]
    assert not list((tmp_path / "a").glob(f"real_{held_out}*")), "the held-out real conversation leaked in"
    assert len(scan_folder(tmp_path / "a").directions) == 6  # 2 synthetic + 1 real conversation, both sides
    b = build(tmp_path / "b", dialogues=2, seconds=10.0, seed=7, fold=other, audio_from=tmp_path / "a", voices="tts")
    assert b["calibration"] == other and b["real_dialogues"] == []
    wav = tmp_path / "b" / "dlg00007_speaker1.wav"
    assert wav.is_symlink() and wav.resolve() == (tmp_path / "a" / "dlg00007_speaker1.wav").resolve()
    ma = load_flame56(tmp_path / "a" / "dlg00007_speaker1.npz")
    mb = load_flame56(tmp_path / "b" / "dlg00007_speaker1.npz")
    assert ma.shape == mb.shape and not np.allclose(ma, mb)  # same speech, other calibration
    neck_a = ma[:, 53:56].mean(0)
    assert np.allclose(neck_a, calib["folds"][keep]["neck_mean"], atol=0.05)
    with pytest.raises(ValueError, match="unknown calibration fold 'nope'"):
        build(tmp_path / "c", dialogues=1, seconds=5.0, seed=1, fold="nope")


def test_corpora_trained_together_are_described_as_one() -> None:
    from model_export.corpus.build import merge_summaries

    lib = {"license": "CC BY 4.0", "speakers": 238}
    a = {"dialogues": 401, "hours": 4.0, "voices": ["a", "b"], "user_only": 0.4, "agent_only": 0.4, "both": 0.1,
         "silence": 0.1, "seed": 0, "real_dialogues": ["real_x"], "calibration": "x_speaker1",
         "sources": {"librispeech": lib, "tts_share": 0.2}}
    b = {**a, "hours": 1.0, "voices": ["b", "c"], "user_only": 0.2, "seed": 1,
         "sources": {"librispeech": {**lib, "speakers": 240}, "tts_share": 0.2}}
    m = merge_summaries([a, b])
    assert m["dialogues"] == 802 and m["hours"] == 5.0 and m["voices"] == ["a", "b", "c"] and m["corpora"] == 2
    assert abs(m["user_only"] - 0.36) < 1e-9 and m["seed"] == [0, 1] and m["real_dialogues"] == ["real_x"]
    assert m["calibration"] == "x_speaker1" and m["sources"]["librispeech"]["speakers"] == 240
    assert merge_summaries([a]) is a
    assert merge_summaries([a, {**b, "calibration": "y_speaker2"}])["calibration"].startswith("mixed")
