"""Live mode on a real PortAudio capture device, run by test_live.py in a process of its own.

PortAudio reads the ALSA configuration when sounddevice is imported, so this runs with HOME pointing
at a folder whose .asoundrc defines ``timar_wav`` (16 kHz) and ``timar_wav48`` (48 kHz): capture
devices that play raw files. It drives the engine's LiveSession and Blender's live operators on
them and writes ``results.json`` and ``results.npz`` into the folder given; the test asserts.

    python addon_tests/live_device_script.py FOLDER   (FOLDER/case.json: seed, seconds, agent_wav)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from blender_helpers import new_scene, read_keys  # noqa: E402


def run_session(session, timeout: float = 120.0) -> tuple[object, list[int], float]:
    """Poll like the UI until the session has its audio; every turn seen by poll, in order."""
    seen: list[int] = []
    t0 = time.perf_counter()
    session.start()
    while not (session.done or session.error) and time.perf_counter() - t0 < timeout:
        seen += [t.index for t in session.poll()]
        time.sleep(0.005)
    take = session.stop()
    seen += [t.index for t in session.poll()]
    return take, seen, time.perf_counter() - t0


def engine_cases(case: dict, out: dict, arrays: dict) -> None:
    from timar_blender.engine import job
    from timar_blender.engine.audio import load_audio
    from timar_blender.engine.capture import CaptureError, SoundDeviceSource
    from timar_blender.engine.dialogue import generate_dialogue, live_normalization
    from timar_blender.engine.live import LiveSession
    from timar_blender.engine.sampler import SamplingOptions

    backend = job.backend_for("")
    opts = SamplingOptions(seed=case["seed"], context_turns=case["context_turns"])
    agent = load_audio(case["agent_wav"])
    for key, device, rate in (("engine", "timar_wav", None), ("engine48", "timar_wav48", 48_000)):
        source = SoundDeviceSource(device, rate=rate)
        session = LiveSession(backend, source, opts, agent_audio=agent, max_seconds=case["seconds"])
        take, seen, elapsed = run_session(session)
        out[key] = {"device": source.name, "capture_rate": source.rate, "seen": seen, "error": take.error,
                    "elapsed": elapsed, "final": [t.index for t in take.turns if t.final]}
        arrays[f"{key}_user"], arrays[f"{key}_agent"], arrays[f"{key}_motion"] = (
            take.user_audio, take.agent_audio, take.motion)
        arrays[f"{key}_offline"] = generate_dialogue(
            backend, take.user_audio, take.agent_audio, None, opts,
            normalization=live_normalization(backend.info)).motion
    refused = {"missing": {"device": "no_such_microphone"}, "rate": {"device": "timar_wav", "rate": 768_000}}
    for key, kwargs in refused.items():
        try:
            SoundDeviceSource(**kwargs)
            out[key] = None
        except CaptureError as exc:
            out[key] = str(exc)


def blender_case(case: dict, folder: Path, out: dict, arrays: dict) -> None:
    import bpy

    import timar_blender
    from timar_blender.blender import live
    from timar_blender.blender.generate import strip_start

    timar_blender.register()
    scene = new_scene(seed=case["seed"], context_turns=case["context_turns"], start_frame=5)
    lv = scene.timar_live
    lv.device, lv.agent_audio, lv.max_seconds = "timar_wav", case["agent_wav"], case["seconds"]
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "scene.blend"))  # the WAV goes next to it
    assert bpy.ops.timar.live_start() == {"FINISHED"}
    run = live.active()
    t0 = time.perf_counter()
    ticks = 0
    while live.tick() and time.perf_counter() - t0 < 120:  # what the timer does; it ends at Stop After
        ticks += 1
        time.sleep(live.TICK)
    assert live.active() is None, "Stop After did not end the take"
    turns = run.session.turns
    out["blender"] = {"report": lv.last_report, "turns": [t.index for t in turns], "ticks": ticks,
                      "final": [t.index for t in turns if t.final], "provider": lv.provider,
                      "fps": scene.render.fps / scene.render.fps_base}
    ed = scene.sequence_editor
    strips = (ed.strips if hasattr(ed, "strips") else ed.sequences) if ed else []
    out["blender"]["strips"] = [(bpy.path.abspath(st.sound.filepath), strip_start(st)) for st in strips]
    out["blender"]["audaspace"] = bool(bpy.app.build_options.audaspace)
    wavs = sorted(folder.glob("scene_live_*.wav"))
    out["blender"]["wavs"] = [str(w) for w in wavs]
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "take.blend"))
    bpy.ops.wm.open_mainfile(filepath=str(folder / "take.blend"))
    head = bpy.data.objects["TIMAR Test Head"]
    rig = bpy.data.objects["TIMAR Test Head Rig"]
    key = head.data.shape_keys
    exp = [read_keys(key, f'key_blocks["Exp{i:03d}"].value') for i in range(1, 51)]
    arrays["keys_frames"] = exp[0][:, 0]
    arrays["keys_exp"] = np.stack([e[:, 1] for e in exp], axis=1)
    arrays["keys_neck"] = np.stack(
        [read_keys(rig, 'pose.bones["neck"].rotation_quaternion', i)[:, 1] for i in range(4)], axis=1)
    out["blender"]["action"] = key.animation_data.action.name


def main() -> int:
    folder = Path(sys.argv[1])
    case = json.loads((folder / "case.json").read_text())
    import sounddevice

    out: dict = {"devices": [d["name"] for d in sounddevice.query_devices()]}
    arrays: dict = {}
    engine_cases(case, out, arrays)
    blender_case(case, folder, out, arrays)
    (folder / "results.json").write_text(json.dumps(out, indent=1))
    np.savez(folder / "results.npz", **arrays)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    import os

    os._exit(code)  # no interpreter teardown: bpy and PortAudio threads can crash it after the work is saved
