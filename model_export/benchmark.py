"""Per-turn latency of the onnxruntime engine against PyTorch eager, measured in one run.

    python -m model_export.benchmark                        # CPU-sized presets
    python -m model_export.benchmark --large                # also the official timar_large layout
    python -m model_export.benchmark --bundle bundles/x     # an exported bundle (engine only)
    python -m model_export.benchmark --cache-report         # issue 15: cached vs uncached backbone, below

For each model: steady-state per-turn latency (median and p95 over ``--turns`` turns after the
window has filled) at context n = 0 and n = 7, for the engine (onnxruntime, CPU) and for PyTorch
eager running the same weights through the same turn loop; their ratio; and the real-time factor
(turn latency / turn duration: below 1 keeps up with live audio). Prints a Markdown table;
asserts nothing.

``--cache-report`` prints, in one run: per-turn cost against context n = 0..7 for a turn-relative
model with the cached backbone and for the same-size window model that recomputes the window
(ratios to n = 1 and cached/uncached, with the split into backbone / head / speech / rest);
onnxruntime against PyTorch eager on the cached model; a 10-minute dialogue through the headless
path with the cached model, split into model / keys / save (needs bpy); and the official presets'
CPU cost per turn (PyTorch eager, random weights, log-mel speech encoder in place of wav2vec2).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import ClassVar

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


# ------------------------------------------------------------------------------------ cache report
class TimedBackend:
    """A backend that adds up the wall time of each network call (the rest of a turn is the sampler's numpy)."""

    PARTS: ClassVar[dict[str, str]] = {
        "backbone": "backbone", "backbone_step": "backbone", "head": "head", "encode_speech": "speech",
        "encode_motion": "motion",
    }

    def __init__(self, inner: Backend) -> None:
        self.inner, self.info = inner, inner.info
        self.spent: dict[str, float] = dict.fromkeys(self.PARTS.values(), 0.0)

    def separators(self) -> np.ndarray:
        return self.inner.separators()

    def fake_latent(self) -> np.ndarray:
        return self.inner.fake_latent()

    def __getattr__(self, name: str):
        fn = getattr(self.inner, name)
        part = self.PARTS.get(name)
        if part is None:
            return fn

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter() - t0

        return timed


def interleaved_latencies(
    settings: dict[str, tuple[Backend, int]], turns: int, block: int = 1
) -> dict[str, tuple[np.ndarray, dict]]:
    """Per-turn seconds of every (backend, context n) setting, stepped round-robin ``block`` turns at a
    time so that a change in machine load hits every setting alike (their ratios stay meaningful on a
    busy machine); timed once every window is full (after 7 turns). ``block`` = 1 is the cold case
    (every turn follows the other settings' turns, so its caches are cold); with ``block`` > 1 the
    first turn of each block is not timed, the rest run warm, back to back, as a generation runs.
    Also the median-turn split (ms) into the networks' calls and the rest (the sampler's numpy)."""
    first = max(n for _, n in settings.values())
    per_round = max(block - 1, 1)
    total = first + block * (-(-turns // per_round) + 2)  # audio for every turn any sampler can reach
    timed, samplers, lat, parts = {}, {}, {}, {}
    for label, (backend, n) in settings.items():
        timed[label] = TimedBackend(backend)
        samplers[label] = TurnSampler(timed[label], SamplingOptions(context_turns=n, seed=0))
        lat[label], parts[label] = [], []
    info = next(iter(settings.values()))[0].info
    s = info.samples_per_turn
    user = normalize_per_file(synth_speech(total, info.speech_rate, 1, [(0.0, total / 2)]))
    agent = normalize_per_file(synth_speech(total, info.speech_rate, 2, [(total / 2, total)]))
    done = dict.fromkeys(settings, 0)  # turns each sampler has run
    while any(len(lat[label]) < turns for label in settings):
        for label in settings:
            for j in range(block):
                i = done[label]
                tb = timed[label]
                tb.spent = dict.fromkeys(tb.spent, 0.0)
                t0 = time.perf_counter()
                samplers[label].step(user[i * s:(i + 1) * s], agent[i * s:(i + 1) * s])
                done[label] += 1
                if i >= first and (block == 1 or j > 0) and len(lat[label]) < turns:
                    lat[label].append(time.perf_counter() - t0)
                    parts[label].append(dict(tb.spent))
    out = {}
    for label in settings:
        a = np.asarray(lat[label])
        split = {k: float(np.median([p[k] for p in parts[label]])) * 1e3 for k in parts[label][0]}
        split["rest"] = float(np.median(a - np.asarray([sum(p.values()) for p in parts[label]]))) * 1e3
        out[label] = (a, split)
    return out


STEADY_BLOCK = 5  # turns a setting runs back to back per round in the steady-state table (first untimed)


def context_table(cached: Backend, uncached: Backend, turns: int, block: int = STEADY_BLOCK) -> None:
    how = (f"steady state: {block} turns back to back per setting and round, the first untimed, as a generation "
           "runs" if block > 1 else "cold: one turn per setting and round, so every turn follows 15 other settings'")
    print(f"\n### Per-turn cost against context n (engine, onnxruntime CPU; {how})\n")
    print("| n | cached median ms | cached p95 | cached / n=1 | uncached median ms | uncached p95 | uncached / n=1 "
          "| uncached / cached | cached: backbone / head / speech / rest ms | uncached backbone ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    settings = {f"{kind}{n}": (be, n) for n in range(8) for kind, be in (("c", cached), ("u", uncached))}
    res = interleaved_latencies(settings, turns, block)
    med = {k: float(np.median(v[0])) for k, v in res.items()}
    for n in range(8):
        (c, cs), (u, us) = res[f"c{n}"], res[f"u{n}"]
        print(f"| {n} | {med[f'c{n}'] * 1e3:.1f} | {np.percentile(c, 95) * 1e3:.1f} | {med[f'c{n}'] / med['c1']:.2f} | "
              f"{med[f'u{n}'] * 1e3:.1f} | {np.percentile(u, 95) * 1e3:.1f} | {med[f'u{n}'] / med['u1']:.2f} | "
              f"{med[f'u{n}'] / med[f'c{n}']:.2f} | {cs['backbone']:.1f} / {cs['head']:.1f} / {cs['speech']:.1f} / "
              f"{cs['rest']:.1f} | {us['backbone']:.1f} |", flush=True)


def eager_table(engine: Backend, eager: Backend, turns: int) -> None:
    print("\n### onnxruntime against PyTorch eager, same cached model, same turn loop (interleaved)\n")
    print("| n | engine median ms | eager median ms | engine speed-up |\n|---:|---:|---:|---:|")
    res = interleaved_latencies({f"{k}{n}": (be, n) for n in (1, 7) for k, be in (("e", engine), ("p", eager))}, turns)
    for n in (1, 7):
        e, p = np.median(res[f"e{n}"][0]), np.median(res[f"p{n}"][0])
        print(f"| {n} | {e * 1e3:.1f} | {p * 1e3:.1f} | {p / e:.2f}x |", flush=True)


def headless_split(bundle: Path, minutes: float, threads: int) -> None:
    """A dialogue through the headless path (the Generate operator's code) with ``bundle``: model / keys / save."""
    try:
        import bpy
    except ImportError:
        print("\n(10-min headless split skipped: no bpy module)")
        return
    import soundfile as sf

    import timar_blender
    from timar_blender.blender import generate
    from timar_blender.blender.props import settings_of
    from timar_blender.blender.rig import create_test_rig
    from timar_blender.engine import job

    seconds = minutes * 60
    with tempfile.TemporaryDirectory() as d:
        turns = [(t, t + 4.0) for t in np.arange(0, seconds, 8.0)]
        sf.write(Path(d) / "agent.wav", synth_speech(seconds, 16000, 1, turns), 16000)
        sf.write(Path(d) / "user.wav", synth_speech(seconds, 16000, 2, [(a + 4, b + 4) for a, b in turns]), 16000)
        timar_blender.register()
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        scene.render.fps, scene.render.fps_base = 25, 1.0
        head = create_test_rig(bpy.context)
        values = {"character": head.name, "agent_audio": str(Path(d) / "agent.wav"),
                  "user_audio": str(Path(d) / "user.wav"), "model_path": str(bundle)}
        settings = settings_of(scene, values, "benchmark")
        req, info = generate.build_request(scene, settings)
        req.threads = threads
        t0 = time.perf_counter()
        result = job.run(req)
        t1 = time.perf_counter()
        generate.write_result(bpy.context, settings, req, info, result)
        t2 = time.perf_counter()
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(d) / "take.blend"), copy=False)
        t3 = time.perf_counter()
    total = t3 - t0
    print(f"\n### {minutes:g}-min dialogue, headless path, cached model (onnxruntime {result.provider})\n")
    print("| model s | keys s | save s | total s | real-time factor |\n|---:|---:|---:|---:|---:|")
    print(f"| {t1 - t0:.1f} | {t2 - t1:.2f} | {t3 - t2:.2f} | {total:.1f} | {total / seconds:.4f} |", flush=True)


def official_cost(names: list[str], threads: int) -> None:
    """One turn at n = 7 of each official preset on PyTorch eager (random weights): the backbone on
    the full 8-turn window, 5 head calls on the turn's 25 frames, the speech encoder on 2 chunks."""
    print("\n### Official presets on this CPU (PyTorch eager, random weights, one turn at n = 7)\n")
    print("| preset | parameters M | per-turn s | real-time factor |\n|---|---:|---:|---:|")
    torch.set_num_threads(threads)
    for name in names:
        cfg = preset(name, speech_encoder="logmel", speech_feature_dim=1024,
                     logmel=dict(n_fft=400, hop=160, n_mels=64, channels=256))
        model = Timar(cfg).eval()
        feats = LogMelFeatures(cfg.speech_rate, 400, 160, 64)
        L, turns = cfg.turn_length, cfg.max_context_turns
        tokens = torch.randn(1, turns * L, cfg.token_dim)
        mask = torch.zeros(1, turns * L, dtype=torch.bool)
        tids = torch.arange(turns).repeat_interleave(L)[None]
        with torch.no_grad():
            times = []
            for _ in range(2):  # the second is reported (the first pays one-off allocations)
                t0 = time.perf_counter()
                model.speech_tokens(feats(torch.randn(2, cfg.samples_per_turn)))
                z = model.backbone(tokens, mask, tids)[0, -L:][:25]
                for step in range(5):
                    model.head(torch.randn(25, 56), torch.full((25,), 999 - 250 * step), z)
                times.append(time.perf_counter() - t0)
        n_params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {name} | {n_params:.0f} | {times[-1]:.2f} | {times[-1] / cfg.turn_seconds:.1f} |", flush=True)
        del model


def cache_report(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    if args.checkpoint:
        from .checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint).model
        if model.cfg.position != "turn_relative":
            print(f"error: {args.checkpoint} is not a turn-relative model", flush=True)
            return 2
    else:
        model = Timar(preset("timar_cpu_v2", motion_mean=(0.0,) * 56, motion_std=(1.0,) * 56)).eval()
    cfg = model.cfg
    same_size = ("token_dim", "width", "depth", "num_heads", "head_depth", "head_width", "logmel", "speech_feature_dim")
    window_model = Timar(preset("timar_cpu_bundle", **{k: getattr(cfg, k) for k in same_size})).eval()
    feats = LogMelFeatures(cfg.speech_rate, cfg.logmel["n_fft"], cfg.logmel["hop"], cfg.logmel["n_mels"])
    print(f"load average {os.getloadavg()[0]:.1f}; threads: {args.threads}; "
          f"cached model {cfg.width}x{cfg.depth} ({cfg.position}); uncached = the same size "
          f"with window positions (the graph official and v1 bundles hold); {args.turns} timed turns per setting")
    if not set(args.sections) & {"context", "eager", "headless"}:
        official_cost(args.official, args.threads)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        export_bundle(model, feats, Path(tmp) / "cached", source={"checkpoint": "benchmark"},
                      license_text="benchmark", check=False)
        export_bundle(window_model, feats, Path(tmp) / "window", source={"checkpoint": "benchmark"},
                      license_text="benchmark", check=False)
        cached = OnnxBackend(Path(tmp) / "cached", device="cpu", threads=args.threads)
        uncached = OnnxBackend(Path(tmp) / "window", device="cpu", threads=args.threads)
        torch.set_num_threads(args.threads)
        if "context" in args.sections:
            context_table(cached, uncached, args.turns)
            context_table(cached, uncached, args.turns, block=1)
        if "eager" in args.sections:
            eager_table(cached, TorchBackend(model, feats), args.turns)
        if "headless" in args.sections and args.minutes > 0:
            headless_split(Path(tmp) / "cached", args.minutes, args.threads)
    if "official" in args.sections and args.official:
        official_cost(args.official, args.threads)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.benchmark", description=__doc__.split("\n")[0])
    p.add_argument(
        "--presets", nargs="+", default=["timar_cpu_tiny", "timar_cpu_bundle", "timar_cpu_small", "timar_cpu_medium"]
    )
    p.add_argument("--large", action="store_true", help="also the official timar_large layout (random weights)")
    p.add_argument("--large-turns", type=int, default=3)
    p.add_argument("--turns", type=int, default=20, help="timed turns per setting")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-report", action="store_true", help="cached vs uncached backbone report (see above)")
    p.add_argument("--checkpoint", type=Path, help="cache report: a trained turn-relative checkpoint (default: random)")
    p.add_argument("--minutes", type=float, default=10.0, help="cache report: headless dialogue length (0 = skip)")
    p.add_argument("--official", nargs="*", default=["timar_base", "timar_large"],
                   help="cache report: official presets to time (none = skip)")
    sections = ("context", "eager", "headless", "official")
    p.add_argument("--sections", nargs="+", choices=sections, default=list(sections),
                   help="cache report: which parts to run (default: all)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.cache_report:
        return cache_report(args)
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
