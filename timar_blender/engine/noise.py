"""Reproducible sampling noise, drawn per turn.

Each turn's noise comes from its own generator seeded with (seed, turn index), so a take is the
same whether it is generated offline, streamed turn by turn, or resumed half way; and the PyTorch
sampler and the onnxruntime engine see the same numbers for the same seed.
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


def turn_noise(seed: int, turn_index: int, num_steps: int, frames: int, channels: int) -> TurnNoise:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(turn_index)])
    x_T = rng.standard_normal((frames, channels), dtype=np.float32)
    steps = rng.standard_normal((num_steps, frames, channels), dtype=np.float32)
    order = rng.permutation(frames)
    return TurnNoise(x_T=x_T, steps=steps, order=order)
