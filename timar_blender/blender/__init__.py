"""The Blender layer: properties, operators and panels over the bpy-free engine."""

from __future__ import annotations

import bpy

from . import live, operators, panel, props


def register() -> None:
    props.register()
    for cls in operators.CLASSES + panel.CLASSES:
        bpy.utils.register_class(cls)
    live.register()


def unregister() -> None:
    live.unregister()
    for cls in reversed(operators.CLASSES + panel.CLASSES):
        bpy.utils.unregister_class(cls)
    props.unregister()
