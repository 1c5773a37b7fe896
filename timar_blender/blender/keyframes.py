"""Writing a take onto a character: one new action per animated datablock, keys in bulk.

* Blender 4.4+ slotted actions (``action.slots`` + channelbags); ``action.fcurves`` on 4.2/4.3.
* The artist's own action is stashed on a muted NLA track, never modified or replaced in place.
* Keys go in with ``keyframe_points.add`` + ``foreach_set`` (10 minutes of motion in well under
  a second); shape-key slider ranges are widened to fit signed FLAME coefficients.
* Everything written is recorded, and ``rollback`` undoes it if anything fails half way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy
import numpy as np

from ..engine.curves import resample, rotvec_to_euler_xyz, rotvec_to_quaternion
from ..engine.rigmap import ChannelMap
from ..engine.settings import MAX_FRAME  # Blender's MAXFRAME (and -MAXFRAME for keys)

SLOTTED = bpy.app.version >= (4, 4, 0)
LINEAR = 1  # index of 'LINEAR' in the keyframe interpolation enum
SHAPE_KEY_LIMIT = 10.0  # Blender clamps shape-key values to slider ranges within -10..10
MAX_ROTATION = 2 * np.pi  # radians a head or jaw bone may turn; more is a broken map or option, not motion


class WriteError(RuntimeError):
    pass


@dataclass
class Written:
    """What a take changed, so it can be reported and, on failure, undone."""

    actions: list = field(default_factory=list)  # actions created
    assignments: list = field(default_factory=list)  # (id, previous action, previous slot name)
    stashed: list = field(default_factory=list)  # (id, nla track created)
    sliders: list = field(default_factory=list)  # (key block, old min, old max)
    created_data: list = field(default_factory=list)  # IDs that had no animation_data before
    frame_end: tuple | None = None  # (scene, previous frame_end)
    fcurves: int = 0
    keys: int = 0
    frames: tuple[int, int] = (0, 0)


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def _fcurves_for(action: bpy.types.Action, slot):
    if SLOTTED:
        from bpy_extras import anim_utils

        return anim_utils.action_ensure_channelbag_for_slot(action, slot).fcurves
    return action.fcurves


def _new_action(idblock, name: str, id_type: str, written: Written):
    action = bpy.data.actions.new(name)
    written.actions.append(action)
    slot = action.slots.new(id_type=id_type, name=idblock.name) if SLOTTED else None
    return action, slot


def _assign(idblock, action, slot, start: int, written: Written) -> None:
    if idblock.animation_data is None:
        written.created_data.append(idblock)
    ad = idblock.animation_data or idblock.animation_data_create()
    previous = ad.action
    prev_slot = ad.action_slot.identifier if SLOTTED and previous is not None and ad.action_slot else None
    written.assignments.append((idblock, previous, prev_slot))
    if previous is not None:  # keep the artist's animation: stash it, muted, on its own NLA track
        track = ad.nla_tracks.new()
        track.name = f"[Action Stash] {previous.name}"
        strip = track.strips.new(previous.name, int(previous.frame_range[0]), previous)
        if SLOTTED and prev_slot is not None:
            strip.action_slot = previous.slots.get(prev_slot) or strip.action_slot
        track.mute = True
        written.stashed.append((idblock, track))
    ad.action = action
    if SLOTTED:
        ad.action_slot = slot


def _keys(fcurves, data_path: str, index: int, frames: np.ndarray, values: np.ndarray, group: str, w: Written):
    fc = fcurves.new(data_path, index=index, action_group=group) if not SLOTTED else fcurves.new(data_path, index=index)
    n = len(frames)
    fc.keyframe_points.add(n)
    co = np.empty(2 * n, dtype=np.float32)
    co[0::2] = frames
    co[1::2] = values
    fc.keyframe_points.foreach_set("co", co)
    fc.keyframe_points.foreach_set("interpolation", np.full(n, LINEAR, dtype=np.int32))
    fc.update()
    w.fcurves += 1
    w.keys += n


def _bone_rotation(pbone, rotvec: np.ndarray) -> tuple[str, np.ndarray]:
    mode = pbone.rotation_mode
    if mode == "QUATERNION":
        return "rotation_quaternion", rotvec_to_quaternion(rotvec)
    if mode == "AXIS_ANGLE":
        angle = np.linalg.norm(rotvec, axis=1, keepdims=True)
        axis = np.where(angle > 1e-8, rotvec / np.maximum(angle, 1e-12), np.array([[0.0, 1.0, 0.0]]))
        return "rotation_axis_angle", np.concatenate([angle, axis], axis=1).astype(np.float32)
    if mode == "XYZ":
        return "rotation_euler", rotvec_to_euler_xyz(rotvec)
    from mathutils import Quaternion

    quats = rotvec_to_quaternion(rotvec)
    return "rotation_euler", np.array([Quaternion(q).to_euler(mode) for q in quats], dtype=np.float32)


def write_take(
    scene: bpy.types.Scene,
    mesh_obj: bpy.types.Object,
    armature: bpy.types.Object | None,
    motion: np.ndarray,
    fps: float,
    cmap: ChannelMap,
    start_frame: int,
    take_name: str,
) -> Written:
    """Key ``motion`` (T, 56 at ``fps``) onto the mapped shape keys and bones from ``start_frame``.

    Raises WriteError (after rolling back) if anything fails.
    """
    offsets, values = resample(motion, fps, scene_fps(scene))
    check_take(values, cmap, start_frame + offsets, take_name)  # before anything in the scene changes
    w = Written()
    try:
        frames = (start_frame + offsets).astype(np.float32)
        w.frames = (int(frames[0]), int(frames[-1]))
        shape_targets = {ch: t for ch, t in cmap.targets.items() if t.kind == "SHAPE_KEY"}
        if shape_targets:
            key = mesh_obj.data.shape_keys
            action, slot = _new_action(key, f"TIMAR {take_name} | shape keys", "KEY", w)
            fcurves = _fcurves_for(action, slot)
            for ch, t in sorted(shape_targets.items()):
                kb = key.key_blocks[t.name]
                v = values[:, ch] * t.gain
                w.sliders.append((kb, kb.slider_min, kb.slider_max))
                kb.slider_min = max(-10.0, min(kb.slider_min, float(np.floor(v.min()))))
                kb.slider_max = min(10.0, max(kb.slider_max, float(np.ceil(v.max()))))
                path = f'key_blocks["{bpy.utils.escape_identifier(t.name)}"].value'
                _keys(fcurves, path, 0, frames, v, "Expression", w)
            _assign(key, action, slot, start_frame, w)
        bones = cmap.bones()
        if bones:
            if armature is None:
                raise WriteError("the channel map drives bones but the character has no armature")
            action, slot = _new_action(armature, f"TIMAR {take_name} | head", "OBJECT", w)
            fcurves = _fcurves_for(action, slot)
            for bone, channels in bones.items():
                pbone = armature.pose.bones.get(bone)
                if pbone is None:
                    raise WriteError(f"bone '{bone}' not found on '{armature.name}'")
                rotvec = np.stack([values[:, ch] * cmap.targets[ch].gain for ch in channels], axis=1)
                if rotvec.shape[1] != 3:
                    raise WriteError(f"bone '{bone}' needs 3 rotation channels, the map gives {rotvec.shape[1]}")
                prop, rot = _bone_rotation(pbone, rotvec)
                path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{prop}'
                for i in range(rot.shape[1]):
                    _keys(fcurves, path, i, frames, rot[:, i], bone, w)
            _assign(armature, action, slot, start_frame, w)
        w.frame_end = (scene, scene.frame_end)
        scene.frame_end = max(scene.frame_end, w.frames[1])
        return w
    except Exception as exc:
        rollback(w)
        raise WriteError(f"writing take '{take_name}' failed and was undone: {exc}") from exc


def check_take(values: np.ndarray, cmap: ChannelMap, frames: np.ndarray, take_name: str) -> None:
    """WriteError unless every value the take would key is finite and in a range Blender keeps
    as given (inf would be stored as FLT_MAX, shape keys clamp at +-10), and every frame is one
    Blender can key exactly."""
    where = f"take '{take_name}'"
    if len(frames) and (frames[0] < -MAX_FRAME or frames[-1] > MAX_FRAME):
        raise WriteError(f"{where}: frames {frames[0]:.0f}-{frames[-1]:.0f} run past Blender's last frame "
                         f"(+-{MAX_FRAME}); choose an earlier start frame. Nothing was written")
    for ch, t in sorted(cmap.targets.items()):
        if t.kind != "SHAPE_KEY":
            continue
        v = values[:, ch] * t.gain
        if not np.isfinite(v).all():
            raise WriteError(f"{where}: shape key '{t.name}' would get NaN or infinite values (check the strengths, "
                             "gains, retarget map and sampling options). Nothing was written")
        peak = float(np.abs(v).max()) if len(v) else 0.0
        if peak > SHAPE_KEY_LIMIT:
            raise WriteError(f"{where}: shape key '{t.name}' would reach {peak:.3g}, beyond Blender's shape-key "
                             f"range +-{SHAPE_KEY_LIMIT:g} (check the strengths and gains). Nothing was written")
    for bone, channels in cmap.bones().items():
        rot = np.stack([values[:, ch] * cmap.targets[ch].gain for ch in channels], axis=1)
        if not np.isfinite(rot).all():
            raise WriteError(f"{where}: bone '{bone}' would get NaN or infinite rotations (check the strengths, "
                             "gains, retarget map and sampling options). Nothing was written")
        peak = float(np.linalg.norm(rot, axis=1).max()) if len(rot) else 0.0
        if peak > MAX_ROTATION:
            raise WriteError(f"{where}: bone '{bone}' would turn {peak:.3g} rad, more than a full turn "
                             "(check the strengths, gains and retarget map). Nothing was written")


def rollback(w: Written) -> None:
    """Undo everything ``w`` records: previous actions back, stash tracks and new actions removed,
    animation data the take created cleared, the scene's end frame restored."""
    for idblock, track in reversed(w.stashed):
        idblock.animation_data.nla_tracks.remove(track)
    for idblock, previous, prev_slot in reversed(w.assignments):
        ad = idblock.animation_data
        ad.action = previous
        if SLOTTED and previous is not None and prev_slot is not None:
            ad.action_slot = previous.slots.get(prev_slot)
    for kb, lo, hi in reversed(w.sliders):
        kb.slider_min, kb.slider_max = lo, hi
    for action in w.actions:
        bpy.data.actions.remove(action)
    w.actions.clear()
    for idblock in w.created_data:
        ad = idblock.animation_data
        if ad is not None and ad.action is None and not len(ad.nla_tracks) and not len(ad.drivers):
            idblock.animation_data_clear()
    w.created_data.clear()
    if w.frame_end is not None:
        scene, end = w.frame_end
        scene.frame_end = end
        w.frame_end = None
