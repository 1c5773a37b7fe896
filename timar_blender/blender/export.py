"""Exports of a written take: glTF/GLB and FBX (Blender's own exporters, shape-key animation
included), Live Link Face CSV and raw FLAME-56 NPZ/JSON (engine/exports.py).

The CSV and FLAME files need the take's FLAME motion, which the keys cannot give back (ARKit keys
are retargeted and clamped, FLAME keys resampled to the scene's rate and scaled by gains). So each
take stores its motion, at the model's frame rate after strength and smoothing (the take pipeline's
``Take.motion``, engine/take.py), inside the .blend as
ID properties of the actions it created: it travels with the file, every take keeps its own (the
assigned action picks the take), it survives undo, save and reload, and there is no side file to
lose or to go stale. 10 minutes of motion is about 3 MB (float32, zlib).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import bpy
import numpy as np

from ..engine import exports
from ..engine.arkit import default_retarget_map, load_retarget_map
from ..engine.contract import NECK
from ..engine.take import arkit_weights
from .rig import armature_of

MOTION_KEY = "timar_motion"  # zlib-compressed little-endian float32 (T, MOTION_DIM)
META_KEY = "timar_take"  # JSON: shape, fps, seed, rig, blinks, retarget_map


class ExportError(RuntimeError):
    pass


def store_take(actions: list, motion: np.ndarray, fps: float, meta: dict) -> None:
    """Attach the take's FLAME motion and how it was written to each action the take created."""
    motion = np.ascontiguousarray(motion, dtype="<f4")
    blob = zlib.compress(motion.tobytes(), 1)
    info = json.dumps({"shape": list(motion.shape), "fps": float(fps), **meta})
    for action in actions:
        action[MOTION_KEY] = blob
        action[META_KEY] = info


def _assigned_actions(obj: bpy.types.Object) -> list:
    out = []
    key = obj.data.shape_keys if obj.type == "MESH" else None
    arm = armature_of(obj)
    for idb in (key, arm):
        ad = idb.animation_data if idb is not None else None
        if ad is not None and ad.action is not None:
            out.append(ad.action)
    return out


def take_motion(obj: bpy.types.Object) -> tuple[np.ndarray, float, dict]:
    """The FLAME motion (T, 56), its fps and metadata of the take currently assigned to ``obj``."""
    for action in _assigned_actions(obj):
        if MOTION_KEY in action and META_KEY in action:
            meta = json.loads(action[META_KEY])
            shape = tuple(meta["shape"])
            motion = np.frombuffer(zlib.decompress(bytes(action[MOTION_KEY])), dtype="<f4").reshape(shape)
            return motion.astype(np.float32), float(meta["fps"]), meta
    raise ExportError(f"'{obj.name}' has no TIMAR take assigned; generate one first")


def arkit_of_take(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray, float]:
    """ARKit-52 weights and head yaw/pitch/roll of the assigned take (the same retarget map and
    blinks the take was written with), at the take's fps."""
    motion, fps, meta = take_motion(obj)
    path = meta.get("retarget_map") or ""
    if path and not Path(path).is_file():
        raise ExportError(f"{path}: the take's retarget map is gone; restore it or generate again")
    retarget = load_retarget_map(path) if path else default_retarget_map()
    weights = arkit_weights(retarget, motion, fps, int(meta.get("seed", 0)), bool(meta.get("blinks", False)))
    head = exports.head_ypr(motion, retarget.rest[NECK])
    return weights, head, fps


def export_live_link_csv(obj: bpy.types.Object, path: str | Path, start_timecode: str = "00:00:00:00.000") -> dict:
    """The take as a Live Link Face CSV whose first row is at ``start_timecode`` (HH:MM:SS:FF[.fff], 60 fps)."""
    exports.parse_timecode(start_timecode)  # a bad timecode fails before any work
    weights, head, fps = arkit_of_take(obj)
    exports.write_live_link_csv(path, weights, head, fps, start_timecode)
    return {"path": str(path), "frames": len(weights), "fps": fps, "columns": len(exports.LIVE_LINK_COLUMNS),
            "start_timecode": start_timecode}


def export_flame(obj: bpy.types.Object, path: str | Path) -> dict:
    motion, fps, _meta = take_motion(obj)
    exports.write_flame(path, motion, fps)
    return {"path": str(path), "frames": len(motion), "fps": fps}


def character_objects(obj: bpy.types.Object) -> list[bpy.types.Object]:
    """The character, its armature and everything parented to either (eyes, teeth, ...)."""
    arm = armature_of(obj)
    roots = [o for o in (obj, arm) if o is not None]
    out = list(roots)
    for root in roots:
        out += [c for c in root.children_recursive if c not in out]
    return out


class _Selection:
    """Select exactly the character for an exporter's ``use_selection``, then put things back."""

    def __init__(self, context: bpy.types.Context, objects: list):
        self.context, self.objects = context, objects

    def __enter__(self):
        vl = self.context.view_layer
        self.before = [o for o in vl.objects if o.select_get()]
        self.active = vl.objects.active
        if self.context.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        for o in self.before:
            o.select_set(False)
        for o in self.objects:
            if o.name in vl.objects:
                o.select_set(True)
        vl.objects.active = self.objects[0]
        return self

    def __exit__(self, *exc):
        vl = self.context.view_layer
        for o in self.objects:
            if o.name in vl.objects:
                o.select_set(False)
        for o in self.before:
            o.select_set(True)
        vl.objects.active = self.active
        return False


def _frame_range(obj: bpy.types.Object) -> tuple[int, int]:
    lo, hi = None, None
    for action in _assigned_actions(obj):
        a, b = action.frame_range
        lo, hi = (a if lo is None else min(lo, a)), (b if hi is None else max(hi, b))
    if lo is None:
        raise ExportError(f"'{obj.name}' has no animation to export; generate a take first")
    return round(lo), round(hi)


class _SceneRange:
    """Export exactly the take's frames (the exporters sample the scene range)."""

    def __init__(self, scene: bpy.types.Scene, frames: tuple[int, int]):
        self.scene, self.frames = scene, frames

    def __enter__(self):
        s = self.scene
        self.before = (s.frame_start, s.frame_end, s.frame_current)
        s.frame_start, s.frame_end = self.frames
        return self

    def __exit__(self, *exc):
        s = self.scene
        s.frame_start, s.frame_end = self.before[:2]
        s.frame_set(self.before[2])
        return False


class _SkinnedMeshesAsRoots:
    """Unparent the meshes an armature parents and deforms (same world transform, the armature
    modifier still deforms them), then put parent, parent inverse and local transform back."""

    def __init__(self, objects: list):
        self.saved = [(o, o.parent, o.parent_type, o.matrix_parent_inverse.copy(), o.matrix_basis.copy())
                      for o in objects
                      if o.type == "MESH" and o.parent is not None and o.parent.type == "ARMATURE"
                      and o.parent_type == "OBJECT"
                      and any(m.type == "ARMATURE" and m.object == o.parent for m in o.modifiers)]

    def __enter__(self):
        for o, *_ in self.saved:
            world = o.matrix_world.copy()
            o.parent = None
            o.matrix_world = world
        return self

    def __exit__(self, *exc):
        for o, parent, parent_type, inverse, basis in self.saved:
            o.parent, o.parent_type = parent, parent_type
            o.matrix_parent_inverse = inverse
            o.matrix_basis = basis
        return False


def _run_exporter(context: bpy.types.Context, obj: bpy.types.Object, path: Path, what: str, op,
                  skinned_roots: bool = False, **options) -> dict:
    """Run Blender's exporter ``op`` on exactly the character's objects over the take's frames
    (``skinned_roots``: with the skinned meshes unparented)."""
    frames = _frame_range(obj)
    objs = character_objects(obj)
    with _Selection(context, objs), _SceneRange(context.scene, frames), _SkinnedMeshesAsRoots(
            objs if skinned_roots else []):
        result = op(filepath=str(path), use_selection=True, **options)
    if "FINISHED" not in result or not path.is_file():
        raise ExportError(f"{path}: the {what} exporter did not write the file")
    return {"path": str(path), "frames": list(frames), "objects": [o.name for o in objs]}


def export_gltf(context: bpy.types.Context, obj: bpy.types.Object, path: str | Path) -> dict:
    """glTF 2.0 (``.glb`` binary or ``.gltf`` + ``.bin``): mesh with morph targets, skin, and one
    animation with the shape-key weights and the head bone, sampled at every frame of the take.

    Skinned meshes are exported as root nodes, as glTF expects (the Khronos validator warns about a
    skinned mesh under a parent: NODE_SKINNED_MESH_NON_ROOT), by unparenting them from their armature
    for the export only (``_SkinnedMeshesAsRoots``). The exporter's own "Remove Armature Object"
    would do it too, but Blender 5.0's exporter fails with it when another animated rig is in the scene."""
    path = Path(path)
    fmt = {".glb": "GLB", ".gltf": "GLTF_SEPARATE"}.get(path.suffix.lower())
    if fmt is None:
        raise ExportError(f"{path}: glTF export needs a .glb or .gltf file name")
    return _run_exporter(
        context, obj, path, "glTF", bpy.ops.export_scene.gltf,
        skinned_roots=True,
        export_format=fmt,
        export_animations=True,
        export_animation_mode="ACTIVE_ACTIONS",
        export_frame_range=True,
        export_force_sampling=False,
        export_morph=True,
        export_morph_animation=True,
        export_skins=True,
        export_apply=False,
        export_cameras=False,
        export_lights=False,
    )


def export_fbx(context: bpy.types.Context, obj: bpy.types.Object, path: str | Path) -> dict:
    """FBX with the armature, the skinned mesh and the baked animation (shape keys and bones)."""
    path = Path(path)
    if path.suffix.lower() != ".fbx":
        raise ExportError(f"{path}: FBX export needs a .fbx file name")
    return _run_exporter(
        context, obj, path, "FBX", bpy.ops.export_scene.fbx,
        object_types={"ARMATURE", "MESH"},
        add_leaf_bones=False,
        bake_anim=True,
        bake_anim_use_all_bones=True,
        bake_anim_use_nla_strips=False,
        bake_anim_use_all_actions=False,
        bake_anim_force_startend_keying=True,
        bake_anim_step=1.0,
        bake_anim_simplify_factor=0.0,
    )


EXPORTERS = {
    "gltf": lambda ctx, obj, p: export_gltf(ctx, obj, p),
    "fbx": lambda ctx, obj, p: export_fbx(ctx, obj, p),
    "csv": lambda ctx, obj, p, **options: export_live_link_csv(obj, p, **options),
    "flame": lambda ctx, obj, p: export_flame(obj, p),
}
