#!/usr/bin/env python3
"""Dialogues per minute through the Ray farm with 1 and 2 workers, in one run (the ratio is the
figure), next to the headless batch of the same file.

    .venv/bin/python scripts/benchmark_farm.py [--dialogues 16] [--seconds 20] [--workers 1 2]

Writes synthetic two-voice dialogues and a scene with the test rig into a temporary folder, then
runs ``python -m timar_blender.headless --batch`` once and ``python -m timar_blender.farm`` once
per worker count (each starts its own local Ray cluster; every run from scratch). "overall" counts
from the farm's first task to its last result (worker start-up, Blender and model loading included;
Ray's own start is not); "steady" from the first finished dialogue to the last (the manifest's
times: start-up excluded); "wall" is the whole command. The headless batch has one figure (its
whole command).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_batch(folder: Path, dialogues: int, seconds: float) -> Path:
    import soundfile as sf

    from model_export.synthetic import synth_speech

    rate = 16_000
    audio = folder / "audio"
    audio.mkdir()
    entries = []
    for i in range(dialogues):
        agent, user = audio / f"line{i:03d}_agent.wav", audio / f"line{i:03d}_user.wav"
        half = seconds / 2
        sf.write(agent, synth_speech(seconds, rate, 10 + i, [(half, seconds - 0.1)]), rate)
        sf.write(user, synth_speech(seconds, rate, 5000 + i, [(0.1, half - 0.1)]), rate)
        entries.append({"agent_audio": str(agent), "user_audio": str(user), "seed": i, "out": f"line{i:03d}.blend"})
    path = folder / "dialogues.json"
    path.write_text(json.dumps(entries, indent=1))
    return path


def make_scene(path: Path, env: dict) -> None:
    code = ("import bpy, timar_blender; bpy.ops.wm.read_factory_settings(use_empty=True); timar_blender.register(); "
            f"bpy.ops.timar.create_test_rig(); bpy.ops.wm.save_as_mainfile(filepath={str(path)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env, timeout=600)


def steady_rate(manifest: Path) -> float:
    """Dialogues per minute between the first and the last finished dialogue."""
    from datetime import datetime

    times = sorted(datetime.fromisoformat(json.loads(line)["finished"]).timestamp()
                   for line in manifest.read_text().splitlines())
    return 60.0 * (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dialogues", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each dialogue")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="timar-farm-bench-") as tmp:
        folder = Path(tmp)
        home = folder / "home"
        home.mkdir()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "OMP_NUM_THREADS": "1"}
        batch = make_batch(folder, args.dialogues, args.seconds)
        scene = folder / "base.blend"
        make_scene(scene, env)
        print(f"{args.dialogues} dialogues of {args.seconds:g} s, {os.cpu_count()} CPU(s) on this machine")
        print(f"{'run':<22}{'overall /min':>13}{'steady /min':>13}{'wall s':>9}")
        ref = folder / "headless"
        ref.mkdir()
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "timar_blender.headless", "--blend", str(scene), "--batch",
                            str(batch)], cwd=ref, capture_output=True, text=True, env=env)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
            return 1
        print(f"{'headless --batch':<22}{60 * args.dialogues / wall:>13.1f}{'':>13}{wall:>9.1f}")
        rates, steady = {}, {}
        for n in args.workers:
            out = folder / f"farm{n}"
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "timar_blender.farm", str(batch), "--out", str(out), "--blend",
                                str(scene), "--workers", str(n), "--json", str(folder / f"farm{n}.json")],
                               capture_output=True, text=True, env=env)
            wall = time.monotonic() - t0
            if r.returncode != 0:
                print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
                return 1
            s = json.loads((folder / f"farm{n}.json").read_text())
            rates[n] = s["dialogues_per_minute"]
            steady[n] = steady_rate(out / "manifest.jsonl")
            print(f"{f'farm, {n} worker(s)':<22}{rates[n]:>13.1f}{steady[n]:>13.1f}{wall:>9.1f}")
        if 1 in rates:
            for n in rates:
                if n != 1:
                    print(f"ratio {n} workers / 1 worker: {rates[n] / rates[1]:.2f} overall, "
                          f"{steady[n] / steady[1]:.2f} steady")
    return 0


if __name__ == "__main__":
    sys.exit(main())
