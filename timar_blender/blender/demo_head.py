"""Add Demo Head: a ready ARKit character built from our own procedural geometry (no assets).

The geometry, shape-key deltas, skinning weights and bones are computed bpy-free by
``engine/demo_geometry.py``; this module makes them Blender objects (mesh with 43 ARKit-named shape
keys written in bulk, eyes, materials for Workbench and EEVEE, the neck -> head -> jaw armature the
mesh is skinned to, and a camera and light aimed at the face), in a fraction of a second.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..engine.demo_geometry import (
    HEAD_CENTER,
    MATERIALS,
    Z_MOUTH,
    bones,
    build_geometry,
    eye_geometry,
    shape_keys,
    skin_weights,
)

__all__ = ["HEAD_CENTER", "Z_MOUTH", "build_demo_head", "ensure_camera_and_light"]


def _materials() -> list[bpy.types.Material]:
    """One material per colour (Workbench reads ``diffuse_color``, EEVEE/Cycles the node tree)."""
    out = []
    for name, rgb in MATERIALS:
        mat = bpy.data.materials.get(f"TIMAR Demo {name}") or bpy.data.materials.new(f"TIMAR Demo {name}")
        mat.diffuse_color = (*rgb, 1.0)
        mat.roughness = 0.45 if name in ("Sclera", "Lips", "Iris") else 0.7
        if mat.node_tree is None:  # Blender < 5: materials start without nodes
            mat.use_nodes = True
        bsdf = next((n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
        if bsdf is not None:
            bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
            bsdf.inputs["Roughness"].default_value = mat.roughness
        out.append(mat)
    return out


def _mesh_object(name: str, co: np.ndarray, faces: list, face_mat: list, mats: list, coll) -> bpy.types.Object:
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(co.tolist(), [], faces)
    for mat in mats:
        mesh.materials.append(mat)
    mesh.polygons.foreach_set("material_index", np.asarray(face_mat, np.int32))
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), bool))
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    coll.objects.link(obj)
    return obj


def _eye(name: str, centre: np.ndarray, mats: list, coll) -> bpy.types.Object:
    co, faces, mat = eye_geometry(centre)
    return _mesh_object(name, co, faces, mat, mats, coll)


def _armature(name: str, coll, context) -> bpy.types.Object:
    data = bpy.data.armatures.new(name)
    arm = bpy.data.objects.new(name, data)
    coll.objects.link(arm)
    view_layer = context.view_layer
    prev_active = view_layer.objects.active
    view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    for bone, (head, tail, parent) in bones().items():
        eb = data.edit_bones.new(bone)
        eb.head, eb.tail = head, tail
        if parent is not None:
            eb.parent = data.edit_bones[parent]
            eb.use_connect = np.allclose(data.edit_bones[parent].tail, head)
        eb.roll = 0.0
    bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = prev_active
    for pb in arm.pose.bones:
        pb.rotation_mode = "QUATERNION"
    return arm


def _weights(obj: bpy.types.Object, groups: dict[str, np.ndarray]) -> None:
    """Vertex groups from per-vertex weights, added in bulk per (rounded) weight level."""
    for name, w in groups.items():
        vg = obj.vertex_groups.new(name=name)
        levels = np.round(np.clip(w, 0, 1) * 100).astype(int)
        for level in np.unique(levels):
            if level > 0:
                vg.add(np.nonzero(levels == level)[0].tolist(), level / 100.0, "REPLACE")


def ensure_camera_and_light(scene: bpy.types.Scene, target: np.ndarray = HEAD_CENTER) -> None:
    """A portrait camera and a key light aimed at the face, and a grey world, only if the scene has none."""
    from mathutils import Vector

    if scene.world is None:  # an empty scene has no world: renders would be black around the face
        scene.world = bpy.data.worlds.new("TIMAR World")
        scene.world.color = (0.62, 0.66, 0.72)

    coll = scene.collection
    if not any(o.type == "CAMERA" for o in scene.objects):
        cam = bpy.data.objects.new("TIMAR Camera", bpy.data.cameras.new("TIMAR Camera"))
        cam.data.lens = 80.0  # head and neck: the face fills the picture
        cam.location = Vector(target) + Vector((0.1, -0.9, 0.0))
        aim = Vector(target) + Vector((0, 0, -0.012)) - cam.location
        cam.rotation_euler = aim.to_track_quat("-Z", "Y").to_euler()
        coll.objects.link(cam)
        scene.camera = cam
    elif scene.camera is None:
        scene.camera = next(o for o in scene.objects if o.type == "CAMERA")
    if not any(o.type == "LIGHT" for o in scene.objects):
        light = bpy.data.objects.new("TIMAR Key Light", bpy.data.lights.new("TIMAR Key Light", "AREA"))
        light.data.energy, light.data.size = 60.0, 0.6
        light.location = Vector(target) + Vector((-0.6, -0.8, 0.6))
        light.rotation_euler = (Vector(target) - light.location).to_track_quat("-Z", "Y").to_euler()
        coll.objects.link(light)


def build_demo_head(context: bpy.types.Context, name: str = "TIMAR Demo Head") -> bpy.types.Object:
    """Build the demo character into the scene; returns the head mesh (the object to animate)."""
    scene = context.scene
    coll = scene.collection
    h = build_geometry()
    mats = _materials()
    head = _mesh_object(name, h.co + HEAD_CENTER, h.faces, h.face_mat, mats, coll)
    head.shape_key_add(name="Basis", from_mix=False)
    flat = np.empty(len(h.co) * 3, np.float32)
    for key_name, delta in shape_keys(h):
        kb = head.shape_key_add(name=key_name, from_mix=False)
        flat[:] = (h.co + delta + HEAD_CENTER).ravel()
        kb.data.foreach_set("co", flat)
        kb.value = 0.0
    arm = _armature(f"{name} Rig", coll, context)
    head.parent = arm
    _weights(head, skin_weights(h))
    mod = head.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    for side in ("L", "R"):
        eye = _eye(f"{name} Eye.{side}", h.eye_centres[side], mats, coll)
        eye.parent = arm
        _weights(eye, {"head": np.ones(len(eye.data.vertices))})
        eye.modifiers.new("Armature", "ARMATURE").object = arm
    ensure_camera_and_light(scene)
    return head
