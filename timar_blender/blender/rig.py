"""The character side: finding its shape keys and bones, the channel map saved with the file,
checks that a take can be written, and a minimal FLAME-layout test rig."""

from __future__ import annotations

import bmesh
import bpy
from mathutils import Vector

from ..engine.contract import CHANNEL_NAMES
from ..engine.rigmap import EXP_CHANNELS, ChannelMap, Target, auto_map


class RigError(ValueError):
    pass


def armature_of(obj: bpy.types.Object) -> bpy.types.Object | None:
    """The armature deforming ``obj``: its parent, or the object of an Armature modifier."""
    if obj.type == "ARMATURE":
        return obj
    if obj.parent is not None and obj.parent.type == "ARMATURE":
        return obj.parent
    for mod in obj.modifiers:
        if mod.type == "ARMATURE" and mod.object is not None:
            return mod.object
    return None


def shape_key_names(obj: bpy.types.Object) -> list[str]:
    key = obj.data.shape_keys if obj.type == "MESH" else None
    return [kb.name for kb in key.key_blocks[1:]] if key else []


def channel_map(obj: bpy.types.Object) -> ChannelMap:
    """The map saved on the object (Channel Map panel), or the automatic FLAME match."""
    saved = getattr(obj, "timar_channels", None)
    arm = armature_of(obj)
    if saved is not None and len(saved):
        cmap = ChannelMap()
        for item in saved:
            if item.kind != "NONE" and item.target:
                cmap.targets[item.channel] = Target(item.kind, item.target, item.gain)
        cmap.unmatched = [c for c in range(len(CHANNEL_NAMES)) if c not in cmap.targets]
        return cmap
    bones = [b.name for b in arm.data.bones] if arm is not None else []
    return auto_map(shape_key_names(obj), bones, CHANNEL_NAMES)


def not_editable(idb: bpy.types.ID) -> bool:
    """Linked data, or a system (non-editable) library override."""
    if idb.library is not None:
        return True
    override = idb.override_library
    return override is not None and override.is_system_override


def check_editable(obj: bpy.types.Object) -> None:
    """RigError unless the object, its mesh and its shape keys can be animated here (not linked)."""
    for idb, what in ((obj, "object"), (obj.data, "mesh"), (obj.data.shape_keys, "shape keys")):
        if not_editable(idb):
            raise RigError(
                f"'{obj.name}': its {what} are linked from a library and cannot be animated here "
                "(make them local, or an editable library override)"
            )


def editable_armature(obj: bpy.types.Object) -> bpy.types.Object | None:
    """The armature deforming ``obj`` (None without one); RigError if it is linked."""
    arm = armature_of(obj)
    if arm is not None and not_editable(arm):
        raise RigError(f"armature '{arm.name}' is linked and cannot be animated here")
    return arm


def check_character(obj: bpy.types.Object | None) -> tuple[ChannelMap, bpy.types.Object | None]:
    """The map and armature for writing, or RigError saying what is wrong."""
    if obj is None:
        raise RigError("choose the character (a mesh with shape keys)")
    if obj.type != "MESH":
        raise RigError(f"'{obj.name}' is a {obj.type.lower()}, not a mesh with shape keys")
    if obj.data.shape_keys is None:
        raise RigError(f"'{obj.name}' has no shape keys (use Create Test Rig, or a FLAME head)")
    check_editable(obj)
    key = obj.data.shape_keys
    cmap = channel_map(obj)
    arm = editable_armature(obj)
    for ch, t in cmap.targets.items():
        if t.kind == "SHAPE_KEY" and t.name not in key.key_blocks:
            raise RigError(f"channel {CHANNEL_NAMES[ch]} maps to shape key '{t.name}', which '{obj.name}' lacks")
        if t.kind == "BONE" and (arm is None or t.name not in arm.pose.bones):
            raise RigError(f"channel {CHANNEL_NAMES[ch]} maps to bone '{t.name}', which the character lacks")
    if not any(ch < EXP_CHANNELS for ch in cmap.targets):
        raise RigError(
            f"'{obj.name}' has none of the 50 FLAME expression shape keys (Exp001..Exp050 or "
            "exp_00..exp_49); map them in the Channel Map panel"
        )
    return cmap, arm


def fill_channel_table(obj: bpy.types.Object) -> ChannelMap:
    """Write the automatic match into the object's channel table (editable, saved with the file)."""
    table = obj.timar_channels
    table.clear()
    arm = armature_of(obj)
    bones = [b.name for b in arm.data.bones] if arm is not None else []
    cmap = auto_map(shape_key_names(obj), bones, CHANNEL_NAMES)
    for ch, name in enumerate(CHANNEL_NAMES):
        item = table.add()
        item.channel, item.label = ch, name
        t = cmap.targets.get(ch)
        if t is not None:
            item.kind, item.target, item.gain = t.kind, t.name, t.gain
        else:
            item.kind = "NONE"
    return cmap


def create_test_rig(context: bpy.types.Context, name: str = "TIMAR Test Head") -> bpy.types.Object:
    """A low-poly head with 50 FLAME-named expression keys (Exp001..Exp050) and neck / jaw bones.

    Each expression key moves a different patch of the face so every channel is visible; the lower
    face is weighted to the jaw bone, the rest to the neck. Bones point up (+Z) with no roll, so a
    FLAME rotation vector (x right, y up, z toward the viewer) is the bone's local rotation."""
    coll = context.scene.collection
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=24, v_segments=16, radius=0.1)
    bm.to_mesh(mesh)
    bm.free()
    head = bpy.data.objects.new(name, mesh)
    head.location = (0.0, 0.0, 1.6)
    coll.objects.link(head)
    head.shape_key_add(name="Basis", from_mix=False)
    verts = [v.co.copy() for v in mesh.vertices]
    front = [i for i, co in enumerate(verts) if co.y < -0.03]  # the face looks down -Y
    for k in range(EXP_CHANNELS):
        kb = head.shape_key_add(name=f"Exp{k + 1:03d}", from_mix=False)
        kb.value = 0.0
        kb.slider_min, kb.slider_max = -3.0, 3.0
        # a bump on the face at a position that walks over the front: visible, distinct per key
        cx, cz = 0.06 * ((k % 7) / 3 - 1), 0.06 * ((k // 7) / 3.5 - 1)
        for i in front:
            co = verts[i]
            d2 = (co.x - cx) ** 2 + (co.z - cz) ** 2
            kb.data[i].co = co + Vector((0.0, -0.015, 0.0)) * pow(2.718, -d2 / 0.0008)
    arm_data = bpy.data.armatures.new(f"{name} Rig")
    arm = bpy.data.objects.new(f"{name} Rig", arm_data)
    arm.location = (0.0, 0.0, 1.4)
    coll.objects.link(arm)
    view_layer = context.view_layer
    prev_active = view_layer.objects.active
    view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    neck = arm_data.edit_bones.new("neck")
    neck.head, neck.tail = (0, 0, 0), (0, 0, 0.15)
    jaw = arm_data.edit_bones.new("jaw")
    jaw.head, jaw.tail = (0, -0.01, 0.16), (0, -0.01, 0.24)
    jaw.parent = neck
    bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = prev_active
    head.parent = arm
    head.location = (0.0, 0.0, 0.2)
    mod = head.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    g_neck, g_jaw = head.vertex_groups.new(name="neck"), head.vertex_groups.new(name="jaw")
    lower = [i for i, co in enumerate(verts) if co.z < -0.02 and co.y < 0.0]
    g_neck.add([i for i in range(len(verts)) if i not in set(lower)], 1.0, "REPLACE")
    g_jaw.add(lower, 1.0, "REPLACE")
    for pb in arm.pose.bones:
        pb.rotation_mode = "QUATERNION"
    return head
