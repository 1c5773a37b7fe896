"""Tests for model_export.corpus.calibrate (the committed FLAME calibration JSON) and
model_export.corpus.teacher (rule-based FLAME-56 motion for both speakers of a dialogue)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import DEMO, need_shared

from model_export.corpus import calibrate as C
from model_export.corpus import dialogue as D
from model_export.corpus import teacher as TE

FPS, RATE = 25, 16_000
SECONDS = 30.0


@pytest.fixture(scope="module")
def calib() -> dict:
    return TE.load_calibration()


def _buzz_dialogue(seed: int, seconds: float = 20.0):
    """No TTS: the nominal schedule, each segment filled with a syllable-modulated harmonic buzz."""
    rng = np.random.default_rng(seed)
    segs = D.schedule(seconds, rng)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    tracks = [0.002 * rng.standard_normal(n).astype(np.float32) for _ in range(2)]
    f0 = 120 + 10 * np.sin(2 * np.pi * 0.5 * t)
    buzz = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / RATE) / k for k in range(1, 8))
    syll = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None)
    for s in segs:
        a, b = int(s.start * RATE), int(s.end * RATE)
        tracks[s.speaker][a:b] += (0.1 * buzz[a:b] * syll[a:b]).astype(np.float32)
    return tracks, segs


# --------------------------------------------------------------------------- calibration JSON


def test_calibration_json_committed_and_complete(calib):
    path = TE.CALIBRATION
    assert path.is_file() and path.stat().st_size < 100_000
    assert len(calib["source"]) == 2 and all(s.endswith(".npz") for s in calib["source"])
    assert len(calib["folds"]) == 2
    for st in [calib["stats"], *calib["folds"].values()]:
        for key, size in (("exp_mean", 50), ("exp_std", 50), ("exp_std_listen", 50), ("jaw_mean", 3)):
            assert len(st[key]) == size, key
        assert len(st["neck_mean"]) == 3 and len(st["neck_std"]) == 3 and len(st["jaw_std"]) == 3
        for state in ("talk", "listen"):
            assert {"mean", "std", "p5", "p50", "p95"} <= set(st["jaw_x"][state])
            assert len(st["head"][state]["std"]) == 3 and st["head"][state]["nod_amp"] > 0
        assert len(st["head"]["peak_hz"]) == 3 and len(st["head"]["acf_s"]) == 3
        m = st["mouth"]
        assert len(m["slope"]) == 50 and np.asarray(m["basis"]).shape == (C.N_MOUTH, 50) and len(m["basis_std"]) == 3
        assert st["jitter"]["jaw_x"] > 0 and len(st["jitter"]["neck"]) == 3
        assert np.all(np.asarray(st["neck_std"]) > 0) and np.all(np.asarray(st["exp_std"]) > 0)


def test_calibration_reproduces_committed_json(calib):
    need_shared(DEMO)
    fresh = C.calibrate(DEMO)
    assert fresh["source"] == calib["source"]
    for a, b in ((fresh["stats"], calib["stats"]), *zip(fresh["folds"].values(), calib["folds"].values(), strict=True)):
        np.testing.assert_allclose(a["neck_std"], b["neck_std"], atol=1e-4)
        np.testing.assert_allclose(a["jaw_x"]["talk"]["p95"], b["jaw_x"]["talk"]["p95"], atol=1e-4)
        np.testing.assert_allclose(a["head"]["listen"]["std"], b["head"]["listen"]["std"], atol=1e-4)


def test_calibrate_cli_missing_demo(tmp_path, capsys):
    assert C.main(["--demo", str(tmp_path), "--out", str(tmp_path / "c.json")]) == 1
    assert "no <clip>_speakerN.npz" in capsys.readouterr().err


# --------------------------------------------------------------------------- teacher without TTS


def test_teacher_shapes_deterministic_and_seeded(calib):
    tracks, segs = _buzz_dialogue(5)
    a1, a2 = TE.teach(tracks, segs, 11, calib)
    n = round(len(tracks[0]) / RATE * FPS)
    assert a1.shape == a2.shape == (n, 56) and a1.dtype == np.float32
    assert np.isfinite(a1).all() and np.isfinite(a2).all()
    b1, b2 = TE.teach(tracks, segs, 11, calib)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    c1, _ = TE.teach(tracks, segs, 12, calib)
    assert np.abs(c1 - a1).mean() > 1e-3
    assert not np.allclose(a1, a2)
    # JSON-dict timelines and one fold's stats work too
    js = [s._asdict() for s in segs]
    fold = next(iter(calib["folds"].values()))
    f1, _ = TE.teach(tracks, js, 11, fold)
    assert f1.shape == (n, 56) and np.isfinite(f1).all()


# --------------------------------------------------------------------------- teacher on a TTS dialogue


@pytest.fixture(scope="module")
def dialogue_motion(calib):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng sox flite); the synthetic dialogue needs it")
    d = D.make_dialogue(3, SECONDS)
    return d, TE.teach(d.tracks, d.timeline, 3, calib)


def _states(d, n):
    act = D.activity(d.timeline, d.seconds)[:n]
    return act


def test_jaw_follows_own_speech_energy(dialogue_motion):
    d, motions = dialogue_motion
    for spk, m in enumerate(motions):
        db = C.frame_db(d.tracks[spk], len(m))
        r = np.corrcoef(m[:, 50], db)[0, 1]
        assert r > 0.5, f"speaker {spk}: jaw/energy correlation {r:.2f}"
        partner = C.frame_db(d.tracks[1 - spk], len(m))
        assert r > np.corrcoef(m[:, 50], partner)[0, 1] + 0.3


def test_listening_head_moves_and_jaw_closed(dialogue_motion, calib):
    d, motions = dialogue_motion
    st = calib["stats"]
    rest = st["jaw_x"]["all"]["p5"]
    span = st["jaw_x"]["talk"]["p95"] - st["jaw_x"]["talk"]["p5"]
    real_listen = np.asarray(st["head"]["listen"]["std"])
    for spk, m in enumerate(motions):
        act = _states(d, len(m))
        listen = ~act[:, 0] & ~act[:, 1] | act[:, 1 - spk] & ~act[:, spk]
        assert listen.sum() > 5 * FPS
        neck_std = m[listen, 53:].std(0)
        assert np.all(neck_std > 0.3 * real_listen), f"speaker {spk}: listening neck std {neck_std}"
        jaw_l = m[listen, 50]
        assert np.mean(jaw_l < rest + 0.25 * span) > 0.85, "jaw should stay mostly closed while listening"
        talk_jaw = m[act[:, spk], 50].mean()
        assert talk_jaw > jaw_l.mean() + 0.2 * span


def test_jitter_frozen_and_ranges(dialogue_motion, calib):
    _, motions = dialogue_motion
    st = calib["stats"]
    jit = st["jitter"]
    for m in motions:
        d2 = np.abs(np.diff(m.astype(np.float64), 2, axis=0)).mean(0)
        assert d2[:50].mean() <= 2 * jit["exp"]
        assert d2[50] <= 2 * jit["jaw_x"]
        assert np.all(d2[53:] <= 2 * np.asarray(jit["neck"]))
        # never frozen: every 1-s window changes
        step = np.abs(np.diff(m, axis=0)).max(1)
        win = np.lib.stride_tricks.sliding_window_view(step, FPS).max(1)
        assert win.min() > 1e-4
        # inside the calibrated ranges
        nm, ns = np.asarray(st["neck_mean"]), np.asarray(st["neck_std"])
        assert np.all(np.abs(m[:, 53:] - nm) <= 3.5 * ns + 1e-5)
        em, es = np.asarray(st["exp_mean"]), np.asarray(st["exp_std"])
        assert np.all(np.abs(m[:, :50] - em) <= 3 * es + 1e-5)
        p5, p95 = st["jaw_x"]["talk"]["p5"], st["jaw_x"]["talk"]["p95"]
        assert m[:, 50].max() <= p95 + 0.1 * (p95 - p5) + 1e-5


def test_listener_nods_at_partner_phrase_ends(dialogue_motion):
    """Nod-axis speed in the 1.5 s after the partner's turn ends exceeds the listener's average."""
    d, motions = dialogue_motion
    for spk, m in enumerate(motions):
        speed = np.abs(np.diff(m[:, 53], prepend=m[0, 53]))
        ends = [s.end for s in d.timeline if s.speaker == 1 - spk and s.kind != "backchannel"]
        idx = np.unique(np.concatenate([np.arange(int(e * FPS), min(int((e + 1.5) * FPS), len(m))) for e in ends]))
        assert len(idx) > 0
        assert speed[idx].mean() > 0.8 * speed.mean()
