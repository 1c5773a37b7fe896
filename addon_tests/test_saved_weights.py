"""``export --save-weights``: the small PyTorch checkpoint shipped beside a bundle, which training
warm-starts from (``--init``) and users fine-tune."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from model_export.checkpoint import load_checkpoint, save_checkpoint
from model_export.config import preset
from model_export.model import Timar


@pytest.mark.slow  # an ONNX export
def test_saved_weights_hold_only_the_exported_ema_and_load_back_exactly(tmp_path: Path) -> None:
    from model_export.__main__ import main

    torch.manual_seed(0)
    cfg = preset("timar_cpu_tiny")
    model, ema = Timar(cfg), Timar(cfg)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(0.01)
    opt = torch.optim.AdamW(model.parameters())
    ck_path = tmp_path / "run" / "checkpoint-last.pth"
    save_checkpoint(ck_path, cfg, model.state_dict(), ema.state_dict(), optimizer=opt.state_dict(), epoch=3)
    root, handlers = logging.getLogger(), list(logging.getLogger().handlers)
    try:
        code = main(["export", "--checkpoint", str(ck_path), "--out", str(tmp_path / "bundle"), "--no-check",
                     "--save-weights", str(tmp_path / "weights.pth")])
    finally:
        root.handlers[:] = handlers
    assert code == 0 and (tmp_path / "bundle" / "manifest.json").exists()
    raw = torch.load(tmp_path / "weights.pth", weights_only=True)
    assert raw.get("model_ema") is None and "optimizer" not in raw and raw["weights"] == "ema"
    back = load_checkpoint(tmp_path / "weights.pth")
    for k, v in ema.state_dict().items():
        assert torch.equal(back.model.state_dict()[k], v), k
    assert (tmp_path / "weights.pth").stat().st_size < 0.6 * ck_path.stat().st_size
