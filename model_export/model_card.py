"""Write MODEL_CARD.md for the bundled model: two-fold evaluation, baselines, behaviour checks, plots.

    python -m model_export.model_card --bundle timar_blender/model \
        --fold CLIP=CHECKPOINT=HELD_OUT_SYNTHETIC=TRAIN_CORPUS [--fold ...] --long LONG_CORPUS \
        --out MODEL_CARD.md

The measures are in ``card_measures.py``; the Markdown is rendered from the JSON by ``card_render.py``
(every figure in the text comes from the JSON).

Each ``--fold`` names the real clip its teacher was calibrated on, the checkpoint trained on that
fold's corpus, a held-out synthetic corpus built with the same calibration, and the training corpus
(for the training-set mean baseline). The fold's model is evaluated on the *other* real DualTalk
conversations (never seen: not calibrated on, not trained on) and on the held-out synthetic
dialogues, next to three baselines: the FLAME neutral pose, the training-set mean frame repeated,
and the teacher applied to the test audio. Behaviour checks run the shipped bundle through the
engine (onnxruntime), exactly what users get. Everything is measured when the script runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from timar_blender.engine.contract import FPS, JAW, MOTION_DIM, NECK
from timar_blender.engine.curves import smooth
from timar_blender.engine.dialogue import generate_dialogue
from timar_blender.engine.onnx_backend import OnnxBackend
from timar_blender.engine.sampler import SamplingOptions

from . import metrics
from .card_measures import (
    RAD2DEG,
    drift,
    head_orientation_spread_deg,
    jaw_energy_r,
    jitter,
    listening_head,
    seed_spread,
)
from .card_render import render
from .checkpoint import CheckpointError, load_checkpoint
from .corpus.calibrate import DEMO_DIR, frame_db, talking_mask
from .corpus.dialogue import energy_segments
from .corpus.teacher import load_calibration, teach
from .data import Conversation, load_conversation, load_flame56, scan_folder
from .speech import build_speech_features
from .torch_backend import TorchBackend

SMOOTHING = 2.0  # frames: the Smoothing value the card also reports


@dataclass
class Fold:
    clip: str  # the real clip the teacher was calibrated on
    checkpoint: Path
    test: Path  # held-out synthetic corpus (same calibration)
    train: Path  # training corpus (for the mean-motion baseline)

    @property
    def conversation(self) -> str:
        return self.clip.rsplit("_speaker", 1)[0]


def parse_fold(text: str) -> Fold:
    parts = text.split("=")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"--fold wants CLIP=CHECKPOINT=TEST_DIR=TRAIN_DIR, got {text!r}")
    return Fold(parts[0], Path(parts[1]), Path(parts[2]), Path(parts[3]))


def conversation_of(direction_name: str) -> str:
    return direction_name.rsplit("_speaker", 1)[0]


# ----------------------------------------------------------------------------- predictions


def neutral(conv: Conversation) -> np.ndarray:
    return np.zeros_like(conv.agent_motion)


def training_mean(train: Path) -> np.ndarray:
    """Mean FLAME-56 frame over every motion file of the training corpus."""
    total, count = np.zeros(MOTION_DIM), 0
    for npz in sorted(train.glob("*_speaker[12].npz")):
        m = load_flame56(npz).astype(np.float64)
        total += m.sum(0)
        count += len(m)
    if count == 0:
        raise FileNotFoundError(f"{train}: no motion files for the mean-motion baseline")
    return (total / count).astype(np.float32)


def teacher_for(conv: Conversation, stats: dict, seed: int) -> np.ndarray:
    """The teacher on the test audio, with voice activity estimated from the audio (as for real clips)."""
    agent, user = conv.agent_audio, conv.user_audio
    n = min(len(agent), len(user))
    timeline = energy_segments(agent[:n], 0) + energy_segments(user[:n], 1)
    m, _ = teach([agent[:n], user[:n]], timeline, seed, stats)
    return m


def model_motion(backend, conv: Conversation, n: int, seed: int = 0) -> np.ndarray:
    opts = SamplingOptions(context_turns=n, seed=seed)
    return generate_dialogue(
        backend, conv.user_audio, conv.agent_audio, conv.user_motion, opts, last_turn="drop"
    ).motion


def plot_real(path: Path, conv: Conversation, curves: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt = conv.agent_motion
    n = min(len(gt), *(len(c) for c in curves.values()))
    t = np.arange(n) / FPS
    talk = talking_mask(frame_db(conv.agent_audio, n))
    user_talk = talking_mask(frame_db(conv.user_audio, n))
    panels = [
        (JAW.start, "jaw opening (jaw x, rad)", 1.0),
        (NECK.start, "head pitch / nod (deg)", RAD2DEG),
        (NECK.start + 1, "head yaw (deg)", RAD2DEG),
        (NECK.start + 2, "head roll (deg)", RAD2DEG),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 9), sharex=True)
    for ax, (ch, label, scale) in zip(axes, panels):
        for mask, colour in ((talk, "#f4c27a"), (user_talk & ~talk, "#b9d4ee")):
            ax.fill_between(t, 0, 1, where=mask, transform=ax.get_xaxis_transform(), color=colour, alpha=0.5, lw=0)
        ax.plot(t, gt[:n, ch] * scale, color="black", lw=1.3, label="real (DualTalk FLAME)")
        for (name, c), colour in zip(curves.items(), ("#c0392b", "#2e86c1", "#7d3c98")):
            ax.plot(t, c[:n, ch] * scale, color=colour, lw=1.0, label=name)
        ax.set_ylabel(label, fontsize=8)
    axes[0].legend(loc="upper right", fontsize=7, ncol=4)
    axes[-1].set_xlabel("time (s) — orange: agent speaking, blue: user speaking")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def evaluate_fold(fold: Fold, calib: dict, demo: Path, log) -> dict:
    ck = load_checkpoint(fold.checkpoint)
    backend = TorchBackend(ck.model, build_speech_features(ck.config, None))
    stats = calib["folds"][fold.clip]
    mean = training_mean(fold.train)
    real = [
        d
        for d in scan_folder(demo, allow_missing_motion=True).directions
        if d.agent_npz is not None and conversation_of(d.name) != fold.conversation
    ]
    synth = scan_folder(fold.test).directions
    result = {"checkpoint": str(fold.checkpoint), "sha256": ck.sha256, "sets": {}}
    for set_name, directions, teacher_seed in (("real", real, 0), ("synthetic", synth, 12345)):
        per: dict[str, list] = {}
        preds: dict[str, dict[str, np.ndarray]] = {}
        for d in directions:
            conv = load_conversation(d, normalize=False)
            rows = {
                "Neutral pose": neutral(conv),
                "Training mean": np.broadcast_to(mean, conv.agent_motion.shape).copy(),
                "Teacher": teacher_for(conv, stats, teacher_seed),
                "Model n = 0": model_motion(backend, conv, 0),
                "Model n = 7": model_motion(backend, conv, 7),
            }
            for label, pred in rows.items():
                with warnings.catch_warnings():  # constant baselines: SID falls back to k = 1 (it is 0)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    m = metrics.sequence_metrics(pred, conv.agent_motion, conv.user_motion)
                per.setdefault(label, []).append(m)
            preds[d.name] = rows
            log(f"  fold {fold.clip[:11]} {set_name} {d.name}: done")
        table = {k: metrics.average(v) for k, v in per.items()}
        result["sets"][set_name] = {
            "sequences": [d.name for d in directions],
            "table": table,
            "preds": preds,
            "directions": directions,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.model_card", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, required=True, help="the shipped bundle (behaviour checks)")
    p.add_argument("--fold", type=parse_fold, action="append", required=True)
    p.add_argument("--long", type=Path, required=True, help="corpus with one long (10-min) dialogue")
    p.add_argument("--demo", type=Path, default=DEMO_DIR, help="the real DualTalk conversations")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("MODEL_CARD.md"))
    p.add_argument("--figures", type=Path, default=Path("docs/model_card"))
    args = p.parse_args(argv)
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.1f} s] {msg}", flush=True)

    calib = load_calibration()
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    folds = {}
    for fold in args.fold:
        log(f"evaluating fold {fold.clip}")
        folds[fold.clip] = evaluate_fold(fold, calib, args.demo, log)

    # behaviour checks on the shipped bundle (the first fold is the shipped one)
    ship = args.fold[0]
    engine = OnnxBackend(args.bundle, device="cpu")
    beh: dict = {"jaw_energy_r": {}, "listening_head": {}, "seed_spread": {}}
    for set_name in ("real", "synthetic"):
        s = folds[ship.clip]["sets"][set_name]
        rs_model, rs_gt, heads_model, heads_gt = [], [], [], []
        jit: dict[str, list] = {"model": [], "smoothed": [], "reference": []}
        rs_smooth, heads_smooth = [], []
        for d in s["directions"]:
            conv = load_conversation(d, normalize=False)
            m = model_motion(engine, conv, 7)
            ms = smooth(m, SMOOTHING)
            jit["model"].append(jitter(m))
            jit["smoothed"].append(jitter(ms))
            jit["reference"].append(jitter(conv.agent_motion))
            rs_smooth.append(jaw_energy_r(ms, conv.agent_audio))
            heads_smooth.append(listening_head(ms, conv.agent_audio))
            rs_model.append(jaw_energy_r(m, conv.agent_audio))
            rs_gt.append(jaw_energy_r(conv.agent_motion, conv.agent_audio))
            heads_model.append(listening_head(m, conv.agent_audio))
            heads_gt.append(listening_head(conv.agent_motion, conv.agent_audio))
        beh["jaw_energy_r"][set_name] = {
            "model": float(np.nanmean(rs_model)),
            "reference": float(np.nanmean(rs_gt)),
            "per_sequence": rs_model,
            "smoothed": float(np.nanmean(rs_smooth)),
        }
        beh.setdefault("jitter", {})[set_name] = {k: np.mean(v, 0).tolist() for k, v in jit.items()}
        beh["listening_head"][set_name] = {
            "model_std_deg": np.nanmean([h["std"] for h in heads_model], 0).tolist(),
            "reference_std_deg": np.nanmean([h["std"] for h in heads_gt], 0).tolist(),
            "model_vel_std_deg": np.nanmean([h["vel_std"] for h in heads_model], 0).tolist(),
            "reference_vel_std_deg": np.nanmean([h["vel_std"] for h in heads_gt], 0).tolist(),
            "smoothed_std_deg": np.nanmean([h["std"] for h in heads_smooth], 0).tolist(),
        }
        d0 = s["directions"][0]
        conv = load_conversation(d0, normalize=False)
        takes = [model_motion(engine, conv, 7, seed) for seed in range(args.seeds)]
        beh["seed_spread"][set_name] = {"sequence": d0.name, **seed_spread(takes)}
        log(f"behaviour checks on {set_name}: done")
    real_listen = {k: (np.asarray(v["head"]["listen"]["std"]) * RAD2DEG).tolist() for k, v in calib["folds"].items()}

    from .benchmark import turn_latencies

    lat = turn_latencies(engine, 7, 40) * 1e3
    beh["latency_ms"] = {"median": float(np.median(lat)), "p95": float(np.percentile(lat, 95)), "turns": len(lat)}
    log(f"latency at n = 7: {beh['latency_ms']['median']:.1f} ms median")

    long_dir = scan_folder(args.long).directions[0]
    conv = load_conversation(long_dir, normalize=False)
    t0 = time.perf_counter()
    long_motion = generate_dialogue(
        engine, conv.user_audio, conv.agent_audio, None, SamplingOptions(context_turns=7)
    ).motion
    long_seconds = time.perf_counter() - t0
    beh["long"] = {
        "sequence": long_dir.name,
        "audio_seconds": len(conv.agent_audio) / 16000,
        "generation_seconds": long_seconds,
        **drift(long_motion, conv.agent_audio),
    }
    log(f"long dialogue: {long_seconds:.1f} s")

    # plots over the real held-out conversation of each fold
    figures = {}
    for fold in args.fold:
        s = folds[fold.clip]["sets"]["real"]
        for d in s["directions"]:
            conv = load_conversation(d, normalize=False)
            pr = s["preds"][d.name]
            path = args.figures / f"real_{d.name}.png"
            plot_real(
                path,
                conv,
                {"model n = 7": pr["Model n = 7"], "teacher": pr["Teacher"]},
                f"{d.name} (held out; model and teacher calibrated on {fold.clip})",
            )
            figures[d.name] = path
    log("plots written")

    real_jaw_r = {}
    for fold in args.fold:
        for d in folds[fold.clip]["sets"]["real"]["directions"]:
            conv = load_conversation(d, normalize=False)
            real_jaw_r[d.name] = jaw_energy_r(conv.agent_motion, conv.agent_audio)
    train_summary = ship.checkpoint.parent / "train_summary.json"
    card = {
        "name": manifest["name"],
        "model": manifest["model"],
        "fps": FPS,
        "precision": manifest["precision"],
        "license": manifest["license"]["weights"],
        "checkpoint_sha256": manifest["source"].get("sha256", ""),
        "training_data": manifest["source"].get("training_data", {}),
        "bundle_mb": sum(f.stat().st_size for f in args.bundle.iterdir() if f.is_file()) / 1e6,
        "shipped_clip": ship.clip,
        "train": json.loads(train_summary.read_text()) if train_summary.exists() else {},
        "cpu_count": os.cpu_count(),
        "seeds": args.seeds,
        "smoothing": SMOOTHING,
        "figures": {n: Path(os.path.relpath(p, args.out.parent)).as_posix() for n, p in figures.items()},
        "real_jaw_speech_r": real_jaw_r,
        "head_orientation_spread_deg": head_orientation_spread_deg(
            {k: v["neck_mean"] for k, v in calib["folds"].items()}
        ),
    }
    raw = {
        "card": card,
        "folds": {
            k: {
                "checkpoint": v["checkpoint"],
                "sha256": v["sha256"],
                "sets": {n: {"sequences": s["sequences"], "table": s["table"]} for n, s in v["sets"].items()},
            }
            for k, v in folds.items()
        },
        "behaviour": beh,
        "real_listening_std_deg": real_listen,
    }
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=float))
    args.out.write_text(render(json.loads(args.out.with_suffix(".json").read_text())))
    log(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckpointError as exc:  # one line naming the file, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
