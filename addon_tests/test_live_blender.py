"""Blender's live mode in process (the bpy module, background): Start, the timer's tick by hand, Stop,
with stand-in sources. The real capture device is exercised by test_live.py in a subprocess."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from blender_helpers import RATE, assignments, at_scene_frames, import_bpy, new_scene, read_keys
from conftest import synth_speech

bpy = import_bpy()

from timar_blender.blender import live  # noqa: E402
from timar_blender.engine import job, settings  # noqa: E402
from timar_blender.engine.audio import load_audio  # noqa: E402
from timar_blender.engine.capture import WaveSource  # noqa: E402
from timar_blender.engine.dialogue import generate_dialogue, live_normalization  # noqa: E402
from timar_blender.engine.take import TakePipeline  # noqa: E402

pytestmark = pytest.mark.usefixtures("blender_addon")


@pytest.fixture
def scene(tmp_path: Path):
    sc = new_scene(seed=2, context_turns=3)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    yield sc
    if live.active() is not None:
        live.finish(write=False)


@pytest.fixture(scope="module")
def user() -> np.ndarray:
    return synth_speech(3.0, RATE, 21, [(0.2, 1.2), (1.6, 2.8)])


def state() -> dict:
    """Actions with their keys, assignments, and every driven value (what live mode may touch)."""
    out = {"actions": sorted(a.name for a in bpy.data.actions), "values": {}, "assigned": {}}
    head = bpy.data.objects["TIMAR Test Head"]
    for kb in head.data.shape_keys.key_blocks:
        out["values"][kb.name] = (round(kb.value, 6), kb.slider_min, kb.slider_max)
    for pb in bpy.data.objects["TIMAR Test Head Rig"].pose.bones:
        out["values"][pb.name] = tuple(round(v, 6) for v in pb.rotation_quaternion)
    out["assigned"] = assignments([head.data.shape_keys, bpy.data.objects["TIMAR Test Head Rig"]])
    return out


def tick_until(cond, timeout: float = 60.0) -> None:
    t0 = time.perf_counter()
    while not cond() and time.perf_counter() - t0 < timeout:
        if not live.tick():
            return
        time.sleep(live.TICK)


def live_reference(captured: np.ndarray, seed: int):
    """Offline generation on the captured audio with what the scene used: its seed and context over
    the bundle's recommended options; the raw frames and those settings."""
    be = job.backend_for("")
    used = settings.resolve({"seed": seed, "context_turns": 3}, settings.read_recommended(job.BUNDLED_MODEL))
    raw = generate_dialogue(be, captured, np.zeros_like(captured), None, used.sampling_options(),
                            normalization=live_normalization(be.info)).motion
    return raw, used


def test_stop_keeps_the_take_next_to_the_blend_and_stashes_the_artists_action(scene, user, tmp_path) -> None:
    head = scene.timar.character
    key = head.data.shape_keys
    key.key_blocks["Exp003"].value = 0.4
    key.key_blocks["Exp003"].keyframe_insert("value", frame=1)
    own = key.animation_data.action
    run = live.start(bpy.context, WaveSource(user, RATE, realtime=True))
    assert scene.timar_live.running and "CPU" in scene.timar_live.provider + "CUDA"
    tick_until(lambda: run.session.captured_seconds >= 1.6)  # real time: past the first turn
    assert run.last_frame is not None and run.session.turns[0].applied is not None  # shown live
    assert "latency" in scene.timar_live.latency
    assert bpy.ops.timar.live_stop() == {"FINISHED"}
    assert live.active() is None and not scene.timar_live.running
    report = scene.timar_live.last_report
    assert "next to the .blend" in report and "take written" in report
    wav = next(tmp_path.glob("scene_live_*.wav"))
    captured = load_audio(wav)
    assert 1.6 <= len(captured) / RATE < 3.0
    np.testing.assert_array_equal(captured, user[: len(captured)])
    raw, used = live_reference(captured, seed=2)
    offsets, values = at_scene_frames(TakePipeline.from_settings(used).motion(raw), 25.0, 24.0)
    got = read_keys(key, 'key_blocks["Exp010"].value')
    np.testing.assert_allclose(got[:, 0], scene.timar.start_frame + offsets, atol=1e-4)
    np.testing.assert_allclose(got[:, 1], values[:, 9], atol=1e-5)
    assert key.animation_data.action is not own
    stash = [t for t in key.animation_data.nla_tracks if t.name.startswith("[Action Stash]")]
    assert len(stash) == 1 and stash[0].strips[0].action is own


def test_device_gone_mid_take_writes_what_was_captured(scene, user) -> None:
    source = WaveSource(user[:30_000], RATE, realtime=False, fail_at_end="the microphone 'USB' stopped (unplugged?)")
    live.start(bpy.context, source)
    tick_until(lambda: False)  # the timer ends live mode by itself on the error
    assert live.active() is None
    report = scene.timar_live.last_report
    assert report.startswith("the microphone 'USB' stopped") and "1.9 s captured" in report and "take written" in report
    got = read_keys(scene.timar.character.data.shape_keys, 'key_blocks["Exp001"].value')
    assert len(got) == 45  # 30000 samples = 47 model frames = 1.84 s: 45 frames at 24 fps


def test_unsaved_file_saves_the_audio_in_a_user_folder(scene, user, tmp_path, monkeypatch) -> None:
    new_scene()
    monkeypatch.setattr(bpy.utils, "user_resource", lambda kind, path="", create=False: str(tmp_path / "user" / path))
    (tmp_path / "user" / "timar_live").mkdir(parents=True)
    bpy.context.scene.timar_live.max_seconds = 1.0
    live.start(bpy.context, WaveSource(user, RATE, realtime=False))
    tick_until(lambda: False)
    report = bpy.context.scene.timar_live.last_report
    assert "in Blender's user folder" in report and "take written" in report
    assert len(list((tmp_path / "user" / "timar_live").glob("untitled_live_*.wav"))) == 1


def test_a_failed_write_leaves_the_scene_as_it_was_and_keeps_the_audio(scene, user, tmp_path) -> None:
    before = state()
    run = live.start(bpy.context, WaveSource(user, RATE, realtime=False))
    tick_until(lambda: len(run.session.turns) >= 2)
    assert state()["values"] != before["values"]  # frames were shown
    bpy.ops.timar.fill_channel_map()  # the map now sends channel 0 to a key the head lacks
    scene.timar.character.timar_channels[0].target = "NoSuchKey"
    out = live.finish()
    assert "nothing was written" in out["report"] and "NoSuchKey" in out["report"]
    assert Path(out["wav"]).is_file()
    assert state() == before


def test_nothing_captured_writes_nothing(scene) -> None:
    before = state()
    live.start(bpy.context, WaveSource(np.zeros(0, np.float32), RATE, fail_at_end="device vanished"))
    tick_until(lambda: False)
    assert "nothing was captured" in scene.timar_live.last_report and state() == before


def test_start_refuses_a_missing_microphone_clearly(scene) -> None:
    scene.timar_live.device = "no_such_microphone"
    before = state()
    with pytest.raises(RuntimeError, match=r"no_such_microphone|no microphone|PortAudio|sounddevice module is missing"):
        bpy.ops.timar.live_start()
    assert live.active() is None and state() == before
    with pytest.raises(live.LiveError, match="already running"):
        live.start(bpy.context, WaveSource(np.zeros(RATE, np.float32), RATE))
        live.start(bpy.context, WaveSource(np.zeros(RATE, np.float32), RATE))


def test_arkit_demo_head_listens_live_and_keeps_the_take(user, tmp_path) -> None:
    """An ARKit character: live frames go through the retarget map, the take through Generate's
    ARKit writer; its stored FLAME motion is the offline generation on the captured audio."""
    from timar_blender.blender.export import take_motion

    sc = new_scene("add_demo_head", seed=4, context_turns=3, add_sound=False)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "demo.blend"))
    head = sc.timar.character
    sc.timar_live.max_seconds = 2.0
    run = live.start(bpy.context, WaveSource(user, RATE, realtime=False))
    tick_until(lambda: False)
    assert live.active() is None and "take written" in sc.timar_live.last_report
    assert run.last_frame is not None  # a frame was shown through the retarget map
    motion, fps, meta = take_motion(head)
    assert meta["rig"] == "ARKIT" and meta["seed"] == 4 and fps == 25.0
    captured = load_audio(next(tmp_path.glob("demo_live_*.wav")))
    raw, used = live_reference(captured, seed=4)
    np.testing.assert_allclose(motion, TakePipeline.from_settings(used).motion(raw), atol=1e-6)
    assert run.pipeline.arkit is not None
    assert run.cmap.bones() == {"head": [len(run.cmap.targets) - 3 + i for i in range(3)]}


@pytest.mark.parametrize(
    ("add", "smoothing"), [("create_test_rig", 0.0), ("add_demo_head", 0.0), ("add_demo_head", 2.0)]
)
def test_live_display_shows_the_take_that_stop_writes(user, tmp_path, add, smoothing) -> None:
    """The rows live mode shows (strength, smoothing, ARKit retarget and blinks: the engine's take
    pipeline on the frames so far) equal the keys Stop writes, read back from the scene at 25 fps;
    with smoothing, all but each turn's last radius frames (their window reaches into the future)."""
    sc = new_scene(add, seed=6, context_turns=2, add_sound=False, strength_jaw=1.5, smoothing=smoothing)
    sc.render.fps, sc.render.fps_base = 25, 1.0  # keys at the model's frames: no resampling in between
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "live.blend"))
    key = sc.timar.character.data.shape_keys
    sc.timar_live.max_seconds = 2.5
    run = live.start(bpy.context, WaveSource(user, RATE, realtime=False))
    tick_until(lambda: False)
    assert "take written" in sc.timar_live.last_report, sc.timar_live.last_report
    start = sc.timar.start_frame
    columns = [(c, t) for c, t in sorted(run.cmap.targets.items()) if t.kind == "SHAPE_KEY"]
    keys = np.stack([read_keys(key, f'key_blocks["{t.name}"].value')[:, 1] for _, t in columns], axis=1)
    radius = run.pipeline.smoothing_radius
    assert (radius > 0) == (smoothing > 0)
    compared = 0
    for k in range(len(run.session.turns)):
        rows = live.display_rows(run, k)
        f0 = sum(len(t.motion) for t in run.session.turns[:k])
        n = max(0, min(len(rows), len(keys) - f0) - radius)  # the take ends at the audio's end
        shown = np.stack([rows[:n, c] * t.gain for c, t in columns], axis=1)
        np.testing.assert_allclose(shown, keys[f0 : f0 + n], atol=1e-6, err_msg=f"turn {k}")
        compared += n
    assert compared >= len(keys) - radius * len(run.session.turns) and compared > 40
    assert read_keys(key, f'key_blocks["{columns[0][1].name}"].value')[0, 0] == start


def test_one_busy_check_for_generate_and_live_mode(scene, user) -> None:
    """Generate cannot start while live mode runs, and live mode cannot start while a generation runs."""
    from timar_blender.blender.operators import busy

    s = scene.timar
    s.agent_audio = s.user_audio = str(scene.render.filepath or "x.wav")  # poll checks the fields only
    assert busy(bpy.context) == "" and bpy.ops.timar.generate.poll() and bpy.ops.timar.live_start.poll()
    live.start(bpy.context, WaveSource(user, RATE, realtime=False))
    assert busy(bpy.context) == "Live mode is running"
    assert not bpy.ops.timar.generate.poll() and not bpy.ops.timar.live_start.poll()
    live.finish(write=False)
    s.running = True
    assert busy(bpy.context) == "A generation is running" and not bpy.ops.timar.live_start.poll()
    s.running = False
