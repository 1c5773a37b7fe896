"""The sidebar panel (3D Viewport > Sidebar > TIMAR)."""

from __future__ import annotations

import bpy

from ..engine.contract import CHANNEL_NAMES
from ..engine.rigmap import describe_unmatched
from ..engine.settings import OPTIONS, RECOMMENDABLE
from . import live as live_mode
from .arkit_rig import current_preset, rig_kind
from .arkit_rig import describe_unmatched as describe_arkit
from .props import EXPLICIT, recommended_for
from .rig import RigError, channel_map


class SidebarPanel:
    """Where the TIMAR panels live: 3D Viewport > Sidebar > TIMAR."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "TIMAR"


class SubPanel(SidebarPanel):
    """A section under TIMAR Conversation, closed until opened."""

    bl_parent_id = "TIMAR_PT_generate"
    bl_options = {"DEFAULT_CLOSED"}


class TIMAR_PT_generate(SidebarPanel, bpy.types.Panel):
    bl_label = "TIMAR Conversation"
    bl_idname = "TIMAR_PT_generate"

    def draw(self, context):
        s = context.scene.timar
        col = self.layout.column()
        col.prop(s, "character")
        if s.character is None:
            row = col.row(align=True)
            row.operator("timar.add_demo_head", icon="USER")
            row.operator("timar.create_test_rig", icon="MONKEY")
        else:
            row = col.row(align=True)
            row.prop(s, "rig_type")
            row.label(text=f"-> {rig_kind(s.character, s.rig_type).replace('ARKIT', 'ARKit')}")
        col.separator()
        col.prop(s, "stereo")
        col.prop(s, "agent_audio")
        if s.stereo:
            col.prop(s, "agent_channel")
        else:
            col.prop(s, "user_audio")
        col.prop(s, "user_motion_object")
        col.prop(s, "model_path")
        box = col.box()
        box.label(text="Sampling")
        row = box.row(align=True)
        row.prop(s, "context_turns")
        row.prop(s, "takes")
        row = box.row(align=True)
        row.prop(s, "cfg")
        row.prop(s, "temperature")
        row = box.row(align=True)
        row.prop(s, "head_noise_correlation")
        row.prop(s, "face_noise_correlation")
        row = box.row(align=True)
        row.prop(s, "turn_blend")
        row.prop(s, "face_temperature")
        row = box.row(align=True)
        row.prop(s, "num_iter")
        row.prop(s, "mask_history_agent", toggle=True)
        row = box.row(align=True)
        row.prop(s, "seed")
        row.prop(s, "start_frame")
        _model_note(box, s)
        box = col.box()
        box.label(text="Strength")
        row = box.row(align=True)
        row.prop(s, "strength_expression")
        row.prop(s, "strength_jaw")
        row.prop(s, "strength_head")
        box.prop(s, "smoothing")
        col.prop(s, "add_sound")
        col.separator()
        if s.running:
            row = col.row(align=True)
            if hasattr(row, "progress"):
                row.progress(factor=s.progress, type="BAR", text=s.status or "working")
            else:
                row.prop(s, "progress", text=s.status or "working", slider=True)
            row.operator("timar.cancel", text="", icon="CANCEL")
        else:
            col.operator("timar.generate", icon="PLAY")
        if s.provider:
            col.label(text=f"Runs on: {s.provider}", icon="INFO")
        if s.last_report:
            col.label(text=s.last_report)


def _model_note(layout, s) -> None:
    """Which options follow the model's recommendation, and the button that makes all follow it again."""
    rec = recommended_for(s.model_path)
    own = [n for n in RECOMMENDABLE if EXPLICIT + n in s]
    shown = [f"{OPTIONS[n].label} {_fmt(v)}" for n, v in rec.items() if n not in own and n != "sampling_steps"]
    if shown:
        layout.label(text="Model's: " + ", ".join(shown), icon="INFO")
    if own:
        layout.operator("timar.use_model_options", icon="LOOP_BACK")


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


class TIMAR_PT_sampling(SubPanel, bpy.types.Panel):
    bl_label = "Advanced Sampling"
    bl_idname = "TIMAR_PT_sampling"

    def draw(self, context):
        s = context.scene.timar
        col = self.layout.column()
        col.prop(s, "sampling_steps")
        col.prop(s, "cfg_schedule")
        col.prop(s, "random_order")
        col.prop(s, "clamp_variance")


class TIMAR_PT_channel_map(SubPanel, bpy.types.Panel):
    bl_label = "Channel Map"
    bl_idname = "TIMAR_PT_channel_map"

    def draw(self, context):
        s = context.scene.timar
        col = self.layout.column()
        obj = s.character
        if obj is None:
            col.label(text="No character")
            return
        try:
            cmap = channel_map(obj)
            col.label(text=describe_unmatched(cmap, CHANNEL_NAMES), icon="ERROR" if cmap.unmatched else "CHECKMARK")
        except RigError as exc:
            col.label(text=str(exc), icon="ERROR")
        col.operator("timar.fill_channel_map")
        for item in obj.timar_channels:
            row = col.row(align=True)
            row.label(text=item.label)
            row.prop(item, "kind", text="")
            row.prop(item, "target", text="")
            row.prop(item, "gain", text="")


class TIMAR_PT_arkit(SubPanel, bpy.types.Panel):
    bl_label = "ARKit Mapping"
    bl_idname = "TIMAR_PT_arkit"

    def draw(self, context):
        s = context.scene.timar
        col = self.layout.column()
        col.prop(s, "retarget_map")
        col.prop(s, "mapping_preset")
        row = col.row(align=True)
        row.operator("timar.load_mapping_preset", text="Load Preset", icon="FILEBROWSER")
        row.operator("timar.save_mapping_preset", text="Save Preset", icon="FILE_TICK")
        col.prop(s, "blinks")
        obj = s.character
        if obj is None or rig_kind(obj, s.rig_type) != "ARKIT":
            col.label(text="The character is driven as a FLAME rig", icon="INFO")
            return
        try:
            preset, unmatched = current_preset(obj, s)
        except ValueError as exc:
            col.label(text=str(exc), icon="ERROR")
            return
        col.label(text=describe_arkit(unmatched), icon="ERROR" if unmatched else "CHECKMARK")
        box = col.box()
        for name, c in list(preset.channels.items())[:60]:
            row = box.row()
            row.label(text=name)
            row.label(text=f"{c.target}  x{c.gain:g}  [{c.clamp_min:g}, {c.clamp_max:g}]")


class TIMAR_PT_export(SubPanel, bpy.types.Panel):
    bl_label = "Export"
    bl_idname = "TIMAR_PT_export"

    def draw(self, context):
        col = self.layout.column(align=True)
        col.operator("timar.export_gltf", text="glTF / GLB", icon="EXPORT")
        col.operator("timar.export_fbx", text="FBX", icon="EXPORT")
        col.operator("timar.export_live_link_csv", text="Live Link Face CSV", icon="EXPORT")
        col.operator("timar.export_flame", text="FLAME-56 (NPZ / JSON)", icon="EXPORT")


class TIMAR_PT_live(SubPanel, bpy.types.Panel):
    bl_label = "Live (Microphone)"
    bl_idname = "TIMAR_PT_live"

    def draw(self, context):
        live = context.scene.timar_live
        col = self.layout.column()
        col.label(text="Character, model and sampling as above", icon="INFO")
        row = col.row(align=True)
        row.prop(live, "device")
        row.operator("timar.live_refresh_devices", text="", icon="FILE_REFRESH")
        col.prop(live, "agent_audio")
        col.prop(live, "max_seconds")
        if live_mode.active() is not None:
            col.operator("timar.live_stop", icon="SNAP_FACE")
            col.label(text=live.status or "listening", icon="REC")
            if live.latency:
                col.label(text=live.latency)
        else:
            col.operator("timar.live_start", icon="PLAY")
        if live.provider:
            col.label(text=f"Runs on: {live.provider}")
        if live.last_report:
            for line in _wrap(live.last_report):
                col.label(text=line)


def _wrap(text: str, width: int = 60) -> list[str]:
    lines, cur = [], ""
    for word in text.split(" "):
        if cur and len(cur) + len(word) > width:
            lines.append(cur)
            cur = ""
        cur = f"{cur} {word}".strip()
    return [*lines, cur] if cur else lines


CLASSES = (TIMAR_PT_generate, TIMAR_PT_sampling, TIMAR_PT_channel_map, TIMAR_PT_arkit, TIMAR_PT_export, TIMAR_PT_live)
