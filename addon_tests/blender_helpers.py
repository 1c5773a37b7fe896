"""Shared by the tests that run the add-on in real Blender (the bpy module), live_device_script.py
and scripts/render_demo_head.py: bpy with throw-away user folders, a fresh scene with a character,
test speech, the headless entry point, and reading keys, action assignments and renders back.

Importing this module changes nothing (no environment, no bpy): ``import_bpy()`` does both, for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000


def import_bpy():
    """The bpy module, with Blender's user folders in a temporary directory (set before the first
    import); skips the calling test module where bpy is not installed."""
    import pytest

    home = tempfile.mkdtemp(prefix="timar-bpy-")
    for var, sub in (("HOME", ""), ("BLENDER_USER_RESOURCES", "blender"), ("XDG_CACHE_HOME", "cache")):
        os.environ.setdefault(var, os.path.join(home, sub))
    return pytest.importorskip("bpy")


def write_wavs(folder: Path, user_rate: int = RATE, user_subtype: str | None = None) -> tuple[Path, Path]:
    """3 s of synthetic speech each: agent.wav (16 kHz, speaking 1.5-2.9 s) and user.wav (speaking
    0.1-1.4 s, at ``user_rate``)."""
    import soundfile as sf

    from model_export.synthetic import synth_speech

    agent, user = folder / "agent.wav", folder / "user.wav"
    sf.write(agent, synth_speech(3.0, RATE, 1, [(1.5, 2.9)]), RATE)
    sf.write(user, synth_speech(3.0, user_rate, 2, [(0.1, 1.4)]), user_rate, subtype=user_subtype)
    return agent, user


def new_scene(add: str = "create_test_rig", **settings):
    """An empty scene with a character added by ``bpy.ops.timar.<add>`` and ``settings`` set on
    ``scene.timar`` (in the order given)."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert getattr(bpy.ops.timar, add)() == {"FINISHED"}
    s = bpy.context.scene.timar
    for name, value in settings.items():
        setattr(s, name, value)
    return bpy.context.scene


def assigned_fcurves(idblock):
    """The f-curves of the action assigned to ``idblock`` (its slot's channel bag from Blender 4.4)."""
    from timar_blender.blender import keyframes

    ad = idblock.animation_data
    if keyframes.SLOTTED:
        from bpy_extras import anim_utils

        return anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot).fcurves
    return ad.action.fcurves  # Blender 4.2/4.3: legacy actions


def key_points(fc, dtype=np.float32) -> np.ndarray:
    """(N, 2) frame and value of each key of an f-curve."""
    co = np.zeros(2 * len(fc.keyframe_points), dtype)
    fc.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


def read_keys(idblock, data_path: str, index: int = 0) -> np.ndarray:
    """(N, 2) keys of one f-curve of the action assigned to ``idblock``."""
    return key_points(assigned_fcurves(idblock).find(data_path, index=index))


def assignments(ids: Iterable) -> dict[str, tuple[str | None, int]]:
    """Each ID's assigned action (name) and its number of NLA tracks."""
    out = {}
    for idb in ids:
        ad = idb.animation_data
        out[idb.name] = (ad.action.name if ad and ad.action else None, len(ad.nla_tracks) if ad else 0)
    return out


def render_still(scene, frame: int, path: Path) -> np.ndarray:
    """Render ``frame`` to ``path`` and read it back as (H, W, 3) RGB, top row first."""
    import bpy

    scene.frame_set(frame)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(str(path))
    w, h = img.size
    px = np.array(img.pixels[:], np.float32).reshape(h, w, 4)[::-1, :, :3]
    bpy.data.images.remove(img)
    return px


def run_headless(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m timar_blender.headless ARGS`` in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "timar_blender.headless", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


# --- expected values worked out here, independently of the engine code the tests check -----------


def at_scene_frames(values: np.ndarray, src_fps: float, dst_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame offsets and (N, C) values at every scene frame covering the take, by linear
    interpolation in time (what the writer must key)."""
    values = np.asarray(values, np.float64)
    n = int(np.floor((len(values) - 1) / src_fps * dst_fps + 1e-6)) + 1
    t_dst, t_src = np.arange(n) / dst_fps, np.arange(len(values)) / src_fps
    return np.arange(n, dtype=np.float64), np.stack([np.interp(t_dst, t_src, c) for c in values.T], axis=1)


def quaternions(rotvec: np.ndarray) -> np.ndarray:
    """(N, 3) axis-angle -> (N, 4) unit quaternions (w, x, y, z), by the half-angle formula."""
    rotvec = np.asarray(rotvec, np.float64)
    angle = np.linalg.norm(rotvec, axis=1)
    axis = rotvec / np.where(angle > 0, angle, 1.0)[:, None]
    return np.concatenate([np.cos(angle / 2)[:, None], axis * np.sin(angle / 2)[:, None]], axis=1)


def same_rotations(got: np.ndarray, expected: np.ndarray, atol: float) -> None:
    """Quaternions equal up to sign (q and -q are one rotation)."""
    sign = np.where(np.sum(got * expected, axis=1) < 0, -1.0, 1.0)[:, None]
    np.testing.assert_allclose(got, expected * sign, atol=atol)


def retarget_by_hand(motion: np.ndarray, arkit_name: str, path: Path | None = None) -> np.ndarray:
    """One ARKit channel of FLAME motion, read straight from the retarget map's JSON:
    clip((m - rest) . weights[i] + bias[i], 0, 1)."""
    import json

    d = json.loads((path or ROOT / "timar_blender" / "engine" / "arkit_retarget.json").read_text())
    i = d["outputs"].index(arkit_name)
    m = np.asarray(motion, np.float64) - np.asarray(d["rest"])
    return np.clip(m @ np.asarray(d["weights"][i]) + d["bias"][i], 0.0, 1.0)


def generated_take(agent_wav, user_wav, **values) -> np.ndarray:
    """What Generate keys for a scene whose settings are ``values`` over the bundled model's
    recommended options: the engine's raw take through the take pipeline (strengths, smoothing)."""
    from timar_blender.engine import job, settings
    from timar_blender.engine.take import TakePipeline

    used = settings.resolve(values, settings.read_recommended(job.BUNDLED_MODEL))
    raw = job.run(job.Request(str(agent_wav), str(user_wav), options=used.sampling_options())).takes[0].motion
    return TakePipeline.from_settings(used).motion(raw)
