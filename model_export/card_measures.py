"""The model card's behaviour measures (torch-free), shared by ``model_card`` and the tests of the
bundled model: jaw against the agent's speech level, the listening head, smoothness, seed spread and
drift over a long take. Motion is FLAME-56 (``timar_blender/engine/contract.py``) at 25 fps; audio
is the agent's 16-kHz track."""

from __future__ import annotations

import math

import numpy as np

from timar_blender.engine.contract import EXPRESSION, FPS, JAW, NECK, SPEECH_RATE

from .corpus.calibrate import frame_db, talking_mask

RAD2DEG = 180.0 / math.pi
JAW_OPEN = JAW.start  # jaw x: the opening


def crop(*xs: np.ndarray) -> list[np.ndarray]:
    """Every array cut to the shortest's length."""
    n = min(len(x) for x in xs)
    return [x[:n] for x in xs]


def jaw_energy_r(motion: np.ndarray, agent_audio: np.ndarray) -> float:
    """Pearson r between jaw opening (jaw x) and the agent's frame level in dB (floored 50 dB below
    its loudest frames, so silence does not dominate); NaN for a frozen jaw."""
    db = frame_db(agent_audio, len(motion))
    db = np.maximum(db, np.percentile(db, 99) - 50.0)
    jx = motion[:, JAW_OPEN]
    if jx.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(jx, db)[0, 1])


def listening_head(motion: np.ndarray, agent_audio: np.ndarray) -> dict[str, list[float]]:
    """Neck rotation std and velocity std (degrees, degrees/frame) per axis over the listening frames
    (the agent's own track not voiced, the calibration's talking mask)."""
    listen = ~talking_mask(frame_db(agent_audio, len(motion)))
    neck = motion[:, NECK] * RAD2DEG
    vel = np.diff(neck, axis=0, prepend=neck[:1])
    if listen.sum() < 10:
        return {"std": [math.nan] * 3, "vel_std": [math.nan] * 3, "frames": int(listen.sum())}
    return {
        "std": [float(v) for v in neck[listen].std(0)],
        "vel_std": [float(v) for v in vel[listen].std(0)],
        "frames": int(listen.sum()),
    }


def jitter(motion: np.ndarray) -> list[float]:
    """Mean |second difference| per frame: expression, jaw x (rad), head (degrees)."""
    m = np.asarray(motion, np.float64)
    return [
        float(np.abs(np.diff(m[:, EXPRESSION], 2, axis=0)).mean()),
        float(np.abs(np.diff(m[:, JAW_OPEN], 2)).mean()),
        float(np.abs(np.diff(m[:, NECK] * RAD2DEG, 2, axis=0)).mean()),
    ]


def seed_spread(takes: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Across-seed std per frame (mean over frames) against the within-take std over time."""
    stack = np.stack(crop(*takes))
    out = {}
    neck = list(range(NECK.start, NECK.stop))
    for name, cols, scale in (("jaw_x", [JAW_OPEN], 1.0), ("neck_deg", neck, RAD2DEG)):
        x = stack[:, :, cols] * scale
        across = float(x.std(0).mean())
        within = float(x.std(1).mean())
        out[name] = {"across_seeds": across, "over_time": within, "ratio": across / (within + 1e-12)}
    return out


def drift(motion: np.ndarray, agent_audio: np.ndarray, fps: float = FPS, rate: int = SPEECH_RATE) -> dict:
    """Per-minute statistics of a long take: jaw x mean/std, neck std (deg), jaw-energy r."""
    per = int(60 * fps)
    hop = int(rate / fps)
    rows = []
    for k in range(len(motion) // per):
        m = motion[k * per : (k + 1) * per]
        a = agent_audio[k * per * hop : (k + 1) * per * hop]
        rows.append(
            {
                "minute": k + 1,
                "jaw_mean": float(m[:, JAW_OPEN].mean()),
                "jaw_std": float(m[:, JAW_OPEN].std()),
                "neck_std_deg": float((m[:, NECK] * RAD2DEG).std(0).mean()),
                "exp_abs_mean": float(np.abs(m[:, EXPRESSION]).mean()),
                "jaw_energy_r": jaw_energy_r(m, a),
            }
        )
    jm = np.array([r["jaw_mean"] for r in rows])
    ns = np.array([r["neck_std_deg"] for r in rows])
    return {
        "minutes": rows,
        "finite": bool(np.isfinite(motion).all()),
        "jaw_mean_range_over_std": float(np.ptp(jm) / (motion[:, JAW_OPEN].std() + 1e-12)),
        "neck_std_last_over_first": float(ns[-1] / (ns[0] + 1e-12)) if len(ns) else math.nan,
    }


def head_orientation_spread_deg(neck_means: dict[str, list[float]]) -> float:
    """Largest difference between recordings' mean head rotation (axis-angle, radians), in degrees:
    how much where each person sat relative to the camera differs."""
    means = [np.asarray(v, np.float64) for v in neck_means.values()]
    if len(means) < 2:
        return math.nan
    return float(max(np.abs(a - b).max() for i, a in enumerate(means) for b in means[i + 1 :]) * RAD2DEG)
