"""Diffusion noise schedule and its respaced sampling coefficients (numpy, float64).

The cosine schedule (Nichol & Dhariwal, s = 0.008, beta <= 0.999) over 1000 training steps and
the even respacing of IDDPM/DiT, as used by MAR and TIMAR. Training uses every step; sampling a
respaced subset, whose betas are recomputed from the kept cumulative alphas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TRAIN_STEPS = 1000


def cosine_betas(num_steps: int = TRAIN_STEPS, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    def alpha_bar(t: float) -> float:
        return math.cos((t + s) / (1 + s) * math.pi / 2) ** 2

    return np.array(
        [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)],
        dtype=np.float64,
    )


def linear_betas(num_steps: int = TRAIN_STEPS) -> np.ndarray:
    scale = 1000 / num_steps
    return np.linspace(scale * 0.0001, scale * 0.02, num_steps, dtype=np.float64)


def named_betas(name: str, num_steps: int = TRAIN_STEPS) -> np.ndarray:
    if name == "cosine":
        return cosine_betas(num_steps)
    if name == "linear":
        return linear_betas(num_steps)
    raise ValueError(f"unknown noise schedule {name!r} (expected 'cosine' or 'linear')")


def space_timesteps(num_timesteps: int, section_counts: str | int | list[int]) -> list[int]:
    """Evenly spaced timesteps kept from the original process (IDDPM's rule).

    ``"5"`` over 1000 steps gives [0, 250, 500, 749, 999]; ``"ddimN"`` uses DDIM's fixed stride.
    """
    if isinstance(section_counts, int):
        section_counts = [section_counts]
    elif isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            want = int(section_counts[len("ddim") :])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == want:
                    return list(range(0, num_timesteps, stride))
            raise ValueError(f"cannot create exactly {want} steps with an integer stride")
        section_counts = [int(x) for x in section_counts.split(",")]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, steps = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot divide a section of {size} steps into {count}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            steps.append(start + round(cur))
            cur += stride
        start += size
    return sorted(set(steps))


@dataclass(frozen=True)
class DiffusionCoefficients:
    """Per-step arrays of a (possibly respaced) Gaussian diffusion, index 0 = least noise."""

    timesteps: np.ndarray  # original timestep of each step (fed to the network)
    betas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    posterior_variance: np.ndarray
    posterior_log_variance_clipped: np.ndarray
    posterior_mean_coef1: np.ndarray  # multiplies x0
    posterior_mean_coef2: np.ndarray  # multiplies x_t

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    @property
    def log_betas(self) -> np.ndarray:
        return np.log(self.betas)

    @classmethod
    def from_betas(cls, betas: np.ndarray, timesteps: np.ndarray | None = None) -> DiffusionCoefficients:
        betas = np.asarray(betas, dtype=np.float64)
        alphas = 1.0 - betas
        ac = np.cumprod(alphas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        post_log = np.log(np.append(post_var[1], post_var[1:])) if len(post_var) > 1 else np.array([])
        return cls(
            timesteps=np.arange(len(betas)) if timesteps is None else np.asarray(timesteps),
            betas=betas,
            alphas_cumprod=ac,
            alphas_cumprod_prev=ac_prev,
            posterior_variance=post_var,
            posterior_log_variance_clipped=post_log,
            posterior_mean_coef1=betas * np.sqrt(ac_prev) / (1.0 - ac),
            posterior_mean_coef2=(1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
        )

    @classmethod
    def training(cls, schedule: str = "cosine", num_steps: int = TRAIN_STEPS) -> DiffusionCoefficients:
        return cls.from_betas(named_betas(schedule, num_steps))

    @classmethod
    def respaced(
        cls, sampling_steps: str | int, schedule: str = "cosine", num_steps: int = TRAIN_STEPS
    ) -> DiffusionCoefficients:
        base = cls.training(schedule, num_steps)
        keep = space_timesteps(num_steps, str(sampling_steps))
        last, betas = 1.0, []
        for i in keep:
            betas.append(1 - base.alphas_cumprod[i] / last)
            last = base.alphas_cumprod[i]
        return cls.from_betas(np.asarray(betas), timesteps=np.asarray(keep, dtype=np.int64))


def ancestral_step(
    coefs: DiffusionCoefficients,
    step: int,
    x_t: np.ndarray,
    x0: np.ndarray,
    var_values: np.ndarray,
    noise: np.ndarray,
    temperature: float | np.ndarray,
    clamp_variance: bool = True,
) -> np.ndarray:
    """x_{t-1} from x_t and the head's x0 prediction and learned-range variance values.

    log sigma^2 = f log beta_t + (1 - f) log beta~_t with f = (v + 1) / 2; no noise at step 0.
    ``clamp_variance`` keeps f in [0, 1], the only range the parameterisation defines: a head whose v
    drifted outside it (the 1000-step training barely constrains v, since beta_t ~ beta~_t there)
    would otherwise inject far too much noise at respaced steps. False = the released code.
    """
    min_log = coefs.posterior_log_variance_clipped[step]
    max_log = coefs.log_betas[step]
    frac = (var_values.astype(np.float64) + 1.0) / 2.0
    if clamp_variance:
        frac = np.clip(frac, 0.0, 1.0)
    log_var = frac * max_log + (1.0 - frac) * min_log
    mean = coefs.posterior_mean_coef1[step] * x0.astype(np.float64) + coefs.posterior_mean_coef2[step] * x_t.astype(
        np.float64
    )
    if step > 0 and np.any(np.asarray(temperature) != 0.0):
        mean = mean + np.exp(0.5 * log_var) * noise.astype(np.float64) * temperature
    return mean.astype(np.float32)
