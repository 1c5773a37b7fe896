"""Speech activity of one audio track from its frame energy: the one detector (numpy only, no bpy,
no torch) behind every voice-activity estimate of the project. Callers keep their presets:

* ``engine.dialogue.speaking_frames`` (the take's ``agent_speaking``),
* ``model_export.behaviour_measures.energy_mask`` (fixed by ``docs/motion-behaviour.md``),
* ``model_export.corpus.calibrate.talking_mask`` (talk / listen split of the real clips),
* ``model_export.corpus.real_clips.energy_segments`` (timelines of real speech).

The steps, each optional: frame levels (``frame_db``) -> a start level from the track's own
percentiles (above the noise floor, under the loud frames, halfway between them, above an absolute
level), with hysteresis -> majority smoothing -> bridging short gaps -> dropping short runs ->
widening by whole frames. A rough estimate, not a VAD model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def frame_db(
    wave: np.ndarray,
    hop: float,
    frames: int | None = None,
    *,
    eps: float,
    power: bool = False,
    tail: str = "pad",
    dtype: type | None = np.float64,
) -> np.ndarray:
    """Level in dB per frame of ``hop`` samples: ``20·log10(rms + eps)``, or with ``power``
    ``10·log10(mean square + eps)``, computed in ``dtype`` (None = the wave's own).

    ``tail``: ``"pad"`` - ``frames`` frames of an integer hop, zeros past the end; ``"partial"`` -
    frame k averages samples ``int(k·hop)`` to ``int((k+1)·hop)`` that exist (hop may be fractional;
    no sample = level of silence); ``"drop"`` - whole frames only (``frames`` ignored)."""
    x = np.asarray(wave) if dtype is None else np.asarray(wave, dtype)
    if tail == "partial":
        idx = (np.arange(frames + 1) * hop).astype(np.int64)
        ms = np.zeros(frames)
        for i in range(frames):
            seg = x[idx[i] : idx[i + 1]]
            ms[i] = np.mean(seg**2) if len(seg) else 0.0
    else:
        hop = int(hop)
        if tail == "drop":
            frames = len(x) // hop
        elif tail == "pad":
            x = np.pad(x, (0, max(0, frames * hop - len(x))))
        else:
            raise ValueError(f"tail must be 'pad', 'partial' or 'drop', got {tail!r}")
        ms = (x[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)
    return 10 * np.log10(ms + eps) if power else 20 * np.log10(np.sqrt(ms) + eps)


@dataclass(frozen=True)
class Gate:
    """Detector settings. Start level = the highest of: floor + ``over_floor_db`` (floor = the
    ``floor_pct`` percentile of the track's levels), loud - ``under_loud_db`` and, with ``midway``,
    (floor + loud) / 2 (loud = the ``loud_pct`` percentile), and ``min_db``. An active frame stays
    active while above start - ``hysteresis_db``. Then a majority vote over ``majority`` frames
    (odd; edges mirrored), gaps shorter than ``bridge_s`` bridged and runs shorter than
    ``min_run_s`` dropped (both measured as ``frame / fps`` seconds, as the corpus timelines always
    were: a run of exactly ``min_run_s`` may fall either side by float rounding), and every active
    frame widened by ``widen`` frames on each side."""

    over_floor_db: float
    floor_pct: float = 10.0
    loud_pct: float | None = None
    under_loud_db: float | None = None
    midway: bool = False
    min_db: float | None = None
    hysteresis_db: float = 0.0
    majority: int = 1
    bridge_s: float = 0.0
    min_run_s: float = 0.0
    widen: int = 0

    def start_level(self, db: np.ndarray) -> float:
        floor = np.percentile(db, self.floor_pct)
        levels = [floor + self.over_floor_db]
        if self.loud_pct is not None:
            loud = np.percentile(db, self.loud_pct)
            if self.under_loud_db is not None:
                levels.append(loud - self.under_loud_db)
            if self.midway:
                levels.append((floor + loud) / 2)
        if self.min_db is not None:
            levels.append(self.min_db)
        return max(levels)

    def active(self, db: np.ndarray) -> np.ndarray:
        """Frames above the start level (with hysteresis), before any smoothing."""
        if len(db) == 0:
            return np.zeros(0, bool)
        start = self.start_level(db)
        if self.hysteresis_db == 0:
            return db > start
        stop = start - self.hysteresis_db
        on = np.zeros(len(db), bool)
        act = False
        for i, v in enumerate(db):
            act = v > start or (act and v > stop)
            on[i] = act
        return on

    def runs(self, db: np.ndarray, fps: float) -> list[tuple[int, int]]:
        """Active runs ``(first frame, end frame exclusive)`` after majority, bridging and dropping
        (not widened)."""
        return _runs(majority(self.active(db), self.majority), fps, self.bridge_s, self.min_run_s)

    def mask(self, db: np.ndarray, fps: float) -> np.ndarray:
        """Per-frame activity of a track's levels ``db`` at ``fps`` frames per second."""
        on = majority(self.active(db), self.majority)
        if self.bridge_s > 0 or self.min_run_s > 0:
            runs = _runs(on, fps, self.bridge_s, self.min_run_s)
            on = np.zeros(len(on), bool)
            for a, b in runs:
                on[a:b] = True
        return widen(on, self.widen)


def majority(on: np.ndarray, size: int) -> np.ndarray:
    """Binary median over ``size`` frames (odd), the edges mirrored (scipy's ``median_filter``)."""
    if size <= 1 or len(on) == 0:
        return on
    h = size // 2
    padded = np.pad(on.astype(np.int32), h, mode="symmetric")
    return np.convolve(padded, np.ones(size, np.int32), mode="valid") > h


def widen(on: np.ndarray, frames: int) -> np.ndarray:
    """Every active frame also marks ``frames`` frames on each side (nothing outside the track)."""
    out = on.copy()
    for k in range(1, frames + 1):
        out[k:] |= on[:-k]
        out[:-k] |= on[k:]
    return out


def _runs(on: np.ndarray, fps: float, bridge_s: float, min_run_s: float) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[False], on, [False]]).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    merged: list[list] = []
    for a, b in zip(starts, ends, strict=True):
        if merged and a / fps - merged[-1][1] / fps < bridge_s:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged if b / fps - a / fps >= min_run_s]
