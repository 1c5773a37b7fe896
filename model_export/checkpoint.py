"""Loading and saving TIMAR checkpoints, safely.

Two formats:

* the official one (``TIMAR.pth`` from ``coderchen01/TIMAR``): ``torch.save`` of a dict with
  ``model``, ``model_ema`` and perhaps ``optimizer``, ``epoch``, ``scaler``, ``args`` (an
  ``argparse.Namespace``);
* ours: the same tensors plus ``format``/``version``/``config`` (a plain dict) and training state.

Everything is read with ``torch.load(weights_only=True)``; only ``argparse.Namespace`` is
allowlisted, so a checkpoint can never run code.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from timar_blender.engine.bundle import sha256_of

from .config import PAPER_PRESETS, TimarConfig, config_from_official_args, preset
from .model import Timar

FORMAT = "timar-blender-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


@dataclass
class LoadedCheckpoint:
    model: Timar
    config: TimarConfig
    path: Path
    kind: str  # "official" or "ours"
    weights: str  # "ema" or "model"
    epoch: int | None
    sha256: str
    raw: dict[str, Any]  # the whole file (optimizer state etc.), for resuming


def refusal_reason(exc: BaseException) -> str:
    """One line saying why torch.load(weights_only=True) refused a file, without torch's advice to
    retry with weights_only=False (which would run whatever code the file holds)."""
    text = str(exc)
    if "weights_only" in text or "Weights only load failed" in text:
        m = re.search(r"unsupported (?:global|operand)[^\n]*", text, re.IGNORECASE)
        what = f"; {m.group(0).strip().rstrip('.')}" if m else ""
        return f"it holds Python objects other than tensors, which are never loaded as they could run code{what}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def read_checkpoint_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a loadable checkpoint ({refusal_reason(exc)})") from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise CheckpointError(f"{path}: expected a dict with a 'model' state dict")
    return obj


def _count_blocks(sd: dict[str, torch.Tensor], prefix: str) -> int:
    idx = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def config_from_shapes(sd: dict[str, torch.Tensor], base: TimarConfig) -> TimarConfig:
    """Fill every shape-determined field from the state dict; the rest (heads, timing) from ``base``."""
    try:
        token_dim = sd["sep_tok_emb.weight"].shape[1]
        width = sd["z_proj.weight"].shape[0]
        seq_len = sd["encoder_pos_embed_learned"].shape[1]
        per_second = 4 * base.motion_fps * base.turn_seconds + 10
        return base.replace(
            token_dim=token_dim,
            width=width,
            depth=_count_blocks(sd, "encoder_blocks."),
            mlp_ratio=sd["encoder_blocks.0.mlp.fc1.weight"].shape[0] / width,
            speech_feature_dim=sd["speech_projection.weight"].shape[1],
            motion_dim=sd["motion_encoder.0.weight"].shape[1],
            head_width=sd["diffloss.net.input_proj.weight"].shape[0],
            head_depth=_count_blocks(sd, "diffloss.net.res_blocks."),
            max_context_time=seq_len // per_second,
        )
    except KeyError as exc:
        raise CheckpointError(f"state dict lacks {exc.args[0]!r}; is this a TIMAR checkpoint?") from exc


def _shape_mismatches(cfg: TimarConfig, sd: dict[str, torch.Tensor]) -> list[str]:
    from_shapes = config_from_shapes(sd, cfg)
    return [
        f"{name}: args say {getattr(cfg, name)}, tensors say {getattr(from_shapes, name)}"
        for name in (
            "token_dim",
            "width",
            "depth",
            "mlp_ratio",
            "speech_feature_dim",
            "motion_dim",
            "head_width",
            "head_depth",
            "max_context_time",
        )
        if getattr(cfg, name) != getattr(from_shapes, name)
    ]


def resolve_config(obj: dict[str, Any], path: Path, preset_name: str | None = None) -> tuple[TimarConfig, str]:
    sd = obj["model"]
    if obj.get("format") == FORMAT:
        if obj.get("version") != VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {obj.get('version')} (this code reads {VERSION})")
        return TimarConfig.from_dict(obj["config"]), "ours"
    args = obj.get("args")
    if args is not None:
        try:
            cfg, missing = config_from_official_args(args, preset_name)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        if "num_heads" in missing:
            raise CheckpointError(
                f"{path}: args name no known preset ({getattr(args, 'model', None)!r}) and no head count; "
                f"pass a preset ({', '.join(PAPER_PRESETS)})"
            )
        bad = _shape_mismatches(cfg, sd)
        if bad:
            raise CheckpointError(f"{path}: args disagree with the stored tensors: " + "; ".join(bad))
        return cfg, "official"
    if preset_name is None:
        raise CheckpointError(
            f"{path}: no 'args' in the checkpoint; name a preset ({', '.join(PAPER_PRESETS)}) so the head "
            "count is known (the other dimensions are read from the tensor shapes)"
        )
    return config_from_shapes(sd, preset(preset_name)), "official"


def load_state_strict(model: Timar, sd: dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if wrong:
            parts.append(
                "shape mismatches: "
                + ", ".join(f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong)
            )
        raise CheckpointError(f"{source}: state dict does not match the model: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)


def load_checkpoint(path: str | Path, *, use_ema: bool = True, preset_name: str | None = None) -> LoadedCheckpoint:
    """Build the model a checkpoint describes and load its (EMA, by default) weights, in eval mode."""
    path = Path(path)
    obj = read_checkpoint_file(path)
    cfg, kind = resolve_config(obj, path, preset_name)
    key = "model_ema" if use_ema and obj.get("model_ema") is not None else "model"
    model = Timar(cfg)
    load_state_strict(model, obj[key], f"{path} [{key}]")
    model.eval()
    epoch = obj.get("epoch")
    return LoadedCheckpoint(
        model=model,
        config=cfg,
        path=path,
        kind=kind,
        weights="ema" if key == "model_ema" else "model",
        epoch=int(epoch) if epoch is not None else None,
        sha256=sha256_of(path),
        raw=obj,
    )


def save_checkpoint(path: str | Path, config: TimarConfig, model_sd: dict, ema_sd: dict, **state: Any) -> None:
    """Write our format atomically (a crash mid-write never leaves a truncated checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {
            "format": FORMAT,
            "version": VERSION,
            "config": config.to_dict(),
            "model": model_sd,
            "model_ema": ema_sd,
            **state,
        },
        tmp,
    )
    tmp.replace(path)


def save_weights(path: str | Path, ck: LoadedCheckpoint) -> None:
    """Only the weights a bundle was exported from (no optimizer, no second copy) with their config:
    the small checkpoint shipped beside the bundle, loadable by ``load_checkpoint`` and ``train --init``."""
    sd = {k: v.detach().clone() for k, v in ck.model.state_dict().items()}
    extra = {"epoch": ck.epoch} if ck.epoch is not None else {}
    save_checkpoint(path, ck.config, sd, None, exported_from=ck.path.name, weights=ck.weights, **extra)
