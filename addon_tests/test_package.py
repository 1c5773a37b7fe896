"""The built extension zips: Blender's own validator accepts them, each holds its platform's wheels
for CPython 3.11 and 3.13 (never numpy), and the Linux zip installs and runs in Blender.

The install runs in a subprocess with temporary HOME/BLENDER_USER_RESOURCES/XDG_CACHE_HOME and an
isolated ``sys.path`` (``python -I -S`` plus a folder holding only ``bpy`` and ``numpy``, as a Blender
install would have): onnxruntime, soundfile, soxr and cffi can then only come from the wheels in the
zip, so a missing or unusable wheel fails here instead of passing on the dev venv's copies.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
from conftest import ROOT, synth_speech

pytestmark = pytest.mark.slow

PLATFORMS = ("linux-x64", "windows-x64", "macos-arm64")
PYTHONS = ((3, 11), (3, 13))
ADDON = "bl_ext.user_default.timar_blender"
RESULT_MARK = "@@TIMAR_RESULT@@"


def _load_build_script():
    spec = importlib.util.spec_from_file_location("build_extension", ROOT / "scripts" / "build_extension.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


build_extension = _load_build_script()


@pytest.fixture(scope="module")
def blender_ext() -> Path:
    try:
        return build_extension.find_blender_ext(None)
    except build_extension.BuildError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def zips(tmp_path_factory, blender_ext: Path) -> dict[str, Path]:
    """All three platform zips, built once (the repo's wheel cache is reused between runs)."""
    tmp = tmp_path_factory.mktemp("ext")
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "build_extension.py"),
        "--platforms",
        *PLATFORMS,
        "--out",
        str(tmp / "dist"),
        "--stage",
        str(tmp / "stage"),
        "--wheel-cache",
        str(ROOT / "build" / "wheels"),
        "--blender-ext",
        str(blender_ext),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, f"build failed:\n{proc.stdout}\n{proc.stderr}"
    out = {}
    for platform in PLATFORMS:
        found = sorted((tmp / "dist").glob(f"timar_blender-*-{platform.replace('-', '_')}.zip"))
        assert len(found) == 1, f"{platform}: {found}\n{proc.stdout}"
        out[platform] = found[0]
    return out


def wheels_in(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return sorted(n.rsplit("/", 1)[-1] for n in zf.namelist() if n.endswith(".whl"))


def wheel_tags(filename: str) -> tuple[str, str, list[str], list[str]]:
    """(distribution, version, python tags, platform tags) of a wheel file name."""
    parts = filename[:-4].split("-")
    return parts[0].lower(), parts[1], parts[-3].split("."), parts[-1].split(".")


def runs_on_python(filename: str, version: tuple[int, int]) -> bool:
    """Blender's rule (bl_extension_ops._extensions_wheel_filter_for_this_system)."""
    _, _, pythons, _ = wheel_tags(filename)
    abi3 = "abi3" in filename[:-4].split("-")[-2].split(".")
    for tag in pythons:
        m = re.fullmatch(r"(?:py|cp)(\d)(\d*)", tag)
        assert m, f"unexpected python tag {tag} in {filename}"
        major, minor = int(m.group(1)), int(m.group(2)) if m.group(2) else None
        if major != version[0]:
            continue
        if minor is None or minor == version[1] or (abi3 and version[1] >= minor):
            return True
    return False


def platform_ok(filename: str, platform: str) -> bool:
    tags = wheel_tags(filename)[3]
    if tags == ["any"]:
        return True
    if platform == "linux-x64":
        return all(t.startswith("manylinux") and t.endswith("_x86_64") for t in tags)
    if platform == "windows-x64":
        return tags == ["win_amd64"]
    return any(t.startswith("macosx_") and t.endswith(("_arm64", "_universal2")) for t in tags)


# ---------------------------------------------------------------------------------------------
# zips


@pytest.mark.parametrize("platform", PLATFORMS)
def test_zip_passes_blender_validate(zips: dict[str, Path], blender_ext: Path, platform: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(blender_ext), "validate", str(zips[platform])], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout, proc.stdout + proc.stderr


def test_linux_zip_layout(zips: dict[str, Path]) -> None:
    with zipfile.ZipFile(zips["linux-x64"]) as zf:
        names = zf.namelist()
        manifest = zf.read("blender_manifest.toml").decode()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert any(n.startswith("engine/") and n.endswith(".py") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    wheels = wheels_in(zips["linux-x64"])
    for py in ("cp311", "cp313"):
        assert any(re.fullmatch(rf"onnxruntime-[^-]+-{py}-{py}-manylinux[^-]*_x86_64\.whl", w) for w in wheels), wheels
    assert not [w for w in wheels if w.lower().startswith("numpy")]
    assert 'platforms = ["linux-x64"]' in manifest


@pytest.mark.parametrize("platform", PLATFORMS)
def test_each_zip_has_only_its_platform_wheels_for_both_pythons(zips: dict[str, Path], platform: str) -> None:
    wheels = wheels_in(zips[platform])
    assert not [w for w in wheels if not platform_ok(w, platform)], f"{platform}: foreign wheels in {wheels}"
    assert not [w for w in wheels if w.lower().startswith("numpy")]
    dists = {wheel_tags(w)[0] for w in wheels}
    assert {"onnxruntime", "soundfile", "cffi", "soxr", "sounddevice"} <= dists
    # on each Python Blender embeds, exactly one wheel of every distribution applies
    for version in PYTHONS:
        for dist in dists:
            usable = [w for w in wheels if wheel_tags(w)[0] == dist and runs_on_python(w, version)]
            assert len(usable) == 1, f"{platform} Python {version}: {dist} -> {usable}"
    if platform != "linux-x64":  # PortAudio ships inside the Windows/macOS sounddevice wheels
        assert [w for w in wheels if w.startswith("sounddevice-") and not w.endswith("-any.whl")], wheels


# ---------------------------------------------------------------------------------------------
# install into Blender and drive the add-on

DRIVER = r"""
import json, os, sys, traceback
sys.path.insert(0, os.environ["TIMAR_SHIM"])
result = {"errors": {}}

def registered_op(idname):
    mod, name = idname.split(".")
    try:
        getattr(getattr(bpy.ops, mod), name).get_rna_type()
    except (AttributeError, KeyError):
        return False
    return True

def phase(name):
    def wrap(fn):
        try:
            result[name] = fn()
        except BaseException:
            result["errors"][name] = traceback.format_exc()
        return fn
    return wrap

import bpy
args = json.loads(os.environ["TIMAR_ARGS"])

@phase("install")
def _():
    ret = bpy.ops.extensions.package_install_files(
        filepath=args["zip"], repo="user_default", enable_on_install=True)
    import addon_utils
    return {
        "ret": sorted(ret),
        "prefs_addons": [a.module for a in bpy.context.preferences.addons],
        "addon_utils": list(addon_utils.check(args["addon"])),
        "has_generate": registered_op("timar.generate") and registered_op("timar.create_test_rig"),
        "python": list(sys.version_info[:2]),
    }

@phase("imports")
def _():
    import importlib
    out = {}
    for name in ("numpy", "onnxruntime", "soundfile", "soxr", "cffi", "typing_extensions"):
        out[name] = importlib.import_module(name).__file__
    return out

@phase("runtime")
def _():
    import numpy as np
    import onnxruntime as ort
    import soundfile as sf
    import soxr
    sess = ort.InferenceSession(args["tiny_onnx"], providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": np.array([[-1, 2, -3, 4]], np.float32)})[0]
    wav = os.path.join(os.environ["HOME"], "roundtrip.wav")
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    data, rate = sf.read(wav)
    return {"onnx": y.tolist(), "wav": [len(data), rate],
            "soxr": len(soxr.resample(np.zeros(4800, np.float32), 48000, 16000))}

@phase("generate")
def _():
    if not args["generate"]:
        return None
    assert bpy.ops.timar.create_test_rig() == {"FINISHED"}
    head = bpy.context.view_layer.objects.active
    s = bpy.context.scene.timar
    s.character = head
    s.agent_audio, s.user_audio = args["agent"], args["user"]
    if args["model"]:
        s.model_path = args["model"]
    ret = bpy.ops.timar.generate()
    key = head.data.shape_keys
    ad = key.animation_data
    out = {"ret": sorted(ret), "head": head.name, "action": None}
    if ad is None or ad.action is None:
        return out
    import math

    from bpy_extras import anim_utils
    bag = anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot)
    curves = list(bag.fcurves) if bag is not None else []
    out.update(
        action=ad.action.name,
        slot=ad.action_slot.identifier if ad.action_slot else None,
        fcurves=len(curves),
        keyed=sum(1 for fc in curves if len(fc.keyframe_points) > 1),
        keys=sum(len(fc.keyframe_points) for fc in curves),
        moving=sum(1 for fc in curves if len({round(k.co[1], 6) for k in fc.keyframe_points}) > 1),
        finite=all(math.isfinite(k.co[1]) for fc in curves for k in fc.keyframe_points),
        report=s.last_report,
    )
    return out

print("@@TIMAR_RESULT@@" + json.dumps(result), flush=True)
"""


def _shim(folder: Path) -> Path:
    """A folder holding only what a Blender install brings: bpy and its numpy (symlinks)."""
    folder.mkdir()
    spec = importlib.util.find_spec("bpy")
    if spec is None:
        pytest.skip("bpy is not installed")
    site = Path(next(iter(spec.submodule_search_locations))).parent
    numpy_dir = Path(importlib.util.find_spec("numpy").origin).parent
    for src in (site / "bpy", numpy_dir, numpy_dir.with_name("numpy.libs")):
        if src.exists():
            os.symlink(src, folder / src.name)
    return folder


def _tiny_onnx(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])], "tiny", [x], [y]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _bundled_model(zip_path: Path) -> bool:
    with zipfile.ZipFile(zip_path) as zf:
        return "model/manifest.json" in zf.namelist()


@pytest.fixture(scope="module")
def installed(zips: dict[str, Path], tmp_path_factory) -> dict:
    """Install + enable the Linux zip in a fresh Blender (subprocess) and drive the add-on once."""
    tmp = tmp_path_factory.mktemp("install")
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    for var, sub in (("HOME", ""), ("BLENDER_USER_RESOURCES", "blender"), ("XDG_CACHE_HOME", "cache")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    rate = 16_000
    agent, user = tmp / "agent.wav", tmp / "user.wav"
    sf.write(agent, synth_speech(3.0, rate, 1, [(1.5, 2.9)]), rate)
    sf.write(user, synth_speech(3.0, rate, 2, [(0.1, 1.4)]), rate)
    # the bundled model when the zip has one; otherwise TIMAR_TEST_MODEL (a converted bundle folder)
    model = "" if _bundled_model(zips["linux-x64"]) else os.environ.get("TIMAR_TEST_MODEL", "")
    args = {
        "zip": str(zips["linux-x64"]),
        "addon": ADDON,
        "tiny_onnx": str(_tiny_onnx(tmp / "tiny.onnx")),
        "agent": str(agent),
        "user": str(user),
        "model": model,
        "generate": bool(model) or _bundled_model(zips["linux-x64"]),
    }
    env.update(TIMAR_SHIM=str(_shim(tmp / "shim")), TIMAR_ARGS=json.dumps(args), OMP_NUM_THREADS="2")
    driver = tmp / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(driver)],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    assert lines, f"driver crashed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    result = json.loads(lines[-1][len(RESULT_MARK) :])
    result["args"], result["user_resources"] = args, env["BLENDER_USER_RESOURCES"]
    result["log"] = proc.stdout[-3000:] + proc.stderr[-3000:]
    return result


def _no_error(result: dict, phase: str) -> None:
    assert phase not in result["errors"], f"{phase} failed:\n{result['errors'][phase]}\n{result['log']}"


def test_installs_and_enables_in_blender(installed: dict) -> None:
    _no_error(installed, "install")
    info = installed["install"]
    assert info["ret"] == ["FINISHED"]
    assert ADDON in info["prefs_addons"]
    assert info["addon_utils"] == [True, True]  # (enabled by default, loaded)
    assert info["has_generate"]


def test_bundled_wheels_are_the_ones_used(installed: dict) -> None:
    _no_error(installed, "imports")
    files = installed["imports"]
    ext_site = Path(installed["user_resources"]) / "extensions" / ".local"
    for name in ("onnxruntime", "soundfile", "soxr", "cffi", "typing_extensions"):
        assert Path(files[name]).is_relative_to(ext_site), f"{name} came from {files[name]}"
    assert not Path(files["numpy"]).is_relative_to(ext_site)  # Blender's own numpy
    _no_error(installed, "runtime")
    rt = installed["runtime"]
    assert rt["onnx"] == [[-1.0, 4.0, -3.0, 8.0]]
    assert rt["wav"] == [1600, 16000] and rt["soxr"] == 1600


def test_generate_keys_the_test_rig(installed: dict) -> None:
    if not installed["args"]["generate"]:
        pytest.skip("the zip has no bundled model (timar_blender/model/manifest.json) and TIMAR_TEST_MODEL is unset")
    _no_error(installed, "generate")
    gen = installed["generate"]
    assert gen["ret"] == ["FINISHED"], installed["log"]
    assert gen["action"], f"no action on {gen['head']}'s shape keys: {gen}"
    assert gen["fcurves"] > 0 and gen["keyed"] > 0 and gen["keys"] > gen["fcurves"], gen
    assert gen["finite"], gen
    # (whether the keys move depends on the model: an untrained test bundle gives constant curves)
