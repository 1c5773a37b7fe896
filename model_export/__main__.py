"""``python -m model_export export ...``: command-line entry for the exporter.

(Training and evaluation have their own modules: ``python -m model_export.train`` and
``python -m model_export.evaluate``.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from timar_blender.engine.settings import SettingsError, parse_recommended

from .config import PAPER_PRESETS

DEFAULT_LICENSE = "Weights trained by the TIMAR for Blender project; see MODEL_CARD.md for provenance and licence"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write an ONNX model bundle from a checkpoint")
    e.add_argument("--checkpoint", type=Path, required=True, help="official TIMAR.pth or one of ours")
    e.add_argument("--wav2vec2", type=Path, help="local wav2vec2 folder (models with wav2vec2 speech features)")
    e.add_argument("--preset", choices=tuple(PAPER_PRESETS), help="for official checkpoints without args")
    e.add_argument("--raw-weights", action="store_true", help="export 'model' instead of the EMA weights")
    e.add_argument("--out", type=Path, required=True,
                   help="bundle folder to write (a previous bundle there is replaced; any other non-empty folder "
                        "is refused unless --force)")
    e.add_argument("--force", action="store_true", help="replace --out even if it is not a previous bundle")
    e.add_argument("--name", default=None, help="bundle name (default: the checkpoint's file name)")
    e.add_argument("--license", default=None, help="licence of the weights, recorded in the manifest")
    e.add_argument(
        "--fp16",
        action="store_true",
        help="float16 graphs for GPUs (inputs/outputs stay float32); the parity check then reports fp16 error",
    )
    e.add_argument(
        "--provenance-file",
        type=Path,
        nargs="+",
        help="JSON describing the training data (e.g. the corpus's corpus.json; several corpora trained on "
        "together are merged), stored in the manifest",
    )
    e.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-PyTorch parity check")
    e.add_argument(
        "--recommend",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="an option this model looks best with (e.g. smoothing=2), stored as the bundle's default; repeatable",
    )
    e.add_argument(
        "--save-weights",
        type=Path,
        help="also write the exported (EMA) PyTorch weights with their config to this .pth: a few MB that "
        "training can start from (--init) and users can fine-tune",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("model_export").setLevel(logging.INFO)  # not the exporter's pass-by-pass chatter

    from timar_blender.engine.bundle import BundleError

    from .checkpoint import CheckpointError
    from .export import ExportError

    try:
        return _export(p, args)
    except (CheckpointError, ExportError, BundleError) as exc:  # one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _export(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .export import check_out_folder, export_bundle
    from .speech import build_speech_features

    recommended: dict = {}
    for item in args.recommend:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--recommend {item!r}: expected OPTION=VALUE")
        try:
            recommended[key.strip()] = json.loads(value)
        except ValueError:
            recommended[key.strip()] = value
    try:
        parse_recommended({"recommended_options": recommended}, "--recommend")
    except SettingsError as exc:
        p.error(str(exc))
    check_out_folder(args.out, args.force)  # before the slow part
    ck = load_checkpoint(args.checkpoint, use_ema=not args.raw_weights, preset_name=args.preset)
    features = build_speech_features(ck.config, args.wav2vec2)
    if args.license:
        license_text = args.license
    elif ck.kind == "official":
        license_text = "Official TIMAR weights (coderchen01/TIMAR): the licence their authors give; not redistributed"
    else:
        license_text = DEFAULT_LICENSE
    source = {
        "checkpoint": ck.path.name,
        "sha256": ck.sha256,
        "kind": ck.kind,
        "weights": ck.weights,
        "epoch": ck.epoch,
        "speech_features": ck.config.speech_encoder if args.wav2vec2 is None else f"wav2vec2:{args.wav2vec2.name}",
        "config": ck.config.to_dict(),
    }
    if args.provenance_file is not None:

        from .corpus.build import merge_summaries

        parts = []
        for path in args.provenance_file:
            try:
                parts.append(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:
                p.error(f"--provenance-file {path}: {exc}")
        source["training_data"] = merge_summaries(parts)
    manifest = export_bundle(
        ck.model,
        features,
        args.out,
        source=source,
        license_text=license_text,
        name=args.name or ck.path.stem,
        check=not args.no_check,
        fp16=args.fp16,
        force=args.force,
        recommended=recommended,
    )
    print(f"wrote {args.out}")
    if args.save_weights is not None:
        from .checkpoint import save_weights

        save_weights(args.save_weights, ck)
        print(f"wrote {args.save_weights} ({ck.weights} weights, {args.save_weights.stat().st_size / 1e6:.1f} MB)")
    if "parity" in manifest:
        errors = manifest["parity"]["max_abs_error"]
        worst = max(errors.values())
        print(
            ("fp16 error" if args.fp16 else "parity")
            + ", max |onnxruntime - PyTorch fp32|: "
            + ", ".join(f"{k} {v:.2e}" for k, v in errors.items())
            + f" (worst {worst:.2e})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
