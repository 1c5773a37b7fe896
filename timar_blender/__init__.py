"""TIMAR conversational head animation for Blender.

The engine (``engine/``) is plain numpy + onnxruntime; the Blender layer (``blender/``) is
imported only when Blender registers the extension, so tools and tests can use the engine
without bpy.
"""


def register() -> None:
    from .blender import register as _register

    _register()


def unregister() -> None:
    from .blender import unregister as _unregister

    _unregister()
