"""Per-turn latency of the onnxruntime engine against PyTorch eager, measured in one run.

    python -m model_export.benchmark                        # CPU-sized presets
    python -m model_export.benchmark --large                # also the official timar_large layout
    python -m model_export.benchmark --bundle bundles/x     # an exported bundle (engine only)

For each model: steady-state per-turn latency (median and p95 over ``--turns`` turns after the
window has filled) at context n = 0 and n = 7, for the engine (onnxruntime, CPU) and for PyTorch
eager running the same weights through the same turn loop; their ratio; and the real-time factor
(turn latency / turn duration: below 1 keeps up with live audio). Prints a Markdown table;
asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from timar_blender.engine.audio import normalize_per_file
from timar_blender.engine.onnx_backend import OnnxBackend
from timar_blender.engine.sampler import Backend, SamplingOptions, TurnSampler

from .config import preset
from .export import export_bundle
from .model import Timar
from .speech import LogMelFeatures
from .synthetic import synth_speech
from .torch_backend import TorchBackend


def turn_latencies(backend: Backend, n: int, turns: int, seed: int = 0) -> np.ndarray:
    """Seconds per turn once the window holds n + 1 turns."""
    info = backend.info
    s = info.samples_per_turn
    total = n + turns
    user = normalize_per_file(synth_speech(total, info.speech_rate, 1, [(0.0, total / 2)]))
    agent = normalize_per_file(synth_speech(total, info.speech_rate, 2, [(total / 2, total)]))
    sampler = TurnSampler(backend, SamplingOptions(context_turns=n, seed=seed))
    out = []
    for i in range(total):
        t0 = time.perf_counter()
        sampler.step(user[i * s:(i + 1) * s], agent[i * s:(i + 1) * s])
        if i >= n:
            out.append(time.perf_counter() - t0)
    return np.asarray(out)


def measure(label: str, model: Timar, turns: int, threads: int, folder: Path, engine_only: bool = False) -> list[str]:
    cfg = model.cfg
    feats = LogMelFeatures(cfg.speech_rate, cfg.logmel["n_fft"], cfg.logmel["hop"], cfg.logmel["n_mels"]) \
        if cfg.speech_encoder == "logmel" else None
    t0 = time.time()
    export_bundle(model, feats, folder, source={"checkpoint": "random weights"}, license_text="benchmark", check=False)
    export_s = time.time() - t0
    size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    engine = OnnxBackend(folder, device="cpu", threads=threads)
    torch.set_num_threads(threads or torch.get_num_threads())
    eager = None if engine_only else TorchBackend(model, feats)
    rows = []
    for n in (0, 7):
        e = turn_latencies(engine, n, turns)
        row = f"| {label} | {n} | {np.median(e) * 1e3:.1f} | {np.percentile(e, 95) * 1e3:.1f} |"
        if eager is not None:
            p = turn_latencies(eager, n, turns)
            row += f" {np.median(p) * 1e3:.1f} | {np.median(p) / np.median(e):.2f}x |"
        else:
            row += " - | - |"
        row += f" {np.median(e) / cfg.turn_seconds:.3f} | {size_mb:.1f} | {export_s:.0f} |"
        rows.append(row)
        print(row, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.benchmark", description=__doc__.split("\n")[0])
    p.add_argument(
        "--presets", nargs="+", default=["timar_cpu_tiny", "timar_cpu_bundle", "timar_cpu_small", "timar_cpu_medium"]
    )
    p.add_argument("--large", action="store_true", help="also the official timar_large layout (random weights)")
    p.add_argument("--large-turns", type=int, default=3)
    p.add_argument("--turns", type=int, default=20, help="timed turns per setting")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(f"threads: {args.threads}; latencies in ms per 1-s turn (steady state, window full)\n")
    header = ("| model | n | engine median | engine p95 | PyTorch eager median | engine speed-up | RTF (engine) "
              "| bundle MB | export s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(header)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            measure(name, Timar(preset(name)).eval(), args.turns, args.threads, Path(tmp) / name)
        if args.large:
            # the official large layout with a log-mel speech encoder so no wav2vec2 weights are needed;
            # the backbone and head (what dominates) are exactly the paper's
            cfg = preset("timar_large", speech_encoder="logmel", speech_feature_dim=1024,
                         logmel=dict(n_fft=400, hop=160, n_mels=64, channels=256))
            measure("timar_large (paper backbone)", Timar(cfg).eval(), args.large_turns, args.threads,
                    Path(tmp) / "large")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
