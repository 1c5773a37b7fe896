"""Settings saved with the .blend: the generation panel's inputs and live mode's (per scene), and
the channel map (per character). Defaults and limits come from ``engine/settings.py``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

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

from ..engine.capture import CaptureError, input_devices
from ..engine.contract import CHANNEL_NAMES
from ..engine.settings import (
    OPTIONS,
    RECOMMENDABLE,
    SETTING_NAMES,
    Settings,
    SettingsError,
    check_values,
    read_recommended,
    resolve,
)

EXPLICIT = "explicit_"  # ID-property prefix: a recommendable option the artist set in this scene


def _is_mesh(_self, obj) -> bool:
    return obj.type == "MESH"


def abspath(path: str) -> str:
    """A user path made absolute: ``//`` relative to the .blend, else to the working folder."""
    return os.path.abspath(bpy.path.abspath(path)) if path else ""


def model_folder(model_path: str) -> str:
    """The bundle folder a model setting names ("" = the bundled model)."""
    from ..engine.job import BUNDLED_MODEL

    return abspath(model_path) or str(BUNDLED_MODEL)


def recommended_for(model_path: str) -> dict:
    """The options the model recommends (its manifest's ``recommended_options``), or none if its
    manifest is unreadable or malformed here (Generate then reports the problem)."""
    try:
        return read_recommended(model_folder(model_path))
    except SettingsError:
        return {}


def _prop(name: str, **extra):
    """The Blender property of a setting: label, help, default and limits from ``engine.settings``.
    An option a model bundle can recommend shows the recommendation until the artist sets a value."""
    o = OPTIONS[name]
    kw = {"name": o.label, "description": o.doc, **extra}
    if o.recommendable:
        kw["get"], kw["set"] = _getter(name), _setter(name)
    if o.kind is bool:
        return BoolProperty(default=o.default, **kw)
    if o.choices:
        items = [(c, c.title(), "") for c in o.choices]
        if o.recommendable:  # enum get/set work on the item's index
            get, put = kw["get"], kw["set"]
            kw["get"] = lambda self: o.choices.index(get(self))
            kw["set"] = lambda self, i: put(self, o.choices[i])
        return EnumProperty(items=items, default=o.default, **kw)
    if o.kind is str:
        return StringProperty(default=o.default, **kw)
    lim = {"min": o.min, "max": o.max, "soft_min": o.min if o.soft_min is None else o.soft_min,
           "soft_max": o.max if o.soft_max is None else o.soft_max}
    if o.kind is int:
        return IntProperty(default=o.default, **{k: int(v) for k, v in lim.items()}, **kw)
    return FloatProperty(default=o.default, **lim, **kw)


def _getter(name: str):
    key = EXPLICIT + name

    def get(self):
        if key in self:
            return self[key]
        return recommended_for(self.model_path).get(name, OPTIONS[name].default)

    return get


def _setter(name: str):
    key, o = EXPLICIT + name, OPTIONS[name]

    def put(self, value):
        if o.kind in (int, float) and math.isfinite(value):  # clamped like a plain Blender property;
            value = o.kind(min(max(value, o.min), o.max))  # NaN is kept and refused by Generate, naming it
        self[key] = value

    return put


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
    gain: _prop("channel_gain")


class TIMAR_PG_settings(bpy.types.PropertyGroup):
    character: PointerProperty(type=bpy.types.Object, poll=_is_mesh, name=OPTIONS["character"].label,
                               description=OPTIONS["character"].doc)
    agent_audio: _prop("agent_audio", subtype="FILE_PATH")
    user_audio: _prop("user_audio", subtype="FILE_PATH")
    stereo: _prop("stereo")
    agent_channel: EnumProperty(name=OPTIONS["agent_channel"].label, description=OPTIONS["agent_channel"].doc,
                                items=[("0", "Left", ""), ("1", "Right", "")], default="0")
    user_motion_object: PointerProperty(type=bpy.types.Object, poll=_is_mesh,
                                        name=OPTIONS["user_motion_object"].label,
                                        description=OPTIONS["user_motion_object"].doc)
    model_path: _prop("model_path", subtype="DIR_PATH")
    context_turns: _prop("context_turns")
    cfg: _prop("cfg")
    cfg_schedule: _prop("cfg_schedule")
    temperature: _prop("temperature")
    face_temperature: _prop("face_temperature")
    head_noise_correlation: _prop("head_noise_correlation")
    face_noise_correlation: _prop("face_noise_correlation")
    turn_blend: _prop("turn_blend")
    num_iter: _prop("num_iter")
    sampling_steps: _prop("sampling_steps")
    mask_history_agent: _prop("mask_history_agent")
    random_order: _prop("random_order")
    clamp_variance: _prop("clamp_variance")
    seed: _prop("seed")
    takes: _prop("takes")
    start_frame: _prop("start_frame")
    strength_expression: _prop("strength_expression")
    strength_jaw: _prop("strength_jaw")
    strength_head: _prop("strength_head")
    smoothing: _prop("smoothing")
    add_sound: _prop("add_sound")
    rig_type: EnumProperty(
        name=OPTIONS["rig_type"].label,
        items=[
            ("AUTO", "Auto", "ARKit when the shape keys have ARKit names and no FLAME expression keys, else FLAME"),
            ("FLAME", "FLAME", "50 FLAME expression shape keys and jaw/neck bones (or the Channel Map)"),
            ("ARKIT", "ARKit", "ARKit-52 blendshapes: the FLAME motion is retargeted, the head bone turned"),
        ],
        default=OPTIONS["rig_type"].default,
    )
    retarget_map: _prop("retarget_map", subtype="FILE_PATH")
    mapping_preset: _prop("mapping_preset", subtype="FILE_PATH")
    blinks: _prop("blinks")
    # runtime state (shown in the panel while generating)
    running: BoolProperty(options={"SKIP_SAVE"})
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    status: StringProperty(options={"SKIP_SAVE"})
    provider: StringProperty(name="Provider", options={"SKIP_SAVE"})
    last_report: StringProperty(description="Summary of the last take written")


def scene_values(s: TIMAR_PG_settings) -> dict[str, Any]:
    """The scene's settings as option -> value; a recommendable option only where the artist set it
    (otherwise the model's recommendation applies, for whichever model is finally used)."""
    out: dict[str, Any] = {}
    for name in SETTING_NAMES:
        if name in RECOMMENDABLE:
            if EXPLICIT + name in s:
                value = s[EXPLICIT + name]
                out[name] = bool(value) if OPTIONS[name].kind is bool else value
            continue
        value = getattr(s, name)
        if name in ("character", "user_motion_object"):
            value = value.name if value is not None else ""
        elif name == "agent_channel":
            value = int(value)
        out[name] = value
    return out


def settings_of(scene: bpy.types.Scene, values: Mapping[str, Any] | None = None, where: str = "") -> Settings:
    """The frozen settings of a generation: the scene's (checked, naming the scene), then ``values``
    (already checked by their source, e.g. command-line flags), over the chosen model's
    recommendations and the defaults."""
    merged = {**check_values(scene_values(scene.timar), f"scene '{scene.name}' TIMAR settings"), **(values or {})}
    folder = model_folder(merged.get("model_path", ""))
    return resolve(merged, read_recommended(folder), where=where)


def use_model_recommendations(s: TIMAR_PG_settings) -> list[str]:
    """Forget the artist's values of the recommendable options (the model's apply again)."""
    cleared = [n for n in RECOMMENDABLE if EXPLICIT + n in s]
    for name in cleared:
        del s[EXPLICIT + name]
    return cleared


DEVICE_CACHE: list[str] = []  # input device labels for the search field (Refresh Devices clears it)


def _device_search(_self, _context, edit_text: str) -> list[str]:
    if not DEVICE_CACHE:
        try:
            DEVICE_CACHE.extend(d.label for d in input_devices())
        except CaptureError as exc:
            return [str(exc)]
    low = edit_text.lower()
    return [d for d in DEVICE_CACHE if low in d.lower()] or list(DEVICE_CACHE)


class TIMAR_PG_live(bpy.types.PropertyGroup):
    device: StringProperty(
        name="Input Device",
        search=_device_search,
        description="Microphone (empty = the system's default input)",
    )
    agent_audio: StringProperty(
        name="Agent Audio",
        subtype="FILE_PATH",
        description="Optional: the character's own speech, aligned with the microphone from Start; "
        "empty = the character only listens",
    )
    max_seconds: FloatProperty(
        name=OPTIONS["live_max_seconds"].label, description=OPTIONS["live_max_seconds"].doc, unit="TIME_ABSOLUTE",
        default=OPTIONS["live_max_seconds"].default, min=OPTIONS["live_max_seconds"].min,
        max=OPTIONS["live_max_seconds"].max, soft_max=OPTIONS["live_max_seconds"].soft_max,
    )
    running: bpy.props.BoolProperty(options={"SKIP_SAVE"})
    status: StringProperty(options={"SKIP_SAVE"})
    latency: StringProperty(options={"SKIP_SAVE"})
    provider: StringProperty(options={"SKIP_SAVE"})
    last_report: StringProperty(description="What the last live take wrote")


CLASSES = (TIMAR_PG_channel, TIMAR_PG_settings, TIMAR_PG_live)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.timar = PointerProperty(type=TIMAR_PG_settings)
    bpy.types.Scene.timar_live = PointerProperty(type=TIMAR_PG_live)
    bpy.types.Object.timar_channels = CollectionProperty(type=TIMAR_PG_channel)


def unregister() -> None:
    del bpy.types.Object.timar_channels
    del bpy.types.Scene.timar_live
    del bpy.types.Scene.timar
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
