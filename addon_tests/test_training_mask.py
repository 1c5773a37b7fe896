"""Which agent-motion tokens a training window masks: the paper's one-ratio MAR masking, or the
"mixed" scheme model v2 trains with (visible own past, partly sampled turns)."""

from __future__ import annotations

import pytest
import torch

from model_export.config import TimarConfig, preset
from model_export.model import Timar


def _mask(scheme: str, b: int = 96, c: int = 8) -> torch.Tensor:
    cfg = preset("timar_cpu_tiny", mask_scheme=scheme)
    torch.manual_seed(0)
    f = cfg.frames_per_turn
    return Timar(cfg).training_mask(b, c, c * f, torch.device("cpu")).reshape(b, c, f)


def test_window_scheme_masks_at_least_the_minimum_ratio_of_every_sample() -> None:
    share = _mask("window").float().mean(dim=(1, 2))
    assert float(share.min()) >= 0.7 - 1e-6


def test_mixed_scheme_trains_visible_pasts_and_partly_sampled_turns() -> None:
    m = _mask("mixed")
    per_turn = m.float().mean(dim=2)  # (B, C) share masked per turn
    assert bool((m.sum(dim=2) >= 1).all()), "every turn keeps at least one frame to predict"
    mostly_visible = (per_turn <= 0.3).float().mean()
    assert 0.1 < float(mostly_visible) < 0.4  # turns whose own motion is mostly visible
    whole = (per_turn.min(dim=1).values >= 0.7).float().mean()  # samples masked like the paper
    assert 0.2 < float(whole) < 0.6


def test_unknown_scheme_is_refused_and_v2_uses_mixed() -> None:
    with pytest.raises(ValueError, match="mask_scheme must be one of"):
        TimarConfig(mask_scheme="random")
    assert preset("timar_cpu_v2").mask_scheme == "mixed"
    assert preset("timar_cpu_bundle").mask_scheme == "window"
