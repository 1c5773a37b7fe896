"""Reproducible sampling noise, drawn per turn.

Each turn's noise comes from its own generator seeded with (seed, turn index), so a take is the
same whether it is generated offline, streamed turn by turn, or resumed half way; and the PyTorch
sampler and the onnxruntime engine see the same numbers for the same seed.

Correlated noise (``correlation`` > 0, in frames): the diffusion head samples every frame on its own,
so motion the audio leaves open (sway, drift) comes out as frame-to-frame white noise. Smoothing the
sampling noise along time keeps every frame's marginal exactly N(0, 1) -- what the head was trained
on -- while neighbouring frames draw alike. The noise is one continuous stream across turns (a turn's
stretch also reads its neighbours' white noise), so there is no seam and streaming still equals
offline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TurnNoise:
    """Noise for the agent frames of one turn.

    ``x_T``: (F, C) start of the reverse process; ``steps``: (S, F, C), ``steps[i]`` is added at
    respaced step i (step 0 adds none); ``order``: (F,) a random generation order of the frames
    (used when a turn is generated in several masked iterations).
    """

    x_T: np.ndarray
    steps: np.ndarray
    order: np.ndarray

    def __post_init__(self) -> None:
        f, c = self.x_T.shape
        if self.steps.ndim != 3 or self.steps.shape[1:] != (f, c):
            raise ValueError(f"step noise has shape {self.steps.shape}, expected (S, {f}, {c})")
        if sorted(self.order.tolist()) != list(range(f)):
            raise ValueError("order must be a permutation of the turn's frames")


MAX_CORRELATION = 6.0  # frames: the kernel (4 sigma) then reaches at most one turn either side


def turn_noise(
    seed: int,
    turn_index: int,
    num_steps: int,
    frames: int,
    channels: int,
    correlation: float | np.ndarray = 0.0,
) -> TurnNoise:
    """``correlation``: frames over which the noise is smoothed, one value or one per channel (0 = white)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(turn_index)])
    x_T = rng.standard_normal((frames, channels), dtype=np.float32)
    steps = rng.standard_normal((num_steps, frames, channels), dtype=np.float32)
    order = rng.permutation(frames)
    sigma = np.broadcast_to(np.asarray(correlation, np.float64), (channels,))
    if np.any(sigma > 0):
        cx, cs = _correlated(seed, turn_index, num_steps, frames, channels, sigma)
        on = sigma > 0
        x_T[:, on], steps[:, :, on] = cx[:, on], cs[:, :, on]
    return TurnNoise(x_T=x_T, steps=steps, order=order)


def _white(seed: int, stream_turn: int, num_steps: int, frames: int, channels: int) -> np.ndarray:
    """(1 + S, F, C) white noise of one turn of the continuous stream (x_T, then the steps)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(stream_turn) + 1, 1])
    return rng.standard_normal((1 + num_steps, frames, channels), dtype=np.float32)


def _kernel(sigma: float, frames: int) -> np.ndarray:
    if not 0 < sigma <= MAX_CORRELATION or 4 * sigma > frames:
        raise ValueError(f"noise correlation must be in (0, {MAX_CORRELATION:g}] frames and 4x it within a "
                         f"turn of {frames} frames, got {sigma}")
    radius = int(np.ceil(4 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / np.sqrt(np.sum(k**2))  # unit variance out of unit-variance white noise


def _correlated(
    seed: int, turn_index: int, num_steps: int, frames: int, channels: int, sigma: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(x_T, steps) of the continuous stream smoothed per channel with its own sigma (> 0 only)."""
    stream = np.concatenate([_white(seed, k, num_steps, frames, channels)
                             for k in (turn_index - 1, turn_index, turn_index + 1)], axis=1)
    out = np.zeros((1 + num_steps, frames, channels), np.float32)
    for value in np.unique(sigma[sigma > 0]):
        cols = np.flatnonzero(sigma == value)
        kernel = _kernel(float(value), frames)
        radius = len(kernel) // 2
        acc = np.zeros((1 + num_steps, frames, len(cols)), np.float64)
        for j, w in enumerate(kernel):
            a = frames - radius + j
            acc += w * stream[:, a : a + frames, cols]
        out[:, :, cols] = acc
    return out[0], out[1:]
