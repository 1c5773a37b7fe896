"""Bad input through Blender (the bpy module, one process): options, batch files, rigs, mapping presets
and retarget maps, and the writer. Every case runs the headless entry point in-process on a saved
scene and asserts its exact outcome: a one-line error naming the flag, key, file or dialogue (and
the exit code), or a correct take read back from the saved .blend. For every refusal, the scene in
memory equals the input scene and no input file changed (the .blend, the audio, the presets, the
batch file)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from bad_input_helpers import assert_one_line, pcm16_wav, sound, speech, tree_state, write
from blender_helpers import import_bpy, key_points, new_scene

bpy = import_bpy()

from timar_blender import headless  # noqa: E402
from timar_blender.blender import keyframes  # noqa: E402
from timar_blender.engine.arkit import default_retarget_map  # noqa: E402

pytestmark = pytest.mark.usefixtures("blender_addon")
FLAME_HEAD, DEMO_HEAD = "TIMAR Test Head", "TIMAR Demo Head"


# ----------------------------------------------------------------------------- inputs and scene state

@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Audio, scenes, presets and maps, written once; every case treats them as read-only inputs."""
    d = tmp_path_factory.mktemp("inputs")
    sound(d / "agent.wav", speech(2.0, 1))
    sound(d / "user.wav", speech(2.0, 2))
    sound(d / "stereo.wav", np.stack([speech(2.0, 1), speech(2.0, 2)], 1))
    sound(d / "six.wav", np.tile(speech(2.0, 3)[:, None], (1, 6)) / 6)
    write(d / "rate1.wav", pcm16_wav(1, speech(3.0, 4)))
    # FLAME scene: the test rig, a mesh without shape keys, a mesh with unrelated shape keys
    new_scene("create_test_rig")
    bpy.ops.mesh.primitive_cube_add()
    bpy.context.active_object.name = "Plain"
    bpy.ops.mesh.primitive_cube_add()
    odd = bpy.context.active_object
    odd.name = "Odd"
    odd.shape_key_add(name="Basis")
    odd.shape_key_add(name="Smile")
    bpy.ops.wm.save_as_mainfile(filepath=str(d / "flame.blend"))
    # the same rig with a channel map that maps only two of the neck's three channels: the writer
    # fails after keying the shape keys (a rig with no animation before)
    head = bpy.data.objects[FLAME_HEAD]
    bpy.context.view_layer.objects.active = head
    assert bpy.ops.timar.fill_channel_map() == {"FINISHED"}
    head.timar_channels[55].kind = "NONE"
    bpy.ops.wm.save_as_mainfile(filepath=str(d / "partial_map.blend"))
    for item in head.timar_channels:  # gains of 100 on the expression keys: values past the slider range
        if item.kind == "SHAPE_KEY":
            item.gain = 100.0
    head.timar_channels[55].kind = "BONE"
    bpy.ops.wm.save_as_mainfile(filepath=str(d / "gain100.blend"))
    new_scene("add_demo_head")
    bpy.ops.wm.save_as_mainfile(filepath=str(d / "arkit.blend"))
    good_map = default_retarget_map().to_dict()
    (d / "map_ok.json").write_text(json.dumps(good_map))
    return d


def scene_state() -> dict:
    """What a take could change: actions and their keys, assignments, NLA tracks, animation data
    present or not, shape-key slider ranges, the frame range, strips, objects."""
    out: dict = {"actions": {}, "ids": {}, "sliders": {}, "objects": sorted(o.name for o in bpy.data.objects)}
    for a in bpy.data.actions:
        bags = [a] if not keyframes.SLOTTED else [cb for layer in a.layers for st in layer.strips
                                                  for cb in st.channelbags]
        out["actions"][a.name] = sorted((fc.data_path, fc.array_index, key_points(fc).tobytes())
                                        for bag in bags for fc in bag.fcurves)
    for idb in [*bpy.data.objects, *bpy.data.shape_keys]:
        ad = idb.animation_data
        out["ids"][idb.name] = None if ad is None else (ad.action.name if ad.action else None, len(ad.nla_tracks))
    for key in bpy.data.shape_keys:
        for kb in key.key_blocks:
            out["sliders"][f"{key.name}/{kb.name}"] = (kb.slider_min, kb.slider_max, kb.value)
    scene = bpy.context.scene
    ed = scene.sequence_editor
    strips = (ed.strips if hasattr(ed, "strips") else ed.sequences) if ed else []
    out["frames"] = (scene.frame_start, scene.frame_end, len(strips))
    return out


def base_state(blend: Path) -> dict:
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    return scene_state()


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = headless.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def audio(inputs: Path) -> list:
    return ["--agent-audio", inputs / "agent.wav", "--user-audio", inputs / "user.wav"]


def refused(inputs: Path, blend: str, args: list, capsys, code: int, *names: str, message: str,
            extra_inputs: tuple[Path, ...] = ()) -> str:
    """Run a case that must be refused: exit ``code``, one error line matching ``message`` and naming
    ``names``, the scene in memory as the input scene, no input file changed. Returns the line."""
    base = inputs / blend
    expected = base_state(base)
    files = tree_state(inputs, *extra_inputs)
    rc, _, err = run(["--blend", base, *args], capsys)
    assert rc == code, err
    lines = [ln for ln in err.splitlines() if ln.startswith(("error:", "TIMAR error:"))]
    assert len(lines) == 1, err
    assert_one_line(lines[0], *names)
    assert re.search(message, lines[0]), lines[0]
    assert scene_state() == expected
    assert tree_state(inputs, *extra_inputs) == files
    return lines[0]


def take_keys(blend: Path, obj: str) -> tuple[np.ndarray, dict]:
    """Every key value the take wrote on ``obj``'s shape keys and armature, read back from ``blend``."""
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    head = bpy.data.objects[obj]
    values, frames = [], {}
    for idb in (head.data.shape_keys, head.parent):
        if idb is None or idb.animation_data is None or idb.animation_data.action is None:
            continue
        from blender_helpers import assigned_fcurves

        for fc in assigned_fcurves(idb):
            k = key_points(fc)
            values.append(k[:, 1])
            frames[(fc.data_path, fc.array_index)] = (k[0, 0], k[-1, 0], len(k))
    return np.concatenate(values), frames


# ----------------------------------------------------------------------------- options (command line)

OPTION_REFUSED = {
    "temperature_inf": (["--temperature", "inf"], "--temperature", "must be a finite number"),
    "strength_jaw_nan": (["--strength-jaw", "nan"], "--strength-jaw", "must be a finite number"),
    "cfg_1e30": (["--cfg", "1e30"], "--cfg", r"outside its range \[1, 10\]"),
    "cfg_negative": (["--cfg", "-5"], "--cfg", "outside its range"),
    "smoothing_1e6": (["--smoothing", "1e6"], "--smoothing", r"outside its range \[0, 25\]"),
    "smoothing_nan": (["--smoothing", "nan"], "--smoothing", "must be a finite number"),
    "seed_negative": (["--seed", "-1"], "--seed", "outside its range"),
    "takes_0": (["--takes", "0"], "--takes", r"outside its range \[1, 16\]"),
    "context_turns_100": (["--context-turns", "100"], "--context-turns", "outside its range"),
    "temperature_negative": (["--temperature", "-1"], "--temperature", r"outside its range \[0, 5\]"),
    "start_frame_1e8": (["--start-frame", "100000000"], "--start-frame", "outside its range"),
    "strength_head_huge": (["--strength-head", "1e300"], "--strength-head", "outside its range"),
}


@pytest.mark.parametrize("kind", sorted(OPTION_REFUSED))
def test_out_of_range_option_is_refused_naming_the_flag(kind: str, inputs: Path, tmp_path: Path, capsys) -> None:
    args, name, message = OPTION_REFUSED[kind]
    out = tmp_path / "take.blend"
    refused(inputs, "flame.blend", [*audio(inputs), "--character", FLAME_HEAD, *args, "--out", out], capsys, 2,
            "command line", name, message=message)
    assert not out.exists()


@pytest.mark.parametrize(("kind", "args", "code", "names", "message"), [
    ("agent_channel_without_stereo", ["--agent-channel", "1"], 1, ["--agent-channel"], "stereo is off"),
    ("context_beyond_the_model", ["--context-turns", "40"], 1, ["context_turns"], r"0\.\.7|at most 7|max"),
    ("last_frame_past_maxframe", ["--start-frame", "1048550"], 1, ["Blender's last frame"], "earlier start frame"),
])
def test_option_refused_once_the_take_is_known(kind, args, code, names, message, inputs, tmp_path, capsys) -> None:
    out = tmp_path / "take.blend"
    refused(inputs, "flame.blend", [*audio(inputs), "--character", FLAME_HEAD, *args, "--out", out], capsys, code,
            *names, message=message)
    assert not out.exists()


@pytest.mark.parametrize(("kind", "args"), [
    ("largest_smoothing", ["--smoothing", "25"]),
    ("largest_start_frame_that_fits", ["--start-frame", str(1_048_574 - 50)]),
    ("negative_start_frame", ["--start-frame", "-500"]),
    ("zero_strengths", ["--strength-expression", "0", "--strength-jaw", "0", "--strength-head", "0"]),
    ("stereo_right_channel", ["--stereo", "--agent-channel", "1"]),
])
def test_edge_options_give_a_correct_take(kind: str, args: list, inputs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "take.blend"
    agent = ["--agent-audio", inputs / "stereo.wav"] if "--stereo" in args else audio(inputs)
    rc, _, err = run(["--blend", inputs / "flame.blend", *agent, "--character", FLAME_HEAD, *args, "--out", out],
                     capsys)
    assert rc == 0, err
    values, frames = take_keys(out, FLAME_HEAD)
    assert np.isfinite(values).all() and np.abs(values).max() <= 10
    start = int(args[args.index("--start-frame") + 1]) if "--start-frame" in args else 1
    fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    n = int(np.floor(49 / 25 * fps + 1e-6)) + 1  # 2 s of motion at 25 fps, resampled to the scene's rate
    assert frames[('key_blocks["Exp001"].value', 0)] == (start, start + n - 1, n)  # each key on its own frame
    if kind == "zero_strengths":
        assert np.abs(values).max() < 1e-6 or np.allclose(values[values != 0], 1.0)  # quaternion w stays 1


# ----------------------------------------------------------------------------- audio through Blender

@pytest.mark.parametrize(("kind", "agent", "extra", "name", "message"), [
    ("six_channels_as_stereo", "six.wav", ["--stereo"], "six.wav", "has 6 channels"),
    ("header_rate_1hz", "rate1.wav", [], "rate1.wav", "sample rate 1 Hz"),
    ("missing_agent_audio", "nope.wav", [], "nope.wav", "agent audio file not found"),
])
def test_bad_audio_through_blender(kind, agent, extra, name, message, inputs: Path, tmp_path: Path, capsys) -> None:
    args = ["--agent-audio", inputs / agent, "--user-audio", inputs / "user.wav", *extra]
    refused(inputs, "flame.blend", [*args, "--character", FLAME_HEAD, "--out", tmp_path / "t.blend"], capsys, 1,
            name, message=message)


# ----------------------------------------------------------------------------- rigs and the writer

@pytest.mark.parametrize(("kind", "blend", "args", "names", "message"), [
    ("character_not_in_scene", "flame.blend", ["--character", "Nobody"], ["Nobody"], "not found in the scene"),
    ("mesh_without_shape_keys", "flame.blend", ["--character", "Plain"], ["Plain"], "has no shape keys"),
    ("mesh_without_flame_keys", "flame.blend", ["--character", "Odd", "--rig-type", "FLAME"], ["Odd"],
     "none of the 50 FLAME expression shape keys"),
    ("flame_rig_as_arkit", "flame.blend", ["--character", FLAME_HEAD, "--rig-type", "ARKIT"], [FLAME_HEAD],
     "no ARKit-named shape keys"),
    ("user_motion_object_missing", "flame.blend", ["--character", FLAME_HEAD, "--user-motion-object", "Ghost"],
     ["Ghost"], "not found in the scene"),
    ("gain_100_past_the_slider_range", "gain100.blend", ["--character", FLAME_HEAD], ["Exp0"],
     r"beyond Blender's shape-key range \+-10"),
    ("failure_after_keying_on_a_rig_never_animated", "partial_map.blend", ["--character", FLAME_HEAD], ["neck"],
     "needs 3 rotation channels"),
])
def test_rig_problems_leave_the_scene_as_it_was(kind, blend, args, names, message, inputs, tmp_path, capsys) -> None:
    refused(inputs, blend, [*audio(inputs), *args, "--out", tmp_path / "t.blend"], capsys, 1, *names,
            message=message)
    if kind.startswith("failure_after_keying"):  # the rollback left no empty animation data behind
        head = bpy.data.objects[FLAME_HEAD]
        assert head.data.shape_keys.animation_data is None and head.parent.animation_data is None


# ----------------------------------------------------------------------------- presets and retarget maps

def _preset(channels: dict) -> dict:
    return {"format": "timar-arkit-mapping", "version": 1, "channels": channels}


def _map(**change) -> dict:
    d = default_retarget_map().to_dict()
    d.update(change)
    return d


def _rest(value: float) -> list:
    rest = default_retarget_map().rest.tolist()
    rest[54] = value
    return rest


PRESET_OR_MAP_REFUSED = {
    "preset_gain_1e300": ("--mapping-preset", _preset({"jawOpen": {"target": "jawOpen", "gain": 1e300}}),
                          r"'gain' 1e\+300 is outside \[-100, 100\]"),
    "preset_clamp_inverted": ("--mapping-preset", _preset({"jawOpen": {"target": "jawOpen", "clamp": [1, 0]}}),
                              "clamp min 1 is above max 0"),
    "preset_clamp_infinite": ("--mapping-preset", '{"format": "timar-arkit-mapping", "version": 1, "channels": '
                              '{"jawOpen": {"target": "jawOpen", "clamp": [-Infinity, Infinity]}}}',
                              "'clamp' values must be finite"),
    "preset_not_json": ("--mapping-preset", "{oops", "not valid JSON"),
    "preset_nested_deep": ("--mapping-preset", "[" * 50_000 + "]" * 50_000, "not valid JSON|must be a JSON object"),
    "preset_wrong_format": ("--mapping-preset", {"format": "something else", "version": 1}, "not a mapping preset"),
    "preset_target_missing": ("--mapping-preset", _preset({"jawOpen": {"target": "noSuchKey"}}),
                              "drives shape key 'noSuchKey'"),
    "preset_two_on_one_key": ("--mapping-preset", _preset({"jawOpen": {"target": "jawOpen"},
                                                           "mouthClose": {"target": "jawOpen"}}),
                              "both drive shape key 'jawOpen'"),
    "preset_not_arkit_name": ("--mapping-preset", _preset({"grin": {"target": "jawOpen"}}),
                              "'grin' is not an ARKit channel"),
    "map_rest_1e308": ("--retarget-map", _map(rest=_rest(1e308)), r"'rest' holds 1e\+308"),
    "map_bias_nan": ("--retarget-map", _map(bias=[math.nan, *default_retarget_map().bias.tolist()[1:]]),
                     "'bias' contains NaN or infinite values"),
    "map_weights_wrong_shape": ("--retarget-map", _map(weights=[[0.0] * 55] * 52),
                                r"'weights' has shape \(52, 55\), expected \(52, 56\)"),
    "map_version_2": ("--retarget-map", _map(version=2), "unsupported retarget map version 2"),
    "map_outputs_not_a_list": ("--retarget-map", _map(outputs=5), "'outputs' must list the 52 ARKit names"),
    "map_missing": ("--retarget-map", None, "cannot read the retarget map"),
}


@pytest.mark.parametrize("kind", sorted(PRESET_OR_MAP_REFUSED))
def test_bad_preset_or_map_is_refused_by_file(kind: str, inputs: Path, tmp_path: Path, capsys) -> None:
    flag_name, content, message = PRESET_OR_MAP_REFUSED[kind]
    path = tmp_path / f"{kind}.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    refused(inputs, "arkit.blend", [*audio(inputs), "--character", DEMO_HEAD, flag_name, path,
                                    "--out", tmp_path / "t.blend"], capsys, 1, path.name, message=message,
            extra_inputs=(tmp_path,))


def test_preset_at_its_limits_gives_a_correct_take(inputs: Path, tmp_path: Path, capsys) -> None:
    preset = _preset({"jawOpen": {"target": "jawOpen", "gain": 100.0, "clamp": [-10, 10]},
                      "mouthClose": {"target": "mouthClose", "gain": -100.0, "clamp": [0, 1]}})
    (tmp_path / "p.json").write_text(json.dumps(preset))
    out = tmp_path / "take.blend"
    rc, _, err = run(["--blend", inputs / "arkit.blend", *audio(inputs), "--character", DEMO_HEAD,
                      "--mapping-preset", tmp_path / "p.json", "--out", out], capsys)
    assert rc == 0, err
    bpy.ops.wm.open_mainfile(filepath=str(out))
    from blender_helpers import read_keys

    key = bpy.data.objects[DEMO_HEAD].data.shape_keys
    jaw = read_keys(key, 'key_blocks["jawOpen"].value')[:, 1]
    close = read_keys(key, 'key_blocks["mouthClose"].value')[:, 1]
    assert np.isfinite(jaw).all() and jaw.min() >= 0 and jaw.max() <= 10 and jaw.max() > 1  # gain 100 shows
    assert np.all(close == 0)  # negative gain, clamped at 0


# ----------------------------------------------------------------------------- batch files

def _batch(tmp_path: Path, entries: object, raw: str | None = None) -> Path:
    path = tmp_path / "batch.json"
    path.write_text(raw if raw is not None else json.dumps(entries))
    return path


def _entry(inputs: Path, out: Path | str | None, **more) -> dict:
    e = {"agent_audio": str(inputs / "agent.wav"), "user_audio": str(inputs / "user.wav"), "character": FLAME_HEAD}
    if out is not None:
        e["out"] = str(out) if isinstance(out, Path) else out
    return {**e, **more}


BATCH_REFUSED_UPFRONT = {
    "not_json": (lambda i, t: _batch(t, None, "[{"), [], "batch.json", "Expecting"),
    "an_object_not_a_list": (lambda i, t: _batch(t, {"agent_audio": "a.wav"}), [], "batch.json",
                             "expected a JSON list of objects"),
    "list_with_a_number": (lambda i, t: _batch(t, [_entry(i, t / "a.blend"), 5]), [], "batch.json",
                           "expected a JSON list of objects"),
    "nested_deep": (lambda i, t: _batch(t, None, "[" * 100_000 + "]" * 100_000), [], "batch.json",
                    "recursion|expected a JSON list"),
    "missing_file": (lambda i, t: t / "none.json", [], "none.json", "No such file"),
    "two_dialogues_one_out": (lambda i, t: _batch(t, [_entry(i, t / "same.blend"), _entry(i, t / "same.blend")]),
                              [], "[dialogue 2]", r"out: '.*same\.blend' is also written by dialogue 1"),
    "out_is_the_input_scene": (lambda i, t: _batch(t, [_entry(i, t / "a.blend"), _entry(i, i / "flame.blend")]),
                               [], "[dialogue 2]", r"out: .* is the input scene \(--blend\)"),
    "out_not_text": (lambda i, t: _batch(t, [_entry(i, 5)]), [], "[dialogue 1]", "out: must be a file name, got 5"),
    "export_pattern_unknown_field": (lambda i, t: _batch(t, [_entry(i, t / "a.blend")]),
                                     ["--export-flame", "{name}_{x}.npz"], "--export-flame",
                                     r"may only hold \{name\} and \{index\}"),
    "export_pattern_positional": (lambda i, t: _batch(t, [_entry(i, t / "a.blend")]),
                                  ["--export-flame", "{name}{0}.npz"], "--export-flame", "may only hold"),
    "two_dialogues_one_export": (lambda i, t: _batch(t, [_entry(i, t / "a.blend", export_flame=str(t / "m.npz")),
                                                         _entry(i, t / "b.blend", export_flame=str(t / "m.npz"))]),
                                 [], "[dialogue 2]", r"export_flame: .* is also written by dialogue 1"),
}


@pytest.mark.parametrize("kind", sorted(BATCH_REFUSED_UPFRONT))
def test_bad_batch_is_refused_before_anything_runs(kind: str, inputs: Path, tmp_path: Path, capsys) -> None:
    make, extra, name, message = BATCH_REFUSED_UPFRONT[kind]
    batch = make(inputs, tmp_path)
    refused(inputs, "flame.blend", ["--batch", batch, *extra], capsys, 2, name, message=message,
            extra_inputs=(tmp_path,))
    assert not list(tmp_path.glob("*.blend")) and not list(tmp_path.glob("*.npz"))


@pytest.mark.parametrize(("kind", "bad", "names", "message"), [
    ("key_typo", {"agent_audo": "x.wav"}, ["[dialogue 2]", "agent_audo"], "did you mean 'agent_audio'"),
    ("seed_text", {"seed": "abc"}, ["[dialogue 2]", "seed"], "must be a number"),
    ("seed_fraction", {"seed": 1.5}, ["[dialogue 2]", "seed"], "whole number"),
    ("temperature_inf_token", {"temperature": math.inf}, ["[dialogue 2]", "temperature"], "finite"),
    ("agent_channel_without_stereo", {"agent_channel": 1}, ["[dialogue 2]", "agent_channel"], "stereo is off"),
    ("stereo_not_bool", {"stereo": "yes"}, ["[dialogue 2]", "stereo"], "true or false"),
    ("six_channel_stereo", {"stereo": True, "agent_audio": "SIX"}, ["six.wav"], "has 6 channels"),
])
def test_bad_dialogue_fails_alone_and_the_good_ones_are_written(kind, bad, names, message, inputs: Path,
                                                                tmp_path: Path, capsys) -> None:
    if bad.get("agent_audio") == "SIX":
        bad = {**bad, "agent_audio": str(inputs / "six.wav")}
    good1, bad_out, good3 = tmp_path / "one.blend", tmp_path / "two.blend", tmp_path / "three.blend"
    batch = _batch(tmp_path, [_entry(inputs, good1, seed=1), _entry(inputs, bad_out, **bad),
                              _entry(inputs, good3, seed=3)])
    files = tree_state(inputs, batch)
    summary = tmp_path / "summary.json"
    rc, _, err = run(["--blend", inputs / "flame.blend", "--batch", batch, "--json", summary], capsys)
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("TIMAR error:")]
    assert len(lines) == 1
    assert_one_line(lines[0], *names)
    assert re.search(message, lines[0])
    assert tree_state(inputs, batch) == files
    assert good1.exists() and good3.exists() and not bad_out.exists()
    report = json.loads(summary.read_text())
    assert [d["ok"] for d in report["dialogues"]] == [True, False, True] and report["failed"] == 1
    for path in (good1, good3):
        values, _ = take_keys(path, FLAME_HEAD)
        assert np.isfinite(values).all()


def test_summary_that_cannot_be_written_is_one_line(inputs: Path, tmp_path: Path, capsys) -> None:
    """The take is saved; the summary's folder cannot exist (a file is in the way): one line, rc 2."""
    (tmp_path / "blocker").write_text("a file")
    out, summary = tmp_path / "take.blend", tmp_path / "blocker" / "summary.json"
    rc, _, err = run(["--blend", inputs / "flame.blend", *audio(inputs), "--character", FLAME_HEAD, "--out", out,
                      "--json", summary], capsys)
    assert rc == 2 and out.exists()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert_one_line(lines[0], str(summary), "cannot write the summary")


# ----------------------------------------------------------------------------- the panel's own settings

@pytest.mark.parametrize(("prop", "value"), [("temperature", math.inf), ("strength_jaw", math.nan),
                                             ("smoothing", math.nan)])
def test_non_finite_panel_setting_is_refused_by_generate(prop: str, value: float, inputs: Path) -> None:
    """Blender stores NaN and inf in a float property despite its limits (a script can set them):
    Generate refuses them, naming the setting, and writes nothing."""
    bpy.ops.wm.open_mainfile(filepath=str(inputs / "flame.blend"))
    s = bpy.context.scene.timar
    s.agent_audio, s.user_audio = str(inputs / "agent.wav"), str(inputs / "user.wav")
    setattr(s, prop, value)
    assert not math.isfinite(getattr(s, prop))
    before, files = scene_state(), tree_state(inputs)
    with pytest.raises(RuntimeError, match=rf"{prop}: must be a finite number"):
        bpy.ops.timar.generate()  # in background mode the operator runs synchronously and reports the error
    assert scene_state() == before and tree_state(inputs) == files


def test_non_finite_scene_setting_is_refused_headless(inputs: Path, tmp_path: Path, capsys) -> None:
    """A saved scene whose TIMAR setting is NaN: the headless run names the scene and the setting."""
    bpy.ops.wm.open_mainfile(filepath=str(inputs / "flame.blend"))
    bpy.context.scene.timar.strength_head = math.nan
    blend = tmp_path / "nan.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    line = refused(tmp_path, "nan.blend", [*audio(inputs), "--character", FLAME_HEAD, "--out", tmp_path / "t.blend"],
                   capsys, 1, "TIMAR settings", "strength_head", message="must be a finite number")
    assert "scene 'Scene'" in line
