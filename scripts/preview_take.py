#!/usr/bin/env python3
"""A preview of a saved take, to look at without opening Blender: a contact sheet of frames where the
character talks and where it listens (Workbench renders through the scene's camera) above its jaw and
head curves over the whole dialogue, shaded by who speaks.

    .venv/bin/python scripts/preview_take.py runs/demo/take.blend            # -> runs/demo/preview.png
    .venv/bin/python scripts/preview_take.py take.blend --out sheet.png --agent a.wav --user u.wav

The audio is the take's two sound strips (Generate adds the agent's first, the user's second) unless
``--agent`` / ``--user`` name the files. Who speaks: each track's loudness per model frame (40 ms)
against its own 95th percentile. Talking frames: the agent speaks and the user does not; listening
frames: the other way round; three of each, spread over the dialogue. The curves are the take's keys
(``jawOpen`` on an ARKit character, else the FLAME jaw) and its head rotation (the take's FLAME neck,
as the exports compute it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATE = 16_000
HOP = RATE // 25  # one model frame of audio (40 ms)
SPEAKS = 0.2  # a track speaks where its level is above this fraction of its 95th percentile


class PreviewError(RuntimeError):
    pass


def speech_levels(agent: str, user: str) -> tuple[np.ndarray, np.ndarray]:
    """(frames,) loudness of each track per 40-ms frame, relative to its own 95th percentile and
    smoothed over 0.2 s."""
    from timar_blender.engine.audio import load_audio

    tracks = [load_audio(agent), load_audio(user)]
    n = max(len(t) for t in tracks) // HOP
    out = []
    for t in tracks:
        t = np.pad(t[: n * HOP], (0, max(0, n * HOP - len(t))))
        rms = np.sqrt(np.mean(t.reshape(n, HOP) ** 2, axis=1))
        rms = np.convolve(rms, np.ones(5) / 5, mode="same")
        out.append(rms / (np.percentile(rms, 95) + 1e-9))
    return out[0], out[1]


def pick_frames(agent: np.ndarray, user: np.ndarray, frames: int, each: int = 3) -> list[tuple[int, str]]:
    """``each`` model frames where only the agent speaks ("talking") and ``each`` where only the user
    does ("listening"), spread evenly over those moments, in time order."""
    n = min(len(agent), len(user), frames)
    a, u = agent[:n] > SPEAKS, user[:n] > SPEAKS
    picks = []
    for label, mine, other in (("talking", a, u), ("listening", u, a)):
        alone = mine & ~other
        alone = np.convolve(alone, np.ones(7), mode="same") == 7  # for 0.1 s either side too
        ok = np.flatnonzero(alone)
        ok = ok[(ok >= 12) & (ok < n - 12)]  # not in the first or last half second
        if len(ok) == 0:
            raise PreviewError(f"no moment where only the {'agent' if label == 'talking' else 'user'} speaks")
        picks += [(int(i), label) for i in ok[np.linspace(0, len(ok) - 1, each).round().astype(int)]]
    return sorted(picks)


def _sound_paths(scene) -> list[str]:
    import bpy

    ed = scene.sequence_editor
    strips = [] if ed is None else (ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all)
    strips = sorted((s for s in strips if s.type == "SOUND" and s.sound), key=lambda s: s.channel)
    return [os.path.normpath(bpy.path.abspath(s.sound.filepath)) for s in strips]


def _character(scene):
    """The object the take animates: the scene's TIMAR character (an object or its name)."""
    import bpy

    c = scene.timar.character if hasattr(scene, "timar") else None
    obj = bpy.data.objects.get(c) if isinstance(c, str) else c
    if obj is None:
        raise PreviewError("the scene has no TIMAR character")
    return obj


def _setup_render(scene, width: int, height: int) -> None:
    import bpy

    if scene.camera is None:
        raise PreviewError("the scene has no camera")
    r = scene.render
    r.engine, r.resolution_x, r.resolution_y, r.resolution_percentage = "BLENDER_WORKBENCH", width, height, 100
    r.film_transparent = False
    shading = scene.display.shading
    shading.light, shading.color_type, shading.show_cavity = "STUDIO", "MATERIAL", True
    scene.view_settings.view_transform = "Standard"
    scene.world = scene.world or bpy.data.worlds.new("TIMAR Preview")
    scene.world.color = (0.62, 0.66, 0.72)


def _render(scene, frame: int, path: Path) -> np.ndarray:
    import bpy

    scene.frame_set(frame)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(str(path))
    w, h = img.size
    px = np.array(img.pixels[:], np.float32).reshape(h, w, 4)[::-1, :, :3]
    bpy.data.images.remove(img)
    return px


def _assigned_fcurves(idblock) -> list:
    """The f-curves of the action assigned to ``idblock`` (its slot's channel bag from Blender 4.4)."""
    ad = idblock.animation_data if idblock is not None else None
    if ad is None or ad.action is None:
        return []
    if getattr(ad, "action_slot", None) is not None:
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot)
        return list(bag.fcurves) if bag is not None else []
    return list(ad.action.fcurves)


def _first_frame(obj) -> float:
    """The take's first frame: where the keys on the character's shape keys or armature begin."""
    from timar_blender.blender.rig import armature_of

    key = obj.data.shape_keys if obj.type == "MESH" else None
    starts = [fc.keyframe_points[0].co[0] for idb in (key, armature_of(obj)) for fc in _assigned_fcurves(idb)
              if len(fc.keyframe_points)]
    if not starts:
        raise PreviewError(f"'{obj.name}' has no keys")
    return min(starts)


def _jaw_curve(obj, motion: np.ndarray, scene_fps: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Times (s from the take's first frame) and values of the jaw the viewer sees."""
    key = obj.data.shape_keys if obj.type == "MESH" else None
    for fc in _assigned_fcurves(key):
        if fc.data_path == 'key_blocks["jawOpen"].value':
            co = np.zeros(2 * len(fc.keyframe_points), np.float64)
            fc.keyframe_points.foreach_get("co", co)
            co = co.reshape(-1, 2)
            return (co[:, 0] - co[0, 0]) / scene_fps, co[:, 1], "jawOpen (ARKit key)"
    return np.arange(len(motion)) / 25.0, np.degrees(motion[:, 50]), "FLAME jaw (degrees)"


def make_preview(blend: Path, out: Path, agent: str | None = None, user: str | None = None) -> dict:
    import bpy
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import timar_blender
    from timar_blender.blender.export import arkit_of_take, take_motion
    from timar_blender.engine.exports import head_ypr

    t0 = time.perf_counter()
    if not blend.is_file():
        raise PreviewError(f"{blend}: no such .blend")
    bpy.ops.wm.open_mainfile(filepath=str(blend.resolve()))
    if not hasattr(bpy.types.Scene, "timar"):
        timar_blender.register()
    scene = bpy.context.scene
    obj = _character(scene)
    motion, fps, meta = take_motion(obj)
    if agent is None or user is None:
        paths = _sound_paths(scene)
        if len(paths) < 2:
            raise PreviewError(f"{blend}: the take has {len(paths)} sound strip(s); name the audio with --agent/--user")
        agent, user = agent or paths[0], user or paths[1]
    for p in (agent, user):
        if not Path(p).is_file():
            raise PreviewError(f"{p}: the take's audio is not there (a sound strip pointing nowhere?)")
    level_a, level_u = speech_levels(agent, user)
    picks = pick_frames(level_a, level_u, len(motion))

    from timar_blender.blender.keyframes import scene_fps

    start, sfps = _first_frame(obj), scene_fps(scene)
    _setup_render(scene, 300, 340)
    tmp = Path(tempfile.mkdtemp(prefix="timar-preview-"))
    images = [_render(scene, round(start + i / fps * sfps), tmp / f"f{i}.png") for i, _ in picks]
    t_render = time.perf_counter() - t0

    jaw_t, jaw, jaw_label = _jaw_curve(obj, motion, sfps)
    # the head as written: relative to the retarget map's rest pose on an ARKit rig, FLAME's neck otherwise
    ypr = np.degrees(arkit_of_take(obj)[1] if meta.get("rig") == "ARKIT" else head_ypr(motion))
    t = np.arange(len(motion)) / fps
    fig = plt.figure(figsize=(12, 5.6), dpi=100)
    grid = fig.add_gridspec(3, 6, height_ratios=[2.45, 1.0, 1.0], hspace=0.35, wspace=0.03,
                            left=0.055, right=0.995, top=0.95, bottom=0.08)
    for k, ((i, label), img) in enumerate(zip(picks, images, strict=True)):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(img[10:-10, 20:-20])
        ax.set_title(f"{k + 1}: {i / fps:.1f} s {label}", fontsize=9)
        ax.axis("off")
    shade = [(level_a > SPEAKS) & ~(level_u > SPEAKS), (level_u > SPEAKS) & ~(level_a > SPEAKS),
             (level_a > SPEAKS) & (level_u > SPEAKS)]
    colours = ("#f4a259", "#5b8fd6", "#b07cc6")
    names = ("character speaks", "other person speaks", "both")
    axes = [fig.add_subplot(grid[1, :]), fig.add_subplot(grid[2, :])]
    for ax in axes:
        for mask, colour in zip(shade, colours, strict=True):
            ax.fill_between(np.arange(len(mask)) / 25.0, 0, 1, where=mask, color=colour, alpha=0.22, lw=0,
                            transform=ax.get_xaxis_transform(), step="mid")
        for k, (i, _label) in enumerate(picks):
            ax.axvline(i / fps, color="0.3", lw=0.6, ls=":")
            if ax is axes[0]:
                ax.text(i / fps, 1.02, str(k + 1), transform=ax.get_xaxis_transform(), ha="center", fontsize=8)
        ax.set_xlim(0, t[-1])
        ax.tick_params(labelsize=8)
    axes[0].plot(jaw_t, jaw, color="k", lw=0.8)
    axes[0].set_ylabel(jaw_label.split(" (")[0], fontsize=8)
    axes[0].set_xticklabels([])
    axes[1].plot(t, ypr[:, 1], lw=0.8, label="pitch (nod)")
    axes[1].plot(t, ypr[:, 0], lw=0.8, label="yaw (turn)")
    axes[1].set_ylabel("head (deg)", fontsize=8)
    lo, hi = float(ypr[:, :2].min()), float(ypr[:, :2].max())
    mid, half = (lo + hi) / 2, max((hi - lo) / 2 * 1.15, 3.0)  # at least +-3 degrees: small stays small
    axes[1].set_ylim(mid - half, mid + half)
    axes[1].set_xlabel("seconds", fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.35) for c in colours]
    axes[0].legend(handles, names, fontsize=7, loc="upper right", ncol=3, framealpha=0.8)
    axes[1].legend(fontsize=7, loc="upper right", ncol=2, framealpha=0.8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor="white")
    plt.close(fig)
    at_picks = np.interp([i / fps for i, _ in picks], jaw_t, jaw)
    return {"preview": str(out), "frames": [[i, label] for i, label in picks], "jaw": at_picks.round(4).tolist(),
            "jaw_curve": jaw_label, "seconds": round(t[-1], 2),
            "render_seconds": round(t_render, 2), "total_seconds": round(time.perf_counter() - t0, 2),
            "character": obj.name, "seed": meta.get("seed")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("blend", type=Path, help="a .blend with a TIMAR take (e.g. runs/demo/take.blend)")
    p.add_argument("--out", type=Path, help="the picture (default: preview.png next to the .blend)")
    p.add_argument("--agent", help="the character's speech (default: the take's first sound strip)")
    p.add_argument("--user", help="the other person's speech (default: the take's second sound strip)")
    args = p.parse_args()
    out = args.out or args.blend.with_name("preview.png")
    try:
        info = make_preview(args.blend, out.resolve(), args.agent, args.user)
    except (PreviewError, RuntimeError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({info['total_seconds']:.1f} s, renders {info['render_seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
