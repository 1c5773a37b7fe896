"""The model card: its behaviour measures on signals whose answer is known, and the Markdown rendered
from the JSON alone (every figure in the text is the JSON's)."""

from __future__ import annotations

import numpy as np
import pytest

from model_export import card_measures as mc
from model_export import card_render
from model_export.corpus.calibrate import frame_db

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
    db = frame_db(audio, 20 * FPS)
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
    table = card_render.metric_table(rows)
    assert table.count("\n") == 4 and "FD JAW ×1000" in table and "| 500.00 |" in table
    verdicts = card_render.beats(rows, "Model n = 7")
    assert sum(v.startswith("✓") for v in verdicts) == 2  # FD JAW against both baselines, nothing else


def _card(**card) -> dict:
    keys = {f"{m}_{g}": 1.0 for m in ("fd", "mse", "sid") for g in ("exp", "jaw", "pose")}
    table = {"Neutral pose": keys, "Training mean": keys, "Teacher": keys, "Model n = 0": keys, "Model n = 7": keys}
    two = {"model": 0.7, "reference": 0.8, "smoothed": 0.75}
    triple = {k: [0.1, 0.2, 0.3] for k in ("model_std_deg", "reference_std_deg", "smoothed_std_deg")}
    spread = {"jaw_x": {"across_seeds": 0.01, "over_time": 0.02, "ratio": 0.5},
              "neck_deg": {"across_seeds": 0.1, "over_time": 0.2, "ratio": 0.5}}
    return {
        "card": {"name": "m", "model": {"width": 64, "depth": 2, "parameters": 1.2e6, "max_context_turns": 8},
                 "precision": "fp32", "license": "Apache-2.0", "bundle_mb": 5.0, "shipped_clip": "clipA",
                 "seeds": 5, "smoothing": 2.0, "figures": {"clipB": "docs/b.png"}, **card},
        "folds": {"clipA": {"sets": {"real": {"sequences": ["clipB"], "table": table}}}},
        "behaviour": {
            "jaw_energy_r": {"real": two, "synthetic": two},
            "listening_head": {"real": triple, "synthetic": triple},
            "jitter": {s: {k: [0.1, 0.01, 0.2] for k in ("model", "reference", "smoothed")}
                       for s in ("real", "synthetic")},
            "seed_spread": {"real": spread, "synthetic": spread},
            "latency_ms": {"median": 17.3, "p95": 21.0, "turns": 40},
            "long": {"sequence": "long1", "audio_seconds": 600.0, "generation_seconds": 12.0, "finite": True,
                     "jaw_mean_range_over_std": 0.5, "neck_std_last_over_first": 1.0, "minutes": []},
        },
    }


def test_the_card_text_takes_every_figure_from_the_json() -> None:
    text = card_render.render(_card(cpu_count=8, head_orientation_spread_deg=16.4, train={
        "steps": 1700, "fixed_loss_before": 14.812, "fixed_loss_after": 0.532},
        real_jaw_speech_r={"clipB": -0.05, "clipC": 0.62}))
    assert "17.3 ms per 1-s turn" in text and "8 CPU cores" in text and "on 8 CPU cores" in text
    assert "differs by up to 16°" in text
    assert "0.532 at the end (14.812 at initialisation)" in text
    assert "`clipB` recording's FLAME jaw hardly follows" in text and "r = -0.05" in text
    assert "clipC" not in text  # a recording whose jaw follows its speech is not called weak
    assert "![clipB](docs/b.png)" in text
    other = card_render.render(_card(cpu_count=2, head_orientation_spread_deg=3.0,
                                     real_jaw_speech_r={"clipB": 0.7}))
    assert "2 CPU cores" in other and "up to 3°" in other and "hardly follows" not in other
    assert "initialisation" not in other  # no training summary: nothing claimed about it
