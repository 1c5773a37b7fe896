"""Evaluate a TIMAR checkpoint on a DualTalk-format folder with the DualTalk protocol.

    python -m model_export.evaluate --checkpoint RUN/checkpoint-last.pth --data DIR --context 0 7 \
        --out RUN/eval

For every direction with ground-truth agent motion, the turn-by-turn sampler generates the agent
from both speech tracks (and the user's motion when it exists; otherwise its tokens are
``fake_latent``), whole turns only as in the official test loop. Writes ``<out>.md`` and
``<out>.json``: FD, P-FD, MSE, SID (both orientations) and rPCC for EXP/JAW/POSE at the
published scales, one row per context length.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from timar_blender.engine.dialogue import generate_dialogue
from timar_blender.engine.sampler import SamplingOptions

from . import metrics
from .checkpoint import CheckpointError, load_checkpoint
from .config import PAPER_PRESETS
from .data import load_conversation, scan_folder
from .speech import build_speech_features
from .torch_backend import TorchBackend

log = logging.getLogger("model_export.evaluate")


def _json_safe(x: object) -> object:
    """NaN (a metric that needs the partner's motion when there is none) -> null."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not np.isfinite(x) else float(x)
    return x


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model_export.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="official TIMAR.pth or one of ours")
    p.add_argument("--data", type=Path, required=True, help="DualTalk-format folder")
    p.add_argument("--wav2vec2", type=Path, help="local wav2vec2 folder (models with wav2vec2 speech features)")
    p.add_argument("--preset", choices=tuple(PAPER_PRESETS), help="for official checkpoints without args")
    p.add_argument("--raw-weights", action="store_true", help="use 'model' instead of the EMA weights")
    p.add_argument("--context", type=int, nargs="+", default=[7], help="context history n (turns)")
    p.add_argument("--steps", default="5", help="diffusion sampling steps")
    p.add_argument("--num-iter", type=int, default=1)
    p.add_argument("--cfg", type=float, default=1.0)
    p.add_argument("--cfg-schedule", choices=("linear", "constant"), default="linear")
    p.add_argument("--temperature", type=float, default=1.0)
    for part in ("head", "face"):
        p.add_argument(f"--{part}-noise-correlation", type=float, default=0.0,
                       help=f"{part}: frames over which the sampling noise is smoothed (0 = independent, the paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-mask-history-agent", action="store_true")
    p.add_argument("--no-clamp-variance", action="store_true",
                   help="the released code's sampling: the learned variance not kept in [beta~, beta]")
    p.add_argument("--allow-missing-motion", action="store_true", help="evaluate folders where a speaker has no .npz")
    p.add_argument("--limit", type=int, default=0, help="evaluate at most this many directions")
    p.add_argument("--save-predictions", type=Path, help="write each prediction as <dir>/n<N>/<agent>.npy")
    p.add_argument("--out", type=Path, help="write <out>.md and <out>.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ck = load_checkpoint(args.checkpoint, use_ema=not args.raw_weights, preset_name=args.preset)
    except CheckpointError as exc:  # one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = ck.config
    backend = TorchBackend(ck.model, build_speech_features(cfg, args.wav2vec2))
    report = scan_folder(args.data, allow_missing_motion=args.allow_missing_motion)
    directions = report.directions[: args.limit or None]
    convs = [load_conversation(d, cfg.motion_fps, cfg.speech_rate, normalize=False) for d in directions]
    print(f"{ck.kind} checkpoint {ck.path} ({ck.weights} weights), {len(convs)} sequences from {args.data}", flush=True)

    rows: dict[str, dict[str, float]] = {}
    details: dict[str, dict] = {}
    for n in args.context:
        opts = SamplingOptions(
            context_turns=n,
            sampling_steps=args.steps,
            num_iter=args.num_iter,
            cfg=args.cfg,
            cfg_schedule=args.cfg_schedule,
            temperature=args.temperature,
            head_noise_correlation=args.head_noise_correlation,
            face_noise_correlation=args.face_noise_correlation,
            seed=args.seed,
            mask_history_agent=not args.no_mask_history_agent,
            clamp_variance=not args.no_clamp_variance,
        )
        per_seq, t0 = [], time.time()
        for i, conv in enumerate(convs):
            out = generate_dialogue(
                backend, conv.user_audio, conv.agent_audio, conv.user_motion, opts, last_turn="drop"
            )
            m = metrics.sequence_metrics(out.motion, conv.agent_motion, conv.user_motion)
            per_seq.append(m)
            if args.save_predictions:
                d = args.save_predictions / f"n{n}"
                d.mkdir(parents=True, exist_ok=True)
                np.save(d / f"{conv.name}.npy", out.motion)
            print(
                f"[n={n}] {i + 1}/{len(convs)} {conv.name}: {len(out.motion)} frames, "
                f"FD exp {m['fd_exp']:.3f}, MSE jaw x1e3 {m['mse_jaw'] * 1e3:.3f}",
                flush=True,
            )
        rows[f"n = {n}"] = metrics.average(per_seq)
        details[f"n={n}"] = {"sequences": [c.name for c in convs], "per_sequence": per_seq, "seconds": time.time() - t0}

    table = metrics.markdown_table(rows)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        head = (
            f"Checkpoint `{ck.path.name}` (sha256 {ck.sha256[:12]}, {ck.weights} weights), data `{args.data}`, "
            f"{len(convs)} sequences, {args.steps} sampling steps, num_iter {args.num_iter}, cfg {args.cfg}, "
            f"temperature {args.temperature}, seed {args.seed}.\n\n"
        )
        args.out.with_suffix(".md").write_text(head + table + "\n")
        raw = {
            "checkpoint": str(ck.path),
            "sha256": ck.sha256,
            "data": str(args.data),
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": rows,
            "scaled": {k: metrics.scaled(v) for k, v in rows.items()},
            "details": details,
        }
        args.out.with_suffix(".json").write_text(json.dumps(_json_safe(raw), indent=1))
        print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
