"""Settings saved with the .blend: the generation panel's inputs (per scene) and the channel map
(per character)."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..engine.bundle import CHANNEL_NAMES


def _is_mesh(_self, obj) -> bool:
    return obj.type == "MESH"


class TIMAR_PG_channel(bpy.types.PropertyGroup):
    channel: IntProperty(min=0, max=len(CHANNEL_NAMES) - 1)
    label: StringProperty()
    kind: EnumProperty(
        items=[
            ("NONE", "None", "Not animated"),
            ("SHAPE_KEY", "Shape Key", "A shape key's value"),
            ("BONE", "Bone", "One of three rotation channels of a bone"),
        ],
        default="NONE",
    )
    target: StringProperty(description="Shape key or bone name")
    gain: FloatProperty(default=1.0, soft_min=-10, soft_max=10, description="Multiplier (negative flips)")


class TIMAR_PG_settings(bpy.types.PropertyGroup):
    character: PointerProperty(
        type=bpy.types.Object,
        poll=_is_mesh,
        name="Character",
        description="Mesh with FLAME expression shape keys (and optionally a jaw/neck armature)",
    )
    agent_audio: StringProperty(name="Agent Audio", subtype="FILE_PATH", description="The character's own speech")
    user_audio: StringProperty(
        name="User Audio", subtype="FILE_PATH", description="The other person's speech (leave empty with a stereo file)"
    )
    stereo: BoolProperty(name="One Stereo File", description="Both voices in one stereo file, one per channel")
    agent_channel: EnumProperty(name="Agent Channel", items=[("0", "Left", ""), ("1", "Right", "")], default="0")
    user_motion_object: PointerProperty(
        type=bpy.types.Object,
        poll=_is_mesh,
        name="User Motion",
        description="Optional: the other person's animated FLAME head in this scene",
    )
    model_path: StringProperty(
        name="Model", subtype="DIR_PATH", description="A converted model bundle folder; empty = the bundled model"
    )
    context_turns: IntProperty(
        name="Context Turns", default=7, min=0, max=7, description="Seconds of past dialogue the model sees (n)"
    )
    cfg: FloatProperty(
        name="Guidance", default=1.0, min=1.0, soft_max=3.0, description="Classifier-free guidance scale"
    )
    temperature: FloatProperty(name="Temperature", default=1.0, min=0.0, soft_max=1.5)
    seed: IntProperty(name="Seed", default=0, min=0)
    takes: IntProperty(name="Takes", default=1, min=1, max=16, description="Takes to generate (seed, seed+1, ...)")
    start_frame: IntProperty(name="Start Frame", default=1)
    strength_expression: FloatProperty(name="Expression", default=1.0, min=0.0, soft_max=2.0)
    strength_jaw: FloatProperty(name="Jaw", default=1.0, min=0.0, soft_max=2.0)
    strength_head: FloatProperty(name="Head", default=1.0, min=0.0, soft_max=2.0)
    smoothing: FloatProperty(
        name="Smoothing",
        default=0.0,
        min=0.0,
        soft_max=4.0,
        description="Gaussian smoothing, in model frames (0 = off)",
    )
    add_sound: BoolProperty(name="Add Sound Strips", default=True, description="Add the audio to the sequencer")
    rig_type: EnumProperty(
        name="Rig Type",
        items=[
            ("AUTO", "Auto", "ARKit when the shape keys have ARKit names and no FLAME expression keys, else FLAME"),
            ("FLAME", "FLAME", "50 FLAME expression shape keys and jaw/neck bones (or the Channel Map)"),
            ("ARKIT", "ARKit", "ARKit-52 blendshapes: the FLAME motion is retargeted, the head bone turned"),
        ],
        default="AUTO",
    )
    retarget_map: StringProperty(
        name="Retarget Map",
        subtype="FILE_PATH",
        description="FLAME-56 -> ARKit-52 map (JSON); empty = the bundled map",
    )
    mapping_preset: StringProperty(
        name="Mapping Preset",
        subtype="FILE_PATH",
        description="ARKit channel -> shape key, gain and clamp (JSON); empty = matched by name",
    )
    blinks: BoolProperty(
        name="Blinks", default=True, description="ARKit rigs: add natural blinks (FLAME motion has no eyelids)"
    )
    # runtime state (shown in the panel while generating)
    running: BoolProperty(options={"SKIP_SAVE"})
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    status: StringProperty(options={"SKIP_SAVE"})
    provider: StringProperty(name="Provider", options={"SKIP_SAVE"})
    last_report: StringProperty(description="Summary of the last take written")


CLASSES = (TIMAR_PG_channel, TIMAR_PG_settings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.timar = PointerProperty(type=TIMAR_PG_settings)
    bpy.types.Object.timar_channels = CollectionProperty(type=TIMAR_PG_channel)


def unregister() -> None:
    del bpy.types.Object.timar_channels
    del bpy.types.Scene.timar
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
