"""Blender-side timings (printed, not asserted), with the bpy module:

    .venv/bin/python scripts/benchmark_blender.py [--minutes 10]

1. Writing N minutes of motion (25 fps -> the scene's 25 fps: 15,000 frames at 10 min) onto the
   test rig: 50 shape-key curves + 7 bone-rotation curves (quaternions), keys in bulk.
2. Building the demo head (an ARKit character: mesh, 52 shape keys, armature, camera, light).
3. End to end with the bundled model: an N-minute two-person dialogue (synthetic speech) from the
   audio files to keys on the rig, through the same code as the Generate operator.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_home = tempfile.mkdtemp(prefix="timar-bench-")
for var, sub in (("HOME", ""), ("BLENDER_USER_RESOURCES", "blender"), ("XDG_CACHE_HOME", "cache")):
    os.environ.setdefault(var, os.path.join(_home, sub))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import bpy
    import numpy as np
    import soundfile as sf

    import timar_blender
    from model_export.synthetic import synth_speech
    from timar_blender.blender import keyframes
    from timar_blender.blender.rig import channel_map, create_test_rig
    from timar_blender.engine import job

    timar_blender.register()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 25, 1.0
    head = create_test_rig(bpy.context)
    arm = head.parent
    frames = int(args.minutes * 60 * 25)
    motion = np.random.default_rng(0).normal(0, 0.2, (frames, 56)).astype(np.float32)
    cmap = channel_map(head)
    t0 = time.perf_counter()
    w = keyframes.write_take(scene, head, arm, motion, 25.0, cmap, 1, "bench")
    write_s = time.perf_counter() - t0
    print(f"| write {args.minutes:g} min of motion | {frames} frames | {w.fcurves} curves | {w.keys} keys | "
          f"{write_s:.3f} s |", flush=True)

    from timar_blender.blender import demo_head

    bpy.ops.wm.read_factory_settings(use_empty=True)
    t0 = time.perf_counter()
    demo_head.build_demo_head(bpy.context)
    print(f"| build the demo head | {time.perf_counter() - t0:.3f} s |", flush=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 25, 1.0
    head = create_test_rig(bpy.context)

    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as d:
        turns = [(t, t + 4.0) for t in np.arange(0, seconds, 8.0)]
        agent_on = [(a, b) for a, b in turns]
        user_on = [(a + 4.0, b + 4.0) for a, b in turns]
        sf.write(Path(d) / "agent.wav", synth_speech(seconds, 16000, 1, agent_on), 16000)
        sf.write(Path(d) / "user.wav", synth_speech(seconds, 16000, 2, user_on), 16000)
        s = scene.timar
        s.character, s.agent_audio, s.user_audio = head, str(Path(d) / "agent.wav"), str(Path(d) / "user.wav")
        from timar_blender.blender import generate
        from timar_blender.blender.props import settings_of

        t0 = time.perf_counter()
        settings = settings_of(scene)
        req, info = generate.build_request(scene, settings)
        req.threads = args.threads
        result = job.run(req)
        gen_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        generate.write_result(bpy.context, settings, req, info, result)
        total_s = time.perf_counter() - t0
        print(f"| end to end, {args.minutes:g}-min dialogue, bundled model ({result.provider}) | "
              f"generation {gen_s:.1f} s | writing {time.perf_counter() - t1:.2f} s | total {total_s:.1f} s | "
              f"real-time factor {total_s / seconds:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
