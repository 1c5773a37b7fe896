"""The model card's behaviour measures, on signals whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from model_export import model_card as mc

RATE, FPS = 16000, 25


def _speech_like(seconds: float, on: list[tuple[float, float]], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1e-3, int(seconds * RATE))
    for a, b in on:
        i, j = int(a * RATE), int(b * RATE)
        env = 0.2 + 0.2 * np.sin(np.linspace(0, 20 * np.pi, j - i)) ** 2
        x[i:j] += rng.normal(0, 1, j - i) * env
    return x.astype(np.float32)


def test_jaw_energy_correlation_tracks_speech() -> None:
    audio = _speech_like(20, [(2, 6), (9, 14)])
    db = mc.frame_db(audio, 20 * FPS)
    motion = np.zeros((20 * FPS, 56), np.float32)
    motion[:, 50] = (db - db.min()) / np.ptp(db) * 0.2  # jaw opens with loudness
    assert mc.jaw_energy_r(motion, audio) > 0.9
    motion[:, 50] = np.random.default_rng(0).normal(0, 0.05, len(motion))  # unrelated jaw
    assert abs(mc.jaw_energy_r(motion, audio)) < 0.2
    motion[:, 50] = 0.0
    assert np.isnan(mc.jaw_energy_r(motion, audio))  # a frozen jaw has no correlation


def test_listening_head_measures_only_listening_frames() -> None:
    audio = _speech_like(20, [(0, 10)])
    motion = np.zeros((20 * FPS, 56), np.float32)
    motion[: 10 * FPS, 53] = np.random.default_rng(1).normal(0, 0.2, 10 * FPS)  # moves only while talking
    still = mc.listening_head(motion, audio)
    assert still["frames"] > 8 * FPS and max(still["std"]) < 1e-6
    motion[10 * FPS + 10 :, 54] = np.deg2rad(3.0) * np.sin(np.arange(10 * FPS - 10) / 5)
    moving = mc.listening_head(motion, audio)
    assert moving["std"][1] == pytest.approx(3.0 / np.sqrt(2), rel=0.15)


def test_seed_spread_and_drift() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(0, 0.1, (500, 56)).astype(np.float32)
    same = mc.seed_spread([base, base.copy(), base.copy()])
    assert same["jaw_x"]["across_seeds"] < 1e-6 and same["jaw_x"]["ratio"] < 1e-5
    different = mc.seed_spread([rng.normal(0, 0.1, (500, 56)) for _ in range(4)])
    assert 0.7 < different["jaw_x"]["ratio"] < 1.2  # independent takes: spread ~ the signal's own std
    long = rng.normal(0, 0.1, (25 * 60 * 4, 56)).astype(np.float32)
    audio = _speech_like(240, [(t, t + 3) for t in range(0, 240, 6)])
    steady = mc.drift(long, audio)
    assert len(steady["minutes"]) == 4 and steady["finite"] and steady["jaw_mean_range_over_std"] < 0.2
    drifting = long.copy()
    drifting[:, 50] += np.linspace(0, 0.3, len(long))
    assert mc.drift(drifting, audio)["jaw_mean_range_over_std"] > 1.0


def test_table_and_baseline_verdicts() -> None:
    keys = {f"{m}_{g}": 1.0 for m in ("fd", "mse", "sid") for g in ("exp", "jaw", "pose")}
    rows = {"Neutral pose": dict(keys), "Training mean": dict(keys), "Model n = 7": {**keys, "fd_jaw": 0.5}}
    table = mc.metric_table(rows)
    assert table.count("\n") == 4 and "FD JAW ×1000" in table and "| 500.00 |" in table
    verdicts = mc.beats(rows, "Model n = 7")
    assert sum(v.startswith("✓") for v in verdicts) == 2  # FD JAW against both baselines, nothing else
