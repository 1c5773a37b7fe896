"""Diffusion training loss of TIMAR's head: x0 prediction with a learned-range variance.

loss = grouped MSE on x0 (mean over expression + jaw weight x mean over jaw + mean over neck) + the
variational-bound term for the variance channels (in bits, decoder NLL at t = 0), as in the
IDDPM/DiT/MAR code the official implementation inherits.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from timar_blender.engine.contract import EXPRESSION as EXP
from timar_blender.engine.contract import JAW, NECK
from timar_blender.engine.schedule import DiffusionCoefficients


def _take(arr: np.ndarray, t: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(arr).to(t.device)[t].float()[:, None]


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = _approx_std_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


class DiffusionLoss:
    """Per-sample loss of the head ``net(x_t, t, c) -> [x0 | v]`` at random timesteps."""

    def __init__(
        self,
        schedule: str = "cosine",
        steps: int = 1000,
        use_kl: bool = False,
        rescale: bool = False,
        jaw_weight: float = 1.0,
    ):
        if use_kl:
            raise NotImplementedError("use_kl (pure variational-bound training) is not supported")
        self.coefs = DiffusionCoefficients.training(schedule, steps)
        self.rescale = rescale
        self.group_weights = ((EXP, 1.0), (JAW, float(jaw_weight)), (NECK, 1.0))
        self.num_timesteps = steps

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ac = self.coefs.alphas_cumprod
        return _take(np.sqrt(ac), t) * x0 + _take(np.sqrt(1.0 - ac), t) * noise

    def _posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.coefs
        mean = _take(c.posterior_mean_coef1, t) * x0 + _take(c.posterior_mean_coef2, t) * x_t
        return mean, _take(c.posterior_log_variance_clipped, t).expand_as(x_t)

    def losses(
        self,
        net: torch.nn.Module,
        x0: torch.Tensor,
        c: torch.Tensor,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N,) loss for targets ``x0`` (N, C) under conditions ``c`` (N, W)."""
        n, ch = x0.shape
        if t is None:
            t = torch.randint(0, self.num_timesteps, (n,), device=x0.device)
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        out = net(x_t, t, c)
        pred, var_values = out[:, :ch], out[:, ch:]
        mse = sum(w * ((x0[:, g] - pred[:, g]) ** 2).mean(dim=1) for g, w in self.group_weights)

        # variational bound, through the variance channels only (the mean is detached)
        min_log = _take(self.coefs.posterior_log_variance_clipped, t)
        max_log = _take(np.log(self.coefs.betas), t)
        frac = (var_values + 1) / 2
        model_log_var = frac * max_log + (1 - frac) * min_log
        model_mean, _ = self._posterior(pred.detach(), x_t, t)
        true_mean, true_log_var = self._posterior(x0, x_t, t)
        kl = normal_kl(true_mean, true_log_var, model_mean, model_log_var).mean(dim=1) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var).mean(dim=1) / math.log(2.0)
        vb = torch.where(t == 0, nll, kl)
        if self.rescale:
            vb = vb * self.num_timesteps / 1000.0
        return mse + vb
