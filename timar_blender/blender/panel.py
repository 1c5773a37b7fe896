"""The sidebar panel (3D Viewport > Sidebar > TIMAR)."""

from __future__ import annotations

import bpy

from ..engine.bundle import CHANNEL_NAMES
from ..engine.rigmap import describe_unmatched
from .rig import RigError, channel_map


class TIMAR_PT_generate(bpy.types.Panel):
    bl_label = "TIMAR Conversation"
    bl_idname = "TIMAR_PT_generate"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "TIMAR"

    def draw(self, context):
        s = context.scene.timar
        col = self.layout.column()
        col.prop(s, "character")
        if s.character is None:
            col.operator("timar.create_test_rig", icon="MONKEY")
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
        row.prop(s, "seed")
        row.prop(s, "start_frame")
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


class TIMAR_PT_channel_map(bpy.types.Panel):
    bl_label = "Channel Map"
    bl_idname = "TIMAR_PT_channel_map"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "TIMAR"
    bl_parent_id = "TIMAR_PT_generate"
    bl_options = {"DEFAULT_CLOSED"}

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


CLASSES = (TIMAR_PT_generate, TIMAR_PT_channel_map)
