"""The one speech-activity detector (timar_blender/engine/activity.py) gives bit-identical results to
the four detectors it replaced: ``speaking_frames`` (engine), ``energy_mask`` + ``frame_level``
(behaviour measures), ``talking_mask`` + ``frame_db`` (calibration) and ``energy_segments``
(corpus timelines). The old algorithms are frozen below, copied as they were before the move, and
run on synthetic tracks (always), the real DualTalk demo tracks and LibriSpeech dialogues (when
../shared is present)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import DEMO, SHARED
from scipy.ndimage import binary_dilation, median_filter

from model_export import behaviour_measures as bm
from model_export.corpus import calibrate as C
from model_export.corpus.real_clips import energy_segments
from timar_blender.engine import activity
from timar_blender.engine.dialogue import speaking_frames

RATE, FPS = 16000, 25

# ----------------------------------------------------------------------------- frozen old algorithms


def old_speaking_frames(wave, frames, rate, fps):
    hop = rate / fps
    idx = (np.arange(frames + 1) * hop).astype(np.int64)
    wave = np.asarray(wave, dtype=np.float32)
    rms = np.zeros(frames)
    for i in range(frames):
        seg = wave[idx[i] : idx[i + 1]]
        rms[i] = np.sqrt(np.mean(seg.astype(np.float64) ** 2)) if len(seg) else 0.0
    db = 20 * np.log10(rms + 1e-9)
    floor = np.percentile(db, 10) if frames else -120.0
    voiced = (db > floor + 12.0) & (db > -50.0)
    out = voiced.copy()
    for k in range(1, 4):
        out[k:] |= voiced[:-k]
        out[:-k] |= voiced[k:]
    return out


def old_frame_db(x, n, rate=RATE, fps=FPS):
    hop = rate // fps
    x = np.asarray(x, np.float64)
    if x.ndim > 1:
        x = x.mean(axis=1)
    x = np.pad(x, (0, max(0, n * hop - len(x))))[: n * hop]
    return 20 * np.log10(np.sqrt((x.reshape(n, hop) ** 2).mean(axis=1)) + 1e-6)


def old_talking_mask(db):
    floor, loud = np.percentile(db, 10), np.percentile(db, 97)
    voiced = db > max(floor + 12.0, (floor + loud) / 2)
    voiced = median_filter(voiced.astype(np.uint8), size=5).astype(bool)
    return binary_dilation(voiced, iterations=5)


def old_energy_segments(x, speaker, rate=RATE, fps=FPS):
    hop = rate // fps
    n = len(x) // hop
    db = 10 * np.log10((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-10)
    thr = max(np.percentile(db, 10) + 12, np.percentile(db, 99) - 30)
    on = db > thr
    segs = []
    for i in np.flatnonzero(on):
        t0 = i / fps
        if segs and t0 - segs[-1][1] < 0.3:
            segs[-1][1] = (i + 1) / fps
        else:
            segs.append([t0, (i + 1) / fps])
    return [(speaker, round(a, 3), round(b, 3), "turn") for a, b in segs if b - a >= 0.2]


def old_frame_level(audio, frames, rate=RATE, fps=FPS):
    hop = round(rate / fps)
    x = np.asarray(audio, np.float64).ravel()
    x = np.pad(x, (0, max(0, frames * hop - len(x))))[: frames * hop]
    rms = np.sqrt(np.mean(x.reshape(frames, hop) ** 2, axis=1))
    db = 20.0 * np.log10(rms + 1e-12)
    return np.maximum(db, np.percentile(db, 99) - 50.0) if frames else db


def old_energy_mask(db, fps=FPS):
    db = np.asarray(db, np.float64)
    if len(db) == 0:
        return np.zeros(0, bool)
    floor, loud = np.percentile(db, 10), np.percentile(db, 99)
    start = max(floor + 13.0, loud - 35.0)
    stop = start - 6.0
    on = np.zeros(len(db), bool)
    active = False
    for i, v in enumerate(db):
        active = v > start or (active and v > stop)
        on[i] = active
    widen = round(0.2 * fps)
    return binary_dilation(on, iterations=widen) if on.any() and widen > 0 else on


# ----------------------------------------------------------------------------- inputs


def _synthetic() -> dict[str, np.ndarray]:
    """Noise bursts of random level over a random floor, a buzz with syllable gaps, silence, a
    fragment shorter than a frame's worth at some rates."""
    rng = np.random.default_rng(0)
    out = {}
    for i in range(6):
        n = int(rng.integers(RATE, RATE * 8)) + int(rng.integers(0, 640))
        env = np.repeat(rng.random(n // 800 + 1) < 0.4, 800)[:n] * 10 ** rng.uniform(-3, 0)
        out[f"bursts{i}"] = (rng.standard_normal(n) * (env + 10 ** rng.uniform(-5, -2))).astype(np.float32)
    t = np.arange(6 * RATE) / RATE
    syll = (np.sin(2 * np.pi * 4 * t) > -0.3) * (t % 2.0 < 1.4)
    out["buzz"] = (0.2 * np.sin(2 * np.pi * 140 * t) * syll + 1e-3 * rng.standard_normal(len(t))).astype(np.float32)
    out["silence"] = np.zeros(3 * RATE, np.float32)
    out["fragment"] = (0.1 * rng.standard_normal(700)).astype(np.float32)
    return out


def _real() -> dict[str, np.ndarray]:
    out = {}
    if DEMO.is_dir():
        import soxr

        for w in sorted(DEMO.glob("*.wav")):
            x, sr = sf.read(w, dtype="float32", always_2d=True)
            x = x.mean(axis=1)
            out[w.stem] = soxr.resample(x, sr, RATE).astype(np.float32) if sr != RATE else x
    if (SHARED / "librispeech" / "test-other").is_dir():
        from model_export.corpus.voices import real_voice_dialogue

        for seed in (0, 1):
            d = real_voice_dialogue("test-other", seed, 30.0)
            for k in (0, 1):
                out[f"librispeech{seed}_clean{k}"] = d.clean[k]
                out[f"librispeech{seed}_recorded{k}"] = d.tracks[k]
    return out


SYNTHETIC = _synthetic()


def _check(x: np.ndarray) -> None:
    n = len(x) * FPS // RATE
    for frames, rate, fps in ((n, RATE, 25.0), (n + 7, RATE, 25.0), (len(x) * 30 // RATE, RATE, 30.0)):
        want = old_speaking_frames(x, frames, rate, fps)
        got = speaking_frames(x, frames, rate, fps)
        assert got.dtype == want.dtype and np.array_equal(got, want), ("speaking_frames", frames, fps)
    assert np.array_equal(speaking_frames(x * 1.3, n, RATE, 25.0), old_speaking_frames(x * 1.3, n, RATE, 25.0))
    if n:
        assert np.array_equal(C.frame_db(x, n), old_frame_db(x, n))
        assert np.array_equal(C.talking_mask(C.frame_db(x, n)), old_talking_mask(old_frame_db(x, n)))
    if len(x) >= RATE // FPS:
        for y in (x, x.astype(np.float64)):
            got = [tuple(s[:4]) for s in energy_segments(y, 1)]
            assert got == old_energy_segments(y, 1), "energy_segments"
    for fps in (25, 30):
        frames = len(x) * fps // RATE
        level = bm.frame_level(x, frames, fps=fps)
        assert np.array_equal(level, old_frame_level(x, frames, fps=fps))
        assert np.array_equal(bm.energy_mask(level, fps), old_energy_mask(level, fps)), ("energy_mask", fps)


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_same_as_the_four_old_detectors_on_synthetic_tracks(name):
    _check(SYNTHETIC[name])


def test_same_as_the_four_old_detectors_on_real_speech():
    real = _real()
    if not real:
        pytest.skip(f"{SHARED} is absent (a fresh clone has no ../shared fixtures): no real speech to compare on")
    for name, x in real.items():
        _check(x)
        # and the detectors find speech in real speech (the comparison is not between two empty masks)
        assert speaking_frames(x, len(x) * FPS // RATE, RATE, 25.0).any(), name


def test_majority_and_widen_equal_scipy_median_and_dilation():
    """The numpy majority vote and widening equal scipy's median_filter (mirrored edges) and
    binary_dilation on random masks of every small length."""
    rng = np.random.default_rng(1)
    for n in [*range(0, 12), 50, 333]:
        for p in (0.1, 0.5, 0.9):
            on = rng.random(n) < p
            for size in (3, 5, 7):
                want = median_filter(on.astype(np.uint8), size=size).astype(bool) if n else on
                assert np.array_equal(activity.majority(on, size), want), (n, p, size)
            for w in (1, 3, 5):
                want = binary_dilation(on, iterations=w) if n else on
                assert np.array_equal(activity.widen(on, w), want), (n, p, w)


def test_gate_steps_each_change_the_mask():
    """Hysteresis keeps a dip going, bridging fills a short gap, dropping removes a blip, widening
    adds frames on both sides: each parameter does what its name says on a hand-made level curve."""
    db = np.full(100, -60.0)
    db[10:30] = -10.0  # a run
    db[30:33] = -38.0  # a dip: under the start level (-35 dB), over start - 6 dB
    db[33:50] = -10.0
    db[55:70] = -10.0  # 5 frames of gap after the dip-joined run
    db[80:82] = -10.0  # a 2-frame blip
    plain = activity.Gate(over_floor_db=12.0, loud_pct=99, under_loud_db=25.0)
    assert plain.start_level(db) == pytest.approx(-35.0)
    on = plain.mask(db, 25)
    assert not on[30:33].any() and on[10:30].all() and on[80:82].all()
    hyst = activity.Gate(over_floor_db=12.0, loud_pct=99, under_loud_db=25.0, hysteresis_db=6.0)
    assert hyst.mask(db, 25)[30:33].all()
    assert plain.runs(db, 25) == [(10, 30), (33, 50), (55, 70), (80, 82)]
    bridged = activity.Gate(over_floor_db=12.0, loud_pct=99, under_loud_db=25.0, bridge_s=0.3, min_run_s=0.2)
    assert bridged.runs(db, 25) == [(10, 70)]  # the 3- and 5-frame gaps bridged, the blip dropped
    wide = activity.Gate(over_floor_db=12.0, loud_pct=99, under_loud_db=25.0, widen=2)
    added = np.flatnonzero(wide.mask(db, 25) & ~on).tolist()
    assert added == [8, 9, 30, 31, 32, 50, 51, 53, 54, 70, 71, 78, 79, 82, 83]
