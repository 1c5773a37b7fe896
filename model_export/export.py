"""Export a TIMAR checkpoint to a model bundle (ONNX graphs + manifest) and check its parity.

    python -m model_export export --checkpoint RUN/checkpoint-last.pth --out bundles/mine
    python -m model_export export --checkpoint TIMAR.pth --wav2vec2 wav2vec2-large-960h-lv60-self --out bundles/official

Four graphs, each run by the engine's turn-by-turn loop:

* ``speech_encoder``: one 1-s chunk of 16 kHz audio as the model hears it (B, S) -> speech tokens (B, F, D);
* ``motion_encoder``: FLAME frames (N, 56) -> motion tokens (N, D);
* ``backbone``: tokens (B, T, D) and agent mask (B, T) of a window of whole turns -> z (B, 4F+10, W)
  of its last turn, for any window up to the context length; the turn ids are implied by the
  whole-turn layout, which lets attention run turn block by turn block (see ``BackboneGraph``);
* ``diffusion_head``: one denoising call (N, 56), (N,), (N, W) -> (N, 112). One step rather than
  the whole sampler: the engine then keeps temperature, guidance and explicit noise in numpy, and
  a head call costs well under a millisecond (see the benchmark), so looping outside costs nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from timar_blender.engine.bundle import FORMAT, GRAPHS, VERSION, sha256_of
from timar_blender.engine.contract import AUDIO_NORMALIZATION_MANIFEST, CHANNEL_NAMES
from timar_blender.engine.layout import SEPARATORS
from timar_blender.engine.model_variant import CACHED_OUTPUTS, cached_inputs
from timar_blender.engine.schedule import DiffusionCoefficients
from timar_blender.engine.settings import parse_recommended

from .model import Timar

log = logging.getLogger("model_export.export")

OPSET = 20
EXTERNAL_DATA_BYTES = 1 << 30  # graphs above 1 GiB keep their weights in a side file (protobuf caps at 2 GiB)


class SpeechEncoderGraph(nn.Module):
    def __init__(self, model: Timar, features: nn.Module) -> None:
        super().__init__()
        self.model, self.features = model, features

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model.speech_tokens(self.features(audio))


class MotionEncoderGraph(nn.Module):
    def __init__(self, model: Timar) -> None:
        super().__init__()
        self.model = model

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        return self.model.motion_tokens(motion)


class BackboneGraph(nn.Module):
    """The backbone as the engine runs it: z of the window's **last turn** only.

    Same function as ``Timar.backbone`` on the rows the sampler reads, with two savings that are
    exact for windows of whole turns (which the sampler always builds): the last block computes
    only the last turn's queries (nothing later reads the others), and with turn-level causal
    attention every other block computes attention turn block by turn block, each query turn
    against the keys up to its own end, instead of a full T x T score matrix with half of it
    masked (36 of 64 score blocks at 8 turns, and no mask to build or add).
    """

    def __init__(self, model: Timar) -> None:
        super().__init__()
        self.model = model
        self.turn = model.cfg.turn_length
        self.max_turns = model.cfg.max_context_turns

    def _block(self, blk: nn.Module, x: torch.Tensor, last: bool) -> torch.Tensor:
        b, t, c = x.shape
        heads, L = blk.attn.num_heads, self.turn
        qkv = blk.attn.qkv(blk.norm1(x)).reshape(b, t, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        if last:  # the last turn sees every turn of the window, under either attention
            out = sdpa(q[:, :, t - L:], k, v)
            x = x[:, t - L:]
        elif self.model.cfg.turn_causal:
            ends = [min((i + 1) * L, t) for i in range(self.max_turns)]
            out = torch.cat(
                [sdpa(q[:, :, i * L: ends[i]], k[:, :, : ends[i]], v[:, :, : ends[i]]) for i in range(self.max_turns)],
                dim=2,
            )
        else:
            out = sdpa(q, k, v)
        x = x + blk.attn.proj(out.transpose(1, 2).reshape(b, -1, c))
        return x + blk.mlp(blk.norm2(x))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = self.model
        t = tokens.shape[1]
        x = m.z_proj(tokens)
        x = torch.where(mask.unsqueeze(-1), m.mask_token.to(x.dtype), x)
        x = m.z_proj_ln(x + m.encoder_pos_embed_learned[:, :t])
        for i, blk in enumerate(m.encoder_blocks):
            x = self._block(blk, x, last=i == len(m.encoder_blocks) - 1)
        return m.encoder_norm(x) + m.diffusion_pos_embed_learned[:, t - self.turn : t]


class CachedBackboneGraph(nn.Module):
    """The turn-relative backbone as the engine runs it: one new turn (rows: conditional and perhaps
    unconditional) against every layer's cached keys/values of the 0..n previous turns, one input per
    layer so the engine passes its ring buffer without copies; returns z of the turn's agent-motion
    tokens and its own keys/values for the cache (``Timar.backbone_step``)."""

    def __init__(self, model: Timar) -> None:
        super().__init__()
        self.model = model
        self.depth = model.cfg.depth

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        d = self.depth  # past: every layer's distances, then keys, then values (cached_inputs)
        return self.model.backbone_step(tokens, mask, past[d : 2 * d], past[2 * d :], past[:d])


def backbone_kind(cfg: Any) -> str:
    """The manifest's name for the backbone graph a config exports to."""
    return "turn_relative_cached" if cfg.position == "turn_relative" else "window"


class HeadGraph(nn.Module):
    def __init__(self, model: Timar) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.model.head(x, t, c)


def example_inputs(model: Timar) -> dict[str, tuple[tuple[torch.Tensor, ...], dict[str, Any], list[str], list[str]]]:
    """Per graph: example args, dynamic shapes, input names, output names."""
    cfg = model.cfg
    dim = torch.export.Dim
    batch, rows = dim("batch", min=1, max=64), dim("rows", min=1, max=1 << 16)
    tokens = dim("turns", min=1, max=cfg.max_context_turns) * cfg.turn_length
    t = 2 * cfg.turn_length
    if cfg.position == "turn_relative":
        heads, length = cfg.num_heads, cfg.turn_length
        kv = (heads, 2 * length, cfg.width // heads)
        # each layer's cache length is its own dimension (layers reach different numbers of turns)
        past = [dim(f"past_turns_{i}", min=0, max=cfg.max_context_turns - 1) * length for i in range(cfg.depth)]
        distance = torch.arange(2, 0, -1).repeat_interleave(length)
        backbone = (
            (torch.randn(2, length, cfg.token_dim), torch.rand(2, length) < 0.3,
             *(distance.clone() for _ in range(cfg.depth)), *(torch.randn(kv) for _ in range(2 * cfg.depth))),
            ({0: batch}, {0: batch}, (*({0: p} for p in past), *({1: p} for p in past), *({1: p} for p in past))),
            list(cached_inputs(cfg.depth)),
            list(CACHED_OUTPUTS),
        )
    else:
        backbone = (
            (torch.randn(2, t, cfg.token_dim), torch.rand(2, t) < 0.3),
            {"tokens": {0: batch, 1: tokens}, "mask": {0: batch, 1: tokens}},
            ["tokens", "mask"],
            ["z"],
        )
    return {
        "speech_encoder": (
            (torch.randn(2, cfg.samples_per_turn),),
            {"audio": {0: batch}},
            ["audio"],
            ["speech_tokens"],
        ),
        "motion_encoder": ((torch.randn(7, cfg.motion_dim),), {"motion": {0: rows}}, ["motion"], ["motion_tokens"]),
        "backbone": backbone,
        "diffusion_head": (
            (torch.randn(9, cfg.motion_dim), torch.randint(0, 1000, (9,)), torch.randn(9, cfg.width)),
            {"x": {0: rows}, "t": {0: rows}, "c": {0: rows}},
            ["x", "t", "c"],
            ["out"],
        ),
    }


def _used_parameters(module: nn.Module, graph: str) -> list[torch.Tensor]:
    model: Timar = module.model
    parts = {
        "speech_encoder": [model.speech_projection, model.speech_frontend],
        "motion_encoder": [model.motion_encoder],
        "diffusion_head": [model.diffloss],
    }.get(graph)
    if parts is None:  # backbone: everything but the encoders and the head
        skip = {
            id(p)
            for m in (model.speech_projection, model.speech_frontend, model.motion_encoder, model.diffloss)
            if m is not None
            for p in m.parameters()
        }
        return [p for p in model.parameters() if id(p) not in skip]
    params = [p for m in parts if m is not None for p in m.parameters()]
    if graph == "speech_encoder":
        params += list(module.features.parameters())
    return params


def _export_one(module: nn.Module, name: str, spec: tuple, folder: Path) -> dict[str, Any]:
    args, dynamic, inputs, outputs = spec
    path = folder / f"{name}.onnx"
    # the wrappers hold the whole model; only the weights this graph uses count towards its size
    n_bytes = sum(p.numel() * p.element_size() for p in _used_parameters(module, name))
    external = n_bytes > EXTERNAL_DATA_BYTES
    t0 = time.time()
    program = torch.onnx.export(
        module,
        args,
        dynamo=True,
        opset_version=OPSET,
        input_names=inputs,
        output_names=outputs,
        # a dict is keyed by input name; a tuple follows the arguments (the cached graph's *past)
        dynamic_shapes=dynamic if isinstance(dynamic, tuple) else dict(zip(inputs, dynamic.values())) or None,
        verbose=False,
        external_data=external,
    )
    program.save(str(path), external_data=external)
    files = [path.name] + ([f"{path.name}.data"] if (folder / f"{path.name}.data").exists() else [])
    size = sum((folder / f).stat().st_size for f in files)
    log.info("exported %s (%.1f MB, %.0f s)", name, size / 1e6, time.time() - t0)
    return {
        "path": path.name,
        "external_data": files[1:],
        "inputs": inputs,
        "outputs": outputs,
        "sha256": {f: sha256_of(folder / f) for f in files},
        "bytes": size,
    }


def to_fp16(folder: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Convert one exported graph to float16 weights and arithmetic, keeping float32 inputs/outputs
    (so the engine feeds it the same arrays), with onnxruntime's own converter."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    path = folder / entry["path"]
    model = onnx.load(str(path))  # pulls in external data that sits beside it
    half = convert_float_to_float16(model, keep_io_types=True)
    for f in [entry["path"], *entry["external_data"]]:
        (folder / f).unlink()
    weight_bytes = sum(int(np.prod(t.dims)) * 2 for t in half.graph.initializer)
    external = weight_bytes > EXTERNAL_DATA_BYTES
    onnx.save(half, str(path), save_as_external_data=external, location=f"{path.name}.data")
    files = [path.name] + ([f"{path.name}.data"] if external else [])
    size = sum((folder / f).stat().st_size for f in files)
    return {**entry, "external_data": files[1:], "sha256": {f: sha256_of(folder / f) for f in files}, "bytes": size}


def diffusion_manifest(steps: str, schedule: str, train_steps: int) -> dict[str, Any]:
    c = DiffusionCoefficients.respaced(steps, schedule, train_steps)
    return {
        "schedule": schedule,
        "train_steps": train_steps,
        "prediction": "x0",
        "variance": "learned_range",
        "default_sampling_steps": c.num_steps,
        "respaced": {
            str(c.num_steps): {
                "timesteps": c.timesteps.tolist(),
                "posterior_mean_coef1": c.posterior_mean_coef1.tolist(),
                "posterior_mean_coef2": c.posterior_mean_coef2.tolist(),
                "posterior_log_variance_clipped": c.posterior_log_variance_clipped.tolist(),
                "log_betas": c.log_betas.tolist(),
            }
        },
    }


class ExportError(ValueError):
    """An export that must not go ahead; the message names the folder and the reason."""


def check_out_folder(out: Path, force: bool = False) -> None:
    """Refuse to write a bundle where it would destroy something else: ``out`` may be absent, empty,
    or a previous bundle holding nothing but its own files; anything else needs ``force``."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise ExportError(f"{out}: exists and is not a folder; choose another --out")
    names = sorted(p.name for p in out.iterdir())
    if not names or force:
        return
    try:
        man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        ours = {"manifest.json"}
        for entry in man["files"].values():
            ours |= {entry["path"], *entry.get("external_data", [])}
        is_bundle = man.get("format") == FORMAT
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        is_bundle = False
    if not is_bundle:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ExportError(f"{out}: not empty and not a model bundle ({shown}); choose another --out or pass --force")
    extra = [n for n in names if n not in ours]
    if extra:
        raise ExportError(f"{out}: holds files that are not part of its bundle ({', '.join(extra[:5])}); "
                          "move them or pass --force")


def replace_folder(new: Path, out: Path) -> None:
    """Put the finished folder ``new`` at ``out``: the old one is moved aside, the new one renamed into
    place, and only then the old one deleted (put back if the rename fails), so a failure never leaves
    the user without a bundle."""
    old = None
    if out.exists() or out.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
    try:
        new.replace(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None and old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    elif old is not None:
        old.unlink()


def export_bundle(
    model: Timar,
    speech_features: nn.Module,
    out: str | Path,
    *,
    source: dict[str, Any],
    license_text: str,
    name: str = "timar",
    check: bool = True,
    fp16: bool = False,
    force: bool = False,
    recommended: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the bundle to ``out`` (a previous bundle there is replaced atomically; any other
    non-empty folder is refused unless ``force``) and return its manifest."""
    out = Path(out)
    check_out_folder(out, force)
    model = model.eval().float()
    speech_features = speech_features.eval()
    cfg = model.cfg
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))  # beside out: the final rename stays atomic
    try:
        files: dict[str, Any] = {}
        graphs = {
            "speech_encoder": SpeechEncoderGraph(model, speech_features),
            "motion_encoder": MotionEncoderGraph(model),
            "backbone": CachedBackboneGraph(model) if cfg.position == "turn_relative" else BackboneGraph(model),
            "diffusion_head": HeadGraph(model),
        }
        specs = example_inputs(model)
        with torch.no_grad():
            for g in GRAPHS:
                files[g] = _export_one(graphs[g], g, specs[g], tmp)
                if fp16:
                    files[g] = to_fp16(tmp, files[g])
            np.savez(
                tmp / "tokens.npz",
                separators=model.separators().numpy().astype(np.float32),
                fake_latent=model.fake_latent[0].numpy().astype(np.float32),
            )
        files["constants"] = {
            "path": "tokens.npz",
            "sha256": {"tokens.npz": sha256_of(tmp / "tokens.npz")},
            "arrays": {"separators": [len(SEPARATORS), cfg.token_dim], "fake_latent": [cfg.token_dim]},
        }
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "name": name,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": {
                "motion_dim": cfg.motion_dim,
                "fps": cfg.motion_fps,
                "speech_rate": cfg.speech_rate,
                "turn_seconds": cfg.turn_seconds,
                "frames_per_turn": cfg.frames_per_turn,
                "samples_per_turn": cfg.samples_per_turn,
                "token_dim": cfg.token_dim,
                "width": cfg.width,
                "depth": cfg.depth,
                "num_heads": cfg.num_heads,
                "max_context_turns": cfg.max_context_turns,
                "turn_length": cfg.turn_length,
                "separators": list(SEPARATORS),
                "turn_causal": cfg.turn_causal,
                # which backbone graph the bundle holds: "window" (the official scheme, the window
                # recomputed every turn) or "turn_relative_cached" (one turn against cached keys/values)
                "backbone": backbone_kind(cfg),
                **({"layer_bands": list(cfg.layer_bands)} if cfg.layer_bands else {}),
                "speech_encoder": cfg.speech_encoder,
                "parameters": int(sum(p.numel() for p in model.parameters())),
            },
            # what the speech encoder hears: per-file zero mean / unit variance (official), or "none"
            # (raw samples in [-1, 1]: levels kept, causal)
            "audio": {
                "sample_rate": cfg.speech_rate,
                "channels": 1,
                "normalization": AUDIO_NORMALIZATION_MANIFEST[cfg.audio_normalization],
                **({"epsilon": 1e-7} if cfg.audio_normalization == "file" else {}),
            },
            "diffusion": diffusion_manifest(cfg.sampling_steps, cfg.noise_schedule, cfg.diffusion_steps),
            "channels": list(CHANNEL_NAMES[: cfg.motion_dim]),
            "channel_layout": {
                "expression": [0, 50],
                "jaw": [50, 53],
                "neck": [53, 56],
                "units": "FLAME expression coefficients; jaw and neck axis-angle radians",
            },
            # the graphs' motion space: (frame - mean) / std per channel; null = raw units
            "motion_normalization": (
                {"mean": list(cfg.motion_mean), "std": list(cfg.motion_std)} if cfg.motion_norm else None
            ),
            "files": files,
            "source": source,
            "license": {"weights": license_text},
            "precision": "fp16" if fp16 else "fp32",
            "opset": OPSET,
        }
        if recommended:
            # the options this model looks best with: the defaults of panel, headless, batch and live mode
            manifest["recommended_options"] = dict(recommended)
            parse_recommended(manifest, str(out / "manifest.json"))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if check:
            manifest["parity"] = parity_report(model, speech_features, tmp)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        check_out_folder(out, force)  # again: something may have appeared there during the export
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.chmod(0o755)
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def parity_report(model: Timar, speech_features: nn.Module, folder: Path, seconds: int = 10) -> dict[str, Any]:
    """Max |onnxruntime - PyTorch| per graph on random inputs, and over a whole dialogue with history
    (same inputs, same noise), with guidance off and on."""
    from timar_blender.engine.dialogue import generate_dialogue
    from timar_blender.engine.onnx_backend import OnnxBackend
    from timar_blender.engine.sampler import SamplingOptions

    from .synthetic import synth_speech
    from .torch_backend import TorchBackend

    ort_be = OnnxBackend(folder, device="cpu")
    pt_be = TorchBackend(model, speech_features)
    cfg = model.cfg
    rng = np.random.default_rng(0)
    report: dict[str, Any] = {}
    chunks = rng.standard_normal((3, cfg.samples_per_turn)).astype(np.float32)
    report["speech_encoder"] = float(np.abs(ort_be.encode_speech(chunks) - pt_be.encode_speech(chunks)).max())
    if cfg.audio_normalization == "none":  # raw levels: also room-tone-quiet input (-60 dBFS, at the log floor)
        quiet = chunks * np.float32(1e-3)
        report["speech_encoder_quiet"] = float(np.abs(ort_be.encode_speech(quiet) - pt_be.encode_speech(quiet)).max())
    frames = rng.normal(0, 0.3, (25, cfg.motion_dim)).astype(np.float32)
    report["motion_encoder"] = float(np.abs(ort_be.encode_motion(frames) - pt_be.encode_motion(frames)).max())
    turns = min(3, cfg.max_context_turns)
    if cfg.position == "turn_relative":  # one turn against `turns - 1` cached turns, all three outputs
        length, heads = cfg.turn_length, cfg.num_heads
        tok = rng.standard_normal((2, length, cfg.token_dim)).astype(np.float32)
        mask = rng.random((2, length)) < 0.3
        reach = ort_be.info.layer_reach(turns - 1)
        dh = cfg.width // heads
        pk = [rng.standard_normal((heads, r * length, dh)).astype(np.float32) for r in reach]
        pv = [rng.standard_normal((heads, r * length, dh)).astype(np.float32) for r in reach]
        dist = [rng.permutation(np.repeat(np.arange(1, r + 1), length)).astype(np.int64) for r in reach]  # any order
        a, b = ort_be.backbone_step(tok, mask, pk, pv, dist), pt_be.backbone_step(tok, mask, pk, pv, dist)
        report["backbone"] = max(float(np.abs(x - y).max()) for x, y in zip(a, b))
    else:
        t = turns * cfg.turn_length
        tok = rng.standard_normal((2, t, cfg.token_dim)).astype(np.float32)
        mask = rng.random((2, t)) < 0.3
        tids = np.repeat(np.arange(turns), cfg.turn_length)[None].repeat(2, 0).astype(np.int64)
        report["backbone"] = float(np.abs(ort_be.backbone(tok, mask, tids) - pt_be.backbone(tok, mask, tids)).max())
    x = rng.standard_normal((11, cfg.motion_dim)).astype(np.float32)
    ts = rng.integers(0, cfg.diffusion_steps, 11).astype(np.int64)
    c = rng.standard_normal((11, cfg.width)).astype(np.float32)
    report["diffusion_head"] = float(np.abs(ort_be.head(x, ts, c) - pt_be.head(x, ts, c)).max())
    rate = cfg.speech_rate
    user = synth_speech(seconds, rate, 1, [(0.2, seconds / 2)])
    agent = synth_speech(seconds, rate, 2, [(seconds / 2, seconds - 0.2)])
    for label, cfg_scale in (("dialogue_cfg1", 1.0), ("dialogue_cfg1.5", 1.5)):
        opts = SamplingOptions(context_turns=cfg.max_context_turns - 1, seed=3, cfg=cfg_scale)
        a = generate_dialogue(ort_be, user, agent, None, opts).motion
        b = generate_dialogue(pt_be, user, agent, None, opts).motion
        report[label] = float(np.abs(a - b).max())
        if cfg.position == "turn_relative":  # the cache against the whole-dialogue computation
            ref = generate_dialogue(pt_be, user, agent, None, dataclasses.replace(opts, kv_cache=False)).motion
            report[label + "_vs_uncached"] = float(np.abs(a - ref).max())
    log.info("parity (max abs error): %s", report)
    return {"max_abs_error": report, "backbone_window_turns": turns, "dialogue_seconds": seconds,
            "dialogue_context_turns": cfg.max_context_turns - 1}
