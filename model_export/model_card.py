"""Write MODEL_CARD.md for the bundled model: held-out evaluation, behaviour benchmark, plots, licences.

    python -m model_export.model_card --bundle timar_blender/model \
        --fold CLIP=MODEL[=HELD_OUT_SYNTHETIC[=TRAIN_CORPUS]] [--fold ...] [--long LONG_CORPUS] \
        [--corpus TRAIN_CORPUS/corpus.json] --out MODEL_CARD.md

The measures are in ``card_measures.py`` and ``behaviour.py``; the Markdown is rendered from the
JSON by ``card_render.py`` (every figure in the text comes from the JSON).

Each ``--fold`` names the real clip its teacher was calibrated on and the fold's model: a checkpoint
(.pth) or a bundle folder (``bundle`` = ``--bundle``, measured through the engine as users get it);
optionally a held-out synthetic corpus built with the same calibration and the training corpus (for
the training-set mean baseline). The first fold is the shipped one; one fold is enough. Each fold's
model is evaluated with the bundle's default options (its recommended options under the settings'
defaults: exactly what Generate does) on the *other* real DualTalk conversations (never seen: not
calibrated on, not trained on) and on the held-out synthetic dialogues, next to three baselines: the
FLAME neutral pose, the training-set mean frame repeated, and the teacher applied to the test audio.
The behaviour benchmark (``model_export.behaviour``) scores the shipped bundle, the energy baseline
and the real people's motion on held-out real material. Everything is measured when the script runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from timar_blender.engine.contract import FPS, JAW, MOTION_DIM, NECK
from timar_blender.engine.curves import apply_strengths, smooth
from timar_blender.engine.dialogue import generate_dialogue

from . import behaviour, metrics
from .card_measures import RAD2DEG, drift, head_orientation_spread_deg, jaw_energy_r
from .card_render import render
from .checkpoint import CheckpointError
from .corpus.calibrate import DEMO_DIR, frame_db, talking_mask
from .data import Conversation, load_conversation, load_flame56, scan_folder

SHIPPED_MODEL = "bundle"  # --fold CLIP=bundle: the fold's model is the --bundle itself


@dataclass
class Fold:
    clip: str  # the real clip the teacher was calibrated on
    model: Path | None  # checkpoint (.pth) or bundle folder; None = the --bundle
    test: Path | None = None  # held-out synthetic corpus (same calibration)
    train: Path | None = None  # training corpus (for the mean-motion baseline)

    @property
    def conversation(self) -> str:
        return self.clip.rsplit("_speaker", 1)[0]


def parse_fold(text: str) -> Fold:
    parts = text.split("=")
    if not 2 <= len(parts) <= 4 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError(
            f"--fold wants CLIP=MODEL[=TEST_DIR[=TRAIN_DIR]] (MODEL: a .pth, a bundle folder or 'bundle'), got {text!r}"
        )
    parts += [""] * (4 - len(parts))
    model = None if parts[1] == SHIPPED_MODEL else Path(parts[1])
    return Fold(parts[0], model, Path(parts[2]) if parts[2] else None, Path(parts[3]) if parts[3] else None)


def conversation_of(direction_name: str) -> str:
    return direction_name.rsplit("_speaker", 1)[0]


def default_settings(bundle: Path):
    """What Generate uses for ``bundle`` when the artist changes nothing: the settings' defaults under
    the bundle's recommended options (``behaviour.BundleSource`` uses the same)."""
    from timar_blender.engine import settings

    return settings.resolve({}, settings.read_recommended(bundle))


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
    from .corpus.real_clips import energy_segments
    from .corpus.teacher import teach

    agent, user = conv.agent_audio, conv.user_audio
    n = min(len(agent), len(user))
    timeline = energy_segments(agent[:n], 0) + energy_segments(user[:n], 1)
    m, _ = teach([agent[:n], user[:n]], timeline, seed, stats)
    return m


def model_motion(backend, conv: Conversation, settings, n: int, seed: int = 0) -> np.ndarray:
    """The model's take with the bundle's default options (``n`` past turns), then the default
    strengths and smoothing, as Generate writes it; the user's real motion is given (DualTalk protocol)."""
    opts = replace(settings.sampling_options(), context_turns=n, seed=seed)
    m = generate_dialogue(backend, conv.user_audio, conv.agent_audio, conv.user_motion, opts, last_turn="drop").motion
    return smooth(apply_strengths(m, *settings.strengths), settings.smoothing)


def load_model(model: Path | None, bundle: Path) -> tuple[object, str, str]:
    """(backend, what, sha256): a bundle folder through onnxruntime, a checkpoint through PyTorch."""
    folder = bundle if model is None else model
    if folder.is_dir():
        from timar_blender.engine.onnx_backend import OnnxBackend

        manifest = json.loads((folder / "manifest.json").read_text())
        return OnnxBackend(folder, device="cpu"), f"bundle {folder}", manifest.get("source", {}).get("sha256", "")
    from .checkpoint import load_checkpoint
    from .speech import build_speech_features
    from .torch_backend import TorchBackend

    ck = load_checkpoint(folder)
    return TorchBackend(ck.model, build_speech_features(ck.config, None)), f"checkpoint {folder}", ck.sha256


def plot_motion(
    path: Path,
    curves: dict[str, np.ndarray],
    talk: np.ndarray,
    listen: np.ndarray,
    title: str,
    reference: tuple[str, np.ndarray] | None = None,
) -> None:
    """Jaw opening and head pitch / yaw / roll over time against who speaks (orange: the agent,
    blue: only the user); ``reference`` is drawn in black (real motion). Each head curve is drawn
    about its own mean, so motion is comparable whatever the mean orientation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = [len(c) for c in curves.values()] + [len(talk), len(listen)]
    if reference is not None:
        lengths.append(len(reference[1]))
    n = min(lengths)
    t = np.arange(n) / FPS
    panels = [
        (JAW.start, "jaw opening (jaw x, rad)", 1.0),
        (NECK.start, "head pitch / nod (deg)", RAD2DEG),
        (NECK.start + 1, "head yaw (deg)", RAD2DEG),
        (NECK.start + 2, "head roll (deg)", RAD2DEG),
    ]

    def y(m: np.ndarray, ch: int, scale: float) -> np.ndarray:
        v = m[:n, ch] * scale
        return v - v.mean() if ch >= NECK.start else v  # head: motion about each curve's own mean

    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 9), sharex=True)
    for ax, (ch, label, scale) in zip(axes, panels):
        for mask, colour in ((talk[:n], "#f4c27a"), (listen[:n] & ~talk[:n], "#b9d4ee")):
            ax.fill_between(t, 0, 1, where=mask, transform=ax.get_xaxis_transform(), color=colour, alpha=0.5, lw=0)
        if reference is not None:
            ax.plot(t, y(reference[1], ch, scale), color="black", lw=1.3, label=reference[0])
        for (name, c), colour in zip(curves.items(), ("#c0392b", "#2e86c1", "#7d3c98")):
            ax.plot(t, y(c, ch, scale), color=colour, lw=1.0, label=name)
        ax.set_ylabel(label, fontsize=8)
    axes[0].legend(loc="upper right", fontsize=7, ncol=4)
    axes[-1].set_xlabel("time (s) — orange: agent speaking, blue: only the user speaking; head curves about their mean")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------- evaluation


def evaluate_fold(fold: Fold, calib: dict, demo: Path, bundle: Path, settings, log) -> dict:
    backend, what, sha = load_model(fold.model, bundle)
    if fold.clip not in calib["folds"]:
        raise ValueError(f"--fold {fold.clip}: no teacher calibration for this clip (have {sorted(calib['folds'])})")
    stats = calib["folds"][fold.clip]
    mean = training_mean(fold.train) if fold.train is not None else None
    real = [
        d
        for d in scan_folder(demo, allow_missing_motion=True).directions
        if d.agent_npz is not None and conversation_of(d.name) != fold.conversation
    ]
    sets = [("real", real, 0)]
    if fold.test is not None:
        sets.append(("synthetic", scan_folder(fold.test).directions, 12345))
    result = {"model": what, "sha256": sha, "sets": {}}
    for set_name, directions, teacher_seed in sets:
        per: dict[str, list] = {}
        preds: dict[str, dict[str, np.ndarray]] = {}
        for d in directions:
            conv = load_conversation(d, normalize=False)
            rows = {"Neutral pose": neutral(conv)}
            if mean is not None:
                rows["Training mean"] = np.broadcast_to(mean, conv.agent_motion.shape).copy()
            rows["Teacher"] = teacher_for(conv, stats, teacher_seed)
            rows["Energy baseline"] = behaviour.EnergySource()(
                behaviour.Case(d.name, (conv.user_audio, conv.agent_audio)), 0
            )
            rows["Model n = 0"] = model_motion(backend, conv, settings, 0)
            rows["Model n = 7"] = model_motion(backend, conv, settings, 7)
            for label, pred in rows.items():
                with warnings.catch_warnings():  # constant baselines: SID falls back to k = 1 (it is 0)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    m = metrics.sequence_metrics(pred, conv.agent_motion, conv.user_motion)
                per.setdefault(label, []).append(m)
            preds[d.name] = rows
            log(f"  fold {fold.clip[:11]} {set_name} {d.name}: done")
        result["sets"][set_name] = {
            "sequences": [d.name for d in directions],
            "table": {k: metrics.average(v) for k, v in per.items()},
            "preds": preds,
            "directions": directions,
        }
    return result


def licences(corpus: dict, demo_clips: list[str]) -> dict:
    """What the card's licence section states: the training corpus's make-up (``sources`` of its
    corpus.json) and the third-party material the weights or the evaluation rest on."""
    from .corpus.voices import ATTRIBUTION

    return {
        "corpus_sources": corpus.get("sources") or {},
        "corpus_voices": len(corpus.get("voices") or []),
        "real_dialogues": corpus.get("real_dialogues") or [],
        "librispeech": dict(ATTRIBUTION),
        "dualtalk_clips": demo_clips,
    }


def read_corpus_json(path: Path | None, manifest: dict) -> dict:
    """The training corpus's corpus.json: the file given, else the provenance the bundle carries
    (``export --provenance-file``)."""
    if path is None:
        return manifest.get("source", {}).get("training_data") or {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: --corpus {path}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.model_card", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, required=True, help="the shipped bundle (its default options are used)")
    p.add_argument("--fold", type=parse_fold, action="append", required=True,
                   help="CLIP=MODEL[=TEST_DIR[=TRAIN_DIR]]; the first is the shipped fold")
    p.add_argument("--long", type=Path, help="corpus with one long (10-min) dialogue (stability check)")
    p.add_argument("--corpus", type=Path, help="the training corpus's corpus.json (default: the bundle's provenance)")
    p.add_argument("--demo", type=Path, default=DEMO_DIR, help="the real DualTalk conversations")
    p.add_argument("--shared", type=Path, default=behaviour.SHARED, help="the shared fixtures (benchmark cases)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="behaviour benchmark seeds")
    p.add_argument("--cases", nargs="+", choices=behaviour.CASE_GROUPS, default=list(behaviour.CASE_GROUPS))
    p.add_argument("--dialogues", type=int, nargs="+", default=[0, 1], help="held-out LibriSpeech dialogue seeds")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the benchmark's assembled cases")
    p.add_argument("--teacher", action=argparse.BooleanOptionalAction, default=True,
                   help="also score the corpus teacher in the benchmark (its upper bound; ~1/3 of the run time)")
    p.add_argument("--out", type=Path, default=Path("MODEL_CARD.md"))
    p.add_argument("--figures", type=Path, default=Path("docs/model_card"))
    args = p.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        p.error(f"--bundle {args.bundle}: not a model bundle (no manifest.json)")
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.1f} s] {msg}", flush=True)

    from .corpus.teacher import load_calibration

    calib = load_calibration()
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    corpus = read_corpus_json(args.corpus, manifest)
    settings = default_settings(args.bundle)
    folds = {}
    for fold in args.fold:
        log(f"evaluating fold {fold.clip}")
        folds[fold.clip] = evaluate_fold(fold, calib, args.demo, args.bundle, settings, log)
    ship = args.fold[0]

    # the behaviour benchmark: the shipped bundle through the engine, the energy baseline, real motion
    cases = behaviour.default_cases(args.shared, args.dialogues, args.seconds, args.cases)
    model_src = behaviour.BundleSource(args.bundle, name="model")
    sources: list[behaviour.MotionSource] = [model_src, behaviour.EnergySource(), behaviour.RealSource()]
    if args.teacher:
        sources.append(behaviour.teacher_source())
    bench = behaviour.run_benchmark(sources, cases, args.seeds, log=log)
    log(f"behaviour benchmark: {bench['seconds']:.0f} s")

    beh: dict = {"latency_ms": bench["sources"]["model"].get("turn_latency_ms", {})}
    if args.long is not None:
        from timar_blender.engine.onnx_backend import OnnxBackend

        long_dir = scan_folder(args.long).directions[0]
        conv = load_conversation(long_dir, normalize=False)
        engine = OnnxBackend(args.bundle, device="cpu")
        t0 = time.perf_counter()
        long_motion = generate_dialogue(engine, conv.user_audio, conv.agent_audio, None, settings.sampling_options())
        long_seconds = time.perf_counter() - t0
        motion = smooth(apply_strengths(long_motion.motion, *settings.strengths), settings.smoothing)
        beh["long"] = {
            "sequence": long_dir.name,
            "audio_seconds": len(conv.agent_audio) / 16000,
            "generation_seconds": long_seconds,
            **drift(motion, conv.agent_audio),
        }
        log(f"long dialogue: {long_seconds:.1f} s")

    # plots: a held-out real-voice dialogue (model vs energy baseline), each held-out DualTalk clip
    figures: dict[str, Path] = {}
    held = next((c for c in cases if c.name.startswith("LibriSpeech")), None)
    if held is None:
        held = behaviour.librispeech_cases(args.dialogues[:1], args.seconds, args.shared)[0]
    lab = held.labels()
    path = args.figures / "heldout_librispeech.png"
    plot_motion(
        path,
        {"model (default options, seed 0)": model_src(held, 0), "energy baseline": behaviour.EnergySource()(held, 0)},
        lab.talk,
        lab.listen,
        f"{held.name}: held-out LibriSpeech speakers with room tone and bleed (labels: {lab.source})",
    )
    figures[held.name] = path
    for fold in args.fold:
        s = folds[fold.clip]["sets"]["real"]
        for d in s["directions"]:
            conv = load_conversation(d, normalize=False)
            pr = s["preds"][d.name]
            n = len(conv.agent_motion)
            talk = talking_mask(frame_db(conv.agent_audio, n))
            path = args.figures / f"real_{d.name}.png"
            plot_motion(
                path,
                {"model n = 7": pr["Model n = 7"], "energy baseline": pr["Energy baseline"], "teacher": pr["Teacher"]},
                talk,
                talking_mask(frame_db(conv.user_audio, n)),
                f"{d.name} (held out; teacher calibrated on {fold.clip})",
                reference=("real (DualTalk FLAME)", conv.agent_motion),
            )
            figures[d.name] = path
    log("plots written")

    real_jaw_r = {}
    for fold in args.fold:
        for d in folds[fold.clip]["sets"]["real"]["directions"]:
            conv = load_conversation(d, normalize=False)
            real_jaw_r[d.name] = jaw_energy_r(conv.agent_motion, conv.agent_audio)
    model_dir = ship.model if ship.model is not None and not ship.model.is_dir() else None
    train_summary = model_dir.parent / "train_summary.json" if model_dir else None
    card = {
        "name": manifest["name"],
        "model": manifest["model"],
        "fps": FPS,
        "precision": manifest["precision"],
        "license": manifest["license"]["weights"],
        "checkpoint_sha256": manifest["source"].get("sha256", ""),
        "training_data": corpus,
        "bundle_mb": sum(f.stat().st_size for f in args.bundle.iterdir() if f.is_file()) / 1e6,
        "shipped_clip": ship.clip,
        "folds_trained": len(args.fold),
        "train": json.loads(train_summary.read_text()) if train_summary and train_summary.exists() else {},
        "cpu_count": os.cpu_count(),
        "seeds": args.seeds,
        "options": model_src.describe()["options"],
        "figures": {n: Path(os.path.relpath(p, args.out.parent)).as_posix() for n, p in figures.items()},
        "real_jaw_speech_r": real_jaw_r,
        "head_orientation_spread_deg": head_orientation_spread_deg(
            {k: v["neck_mean"] for k, v in calib["folds"].items()}
        ),
        "licences": licences(corpus, sorted({conversation_of(k) for k in real_jaw_r} | {ship.conversation})),
    }
    raw = {
        "card": card,
        "folds": {
            k: {
                "model": v["model"],
                "sha256": v["sha256"],
                "sets": {n: {"sequences": s["sequences"], "table": s["table"]} for n, s in v["sets"].items()},
            }
            for k, v in folds.items()
        },
        "behaviour": beh,
        "benchmark": bench,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=float))
    args.out.write_text(render(json.loads(args.out.with_suffix(".json").read_text())))
    log(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (CheckpointError, FileNotFoundError, ValueError) as exc:  # one line naming the file, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
