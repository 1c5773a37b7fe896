"""Live-mode latency (printed, not asserted), with the bundled model and the bpy module:

    .venv/bin/python scripts/benchmark_live.py [--seconds 30] [--device NAME] [--no-blender]

A microphone stand-in plays a synthetic dialogue's user track in real time (20-ms blocks, as
PortAudio delivers them), or ``--device`` captures from a real one. Live mode runs as in Blender:
the session's worker generates each 1-s turn, and a loop doing what the panel's timer does (every
10 ms: poll, show the frame due on the test rig's shape keys and bones) applies it. Latency of a turn
= from the moment its last sample was captured to its frames being available / applied. One turn
is the algorithmic minimum (a turn's frames need the whole turn's audio); the goal is < 50 ms on top.
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
for var, sub in (("BLENDER_USER_RESOURCES", "blender"), ("XDG_CACHE_HOME", "cache")):
    os.environ.setdefault(var, os.path.join(_home, sub))

GOAL_MS = 50.0


def _row(name: str, st: dict) -> str:
    return f"| {name} | {st['n']} | {st['median_ms']} | {st['p95_ms']} | {st['max_ms']} |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="length of the live take")
    p.add_argument("--device", help="capture from this microphone instead of the real-time stand-in")
    p.add_argument("--context-turns", type=int, default=7)
    p.add_argument("--no-blender", action="store_true", help="engine only: frames 'applied' when the loop sees them")
    args = p.parse_args()
    import numpy as np

    from model_export.synthetic import synth_speech
    from timar_blender.engine import job
    from timar_blender.engine.capture import SoundDeviceSource, WaveSource
    from timar_blender.engine.live import LiveSession, latency_stats
    from timar_blender.engine.sampler import SamplingOptions

    rate = 16_000
    spans = [(t, t + 3.0) for t in np.arange(0.3, args.seconds, 6.0)]
    user = synth_speech(args.seconds + 1, rate, 1, spans)
    agent = synth_speech(args.seconds + 1, rate, 2, [(a + 3.2, b + 2.8) for a, b in spans])
    source = SoundDeviceSource(args.device) if args.device else WaveSource(user, rate, realtime=True, name="stand-in")
    backend = job.backend_for("")
    opts = SamplingOptions(context_turns=args.context_turns, seed=0)
    print(f"model {backend.bundle.folder.name}, {backend.provider} ({backend.choice.reason}), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; source {source.name} at {source.rate} Hz; "
          f"context {args.context_turns} turns; {args.seconds:g} s", flush=True)
    t_stop = 0.0
    if args.no_blender:
        session = LiveSession(backend, source, opts, agent_audio=agent, max_seconds=args.seconds)
        session.start()
        while True:
            finished = session.done or session.error
            now = time.perf_counter()
            for t in session.poll():
                session.mark_applied(t.index, now)
            if finished:
                break
            time.sleep(0.01)
        t0 = time.perf_counter()
        take = session.stop()
        t_stop = time.perf_counter() - t0
        turns, report = take.turns, take.error or ""
    else:
        import bpy
        import soundfile as sf

        import timar_blender
        from timar_blender.blender import live

        timar_blender.register()
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.timar.create_test_rig()
        scene = bpy.context.scene
        scene.timar.context_turns = args.context_turns
        agent_wav = Path(_home) / "agent.wav"
        sf.write(agent_wav, agent, rate, subtype="FLOAT")
        bpy.ops.wm.save_as_mainfile(filepath=str(Path(_home) / "live.blend"))
        scene.timar_live.agent_audio = str(agent_wav)
        scene.timar_live.max_seconds = args.seconds
        run = live.start(bpy.context, source)
        apply_s = []
        while True:  # what the timer does (it does not fire in background mode); Stop After ends it
            before = run.last_frame
            t0 = time.perf_counter()
            alive = live.tick()
            dt = time.perf_counter() - t0
            if not alive:
                t_stop = dt
                break
            if run.last_frame != before:
                apply_s.append(dt)
            time.sleep(live.TICK)
        out = live.last_result()
        turns, report = out["take"].turns, out["report"]
        print(f"showing one frame on the rig (50 shape keys, 2 bones): median {np.median(apply_s) * 1000:.2f} ms")
    live_turns = [t for t in turns if not t.final]
    avail = latency_stats([t.available - t.audio_end for t in live_turns])
    applied = latency_stats([t.applied - t.audio_end for t in live_turns if t.applied is not None])
    print("\n| latency after the end of a turn's audio | turns | median ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    print(_row("frames available (worker)", avail))
    print(_row("frames applied (timer)", applied))
    what = "last turn" if args.no_blender else "last turn, WAV, keys"
    print(f"\nend of the take ({what}): {t_stop * 1000:.0f} ms; {report}")
    ok = applied["p95_ms"] is not None and applied["p95_ms"] < GOAL_MS
    print(f"goal: 1 s (one turn, algorithmic) + < {GOAL_MS:.0f} ms -> measured 1 s + {applied['median_ms']} ms median, "
          f"{applied['p95_ms']} ms p95: {'met' if ok else 'NOT met'}")
    sys.stdout.flush()
    os._exit(0)  # no teardown: the bpy module can crash there after the work is done


if __name__ == "__main__":
    main()
