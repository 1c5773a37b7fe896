"""What a new user runs first: scripts/demo.sh (a take on the demo head in a clean scene and a preview
picture next to it), the installed ``timar-blender`` command and ``python -m timar_blender.headless``
from another folder with relative paths (the saved .blend's sound strips must find the audio), and
scripts/preview_take.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from blender_helpers import ROOT, import_bpy, write_wavs

bpy = import_bpy()
pytestmark = pytest.mark.usefixtures("blender_addon")  # registered once here (the preview needs it), then removed

DEMO_OBJECTS = {"TIMAR Demo Head", "TIMAR Demo Head Rig", "TIMAR Demo Head Eye.L", "TIMAR Demo Head Eye.R",
                "TIMAR Camera", "TIMAR Key Light"}
sys.path.insert(0, str(ROOT / "scripts"))
import preview_take  # noqa: E402


def clean_env(tmp: Path) -> dict:
    """No PYTHONPATH (the project must be installed), Blender's user folders in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HOME=str(tmp / "home"), XDG_CACHE_HOME=str(tmp / "home" / ".cache"),
               BLENDER_USER_RESOURCES=str(tmp / "home" / "blender"), OMP_NUM_THREADS="1")
    return env


def installed(tmp: Path) -> None:
    r = subprocess.run([sys.executable, "-c", "import timar_blender"], cwd=tmp, env=clean_env(tmp),
                       capture_output=True, text=True)
    assert r.returncode == 0, f"timar_blender is not installed in {sys.prefix}: run scripts/setup.sh ({r.stderr})"


def strips_of(blend: Path) -> list[tuple[str, Path]]:
    """Each sound strip of a saved .blend: its stored path and the file it resolves to."""
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    ed = bpy.context.scene.sequence_editor
    strips = ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all
    return [(s.sound.filepath, Path(os.path.normpath(bpy.path.abspath(s.sound.filepath)))) for s in strips]


@pytest.fixture(scope="module")
def relative_take(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The installed command run from a folder of its own with relative audio paths, saving the take
    into a sibling folder; returns (take.blend, agent.wav, user.wav)."""
    tmp = tmp_path_factory.mktemp("relative")
    installed(tmp)
    work = tmp / "work"
    (work / "voices").mkdir(parents=True)
    agent, user = write_wavs(work / "voices")
    command = Path(sys.executable).with_name("timar-blender")
    assert command.is_file(), f"{command} is missing: run scripts/setup.sh (pip install -e .)"
    r = subprocess.run([str(command), "--add-demo-head", "--agent-audio", "voices/agent.wav", "--user-audio",
                        "voices/user.wav", "--out", "../renders/take.blend", "--export-csv", "../renders/take.csv"],
                       cwd=work, env=clean_env(tmp), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return tmp / "renders" / "take.blend", agent, user


def test_installed_command_from_another_folder_with_relative_paths(relative_take) -> None:
    blend, agent, user = relative_take
    assert blend.is_file() and blend.with_suffix(".csv").is_file()
    strips = strips_of(blend)
    assert sorted(p for _, p in strips) == sorted([agent, user]), strips
    assert all(p.is_file() for _, p in strips)
    assert all(stored.startswith("//") for stored, _ in strips)  # relative to the .blend: the folder can move
    scene = bpy.context.scene
    assert {o.name for o in scene.objects} == DEMO_OBJECTS  # a clean scene: no default cube, camera, light
    assert scene.camera.name == "TIMAR Camera"


def test_module_from_another_folder_with_relative_paths(tmp_path: Path) -> None:
    installed(tmp_path)
    (tmp_path / "in").mkdir()
    agent, user = write_wavs(tmp_path / "in")
    run = tmp_path / "run"
    run.mkdir()
    r = subprocess.run([sys.executable, "-m", "timar_blender.headless", "--create-test-rig", "--agent-audio",
                        "../in/agent.wav", "--user-audio", "../in/user.wav", "--out", "take.blend"],
                       cwd=run, env=clean_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    strips = strips_of(run / "take.blend")
    assert sorted(p for _, p in strips) == sorted([agent, user]) and all(p.is_file() for _, p in strips)


def test_preview_of_a_take(relative_take, tmp_path: Path) -> None:
    blend = relative_take[0]
    out = tmp_path / "sheet.png"
    info = preview_take.make_preview(blend, out)
    img = bpy.data.images.load(str(out))
    assert tuple(img.size) == (1200, 560)
    bpy.data.images.remove(img)
    labels = [label for _, label in info["frames"]]
    assert sorted(labels) == ["listening"] * 3 + ["talking"] * 3
    # write_wavs: the user speaks 0.1-1.4 s, the agent 1.5-2.9 s
    for frame, label in info["frames"]:
        assert (1.5 < frame / 25 < 2.9) if label == "talking" else (0.1 < frame / 25 < 1.4), (frame, label)
    # the frames shown: the jaw is open where the character talks, more than anywhere it listens
    jaw = info["jaw"]
    talking = [j for j, label in zip(jaw, labels, strict=True) if label == "talking"]
    listening = [j for j, label in zip(jaw, labels, strict=True) if label == "listening"]
    assert info["jaw_curve"].startswith("jawOpen") and max(talking) > max(listening) + 0.1, (talking, listening)
    print(f"preview in {info['total_seconds']} s (renders {info['render_seconds']} s); jaw {talking} / {listening}")


def test_preview_says_when_the_audio_is_gone(relative_take, tmp_path: Path) -> None:
    blend, agent, _user = relative_take
    moved = tmp_path / "agent.wav"
    shutil.move(agent, moved)
    try:
        with pytest.raises(preview_take.PreviewError, match=r"agent\.wav: the take's audio is not there"):
            preview_take.make_preview(blend, tmp_path / "x.png")
    finally:
        shutil.move(moved, agent)
    assert not (tmp_path / "x.png").exists()


def test_frame_picks_follow_who_speaks() -> None:
    n = 250
    agent, user = np.zeros(n), np.zeros(n)
    agent[20:100], user[120:200], agent[190:230] = 1.0, 1.0, 1.0  # overlap 190-200
    picks = preview_take.pick_frames(agent, user, n)
    for frame, label in picks:
        assert (20 + 3 <= frame < 100 - 3 or 200 + 3 <= frame < 230 - 3) if label == "talking" else \
            (120 + 3 <= frame < 190 - 3)
    with pytest.raises(preview_take.PreviewError, match="only the user speaks"):
        preview_take.pick_frames(agent, np.zeros(n), n)


def test_demo_script_writes_a_take_and_a_preview(tmp_path: Path) -> None:
    """The README's first command after setup: a take on the demo head in a clean scene framed by its
    camera, and a picture of it, in well under a minute."""
    out = tmp_path / "demo"
    t0 = time.perf_counter()
    r = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env={**clean_env(tmp_path), "OUT": str(out)},
                       capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    print(f"demo.sh: {seconds:.1f} s\n{r.stdout[-600:]}")
    assert (out / "take.blend").is_file() and (out / "preview.png").is_file()
    assert "preview" in r.stdout
    strips = strips_of(out / "take.blend")
    assert len(strips) == 2 and all(p.is_file() for _, p in strips)
    scene = bpy.context.scene
    assert {o.name for o in scene.objects} == DEMO_OBJECTS and scene.camera.name == "TIMAR Camera"
