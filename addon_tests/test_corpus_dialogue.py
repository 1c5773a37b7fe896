"""Tests for model_export.corpus.dialogue (with text, tts, real_clips): the seeded dialogue scheduler,
espeak-ng/flite synthesis into two DualTalk-layout tracks, per-frame voice activity, the CLI summary
and the real-speech cut."""

from __future__ import annotations

import json
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import DEMO

from model_export.corpus import dialogue as D
from model_export.corpus import text as T
from model_export.corpus.real_clips import add_real_dialogues

RATE, FPS, SECONDS = 16_000, 25, 60.0
needs_tts = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng sox flite); the dialogue synthesis needs it",
)


def _segs(meta: dict) -> list[D.Segment]:
    return [D.Segment(**s) for s in meta["segments"]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Seed 3 written twice (two folders), seed 4 once; 60 s each."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng sox flite)")
    root = tmp_path_factory.mktemp("corpus")
    out = {}
    for key, folder, seed in (("a", "a", 3), ("a2", "b", 3), ("c", "a", 4)):
        d = D.write_dialogue(root / folder, f"dlg{seed}", seed, SECONDS)
        out[key] = (root / folder, f"dlg{seed}", d)
    return out


def _files(folder: Path, clip: str) -> list[Path]:
    return [folder / f"{clip}_speaker1.wav", folder / f"{clip}_speaker2.wav", folder / f"{clip}_timeline.json"]


# --------------------------------------------------------------------------- scheduler only (no TTS)


@pytest.mark.parametrize("seed", range(8))
def test_schedule_structure(seed):
    """Without TTS: segments lie inside the clip, kinds and lengths stay in their ranges, one speaker
    never overlaps itself, and every overlap/pause between main segments is in its range."""
    segs = D.schedule(SECONDS, np.random.default_rng(seed))
    assert segs == D.schedule(SECONDS, np.random.default_rng(seed))
    assert segs != D.schedule(SECONDS, np.random.default_rng(seed + 100))
    assert all(0 <= s.start < s.end <= SECONDS and s.kind in D.KINDS and s.speaker in (0, 1) for s in segs)
    for spk in (0, 1):
        own = [s for s in segs if s.speaker == spk]
        assert all(b.start >= a.end + 0.09 for a, b in pairwise(own)), f"speaker {spk} overlaps itself"
    main = [s for s in segs if s.kind != "backchannel"]
    for a, b in pairwise(main):
        if b.kind == "overlap":
            assert b.speaker != a.speaker and 0.099 <= a.end - b.start <= 0.601
        else:  # the pause counts from the later of the previous segment's end and this speaker's last end
            ref = max([a.end] + [x.end for x in segs if x.speaker == b.speaker and x.start < b.start])
            assert 0.099 <= b.start - ref <= 1.501, (a, b)
    for s in segs:
        d = s.end - s.start
        if s.kind == "turn":
            assert T.TURN_S[0] - 1e-6 <= d <= T.TURN_S[1] + 1e-6 or s.end >= SECONDS - 0.06  # last may be cut
        elif s.kind == "quick":
            assert T.QUICK_S[0] - 1e-6 <= d <= T.QUICK_S[1] + 1e-6 or s.end >= SECONDS - 0.06
        elif s.kind == "backchannel":
            host = [m for m in main if m.speaker != s.speaker and m.start < s.start and s.end < m.end]
            assert host, f"backchannel {s} not inside the other speaker's segment"
            assert s.text in T.BACKCHANNELS


def test_activity_and_shares_by_hand():
    tl = [D.Segment(0, 0.0, 1.0, "turn"), D.Segment(1, 0.5, 2.0, "overlap"), (0, 3.0, 3.5, "quick")]
    act = D.activity(tl, 4.0)
    assert act.shape == (100, 2) and act.dtype == bool
    assert act[:25, 0].all() and not act[25:75, 0].any() and act[75:87, 0].all() and not act[87:, 0].any()
    assert not act[:12, 1].any() and act[13:50, 1].all() and not act[50:, 1].any()
    # same from the JSON form
    assert (D.activity([dict(speaker=s[0], start=s[1], end=s[2]) for s in tl], 4.0) == act).all()
    sh = D.shares(act)
    assert sh == pytest.approx({"user_only": 0.24, "agent_only": 0.25, "both": 0.13, "silence": 0.38})
    assert sum(sh.values()) == pytest.approx(1.0)


# --------------------------------------------------------------------------- synthesized dialogues


@needs_tts
def test_same_seed_same_files_other_seed_differs(corpus):
    (fa, ca, _), (fb, cb, _), (fc, cc, _) = corpus["a"], corpus["a2"], corpus["c"]
    for p, q in zip(_files(fa, ca), _files(fb, cb)):
        assert p.read_bytes() == q.read_bytes(), f"{p.name} differs between two runs with the same seed"
    ta, tc = (json.loads(_files(f, c)[2].read_text()) for f, c in ((fa, ca), (fc, cc)))
    assert ta["segments"] != tc["segments"]
    assert not np.array_equal(sf.read(_files(fa, ca)[0])[0], sf.read(_files(fc, cc)[0])[0])


@needs_tts
def test_tracks_float_16k_equal_length(corpus):
    for folder, clip, _ in corpus.values():
        infos = [sf.info(p) for p in _files(folder, clip)[:2]]
        assert all(i.samplerate == RATE and i.channels == 1 and i.subtype == "FLOAT" for i in infos)
        assert infos[0].frames == infos[1].frames
        assert abs(infos[0].frames - SECONDS * RATE) <= RATE // FPS


@needs_tts
def test_timeline_has_turns_backchannels_overlaps_pauses(corpus):
    for key in ("a", "c"):
        folder, clip, d = corpus[key]
        meta = json.loads(_files(folder, clip)[2].read_text())
        segs = _segs(meta)
        assert segs == d.timeline
        kinds = {s.kind for s in segs}
        assert {"turn", "backchannel", "overlap"} <= kinds, kinds
        assert "quick" in kinds or key == "c"
        main = [s for s in segs if s.kind != "backchannel"]
        gaps = [b.start - a.end for a, b in pairwise(main)]
        assert any(0.1 <= g <= 1.5 for g in gaps), "no pause between main segments"
        assert any(-0.6 <= g <= -0.1 for g in gaps), "no overlapping turn start"
        assert len({s.speaker for s in main}) == 2
        assert meta["seed"] == d.seed and len(meta["voices"]) == 2
        assert meta["voices"][0]["name"] != meta["voices"][1]["name"]
        assert all(-12 <= v["gain_db"] <= 0 for v in meta["voices"])
        assert meta["snr_db"] is None or 15 <= meta["snr_db"] <= 40
        assert all(s.text for s in segs)


@needs_tts
def test_energy_inside_segments_vs_outside(corpus):
    """On each speaker's track, every segment carries clearly more energy than the track's floor far
    (>= 0.4 s) from that speaker's segments; the floor is at least ~15 dB under the speech."""
    for folder, clip, d in corpus.values():
        for k in (0, 1):
            x, _ = sf.read(_files(folder, clip)[k], dtype="float32")
            hop = RATE // FPS
            e = np.sqrt((x[: len(x) // hop * hop].reshape(-1, hop) ** 2).mean(axis=1))
            own = [s for s in d.timeline if s.speaker == k]
            near = D.activity([(k, s.start - 0.4, s.end + 0.4) for s in own], SECONDS)[:, k]
            floor = float(np.sqrt(np.mean(e[~near] ** 2)))
            assert (~near).sum() > FPS, "too little silence to measure a floor"
            seg_rms = []
            for s in own:
                a, b = round(s.start * RATE), round(s.end * RATE)
                seg_rms.append(float(np.sqrt(np.mean(x[a:b] ** 2))))
            ratio = np.array(seg_rms) / max(floor, 1e-9)
            assert ratio.min() > 2.0, (clip, k, ratio.min())
            assert np.median(ratio) > 5.6, (clip, k, np.median(ratio))


@needs_tts
def test_activity_matches_timeline(corpus):
    for folder, clip, d in corpus.values():
        meta = json.loads(_files(folder, clip)[2].read_text())
        act = D.activity(meta["segments"], SECONDS)
        assert act.shape == (round(SECONDS * FPS), 2)
        assert (act == D.activity(d.timeline, SECONDS)).all()
        centres = (np.arange(len(act)) + 0.5) / FPS
        for k in (0, 1):
            want = np.zeros(len(act), bool)
            for s in d.timeline:
                if s.speaker == k:
                    want |= (centres >= s.start) & (centres < s.end)
            assert (act[:, k] == want).all()
            total = sum(s.end - s.start for s in d.timeline if s.speaker == k)  # a speaker never overlaps itself
            assert abs(act[:, k].sum() / FPS - total) <= len([s for s in d.timeline if s.speaker == k]) / FPS


@needs_tts
def test_cli_summary_shares_sum_to_one(tmp_path, capsys):
    assert D.main([str(tmp_path), "--dialogues", "2", "--seconds", "12", "--seed", "7"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("2 dialogues") and "agent-only" in line and "silence" in line
    s = D.corpus_summary(tmp_path)
    assert s["dialogues"] == 2 and s["hours"] == pytest.approx(24 / 3600)
    assert 2 <= len(s["voices"]) <= 4
    assert s["user_only"] + s["agent_only"] + s["both"] + s["silence"] == pytest.approx(1.0)
    assert s["user_only"] > 0 and s["agent_only"] > 0 and s["silence"] > 0


# --------------------------------------------------------------------------- real speech


def test_add_real_dialogues_on_written_tracks(tmp_path):
    """The real-speech cut on a hand-made 'conversation' (tone bursts at 22.05 kHz, one track longer):
    resampled to 16 kHz, cut to equal length, energy segments found where the bursts are."""
    src, rng = tmp_path / "src", np.random.default_rng(0)
    src.mkdir()
    sr, sec = 22050, 6.0
    t = np.arange(int(sec * sr)) / sr
    bursts = {1: [(0.5, 2.0)], 2: [(2.5, 4.0), (4.5, 5.5)]}
    for k, iv in bursts.items():
        x = 0.002 * rng.standard_normal(len(t))
        for a, b in iv:
            x[(t >= a) & (t < b)] += 0.3 * np.sin(2 * np.pi * 220 * t[(t >= a) & (t < b)])
        sf.write(src / f"clip_speaker{k}.wav", x[: len(x) - 300 * (k == 1)], sr, subtype="FLOAT")
    assert add_real_dialogues(tmp_path / "out", src / "missing") == []
    assert add_real_dialogues(tmp_path / "out", src) == ["real_clip"]
    i1, i2 = (sf.info(tmp_path / "out" / f"real_clip_speaker{k}.wav") for k in (1, 2))
    assert i1.samplerate == i2.samplerate == RATE and i1.frames == i2.frames
    meta = json.loads((tmp_path / "out" / "real_clip_timeline.json").read_text())
    got = {k: [(s["start"], s["end"]) for s in meta["segments"] if s["speaker"] == k - 1] for k in (1, 2)}
    for k, iv in bursts.items():
        assert len(got[k]) == len(iv)
        for (a, b), (ga, gb) in zip(iv, got[k]):
            assert abs(ga - a) <= 0.08 and abs(gb - b) <= 0.08


def test_add_real_dialogues_demo(tmp_path):
    if not DEMO.exists():
        pytest.skip(f"{DEMO} is absent (a fresh clone has no ../shared fixtures)")
    names = add_real_dialogues(tmp_path, DEMO)
    assert len(names) >= 1
    s = D.corpus_summary(tmp_path)
    assert s["dialogues"] == len(names) and sum(s[k] for k in ("user_only", "agent_only", "both", "silence")) == (
        pytest.approx(1.0)
    )
    assert s["user_only"] + s["both"] > 0.05 and s["agent_only"] + s["both"] > 0.05
