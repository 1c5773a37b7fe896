"""Operators: Generate Listening/Talking Motion (worker thread + modal progress in the UI, direct
in background mode), Cancel, Create Test Rig, Add Demo Head, Fill Channel Map, ARKit mapping preset
Save/Load, and the exports (glTF, FBX, Live Link Face CSV, FLAME-56)."""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ..engine import job
from ..engine.arkit import load_preset
from ..engine.capture import CaptureError, input_devices, refresh_devices
from ..engine.dialogue import Cancelled
from . import export, generate, live
from .arkit_rig import current_preset
from .demo_head import build_demo_head
from .props import DEVICE_CACHE, settings_of, use_model_recommendations
from .rig import RigError, create_test_rig, fill_channel_table


def _settings(context):
    return context.scene.timar


def _has_character(context) -> bool:
    s = getattr(context.scene, "timar", None)
    return s is not None and s.character is not None


def busy(context) -> str:
    """Why nothing else may start now ("" when idle): one check for Generate and live mode."""
    s = getattr(context.scene, "timar", None)
    if context.scene.name in _RUNNING or (s is not None and s.running):
        return "A generation is running"
    if live.active() is not None:
        return "Live mode is running"
    return ""


def _add_character(context, build: Callable[[bpy.types.Context], bpy.types.Object]) -> None:
    """Build a head in object mode, select it alone and make it the character."""
    if context.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    head = build(context)
    for obj in context.view_layer.objects:
        obj.select_set(False)
    head.select_set(True)
    context.view_layer.objects.active = head
    _settings(context).character = head


class TIMAR_OT_generate(bpy.types.Operator):
    """Generate the character's talking and listening motion from the two speech tracks"""

    bl_idname = "timar.generate"
    bl_label = "Generate Listening/Talking Motion"
    bl_options = {"REGISTER", "UNDO"}

    _timer = None
    _thread: threading.Thread | None = None

    @classmethod
    def poll(cls, context):
        s = getattr(context.scene, "timar", None)
        if s is None:
            return False
        if busy(context):
            cls.poll_message_set(busy(context))
            return False
        if s.character is None:
            cls.poll_message_set("Choose the character (a mesh with FLAME shape keys)")
            return False
        if s.character.data.shape_keys is None:
            cls.poll_message_set(f"'{s.character.name}' has no shape keys")
            return False
        if not s.agent_audio or not (s.user_audio or s.stereo):
            cls.poll_message_set("Choose the agent's and the user's audio")
            return False
        return True

    def _prepare(self, context) -> bool:
        try:
            self.settings = settings_of(context.scene)
            self.req, self.info = generate.build_request(context.scene, self.settings)
        except (RigError, generate.InputError, OSError, RuntimeError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return False
        return True

    def _write(self, context, result: job.Result) -> set[str]:
        s = _settings(context)
        try:
            summary = generate.write_result(context, self.settings, self.req, self.info, result)
        except Exception as exc:  # write_take rolled itself back
            self.report({"ERROR"}, f"nothing was written: {exc}")
            return {"CANCELLED"}
        self.summary = summary
        generate.show_summary(s, result, summary)
        self.report({"WARNING"} if summary["warnings"] else {"INFO"}, f"TIMAR: {s.last_report} [{result.provider}]")
        return {"FINISHED"}

    def execute(self, context):
        """Synchronous path: background mode, scripts, and the headless entry point."""
        if not self._prepare(context):
            return {"CANCELLED"}
        s = _settings(context)

        def progress(frac: float, text: str) -> None:
            s.progress, s.status = frac, text
            if bpy.app.background:
                print(f"TIMAR {frac * 100:5.1f}% {text}", flush=True)

        try:
            result = job.run(self.req, progress=progress)
        except Exception as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        finally:
            s.progress, s.status = 0.0, ""
        return self._write(context, result)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if not self._prepare(context):
            return {"CANCELLED"}
        s = _settings(context)
        s.running, s.progress, s.status = True, 0.0, "starting"
        self._cancel = threading.Event()
        self._state: dict = {}

        def work() -> None:
            try:
                self._state["result"] = job.run(
                    self.req,
                    progress=lambda f, t: self._state.update(progress=f, status=t),
                    should_cancel=self._cancel.is_set,
                )
            except Cancelled:
                self._state["cancelled"] = True
            except Exception as exc:  # reported on the main thread
                self._state["error"] = str(exc) or traceback.format_exc(limit=1)

        self._thread = threading.Thread(target=work, name="timar-generate", daemon=True)
        self._thread.start()
        _RUNNING[context.scene.name] = self._cancel
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _finish(self, context) -> None:
        s = _settings(context)
        context.window_manager.event_timer_remove(self._timer)
        s.running, s.progress, s.status = False, 0.0, ""
        _RUNNING.pop(context.scene.name, None)
        for area in context.screen.areas if context.screen else []:
            area.tag_redraw()

    def modal(self, context, event):
        s = _settings(context)
        if event.type == "ESC":
            self._cancel.set()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        s.progress = float(self._state.get("progress", s.progress))
        s.status = self._state.get("status", s.status)
        for area in context.screen.areas if context.screen else []:
            if area.type == "VIEW_3D":
                area.tag_redraw()
        if self._thread.is_alive():
            return {"RUNNING_MODAL"}
        self._finish(context)
        if self._state.get("cancelled") or self._cancel.is_set():
            self.report({"WARNING"}, "TIMAR: generation cancelled; the scene is unchanged")
            return {"CANCELLED"}
        if "error" in self._state:
            self.report({"ERROR"}, f"TIMAR: {self._state['error']}")
            return {"CANCELLED"}
        return self._write(context, self._state["result"])


_RUNNING: dict[str, threading.Event] = {}


class TIMAR_OT_cancel(bpy.types.Operator):
    """Stop the running generation; nothing is written"""

    bl_idname = "timar.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return context.scene.name in _RUNNING

    def execute(self, context):
        _RUNNING[context.scene.name].set()
        _settings(context).status = "cancelling"
        return {"FINISHED"}


class TIMAR_OT_use_model_options(bpy.types.Operator):
    """Use the model's recommended sampling options and smoothing again (forget the values set here)"""

    bl_idname = "timar.use_model_options"
    bl_label = "Use Model's Recommendations"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        cleared = use_model_recommendations(_settings(context))
        self.report({"INFO"}, f"TIMAR: {len(cleared)} option(s) follow the model again")
        return {"FINISHED"}


class TIMAR_OT_create_test_rig(bpy.types.Operator):
    """Add a minimal FLAME-layout head (50 expression shape keys, neck and jaw bones) to try the add-on"""

    bl_idname = "timar.create_test_rig"
    bl_label = "Create Test Rig"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        _add_character(context, create_test_rig)
        return {"FINISHED"}


class TIMAR_OT_fill_channel_map(bpy.types.Operator):
    """Fill the character's channel map from the automatic FLAME match, to edit it by hand"""

    bl_idname = "timar.fill_channel_map"
    bl_label = "Fill Channel Map"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _has_character(context)

    def execute(self, context):
        cmap = fill_channel_table(_settings(context).character)
        self.report({"INFO"}, f"{len(cmap.targets)} channels matched, {len(cmap.unmatched)} unmatched")
        return {"FINISHED"}


class TIMAR_OT_add_demo_head(bpy.types.Operator):
    """Add a ready ARKit character (built here, no downloads): head with 43 ARKit shape keys, eyes,
    teeth, neck/head/jaw armature, materials, and a camera and light if the scene has none"""

    bl_idname = "timar.add_demo_head"
    bl_label = "Add Demo Head"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        _add_character(context, build_demo_head)
        return {"FINISHED"}


class TIMAR_OT_save_mapping_preset(bpy.types.Operator, ExportHelper):
    """Save the ARKit mapping in use (the loaded preset, or the match by name) as a JSON preset to edit"""

    bl_idname = "timar.save_mapping_preset"
    bl_label = "Save Mapping Preset"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return _has_character(context)

    def execute(self, context):
        s = _settings(context)
        try:
            preset, _unmatched = current_preset(s.character, s)
            preset.save(self.filepath)
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{len(preset.channels)} channels saved to {self.filepath}")
        return {"FINISHED"}


class TIMAR_OT_load_mapping_preset(bpy.types.Operator, ImportHelper):
    """Use a JSON mapping preset (ARKit channel -> shape key, gain, clamp) for this scene's takes"""

    bl_idname = "timar.load_mapping_preset"
    bl_label = "Load Mapping Preset"
    bl_options = {"REGISTER", "UNDO"}
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context):
        s = _settings(context)
        try:
            preset = load_preset(self.filepath)  # checked before the scene remembers it
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        obj = s.character
        if obj is not None and obj.data.shape_keys is not None:
            missing = [f"{n} -> {c.target}" for n, c in preset.channels.items()
                       if c.target not in obj.data.shape_keys.key_blocks]
            if missing:
                self.report({"ERROR"}, f"{self.filepath}: shape keys missing on '{obj.name}': {', '.join(missing[:5])}")
                return {"CANCELLED"}
        s.mapping_preset = self.filepath
        self.report({"INFO"}, f"mapping preset: {len(preset.channels)} channels from {os.path.basename(self.filepath)}")
        return {"FINISHED"}


class _ExportBase(ExportHelper):
    kind = ""

    @classmethod
    def poll(cls, context):
        if not _has_character(context):
            cls.poll_message_set("Choose the character first")
            return False
        return True

    def execute(self, context):
        s = _settings(context)
        try:
            options = {"start_timecode": self.start_timecode} if self.kind == "csv" else {}
            info = export.EXPORTERS[self.kind](context, s.character, self.filepath, **options)
        except (export.ExportError, OSError, ValueError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"TIMAR: exported {info['path']}")
        return {"FINISHED"}


def _export_operator(name: str, kind: str, label: str, ext: str, glob: str, doc: str, **props) -> type:
    """The operator ``timar.<name>`` running ``export.EXPORTERS[kind]`` (``props``: its own options);
    where ``glob`` allows several extensions, the one typed is kept (``ext`` is only the default)."""
    attrs = {
        "__doc__": doc,
        "bl_idname": f"timar.{name}",
        "bl_label": label,
        "kind": kind,
        "filename_ext": ext,
        "__annotations__": {"filter_glob": StringProperty(default=glob, options={"HIDDEN"}), **props},
    }
    if ";" in glob:
        attrs["check_extension"] = None
    return type(f"TIMAR_OT_{name}", (bpy.types.Operator, _ExportBase), attrs)


TIMAR_OT_export_gltf = _export_operator(
    "export_gltf", "gltf", "Export glTF", ".glb", "*.glb;*.gltf",
    "Export the character with its take as glTF 2.0 (morph-target and head animation)",
)
TIMAR_OT_export_fbx = _export_operator(
    "export_fbx", "fbx", "Export FBX", ".fbx", "*.fbx",
    "Export the character with its take as FBX (baked shape keys and bones)",
)
TIMAR_OT_export_live_link_csv = _export_operator(
    "export_live_link_csv", "csv", "Export Live Link CSV", ".csv", "*.csv",
    "Export the take as a Live Link Face CSV (ARKit-52 blendshapes and head rotation)",
    start_timecode=StringProperty(
        name="Start Timecode", default="00:00:00:00.000",
        description="Timecode of the first frame, HH:MM:SS:FF or HH:MM:SS:FF.fff (frames at 60 fps, as Live Link Face)",
    ),
)
TIMAR_OT_export_flame = _export_operator(
    "export_flame", "flame", "Export FLAME-56", ".npz", "*.npz;*.json",
    "Export the take's raw FLAME-56 motion (NPZ or JSON, with fps and channel names)",
)


class TIMAR_OT_live_start(bpy.types.Operator):
    """Listen to the microphone: the character reacts turn by turn (1-s turns) in the viewport"""

    bl_idname = "timar.live_start"
    bl_label = "Start Live"

    @classmethod
    def poll(cls, context):
        s = getattr(context.scene, "timar", None)
        if s is None:
            return False
        if busy(context):
            cls.poll_message_set(busy(context))
            return False
        if s.character is None or s.character.type != "MESH" or s.character.data.shape_keys is None:
            cls.poll_message_set("Choose the character (a mesh with FLAME shape keys)")
            return False
        return True

    def execute(self, context):
        try:
            run = live.start(context)
        except live.LiveError as exc:
            self.report({"ERROR"}, f"TIMAR live: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"TIMAR live: listening to {run.session.source.name} [{run.provider}]")
        return {"FINISHED"}


class TIMAR_OT_live_stop(bpy.types.Operator):
    """Stop listening and keep the take: keys from the start frame, the audio saved and added as a sound strip"""

    bl_idname = "timar.live_stop"
    bl_label = "Stop and Keep Take"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return live.active() is not None

    def execute(self, context):
        out = live.finish()
        self.summary = out
        if out["error"]:
            self.report({"ERROR"} if "written" not in out else {"WARNING"}, f"TIMAR live: {out['report']}")
            return {"FINISHED"} if "written" in out else {"CANCELLED"}
        self.report({"WARNING"} if out["warnings"] else {"INFO"}, f"TIMAR live: {out['report']}")
        return {"FINISHED"}


class TIMAR_OT_live_refresh_devices(bpy.types.Operator):
    """Look for microphones again (one plugged in after Blender started)"""

    bl_idname = "timar.live_refresh_devices"
    bl_label = "Refresh Devices"

    @classmethod
    def poll(cls, context):
        return live.active() is None

    def execute(self, context):
        DEVICE_CACHE.clear()
        try:
            refresh_devices()
            DEVICE_CACHE.extend(d.label for d in input_devices())
        except CaptureError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{len(DEVICE_CACHE)} input device(s)")
        return {"FINISHED"}


CLASSES = (
    TIMAR_OT_generate,
    TIMAR_OT_cancel,
    TIMAR_OT_use_model_options,
    TIMAR_OT_create_test_rig,
    TIMAR_OT_add_demo_head,
    TIMAR_OT_fill_channel_map,
    TIMAR_OT_save_mapping_preset,
    TIMAR_OT_load_mapping_preset,
    TIMAR_OT_export_gltf,
    TIMAR_OT_export_fbx,
    TIMAR_OT_export_live_link_csv,
    TIMAR_OT_export_flame,
    TIMAR_OT_live_start,
    TIMAR_OT_live_stop,
    TIMAR_OT_live_refresh_devices,
)
