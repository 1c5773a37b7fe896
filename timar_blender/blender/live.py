"""Live mode in Blender: the character listens to a microphone in the viewport, turn by turn.

Capture (PortAudio's thread) and inference (the session's worker) never run on the main thread; a
``bpy.app.timers`` tick shows the newest frames on the character's shape keys and bones. Stop saves
the captured audio as a WAV (next to the .blend, or in a user folder while it is unsaved), then
writes the take with the offline writer (``generate.write_result``: new actions, the artist's
action stashed, rolled back on failure) and adds the sound strips. The values shown live are put
back first, so the scene changes only by the take.

In background mode timers do not fire: scripts and tests call ``tick()`` themselves. This module is
the live controller; its settings are ``props.TIMAR_PG_live``, its buttons in ``operators`` and its
panel in ``panel``.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import bpy
import numpy as np
from bpy.app.handlers import persistent

from ..engine import job
from ..engine.audio import AudioError, load_audio
from ..engine.capture import CaptureError, SoundDeviceSource, Source
from ..engine.live import LiveSession, LiveTake, latency_stats
from ..engine.rigmap import ChannelMap
from ..engine.settings import Settings
from ..engine.take import TakePipeline
from . import generate, keyframes
from .props import abspath, settings_of
from .rig import RigError

TICK = 0.01  # s between timer ticks: frames appear within ~5 ms of being ready on average


class LiveError(ValueError):
    """Live mode cannot start or finish; the message says why."""


# --- the running take --------------------------------------------------------------------------


@dataclass
class _Shown:
    """One animated property: how to set it live and what it held before."""

    owner: object
    prop: str
    before: object


@dataclass
class LiveRun:
    session: LiveSession
    scene: str
    character: str
    cmap: ChannelMap  # what a displayed row's columns drive (FLAME channels, or the ARKit plan's columns)
    armature: str | None
    pipeline: TakePipeline  # the take's post-processing: display and the take written on Stop share it
    agent_path: str
    request: job.Request
    provider: str
    provider_reason: str
    model: str
    settings: Settings  # as they were at Start: the take written on Stop uses them too
    shown: list[_Shown] = field(default_factory=list)
    last_frame: tuple[int, int] | None = None
    rows: tuple[int, np.ndarray] | None = None  # (turn, its frames in display columns)
    summary: dict | None = None


_run: LiveRun | None = None
_last: dict | None = None  # what the last finish() returned (the timer's finishes have no caller)


def active() -> LiveRun | None:
    return _run


def last_result() -> dict | None:
    return _last


def start(context, source: Source | None = None) -> LiveRun:
    """Check everything, open the microphone (or ``source``), start the session and the timer.

    Raises LiveError with the reason; nothing in the scene changes until frames arrive."""
    global _run
    if _run is not None:
        raise LiveError("live mode is already running")
    scene = context.scene
    live = scene.timar_live
    try:
        settings = settings_of(scene)
        info = generate.character_info(settings)
    except (RigError, OSError, ValueError) as exc:
        raise LiveError(str(exc)) from exc
    arm = info["armature"]
    pipeline = generate.take_pipeline(settings, info)
    cmap = pipeline.channel_map(info["map"])
    agent_path = abspath(live.agent_audio)
    agent = None
    if agent_path:
        try:
            agent = load_audio(agent_path)
        except AudioError as exc:
            raise LiveError(str(exc)) from exc
    opts = settings.sampling_options()
    model = abspath(settings.model_path)
    try:
        backend = job.backend_for(model)
        if source is None:
            source = SoundDeviceSource(live.device or None)
        session = LiveSession(backend, source, opts, agent_audio=agent, max_seconds=live.max_seconds or None)
        session.start()
    except (CaptureError, OSError, RuntimeError, ValueError) as exc:
        raise LiveError(str(exc)) from exc
    request = job.Request(agent_audio=agent_path, user_audio="", model=model, options=opts)
    run = LiveRun(
        session=session,
        scene=scene.name,
        character=info["object"].name,
        cmap=cmap,
        armature=arm.name if arm is not None else None,
        pipeline=pipeline,
        agent_path=agent_path,
        request=request,
        provider=backend.provider,
        provider_reason=backend.choice.reason,
        model=str(backend.bundle.folder),
        settings=settings,
    )
    _remember(run, info["object"], arm)
    _run = run
    live.running, live.status, live.latency = True, f"listening to {source.name}", ""
    live.provider = f"{backend.provider} ({backend.choice.reason})"
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TICK)
    return run


def _remember(run: LiveRun, obj, arm) -> None:
    """Note each driven property's value (and shape-key slider range) so Stop can put it back."""
    key = obj.data.shape_keys
    for t in run.cmap.targets.values():
        if t.kind == "SHAPE_KEY":
            kb = key.key_blocks[t.name]
            run.shown += [_Shown(kb, "value", kb.value), _Shown(kb, "slider_min", kb.slider_min),
                          _Shown(kb, "slider_max", kb.slider_max)]
            kb.slider_min, kb.slider_max = -10.0, 10.0  # FLAME values are signed
    for bone in run.cmap.bones():
        pb = arm.pose.bones[bone]
        for prop in ("rotation_quaternion", "rotation_axis_angle", "rotation_euler"):
            run.shown.append(_Shown(pb, prop, tuple(getattr(pb, prop))))


def _restore(run: LiveRun) -> None:
    for item in reversed(run.shown):
        with contextlib.suppress(ReferenceError, AttributeError, TypeError):  # deleted meanwhile
            setattr(item.owner, item.prop, item.before)


def display_rows(run: LiveRun, turn: int) -> np.ndarray:
    """A turn's frames as the values the character shows: the take pipeline's rows on the frames so
    far (equal to the take written on Stop; with smoothing, bar each turn's last radius frames)."""
    turns = [t.motion for t in run.session.turns[: turn + 1]]
    return run.pipeline.rows_for_turn(turns, run.session.fps, run.settings.seed)


def apply_frame(run: LiveRun, row: np.ndarray) -> None:
    """Show one row of display values on the character through the display map."""
    obj = bpy.data.objects[run.character]
    key = obj.data.shape_keys
    for ch, t in run.cmap.targets.items():
        if t.kind == "SHAPE_KEY":
            key.key_blocks[t.name].value = float(row[ch] * t.gain)
    if run.armature is not None:
        arm = bpy.data.objects[run.armature]
        for bone, channels in run.cmap.bones().items():
            pb = arm.pose.bones[bone]
            rotvec = np.array([[row[ch] * run.cmap.targets[ch].gain for ch in channels]], np.float32)
            prop, rot = keyframes._bone_rotation(pb, rotvec)
            setattr(pb, prop, rot[0])


def _redraw() -> None:
    wm = bpy.context.window_manager
    for win in wm.windows if wm else []:
        for area in win.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _describe_latency(session: LiveSession) -> str:
    turns = [t for t in session.turns if t.applied is not None and not t.final]
    if not turns:
        return ""
    st = latency_stats([t.applied - t.audio_end for t in turns])
    last = (turns[-1].applied - turns[-1].audio_end) * 1000
    return f"latency {last:.0f} ms (median {st['median_ms']:.0f}, p95 {st['p95_ms']:.0f}) after each 1-s turn"


def tick(now: float | None = None) -> bool:
    """One timer step: show the frame due now; finish the take on an error or at Stop After.

    Returns False when live mode has ended. Never raises (a raising timer is dropped silently)."""
    run = _run
    if run is None:
        return False
    scene = bpy.data.scenes.get(run.scene)
    try:
        session = run.session
        new = session.poll()
        now = time.perf_counter() if now is None else now
        shown = session.frame_at(now)
        if shown is not None and shown[:2] != run.last_frame:
            turn, frame = shown[:2]
            if run.rows is None or run.rows[0] != turn:
                run.rows = (turn, display_rows(run, turn))
            apply_frame(run, run.rows[1][frame])
            run.last_frame = shown[:2]
            session.mark_applied(shown[0], time.perf_counter())
            _redraw()
        if new and scene is not None:
            live = scene.timar_live
            live.status = f"{session.captured_seconds:.1f} s captured, {len(session.turns)} turns"
            live.latency = _describe_latency(session)
        if session.error or session.done:
            _finish_from_timer()
            return False
    except Exception as exc:  # e.g. the character was deleted while live
        run.session._fail(f"live display failed: {exc}")
        _finish_from_timer()
        return False
    return True


def _finish_from_timer() -> None:
    """Stop After or a failure ended the take: write it as Stop would, as its own undo step."""
    finish()
    with contextlib.suppress(RuntimeError):  # no undo stack without a window (background mode)
        bpy.ops.ed.undo_push(message="TIMAR live take")


def _timer() -> float | None:
    return TICK if tick() else None


# --- stop: save the audio, write the take ------------------------------------------------------


def capture_folder() -> tuple[Path, str]:
    """Next to the .blend; while it is unsaved, the extension's user folder (or Blender's, or temp)."""
    if bpy.data.filepath:
        return Path(bpy.data.filepath).resolve().parent, "next to the .blend"
    root = __package__.rsplit(".", 1)[0]
    try:
        return Path(bpy.utils.extension_path_user(root, path="live", create=True)), "in the extension's user folder"
    except (ValueError, AttributeError, OSError):  # not installed as an extension (scripts, tests)
        pass
    try:
        return Path(bpy.utils.user_resource("DATAFILES", path="timar_live", create=True)), "in Blender's user folder"
    except (ValueError, OSError):
        folder = Path(tempfile.gettempdir()) / "timar_live"
        folder.mkdir(parents=True, exist_ok=True)
        return folder, "in the temporary folder"


def save_capture(take: LiveTake) -> tuple[str, str]:
    """The microphone audio as heard by the model, next to the .blend or in a user folder -> (path, where)."""
    folder, where = capture_folder()
    stem = Path(bpy.data.filepath).stem if bpy.data.filepath else "untitled"
    return str(take.save_wav(folder, stem)), where


def finish(write: bool = True) -> dict:
    """Stop capturing, save the captured audio and, with ``write``, write the take. Returns a summary
    with ``report`` (one line for the UI), ``error``, ``wav`` and, when written, the writer's summary."""
    global _run, _last
    run, _run = _run, None
    if run is None:
        raise LiveError("live mode is not running")
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    take = run.session.stop()
    _restore(run)
    out: dict = {"error": take.error, "warnings": list(take.warnings), "seconds": take.seconds,
                 "turns": len(take.turns), "latency": latency_stats(
                     [t.applied - t.audio_end for t in take.turns if t.applied is not None and not t.final]),
                 "take": take}
    scene = bpy.data.scenes.get(run.scene)
    parts = [take.error] if take.error else []
    if not len(take.user_audio):
        parts.append("nothing was captured; nothing written")
    else:
        try:
            wav, where = save_capture(take)
            out["wav"] = wav
            parts.append(f"{take.seconds:.1f} s captured; audio saved {where}: {wav}")
        except (OSError, RuntimeError) as exc:  # soundfile reports write failures as RuntimeError
            parts.append(f"the captured audio could not be saved, nothing written: {exc}")
            out["error"] = out["error"] or str(exc)
    if write and "wav" in out:
        try:
            out["written"] = _write(run, take, wav, scene)
            w = out["written"]["takes"][-1]
            parts.append(f"take written, frames {w['frames'][0]}-{w['frames'][1]}")
            out["warnings"] += out["written"]["warnings"]
        except (LiveError, RigError, keyframes.WriteError, RuntimeError, ValueError) as exc:
            parts.append(f"nothing was written: {exc}")
            out["error"] = out["error"] or str(exc)
    out["report"] = "; ".join(parts + out["warnings"])
    if scene is not None:
        live = scene.timar_live
        live.running, live.status = False, ""
        live.last_report = out["report"]
    _redraw()
    _last = out
    return out


def _write(run: LiveRun, take: LiveTake, wav: str, scene) -> dict:
    if scene is None:
        raise LiveError(f"scene '{run.scene}' is gone")
    if not len(take.motion):
        raise LiveError("no frames were generated")
    if bpy.data.objects.get(run.character) is None:
        raise LiveError(f"the character '{run.character}' is gone")
    settings = run.settings.changed(character=run.character)  # renamed since Start: the same object
    info = generate.character_info(settings)
    req = job.Request(
        agent_audio=run.agent_path or wav, user_audio=wav, model=run.model, options=run.request.options
    )
    result = job.Result([take.dialogue_motion()], run.provider, run.provider_reason, run.model, take.seconds)
    summary = generate.write_result(SimpleNamespace(scene=scene), settings, req, info, result)
    generate.show_summary(scene.timar, result, summary)
    return summary


@persistent
def _on_load(_dummy) -> None:
    """Opening another file ends live mode: the audio is saved, no take is written (its scene is going)."""
    if _run is not None:
        out = finish(write=False)
        print(f"TIMAR live stopped by loading a file: {out['report']}", flush=True)


def register() -> None:
    bpy.app.handlers.load_pre.append(_on_load)


def unregister() -> None:
    if _run is not None:
        finish(write=False)
    if _on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load)
