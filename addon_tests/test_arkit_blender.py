"""ARKit rigs in real Blender (the bpy module): the demo head, takes retargeted onto its ARKit shape
keys and head bone, a Workbench render that shows the mouth open, the exports read back (glTF with
pygltflib, FBX re-imported, Live Link CSV, FLAME NPZ/JSON), a > 5-minute dialogue, the mapping
preset and retarget map files (bad ones change nothing), and the headless flags."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from blender_helpers import (
    assigned_fcurves,
    assignments,
    at_scene_frames,
    import_bpy,
    key_points,
    new_scene,
    render_still,
    retarget_by_hand,
    run_headless,
    write_wavs,
)

bpy = import_bpy()

from timar_blender.blender import demo_head, generate, keyframes  # noqa: E402
from timar_blender.blender.arkit_rig import rig_kind  # noqa: E402
from timar_blender.blender.export import take_motion  # noqa: E402
from timar_blender.blender.props import settings_of  # noqa: E402
from timar_blender.engine import exports, job  # noqa: E402
from timar_blender.engine.arkit import ARKIT_NAMES, default_retarget_map, looks_like_arkit  # noqa: E402
from timar_blender.engine.contract import CHANNEL_NAMES  # noqa: E402
from timar_blender.engine.dialogue import DialogueMotion  # noqa: E402

pytestmark = pytest.mark.usefixtures("blender_addon")

HEAD = "TIMAR Demo Head"
REQUIRED = (
    *("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthRollLower", "mouthRollUpper", "browInnerUp"),
    *(f"{n}{side}" for side in ("Left", "Right") for n in (
        "mouthSmile", "mouthFrown", "mouthStretch", "mouthLowerDown", "mouthUpperUp", "mouthPress", "browDown",
        "browOuterUp", "eyeBlink", "eyeWide")),
    "cheekPuff",
)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> tuple[Path, Path]:
    return write_wavs(tmp_path_factory.mktemp("audio"))  # the agent speaks from 1.5 s


def demo_scene(wavs) -> bpy.types.Scene:
    return new_scene("add_demo_head", agent_audio=str(wavs[0]), user_audio=str(wavs[1]), seed=3, add_sound=False)


@pytest.fixture(scope="module")
def take_blend(wavs, tmp_path_factory) -> Path:
    """One generated take on the demo head (24-fps scene), saved once and reopened by each test."""
    demo_scene(wavs)
    assert bpy.ops.timar.generate() == {"FINISHED"}
    path = tmp_path_factory.mktemp("take") / "take.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def open_take(path: Path) -> tuple[bpy.types.Scene, bpy.types.Object]:
    bpy.ops.wm.open_mainfile(filepath=str(path))
    return bpy.context.scene, bpy.data.objects[HEAD]


def fcurves(idblock) -> dict[tuple[str, int], np.ndarray]:
    """(data path, index) -> (N, 2) keys of the action assigned to ``idblock``."""
    return {(fc.data_path, fc.array_index): key_points(fc, np.float64) for fc in assigned_fcurves(idblock)}


def shape_key_curves(obj) -> dict[str, np.ndarray]:
    return {path.split('"')[1]: co for (path, _i), co in fcurves(obj.data.shape_keys).items()}


def snapshot() -> dict:
    s = bpy.context.scene.timar
    return {"actions": sorted(a.name for a in bpy.data.actions),
            "assigned": assignments([*bpy.data.objects, *bpy.data.shape_keys]),
            "settings": (s.mapping_preset, s.retarget_map, s.last_report)}


# ----------------------------------------------------------------------------- the demo head


def test_demo_head_is_a_complete_fast_arkit_character(wavs) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    head = demo_head.build_demo_head(bpy.context)  # its build time: scripts/benchmark_blender.py
    names = [kb.name for kb in head.data.shape_keys.key_blocks[1:]]
    assert set(REQUIRED) <= set(names) and looks_like_arkit(names) and rig_kind(head) == "ARKIT"
    arm = head.parent
    assert arm.type == "ARMATURE" and {"neck", "head", "jaw"} <= set(arm.data.bones.keys())
    assert arm.data.bones["head"].parent.name == "neck" and arm.data.bones["jaw"].parent.name == "head"
    eyes = [o for o in arm.children if "Eye" in o.name]
    assert len(eyes) == 2
    mats = {m.name.removeprefix("TIMAR Demo ") for m in head.data.materials}
    assert {"Skin", "Lips", "Mouth", "Teeth"} <= mats
    assert {m.name.removeprefix("TIMAR Demo ") for e in eyes for m in e.data.materials} >= {"Sclera", "Iris", "Pupil"}
    scene = bpy.context.scene
    assert scene.camera is not None and any(o.type == "LIGHT" for o in scene.objects)
    # a second head reuses the camera and light
    demo_head.build_demo_head(bpy.context, name="Second Head")
    assert sum(o.type == "CAMERA" for o in scene.objects) == 1 and sum(o.type == "LIGHT" for o in scene.objects) == 1
    # the head bone turns the whole head (eyes included); the shoulders stay
    dg = bpy.context.evaluated_depsgraph_get()

    def world(obj) -> np.ndarray:
        ev = obj.evaluated_get(dg)
        me = ev.to_mesh()
        co = np.zeros(3 * len(me.vertices))
        me.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        m = np.array(obj.matrix_world)
        return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]

    rest_head, rest_eye = world(head), world(eyes[0])
    from mathutils import Euler

    arm.pose.bones["head"].rotation_quaternion = Euler((0.0, 0.0, 0.4)).to_quaternion()  # turn 23 degrees
    bpy.context.view_layer.update()
    dg = bpy.context.evaluated_depsgraph_get()
    moved = np.linalg.norm(world(head) - rest_head, axis=1)
    top = rest_head[:, 2] > demo_head.HEAD_CENTER[2] + 0.03
    shoulders = rest_head[:, 2] < demo_head.HEAD_CENTER[2] - 0.2
    assert moved[top].min() > 0.005 and moved[shoulders].max() < 1e-6
    assert np.linalg.norm(world(eyes[0]) - rest_eye, axis=1).min() > 0.005


def test_demo_shape_keys_do_what_their_names_say() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    head = demo_head.build_demo_head(bpy.context)
    kbs = head.data.shape_keys.key_blocks
    c = demo_head.HEAD_CENTER

    def co(name: str) -> np.ndarray:
        a = np.zeros(3 * len(kbs[name].data))
        kbs[name].data.foreach_get("co", a)
        return a.reshape(-1, 3) - c

    basis = co("Basis")
    d = {n: co(n) - basis for n in REQUIRED}
    x, y, z = basis.T
    inside = np.zeros(len(basis), bool)  # teeth and mouth cavity: they follow the jaw only
    for poly in head.data.polygons:
        if head.data.materials[poly.material_index].name.endswith(("Teeth", "Mouth")):
            inside[list(poly.vertices)] = True
    front = (y < -0.06) & ~inside
    near_mouth = (np.abs(x) < 0.012) & (np.abs(z - demo_head.Z_MOUTH) < 0.004)
    lips = front & near_mouth & (y < y[near_mouth].min() + 0.004)  # the outer lip surface, not teeth behind
    lower_lip = lips & (z < demo_head.Z_MOUTH - 0.0005)
    upper_lip = lips & (z >= demo_head.Z_MOUTH)
    chin = front & (np.abs(x) < 0.01) & (np.abs(z + 0.09) < 0.006)
    # jawOpen opens the mouth a lot: the lower lip drops > 2 cm, the upper lip stays
    gap = d["jawOpen"][lower_lip, 2].mean() - d["jawOpen"][upper_lip, 2].mean()
    assert gap < -0.02 and d["jawOpen"][chin, 2].mean() < -0.02
    # mouthClose undoes the jaw's opening at the lips
    assert np.abs(d["jawOpen"][lower_lip, 2] + d["mouthClose"][lower_lip, 2]).max() < 0.004
    # blinks: the left upper lid's edge comes down over the left eye's centre; the right eye is untouched
    left = x > 0
    assert np.abs(d["eyeBlinkLeft"][~left]).max() == 0 and np.abs(d["eyeBlinkRight"][left]).max() == 0
    assert d["eyeBlinkLeft"][:, 2].min() < -0.01 and d["eyeWideLeft"][:, 2].max() > 0.003
    for side, s in (("Left", 1), ("Right", -1)):
        corner = front & (np.abs(x - s * 0.021) < 0.004) & (np.abs(z - demo_head.Z_MOUTH) < 0.004)
        other = front & (np.abs(x + s * 0.021) < 0.004) & (np.abs(z - demo_head.Z_MOUTH) < 0.004)
        assert d[f"mouthSmile{side}"][corner, 2].mean() > 0.005 > abs(d[f"mouthSmile{side}"][other, 2].mean())
        assert d[f"mouthFrown{side}"][corner, 2].mean() < -0.004
        assert s * d[f"mouthStretch{side}"][corner, 0].mean() > 0.004
        assert d[f"mouthLowerDown{side}"][lower_lip & (s * x > 0.004), 2].mean() < -0.004
        assert d[f"mouthUpperUp{side}"][upper_lip & (s * x > 0.004), 2].mean() > 0.003
        assert d[f"browOuterUp{side}"][:, 2].max() > 0.006 and d[f"browDown{side}"][:, 2].min() < -0.004
        assert d[f"mouthPress{side}"][lips & (s * x > 0.004)].any()
    assert d["mouthPucker"][lips, 1].mean() < -0.006 and d["mouthFunnel"][lips, 1].mean() < -0.005
    assert d["mouthRollLower"][lower_lip, 1].mean() > 0.003 and d["mouthRollUpper"][upper_lip, 1].mean() > 0.003
    assert d["browInnerUp"][:, 2].max() > 0.006
    cheeks = front & (np.abs(np.abs(x) - 0.045) < 0.005) & (np.abs(z + 0.041) < 0.006)
    assert (np.sign(x[cheeks]) * d["cheekPuff"][cheeks, 0]).mean() > 0.006


# ----------------------------------------------------------------------------- generating


def test_generate_drives_the_arkit_keys_and_the_head_bone(take_blend: Path) -> None:
    scene, head = open_take(take_blend)
    s = scene.timar
    keys = shape_key_curves(head)
    names = [kb.name for kb in head.data.shape_keys.key_blocks[1:]]
    assert sorted(keys) == sorted(names)  # every ARKit key the head has is animated
    frames = keys["jawOpen"][:, 0]
    np.testing.assert_array_equal(frames, np.arange(1, 73))  # 3 s at 25 fps into the 24-fps scene
    allv = np.stack([k[:, 1] for k in keys.values()])
    assert allv.min() >= 0.0 and allv.max() <= 1.0
    jaw_key, f = keys["jawOpen"][:, 1], keys["jawOpen"][:, 0]
    talking, silent = jaw_key[(f >= 40) & (f <= 70)], jaw_key[(f >= 2) & (f <= 34)]  # agent speaks 1.5-2.9 s
    assert talking.mean() > silent.mean() + 0.05  # the jaw opens with the agent's speech (wide: see below)
    assert keys["eyeBlinkLeft"][:, 1].max() > 0.5  # blinking
    rig = bpy.data.objects[f"{HEAD} Rig"]
    head_curves = fcurves(rig)
    assert sorted(head_curves) == [('pose.bones["head"].rotation_quaternion', i) for i in range(4)]
    assert np.ptp(head_curves[('pose.bones["head"].rotation_quaternion', 1)][:, 1]) > 1e-3
    assert "9 ARKit channels match nothing" in s.last_report and "eyeLookDownLeft" in s.last_report
    # the keys are the take's stored FLAME motion through the retarget map, resampled to 24 fps
    motion, fps, meta = take_motion(head)
    assert motion.shape == (75, 56) and fps == 25.0 and meta["rig"] == "ARKIT" and meta["seed"] == 3
    _, expected = at_scene_frames(retarget_by_hand(motion, "jawOpen")[:, None], 25.0, 24.0)
    np.testing.assert_allclose(keys["jawOpen"][:, 1], expected[:, 0], atol=1e-6)
    assert head.data.shape_keys.animation_data.action.use_fake_user


def test_the_jaw_opens_wide_while_the_agent_talks(take_blend: Path) -> None:
    _scene, head = open_take(take_blend)
    jaw = shape_key_curves(head)["jawOpen"]
    assert jaw[(jaw[:, 0] >= 40) & (jaw[:, 0] <= 70), 1].max() > 0.5


def test_workbench_render_shows_the_mouth_open_while_speaking(take_blend: Path, tmp_path: Path) -> None:
    scene, head = open_take(take_blend)
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    jaw = shape_key_curves(head)["jawOpen"]
    speaking = (jaw[:, 0] >= 40) & (jaw[:, 0] <= 70)  # the agent speaks 1.5-2.9 s = frames 37-70
    silent = (jaw[:, 0] >= 2) & (jaw[:, 0] <= 34)
    f_talk = int(jaw[speaking][np.argmax(jaw[speaking, 1]), 0])
    f_quiet = int(jaw[silent][np.argmin(jaw[silent, 1]), 0])
    assert jaw[jaw[:, 0] == f_talk, 1][0] > jaw[jaw[:, 0] == f_quiet, 1][0]  # how wide: the next test
    r = scene.render
    r.engine, r.resolution_x, r.resolution_y, r.resolution_percentage = "BLENDER_WORKBENCH", 320, 180, 100
    scene.display.shading.light, scene.display.shading.color_type = "STUDIO", "MATERIAL"
    scene.view_settings.view_transform = "Standard"
    talk = render_still(scene, f_talk, tmp_path / "talk.png")
    quiet = render_still(scene, f_quiet, tmp_path / "quiet.png")
    # the mouth's box in pixels: +-3 cm around the mouth
    c = demo_head.HEAD_CENTER
    mouth_at = Vector((c[0], c[1] - 0.09, c[2] + demo_head.Z_MOUTH))
    corners = [world_to_camera_view(scene, scene.camera, mouth_at + Vector((dx, 0.0, dz)))
               for dx in (-0.03, 0.03) for dz in (-0.035, 0.02)]
    xs = [int(p.x * 320) for p in corners]
    ys = [int((1 - p.y) * 180) for p in corners]
    mouth = (slice(min(ys), max(ys)), slice(min(xs), max(xs)))
    assert 10 < max(xs) - min(xs) < 100 and 10 < max(ys) - min(ys) < 100
    mouth_diff = np.abs(talk[mouth] - quiet[mouth]).mean()
    background_diff = np.abs(talk[:25, :40] - quiet[:25, :40]).mean()
    assert mouth_diff > 0.04, mouth_diff
    assert background_diff < 1e-3, background_diff


# ----------------------------------------------------------------------------- exports


def _accessor(g, blob: bytes, index: int) -> np.ndarray:
    acc = g.accessors[index]
    view = g.bufferViews[acc.bufferView]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc.type]
    dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}[acc.componentType]
    assert view.byteStride in (None, width * np.dtype(dtype).itemsize)
    offset = (view.byteOffset or 0) + (acc.byteOffset or 0)
    return np.frombuffer(blob, dtype, count=acc.count * width, offset=offset).reshape(acc.count, width)


def check_gltf(path: Path, head, fps: float) -> int:
    """The morph-target animation: one key per frame, values equal to the shape keys in Blender."""
    pygltflib = pytest.importorskip("pygltflib")
    g = pygltflib.GLTF2().load(str(path))
    blob = g.binary_blob()
    mesh_node = next(i for i, n in enumerate(g.nodes) if n.name == head.name)
    targets = g.meshes[g.nodes[mesh_node].mesh].extras["targetNames"]
    assert sorted(targets) == sorted(kb.name for kb in head.data.shape_keys.key_blocks[1:])
    (anim,) = g.animations
    (ch,) = [c for c in anim.channels if c.target.path == "weights"]
    assert ch.target.node == mesh_node
    sampler = anim.samplers[ch.sampler]
    times = _accessor(g, blob, sampler.input)[:, 0]
    weights = _accessor(g, blob, sampler.output).reshape(len(times), len(targets))
    keys = shape_key_curves(head)
    frames = keys["jawOpen"][:, 0]
    assert len(times) == len(frames)  # a keyframe per frame
    np.testing.assert_allclose(times * fps, frames, atol=1e-3)
    for j, name in enumerate(targets):
        np.testing.assert_allclose(weights[:, j], keys[name][:, 1], atol=1e-6, err_msg=name)
    (rot,) = [c for c in anim.channels if c.target.path == "rotation"]
    assert g.nodes[rot.target.node].name == "head"
    assert g.accessors[anim.samplers[rot.sampler].input].count == len(frames)
    return len(times)


VALIDATOR = Path(__file__).resolve().parent / "gltf_validator"


def khronos_validate(*paths: Path) -> None:
    """The official Khronos glTF-Validator (npm ``gltf-validator``, run by node) reports no error and
    no warning on each file (external .bin files included)."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the Khronos glTF validator runs on node.js")
    if not (VALIDATOR / "node_modules" / "gltf-validator").is_dir():
        pytest.skip("the Khronos glTF validator is not installed: npm ci --prefix addon_tests/gltf_validator")
    r = subprocess.run(["node", str(VALIDATOR / "validate.js"), *map(str, paths)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    reports = json.loads(r.stdout)
    assert len(reports) == len(paths)
    for report in reports:
        issues = report["issues"]
        found = [(m["code"], m.get("pointer"), m["message"]) for m in issues["messages"] if m["severity"] <= 1]
        assert (issues["numErrors"], issues["numWarnings"]) == (0, 0), f"{report['file']}: {found}"


def test_gltf_round_trip(take_blend: Path, tmp_path: Path) -> None:
    scene, head = open_take(take_blend)
    assert bpy.ops.timar.export_gltf(filepath=str(tmp_path / "take.glb")) == {"FINISHED"}
    assert check_gltf(tmp_path / "take.glb", head, keyframes.scene_fps(scene)) == 72
    assert bpy.ops.timar.export_gltf(filepath=str(tmp_path / "take.gltf")) == {"FINISHED"}  # + take.bin
    assert (tmp_path / "take.bin").is_file()
    khronos_validate(tmp_path / "take.glb", tmp_path / "take.gltf")


def test_gltf_of_two_animated_rigs_passes_the_khronos_validator(wavs, tmp_path: Path) -> None:
    """The FLAME test rig and the demo head, both animated, one moved and turned: each exports on its
    own, passes the validator, and the scene's parenting and transforms are as before."""
    scene = new_scene("create_test_rig", agent_audio=str(wavs[0]), user_audio=str(wavs[1]), add_sound=False)
    s = scene.timar
    assert bpy.ops.timar.generate() == {"FINISHED"}
    rig = s.character
    rig.parent.location, rig.parent.rotation_euler = (0.5, -0.2, 0.1), (0.0, 0.0, 0.7)
    assert bpy.ops.timar.add_demo_head() == {"FINISHED"} and s.character.name == HEAD
    assert bpy.ops.timar.generate() == {"FINISHED"}
    bpy.context.view_layer.update()
    before = {o.name: (o.parent, o.matrix_world.copy(), o.matrix_parent_inverse.copy()) for o in scene.objects}
    for character, name in ((rig, "rig.glb"), (bpy.data.objects[HEAD], "head.glb")):
        s.character = character
        assert bpy.ops.timar.export_gltf(filepath=str(tmp_path / name)) == {"FINISHED"}
    khronos_validate(tmp_path / "rig.glb", tmp_path / "head.glb")
    bpy.context.view_layer.update()
    for o in scene.objects:
        parent, world, inverse = before[o.name]
        assert o.parent == parent, o.name
        assert np.allclose(np.array(o.matrix_world), np.array(world), atol=1e-6), o.name
        assert np.allclose(np.array(o.matrix_parent_inverse), np.array(inverse), atol=1e-6), o.name


def test_fbx_round_trip(take_blend: Path, tmp_path: Path) -> None:
    scene, head = open_take(take_blend)
    before = shape_key_curves(head)
    frame_range = (scene.frame_start, scene.frame_end)
    assert bpy.ops.timar.export_fbx(filepath=str(tmp_path / "take.fbx")) == {"FINISHED"}
    assert (scene.frame_start, scene.frame_end) == frame_range  # the export's range was put back
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=str(tmp_path / "take.fbx"), anim_offset=0.0)
    imported = bpy.data.objects[HEAD]
    assert imported.find_armature() is not None
    after = shape_key_curves(imported)
    assert sorted(after) == sorted(before)
    for name, co in before.items():
        np.testing.assert_allclose(after[name][:, 0], co[:, 0], err_msg=name)
        np.testing.assert_allclose(after[name][:, 1], co[:, 1], atol=1e-5, err_msg=name)


def test_live_link_csv_and_flame_round_trips(wavs, tmp_path: Path) -> None:
    scene = demo_scene(wavs)
    scene.render.fps, scene.render.fps_base = 25, 1.0  # keys at the model's rate: the CSV equals them
    assert bpy.ops.timar.generate() == {"FINISHED"}
    head = scene.timar.character
    with pytest.raises(RuntimeError, match="timecode '12:00:00:60'"):
        bpy.ops.timar.export_live_link_csv(filepath=str(tmp_path / "take.csv"), start_timecode="12:00:00:60")
    assert not (tmp_path / "take.csv").exists()
    assert bpy.ops.timar.export_live_link_csv(filepath=str(tmp_path / "take.csv"),
                                              start_timecode="10:20:30:40") == {"FINISHED"}
    header, values = exports.read_live_link_csv(tmp_path / "take.csv")
    assert tuple(header) == exports.LIVE_LINK_COLUMNS and values.shape == (75, 61)
    lines = (tmp_path / "take.csv").read_text().splitlines()
    assert lines[1].startswith("10:20:30:40.000,61,") and lines[2].startswith("10:20:30:42.400,61,")
    arkit = exports.arkit_columns(header, values)
    keys = shape_key_curves(head)
    for i, name in enumerate(ARKIT_NAMES):
        if name in keys:
            np.testing.assert_allclose(arkit[:, i], keys[name][:, 1], atol=1e-6, err_msg=name)
        else:  # gaze and tongue: not on the demo head, not in FLAME-56
            assert np.abs(arkit[:, i]).max() < 1e-6
    motion, _, _ = take_motion(head)
    head_ypr = exports.head_ypr(motion, default_retarget_map().rest[53:56])
    np.testing.assert_allclose(values[:, 52:55], head_ypr, atol=2e-6)
    assert np.abs(values[:, 55:]).max() == 0  # eye rotations: FLAME-56 has no gaze
    for suffix, tol in ((".npz", 0), (".json", 1e-6)):
        path = tmp_path / f"take{suffix}"
        assert bpy.ops.timar.export_flame(filepath=str(path)) == {"FINISHED"}
        m, f, channels = exports.read_flame(path)
        assert f == 25.0 and channels == list(CHANNEL_NAMES)
        np.testing.assert_allclose(m, motion, atol=tol)


def test_export_without_a_take_says_so(wavs, tmp_path: Path) -> None:
    demo_scene(wavs)
    with pytest.raises(RuntimeError, match="no TIMAR take"):
        bpy.ops.timar.export_live_link_csv(filepath=str(tmp_path / "x.csv"))
    with pytest.raises(RuntimeError, match="no animation"):
        bpy.ops.timar.export_gltf(filepath=str(tmp_path / "x.glb"))
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.glb").exists()


def write_long_take(wavs) -> tuple[bpy.types.Object, np.ndarray, int]:
    """5.5 minutes of synthetic FLAME motion written onto the demo head by Generate's writer."""
    scene = demo_scene(wavs)
    s = settings_of(scene).changed(smoothing=0.0)  # the round trips compare the written motion as given
    req, info = generate.build_request(scene, s)
    frames = int(5.5 * 60 * 25)
    t = np.arange(frames) / 25.0
    motion = np.zeros((frames, 56), np.float32)
    motion[:, 50] = 0.08 + 0.08 * np.sin(2 * np.pi * 2.7 * t)  # jaw
    motion[:, 0] = np.sin(2 * np.pi * 0.4 * t)
    motion[:, 53:56] = 0.06 * np.sin(2 * np.pi * 0.2 * t)[:, None] * np.array([1.0, 0.6, 0.3])
    result = job.Result([DialogueMotion(motion, 25.0, np.arange(frames) // 25, np.ones(frames, bool))], "cpu", "test",
                        "synthetic", frames / 25.0)
    summary = generate.write_result(bpy.context, s, req, info, result)
    assert summary["takes"][0]["frames"] == [1, 7920]  # 330 s at 24 fps
    return info["object"], motion, frames


def test_long_dialogue_round_trip(wavs, tmp_path: Path) -> None:
    """The 5.5-minute take through glTF, CSV and FLAME and back."""
    head, motion, frames = write_long_take(wavs)
    assert bpy.ops.timar.export_gltf(filepath=str(tmp_path / "long.glb")) == {"FINISHED"}
    assert check_gltf(tmp_path / "long.glb", head, 24.0) == 7920
    khronos_validate(tmp_path / "long.glb")
    assert bpy.ops.timar.export_live_link_csv(filepath=str(tmp_path / "long.csv")) == {"FINISHED"}
    header, values = exports.read_live_link_csv(tmp_path / "long.csv")
    assert values.shape == (frames, 61)
    jaw = retarget_by_hand(motion, "jawOpen")
    np.testing.assert_allclose(values[:, header.index("JawOpen") - 2], jaw, atol=1e-6)
    assert bpy.ops.timar.export_flame(filepath=str(tmp_path / "long.npz")) == {"FINISHED"}
    np.testing.assert_array_equal(exports.read_flame(tmp_path / "long.npz")[0], motion)


@pytest.mark.slow
def test_long_dialogue_fbx_round_trip(wavs, tmp_path: Path) -> None:
    """The same 5.5-minute take through FBX (Blender bakes every frame: ~20 s) and back into bpy."""
    head, _, _ = write_long_take(wavs)
    before = shape_key_curves(head)
    assert bpy.ops.timar.export_fbx(filepath=str(tmp_path / "long.fbx")) == {"FINISHED"}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=str(tmp_path / "long.fbx"), anim_offset=0.0)
    after = shape_key_curves(bpy.data.objects[HEAD])
    assert sorted(after) == sorted(before)
    jaw = after["jawOpen"]
    assert len(jaw) >= 7920 and jaw[-1, 0] >= 7920  # every frame of the 330 s at 24 fps, to the end
    for name, co in before.items():
        np.testing.assert_allclose(after[name][:, 1], co[:, 1], atol=1e-5, err_msg=name)


# ----------------------------------------------------------------------------- presets and maps


def test_mapping_preset_save_edit_load(wavs, tmp_path: Path) -> None:
    scene = demo_scene(wavs)
    path = tmp_path / "preset.json"
    assert bpy.ops.timar.save_mapping_preset(filepath=str(path)) == {"FINISHED"}
    data = json.loads(path.read_text())
    assert data["channels"]["jawOpen"] == {"target": "jawOpen", "gain": 1.0, "clamp": [0.0, 1.0]}
    data["channels"]["jawOpen"] = {"target": "jawOpen", "gain": 0.5, "clamp": [0.0, 0.3]}
    del data["channels"]["cheekPuff"]
    path.write_text(json.dumps(data))
    assert bpy.ops.timar.load_mapping_preset(filepath=str(path)) == {"FINISHED"}
    assert scene.timar.mapping_preset == str(path)
    assert bpy.ops.timar.generate() == {"FINISHED"}
    head = scene.timar.character
    keys = shape_key_curves(head)
    assert "cheekPuff" not in keys and "10 ARKit channels" in scene.timar.last_report
    motion, _, _ = take_motion(head)
    raw = retarget_by_hand(motion, "jawOpen")
    _, expected = at_scene_frames(np.clip(raw * 0.5, 0.0, 0.3)[:, None], 25.0, 24.0)
    np.testing.assert_allclose(keys["jawOpen"][:, 1], expected[:, 0], atol=1e-6)
    assert keys["jawOpen"][:, 1].max() <= 0.3 + 1e-7


@pytest.mark.parametrize(
    "what",
    ["preset_not_json", "preset_wrong_format", "preset_missing_key", "preset_bad_clamp", "map_not_json", "map_shape"],
)
def test_bad_preset_or_map_names_the_file_and_changes_nothing(wavs, tmp_path: Path, what: str) -> None:
    scene = demo_scene(wavs)
    s = scene.timar
    assert bpy.ops.timar.generate() == {"FINISHED"}  # an earlier take the failure must not touch
    bad = tmp_path / f"{what}.json"
    good_preset = {"format": "timar-arkit-mapping", "version": 1, "channels": {"jawOpen": {"target": "jawOpen"}}}
    if what == "preset_not_json":
        bad.write_text("{not json")
    elif what == "preset_wrong_format":
        bad.write_text(json.dumps({**good_preset, "format": "something else"}))
    elif what == "preset_missing_key":
        bad.write_text(json.dumps({**good_preset, "channels": {"jawOpen": {"target": "JawDrop"}}}))
    elif what == "preset_bad_clamp":
        bad.write_text(json.dumps({**good_preset, "channels": {"jawOpen": {"target": "jawOpen", "clamp": [1, 0]}}}))
    elif what == "map_not_json":
        bad.write_text("[1, 2")
    else:
        d = default_retarget_map().to_dict()
        d["weights"] = d["weights"][:10]
        bad.write_text(json.dumps(d))
    if what.startswith("map"):
        s.retarget_map = str(bad)
    else:  # the Load operator refuses it and keeps the setting; typed into the panel, Generate refuses it
        with pytest.raises(RuntimeError, match=bad.name):
            bpy.ops.timar.load_mapping_preset(filepath=str(bad))
        assert s.mapping_preset == ""
        s.mapping_preset = str(bad)
    before = snapshot()
    with pytest.raises(RuntimeError) as err:
        bpy.ops.timar.generate()
    assert bad.name in str(err.value)
    assert snapshot() == before


def test_rig_type_choice(wavs) -> None:
    scene = demo_scene(wavs)
    s = scene.timar
    s.rig_type = "FLAME"  # the demo head has no FLAME expression keys: a clear error, nothing written
    before = snapshot()
    with pytest.raises(RuntimeError, match="FLAME expression"):
        bpy.ops.timar.generate()
    assert snapshot() == before
    bpy.ops.timar.create_test_rig()
    assert rig_kind(s.character) == "FLAME"
    s.rig_type = "ARKIT"
    with pytest.raises(RuntimeError, match="no ARKit-named shape keys"):
        bpy.ops.timar.generate()


# ----------------------------------------------------------------------------- headless


def test_batch_export_names() -> None:
    from timar_blender.headless import _batch_exports

    d = {"export_gltf": "out/take.glb", "export_csv": "out/{index}-{name}.csv", "export_fbx": None}
    assert _batch_exports(d, {"out": "runs/a.blend"}, 0) == {"export_gltf": "out/take_001_a.glb",
                                                            "export_csv": "out/1-a.csv"}
    own = {"agent_audio": "x/bob.wav", "export_gltf": "mine.glb"}  # the entry's own name wins
    assert _batch_exports(d, own, 4) == {"export_csv": "out/5-bob.csv"}


def test_headless_demo_head_batch_with_exports(wavs, tmp_path: Path) -> None:
    agent, user = map(str, wavs)
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([{"agent_audio": agent, "user_audio": user, "out": str(tmp_path / "one.blend")},
                                 {"agent_audio": agent, "user_audio": user, "seed": 5}]))
    r = run_headless(["--add-demo-head", "--no-sound", "--batch", str(batch),
                      "--export-gltf", str(tmp_path / "x" / "take.glb"),
                      "--export-csv", str(tmp_path / "x" / "{index}_{name}.csv"), "--csv-timecode", "01:02:03:04.5",
                      "--export-flame", str(tmp_path / "x" / "take.json"),
                      "--json", str(tmp_path / "s.json")], tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert [d["ok"] for d in summary["dialogues"]] == [True, True]
    one, two = (d["exports"] for d in summary["dialogues"])
    assert Path(one["gltf"]["path"]).name == "take_001_one.glb" and Path(two["csv"]["path"]).name == "2_agent.csv"
    for d in summary["dialogues"]:
        assert d["rig"] == "ARKIT" and set(d["exports"]) == {"gltf", "csv", "flame"}
        for e in d["exports"].values():
            assert Path(e["path"]).is_file()
    assert Path(two["csv"]["path"]).read_text().splitlines()[1].startswith("01:02:03:04.500,61,")
    m1, _, _ = exports.read_flame(one["flame"]["path"])
    m2, _, _ = exports.read_flame(two["flame"]["path"])
    assert m1.shape == m2.shape == (75, 56) and not np.allclose(m1, m2)  # seeds 0 and 5
