"""The head's training loss: the jaw group's weight (a training-recipe field of the config)."""

from __future__ import annotations

import pytest
import torch

from model_export.config import TimarConfig, preset
from model_export.model import DiffusionHead
from timar_blender.engine.contract import JAW


def _head(jaw_weight: float) -> DiffusionHead:
    torch.manual_seed(0)  # the same network for every weight
    return DiffusionHead(preset("timar_cpu_tiny", jaw_loss_weight=jaw_weight))


def test_jaw_weight_scales_only_the_jaw_term_of_the_loss() -> None:
    base, heavy = _head(1.0), _head(3.0)
    cfg = preset("timar_cpu_tiny")
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(12, cfg.motion_dim, generator=g)
    c = torch.randn(12, cfg.width, generator=g)
    t = torch.randint(0, cfg.diffusion_steps, (12,), generator=g)
    noise = torch.randn(12, cfg.motion_dim, generator=g)
    with torch.no_grad():
        l1 = base.loss.losses(base.net, x0, c, t, noise)
        l3 = heavy.loss.losses(heavy.net, x0, c, t, noise)
        pred = base.net(base.loss.q_sample(x0, t, noise), t, c)[:, : x0.shape[1]]
    jaw_mse = ((x0[:, JAW] - pred[:, JAW]) ** 2).mean(dim=1)
    assert bool((jaw_mse > 0).all())
    torch.testing.assert_close(l3 - l1, 2.0 * jaw_mse, rtol=1e-5, atol=1e-6)


def test_bad_jaw_weight_is_refused_and_default_is_one() -> None:
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="jaw_loss_weight must be > 0"):
            TimarConfig(jaw_loss_weight=bad)
    assert TimarConfig().jaw_loss_weight == 1.0
    assert TimarConfig.from_dict({**TimarConfig().to_dict(), "jaw_loss_weight": 3}).jaw_loss_weight == 3
