"""The Blender layer in real Blender (the bpy module): test rig, generation, keys read back from a
saved .blend, the artist's animation kept, failures leaving the scene as it was, headless runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from blender_helpers import (
    RATE,
    ROOT,
    assignments,
    at_scene_frames,
    generated_take,
    import_bpy,
    key_points,
    new_scene,
    quaternions,
    read_keys,
    run_headless,
    same_rotations,
    write_wavs,
)
from conftest import synth_speech

bpy = import_bpy()

from timar_blender.blender import keyframes  # noqa: E402
from timar_blender.engine import job  # noqa: E402

pytestmark = pytest.mark.usefixtures("blender_addon")


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> tuple[Path, Path]:
    return write_wavs(tmp_path_factory.mktemp("audio"), 44100, "PCM_16")  # the user's is resampled on load


@pytest.fixture
def scene_with_rig(wavs):
    return new_scene(agent_audio=str(wavs[0]), user_audio=str(wavs[1]), seed=3)


def snapshot() -> dict:
    """Every action with its f-curves' keys, and every ID's action assignment."""
    out = {"actions": {}, "assigned": {}, "strips": 0}
    for a in bpy.data.actions:
        curves = []
        bags = [a] if not keyframes.SLOTTED else [cb for layer in a.layers for st in layer.strips
                                                  for cb in st.channelbags]
        for bag in bags:
            for fc in bag.fcurves:
                curves.append((fc.data_path, fc.array_index, key_points(fc).tobytes()))
        out["actions"][a.name] = sorted(curves)
    out["assigned"] = assignments([*bpy.data.objects, *bpy.data.shape_keys])
    ed = bpy.context.scene.sequence_editor
    out["strips"] = len(ed.strips if hasattr(ed, "strips") else ed.sequences) if ed else 0
    return out


def test_test_rig_is_a_complete_flame_layout(scene_with_rig) -> None:
    head = scene_with_rig.timar.character
    names = [kb.name for kb in head.data.shape_keys.key_blocks]
    assert names[0] == "Basis" and names[1:] == [f"Exp{i:03d}" for i in range(1, 51)]
    from timar_blender.blender.rig import channel_map

    cmap = channel_map(head)
    assert cmap.unmatched == [] and cmap.bones() == {"jaw": [50, 51, 52], "neck": [53, 54, 55]}


@pytest.mark.parametrize("fps", [25, 24, 30])
def test_generated_keys_survive_save_and_reload(scene_with_rig, wavs, tmp_path: Path, fps: int) -> None:
    scene = scene_with_rig
    scene.render.fps, scene.render.fps_base = fps, 1.0
    s = scene.timar
    s.start_frame = 10
    assert bpy.ops.timar.generate() == {"FINISHED"}
    out = tmp_path / "take.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(out))
    bpy.ops.wm.open_mainfile(filepath=str(out))
    head = bpy.data.objects["TIMAR Test Head"]
    rig = bpy.data.objects["TIMAR Test Head Rig"]
    # the engine's own output for the same request
    expected = generated_take(wavs[0], wavs[1], seed=3)
    assert expected.shape == (75, 56)
    offsets, values = at_scene_frames(expected, 25.0, fps)
    exp7 = read_keys(head.data.shape_keys, 'key_blocks["Exp007"].value')
    np.testing.assert_allclose(exp7[:, 0], 10 + offsets, atol=1e-4)
    np.testing.assert_allclose(exp7[:, 1], values[:, 6], atol=1e-5)
    q = quaternions(values[:, 53:56])
    neck = np.stack([read_keys(rig, 'pose.bones["neck"].rotation_quaternion', i)[:, 1] for i in range(4)], axis=1)
    same_rotations(neck, q, atol=1e-5)
    assert head.data.shape_keys.animation_data.action.name.startswith("TIMAR TIMAR Test Head seed 3")
    if bpy.app.build_options.audaspace:
        from timar_blender.blender.generate import strip_start

        starts = sorted(strip_start(st) for st in bpy.context.scene.sequence_editor.strips)
        assert starts == [10, 10]
    else:  # a Blender built without audio (the bpy 4.2 wheel): keys written, the missing strips reported
        assert "no sound strip" in bpy.context.scene.timar.last_report


def test_artists_action_is_stashed_not_overwritten(scene_with_rig) -> None:
    head = scene_with_rig.timar.character
    key = head.data.shape_keys
    key.key_blocks["Exp001"].value = 0.7
    key.key_blocks["Exp001"].keyframe_insert("value", frame=5)
    own = key.animation_data.action
    own_name = own.name
    before = snapshot()["actions"][own_name]
    assert bpy.ops.timar.generate() == {"FINISHED"}
    assert key.animation_data.action is not own
    assert snapshot()["actions"][own_name] == before  # untouched
    stash = [t for t in key.animation_data.nla_tracks if t.name.startswith("[Action Stash]")]
    assert len(stash) == 1 and stash[0].strips[0].action is own and stash[0].mute


def test_several_takes_each_get_their_own_saved_actions(scene_with_rig) -> None:
    scene_with_rig.timar.takes = 2
    assert bpy.ops.timar.generate() == {"FINISHED"}
    names = sorted(a.name for a in bpy.data.actions if a.name.startswith("TIMAR"))
    assert len(names) == 4 and any("seed 3" in n for n in names) and any("seed 4" in n for n in names)
    assert all(bpy.data.actions[n].use_fake_user for n in names)


@pytest.mark.parametrize(
    "breakage",
    ["missing_audio", "not_audio", "no_shape_keys", "broken_model", "missing_bone"],
)
def test_failures_leave_the_scene_exactly_as_it_was(scene_with_rig, tmp_path: Path, breakage: str) -> None:
    s = scene_with_rig.timar
    head = s.character
    head.data.shape_keys.key_blocks["Exp002"].keyframe_insert("value", frame=1)
    if breakage == "missing_audio":
        s.user_audio = str(tmp_path / "nowhere.wav")
    elif breakage == "not_audio":
        (tmp_path / "notes.wav").write_text("not audio")
        s.user_audio = str(tmp_path / "notes.wav")
    elif breakage == "no_shape_keys":
        bpy.ops.mesh.primitive_cube_add()
        s.character = bpy.context.active_object
    elif breakage == "broken_model":
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "manifest.json").write_text("{}")
        s.model_path = str(tmp_path / "model")
    elif breakage == "missing_bone":
        bpy.ops.timar.fill_channel_map()
        item = next(i for i in head.timar_channels if i.kind == "BONE")
        item.target = "no_such_bone"
    before = snapshot()
    if breakage == "no_shape_keys":
        assert not bpy.ops.timar.generate.poll()
    else:
        with pytest.raises(RuntimeError) as err:
            bpy.ops.timar.generate()
        expected = {"missing_audio": "nowhere.wav", "not_audio": "notes.wav", "broken_model": "manifest.json",
                    "missing_bone": "no_such_bone"}[breakage]
        assert expected in str(err.value)
    assert snapshot() == before


def test_linked_character_is_refused(scene_with_rig, wavs, tmp_path: Path) -> None:
    lib = tmp_path / "lib.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(lib))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    with bpy.data.libraries.load(str(lib), link=True) as (src, dst):
        dst.objects = [n for n in src.objects if n.startswith("TIMAR Test Head")]
    for obj in dst.objects:
        bpy.context.scene.collection.objects.link(obj)
    s = bpy.context.scene.timar
    s.character = bpy.data.objects["TIMAR Test Head"]
    s.agent_audio, s.user_audio = str(wavs[0]), str(wavs[1])
    before = snapshot()
    with pytest.raises(RuntimeError, match="linked"):
        bpy.ops.timar.generate()
    assert snapshot() == before


def test_cancel_has_nothing_to_cancel_when_idle(scene_with_rig) -> None:
    assert not bpy.ops.timar.cancel.poll()


def test_headless_single_and_batch(wavs, tmp_path: Path) -> None:
    agent, user = map(str, wavs)
    r = run_headless(["--create-test-rig", "--agent-audio", agent, "--user-audio", user, "--seed", "1",
                   "--out", str(tmp_path / "one.blend"), "--json", str(tmp_path / "one.json")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "TIMAR 100.0% done" in r.stdout
    summary = json.loads((tmp_path / "one.json").read_text())
    take = summary["dialogues"][0]["takes"][0]
    # 3 s at 25 fps written into the default 24-fps scene: frames 1..72 (2.96 s)
    assert summary["failed"] == 0 and take["frames"] == [1, 72] and take["keys"] > 0
    assert (tmp_path / "one.blend").is_file()
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([
        {"create_test_rig": True, "agent_audio": agent, "user_audio": user, "out": str(tmp_path / "a.blend")},
        {"create_test_rig": True, "agent_audio": str(tmp_path / "missing.wav"), "user_audio": user},
    ]))
    base = tmp_path / "base.blend"
    make_base = ("import bpy; bpy.ops.wm.read_factory_settings(use_empty=True); "
                 f"bpy.ops.wm.save_as_mainfile(filepath={str(base)!r})")
    subprocess.run([sys.executable, "-c", make_base], check=True, timeout=300, capture_output=True)
    r = run_headless(["--blend", str(base), "--batch", str(batch), "--json", str(tmp_path / "b.json")], tmp_path)
    assert r.returncode == 1
    assert "missing.wav" in r.stderr
    b = json.loads((tmp_path / "b.json").read_text())
    assert [d["ok"] for d in b["dialogues"]] == [True, False] and b["failed"] == 1
    assert (tmp_path / "a.blend").is_file()


def test_one_stereo_file_equals_two_mono_files(scene_with_rig, wavs, tmp_path: Path) -> None:
    agent, _ = sf.read(wavs[0], dtype="float32")
    user = synth_speech(3.0, RATE, 2, [(0.1, 1.4)])
    sf.write(tmp_path / "u.wav", user, RATE)
    sf.write(tmp_path / "both.wav", np.stack([user, agent], axis=1), RATE)  # agent on the right
    s = scene_with_rig.timar
    s.user_audio = str(tmp_path / "u.wav")
    assert bpy.ops.timar.generate() == {"FINISHED"}
    key = s.character.data.shape_keys
    mono = read_keys(key, 'key_blocks["Exp010"].value')
    s.stereo, s.agent_audio, s.agent_channel, s.user_audio = True, str(tmp_path / "both.wav"), "1", ""
    assert bpy.ops.timar.generate() == {"FINISHED"}
    np.testing.assert_array_equal(read_keys(key, 'key_blocks["Exp010"].value'), mono)


def test_user_motion_is_read_back_from_another_animated_head(scene_with_rig) -> None:
    from timar_blender.blender.generate import read_user_motion

    scene = scene_with_rig
    scene.render.fps, scene.render.fps_base = 25, 1.0
    s = scene.timar
    s.start_frame = 1
    assert bpy.ops.timar.generate() == {"FINISHED"}
    partner = s.character
    written = read_keys(partner.data.shape_keys, 'key_blocks["Exp001"].value')[:, 1]
    motion = read_user_motion(partner, scene, 1, len(written), 25.0)
    np.testing.assert_allclose(motion[:, 0], written, atol=1e-6)
    assert np.abs(motion[:, 53:56]).max() > 0  # the neck rotation came back through the bone's quaternion
    bpy.ops.timar.create_test_rig()  # a second character listens to the first
    s.user_motion_object = partner
    assert bpy.ops.timar.generate() == {"FINISHED"}
    assert s.character is not partner and s.character.data.shape_keys.animation_data.action is not None


def test_cancel_mid_generation_writes_nothing(scene_with_rig) -> None:
    """The UI path: inputs checked on the main thread, the engine on a worker thread, cancelled
    after its first turn; nothing reaches the scene (the modal timer itself needs a UI session)."""
    import threading

    from timar_blender.blender import generate
    from timar_blender.blender.props import settings_of
    from timar_blender.engine.dialogue import Cancelled

    scene = scene_with_rig
    before = snapshot()
    req, _info = generate.build_request(scene, settings_of(scene))
    cancel, seen, outcome = threading.Event(), [], {}

    def progress(frac: float, text: str) -> None:
        seen.append(text)
        if "turn 1/" in text:
            cancel.set()

    def work() -> None:
        try:
            outcome["result"] = job.run(req, progress=progress, should_cancel=cancel.is_set)
        except Cancelled as exc:
            outcome["cancelled"] = str(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(60)
    assert "cancelled" in outcome and "result" not in outcome
    assert not any("turn 3/" in t for t in seen)
    assert snapshot() == before


def test_headless_as_a_blender_python_script(wavs, tmp_path: Path) -> None:
    """`blender -b --python timar_blender/headless.py -- ...` runs the file as a script, not a module."""
    agent, user = map(str, wavs)
    env = {**os.environ, "PYTHONPATH": ""}
    r = subprocess.run([sys.executable, str(ROOT / "timar_blender" / "headless.py"), "--", "--create-test-rig",
                        "--agent-audio", agent, "--user-audio", user, "--json", str(tmp_path / "s.json")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "s.json").read_text())["dialogues"][0]["ok"]
