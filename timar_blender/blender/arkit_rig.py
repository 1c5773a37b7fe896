"""Driving ARKit-52 rigs, the Blender side: which rig type a character is, its head bone, and the
checked plan (retarget map, mapping preset, armature) whose ``ArkitTarget`` the engine's take
pipeline (``engine/take.py``) turns FLAME-56 motion into shape-key columns and the head bone's
rotation for the existing keyframe writer."""

from __future__ import annotations

from dataclasses import dataclass

import bpy

from ..engine.arkit import (
    ARKIT_NAMES,
    MappingPreset,
    default_retarget_map,
    load_preset,
    load_retarget_map,
    looks_like_arkit,
    preset_for,
)
from ..engine.rigmap import expression_keys, normalize
from ..engine.settings import Settings
from ..engine.take import ArkitTarget
from .props import abspath
from .rig import RigError, check_editable, editable_armature, shape_key_names

HEAD_BONE_NAMES = ("head", "neck")  # the head turns the whole head; the neck where a rig has no head bone


def rig_kind(obj: bpy.types.Object, choice: str = "AUTO") -> str:
    """"FLAME" or "ARKIT". Auto picks ARKit for ARKit-named shape keys, unless the rig also has FLAME
    expression keys or a hand-made channel table (then the artist set it up for FLAME)."""
    if choice in ("FLAME", "ARKIT"):
        return choice
    if obj is None or obj.type != "MESH":
        return "FLAME"
    names = shape_key_names(obj)
    if len(getattr(obj, "timar_channels", ())) or expression_keys(names):
        return "FLAME"
    return "ARKIT" if looks_like_arkit(names) else "FLAME"


def head_bone(arm: bpy.types.Object | None) -> str | None:
    if arm is None:
        return None
    by_norm = {normalize(b.name): b.name for b in arm.data.bones}
    return next((by_norm[n] for n in HEAD_BONE_NAMES if n in by_norm), None)


def describe_unmatched(unmatched: list[str]) -> str:
    if not unmatched:
        return f"all {len(ARKIT_NAMES)} ARKit channels matched"
    shown = ", ".join(unmatched[:8]) + (f" and {len(unmatched) - 8} more" if len(unmatched) > 8 else "")
    return f"{len(unmatched)} ARKit channels match nothing on this character: {shown}"


@dataclass
class ArkitPlan:
    """An ARKit character checked for writing: the engine's ``ArkitTarget`` (what the take pipeline
    needs) plus the armature, what matched nothing and where the map and preset came from."""

    target: ArkitTarget
    unmatched: list[str]  # ARKit channels driving nothing here
    armature: bpy.types.Object | None
    retarget_path: str = ""
    preset_path: str = ""

    def describe(self) -> str:
        text = describe_unmatched(self.unmatched)
        if self.target.head_bone is None:
            text += "; no head or neck bone, so the head does not turn"
        return text


def current_preset(obj: bpy.types.Object, s) -> tuple[MappingPreset, list[str]]:
    """The preset in use: ``s.mapping_preset`` (a ``Settings`` or the panel's settings), else the
    automatic match by name."""
    path = abspath(s.mapping_preset)
    if path:
        preset = load_preset(path)
        return preset, [n for n in ARKIT_NAMES if n not in preset.channels]
    return preset_for(shape_key_names(obj))


def plan_for(obj: bpy.types.Object | None, s: Settings) -> ArkitPlan:
    """Check an ARKit character and load its retarget map and preset; RigError / ValueError (naming
    the file) if anything is wrong. Changes nothing."""
    if obj is None:
        raise RigError("choose the character (a mesh with ARKit shape keys)")
    if obj.type != "MESH" or obj.data.shape_keys is None:
        raise RigError(f"'{obj.name}' has no shape keys (use Add Demo Head, or an ARKit rig)")
    check_editable(obj)
    key = obj.data.shape_keys
    map_path = abspath(s.retarget_map)
    retarget = load_retarget_map(map_path) if map_path else default_retarget_map()
    preset, unmatched = current_preset(obj, s)
    for name, setting in preset.channels.items():
        if setting.target not in key.key_blocks:
            where = s.mapping_preset or "the automatic mapping"
            raise RigError(f"{where}: {name} drives shape key '{setting.target}', which '{obj.name}' lacks")
    if not preset.channels:
        raise RigError(f"'{obj.name}' has no ARKit-named shape keys (jawOpen, ...); load a mapping preset")
    arm = editable_armature(obj)
    target = ArkitTarget(retarget, preset, head_bone(arm), s.blinks)
    return ArkitPlan(target, unmatched, arm, map_path, abspath(s.mapping_preset))
