"""Driving ARKit-52 rigs: which rig type a character is, and turning a take's FLAME-56 motion into
shape-key columns plus the head bone's rotation, as a ``ChannelMap`` the existing keyframe writer
takes (so ARKit takes get the same stash / rollback / slotted-action behaviour as FLAME ones)."""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from ..engine.arkit import (
    ARKIT_NAMES,
    MappingPreset,
    RetargetMap,
    blink_track,
    default_retarget_map,
    load_preset,
    load_retarget_map,
    looks_like_arkit,
    preset_for,
)
from ..engine.rigmap import ChannelMap, Target, expression_keys, normalize
from ..engine.settings import Settings
from .props import abspath
from .rig import RigError, check_editable, editable_armature, shape_key_names

HEAD_BONE_NAMES = ("head", "neck")  # the head turns the whole head; the neck where a rig has no head bone
BLINKS = ("eyeBlinkLeft", "eyeBlinkRight")


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


def arkit_weights(retarget: RetargetMap, motion: np.ndarray, fps: float, seed: int, blinks: bool) -> np.ndarray:
    """(T, 52) ARKit weights of a FLAME take, with natural blinks (seeded per take) when asked for."""
    w = retarget.apply(motion)
    if blinks:
        blink = blink_track(len(w), fps, seed)
        for name in BLINKS:
            i = ARKIT_NAMES.index(name)
            w[:, i] = np.maximum(w[:, i], blink)
    return w


@dataclass
class ArkitPlan:
    """Everything needed to write ARKit takes onto one character, checked before any scene change."""

    retarget: RetargetMap
    preset: MappingPreset
    unmatched: list[str]  # ARKit channels driving nothing here
    armature: bpy.types.Object | None
    head_bone: str | None
    blinks: bool = True
    retarget_path: str = ""
    preset_path: str = ""

    def describe(self) -> str:
        text = describe_unmatched(self.unmatched)
        if self.head_bone is None:
            text += "; no head or neck bone, so the head does not turn"
        return text

    def weights(self, motion: np.ndarray, fps: float, seed: int) -> np.ndarray:
        return arkit_weights(self.retarget, motion, fps, seed, self.blinks)

    def channels(self, motion: np.ndarray, fps: float, seed: int) -> tuple[np.ndarray, ChannelMap]:
        """Columns to key (one per driven shape key, then the head bone's rotation vector) and their map."""
        per_key = self.preset.apply(self.weights(motion, fps, seed))
        cols, cmap = [], ChannelMap()
        for name in sorted(per_key):
            cmap.targets[len(cols)] = Target("SHAPE_KEY", name)
            cols.append(per_key[name])
        if self.head_bone is not None:
            rot = self.retarget.head(motion)
            for c in range(3):
                cmap.targets[len(cols)] = Target("BONE", self.head_bone)
                cols.append(rot[:, c])
        values = np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((len(motion), 0), np.float32)
        return values, cmap


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
    return ArkitPlan(retarget, preset, unmatched, arm, head_bone(arm), s.blinks, map_path, abspath(s.mapping_preset))
