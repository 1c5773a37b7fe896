"""Operators: Generate Listening/Talking Motion (worker thread + modal progress in the UI, direct
in background mode), Cancel, Create Test Rig, Fill Channel Map."""

from __future__ import annotations

import threading
import traceback

import bpy

from ..engine import job
from ..engine.dialogue import Cancelled
from . import generate
from .rig import RigError, create_test_rig, fill_channel_table


def _settings(context):
    return context.scene.timar


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
        if s.running:
            cls.poll_message_set("A generation is already running")
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
        s = _settings(context)
        try:
            self.req, self.info = generate.build_request(context.scene, s)
        except (RigError, generate.InputError, OSError, RuntimeError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return False
        return True

    def _write(self, context, result: job.Result) -> set[str]:
        s = _settings(context)
        try:
            summary = generate.write_result(context, s, self.req, self.info, result)
        except Exception as exc:  # write_take rolled itself back
            self.report({"ERROR"}, f"nothing was written: {exc}")
            return {"CANCELLED"}
        self.summary = summary
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


class TIMAR_OT_create_test_rig(bpy.types.Operator):
    """Add a minimal FLAME-layout head (50 expression shape keys, neck and jaw bones) to try the add-on"""

    bl_idname = "timar.create_test_rig"
    bl_label = "Create Test Rig"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        if context.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        head = create_test_rig(context)
        for obj in context.view_layer.objects:
            obj.select_set(False)
        head.select_set(True)
        context.view_layer.objects.active = head
        _settings(context).character = head
        return {"FINISHED"}


class TIMAR_OT_fill_channel_map(bpy.types.Operator):
    """Fill the character's channel map from the automatic FLAME match, to edit it by hand"""

    bl_idname = "timar.fill_channel_map"
    bl_label = "Fill Channel Map"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        s = getattr(context.scene, "timar", None)
        return s is not None and s.character is not None

    def execute(self, context):
        cmap = fill_channel_table(_settings(context).character)
        self.report({"INFO"}, f"{len(cmap.targets)} channels matched, {len(cmap.unmatched)} unmatched")
        return {"FINISHED"}


CLASSES = (TIMAR_OT_generate, TIMAR_OT_cancel, TIMAR_OT_create_test_rig, TIMAR_OT_fill_channel_map)
