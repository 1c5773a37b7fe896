"""The generation steps that touch bpy, shared by the operator (UI and background), live mode and
the headless entry point: from a frozen ``Settings``, check the inputs and build an engine request
(main thread), then write the finished takes (main thread). The engine work in between needs no bpy.
Nothing here reads or changes the scene's TIMAR settings: the callers build the ``Settings`` and
show the summary."""

from __future__ import annotations

import os
from dataclasses import replace

import bpy
import numpy as np

from ..engine.bundle import load_bundle
from ..engine.contract import CHANNEL_NAMES
from ..engine.job import Request, Result
from ..engine.rigmap import describe_unmatched
from ..engine.settings import Settings
from ..engine.take import TakePipeline
from . import keyframes
from .arkit_rig import plan_for, rig_kind
from .export import store_take
from .props import abspath, model_folder
from .rig import channel_map, check_character


class InputError(ValueError):
    pass


def find_object(name: str, what: str) -> bpy.types.Object | None:
    """The scene object a setting names (None for ""); InputError if there is none of that name."""
    if not name:
        return None
    obj = bpy.data.objects.get(name)
    if obj is None:
        raise InputError(f"{what} '{name}' not found in the scene")
    return obj


def _fcurve(idblock, data_path: str, index: int):
    ad = idblock.animation_data
    if ad is None or ad.action is None:
        return None
    if keyframes.SLOTTED:
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot)
        return bag.fcurves.find(data_path, index=index) if bag else None
    return ad.action.fcurves.find(data_path, index=index)


def read_user_motion(
    obj: bpy.types.Object, scene: bpy.types.Scene, start_frame: int, frames: int, fps: float
) -> np.ndarray:
    """The other person's FLAME-56 motion read back from their animated head (shape keys and
    quaternion bones through their channel map), sampled at the model's ``fps``."""
    from mathutils import Quaternion

    from .rig import armature_of

    cmap = channel_map(obj)
    times = start_frame + np.arange(frames) * keyframes.scene_fps(scene) / fps
    motion = np.zeros((frames, len(CHANNEL_NAMES)), np.float32)
    key = obj.data.shape_keys
    for ch, t in cmap.targets.items():
        if t.kind == "SHAPE_KEY":
            fc = _fcurve(key, f'key_blocks["{bpy.utils.escape_identifier(t.name)}"].value', 0)
            if fc is not None:
                motion[:, ch] = [fc.evaluate(f) / (t.gain or 1.0) for f in times]
    arm = armature_of(obj)
    for bone, channels in cmap.bones().items():
        path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"].rotation_quaternion'
        curves = [_fcurve(arm, path, i) for i in range(4)] if arm is not None else [None]
        if any(c is None for c in curves):
            continue
        for j, f in enumerate(times):
            q = Quaternion([c.evaluate(f) for c in curves])
            axis, angle = q.to_axis_angle()
            motion[j, channels] = np.asarray(axis) * angle
    return motion


def character_info(settings: Settings) -> dict:
    """How takes reach the character (FLAME channel map or ARKit plan), checked; RigError if they cannot.
    Shared by Generate and live mode."""
    obj = find_object(settings.character, "character")
    if rig_kind(obj, settings.rig_type) == "ARKIT":
        plan = plan_for(obj, settings)
        return {"kind": "ARKIT", "object": obj, "plan": plan, "map": None, "armature": plan.armature,
                "unmatched": plan.describe()}
    cmap, arm = check_character(obj)
    return {"kind": "FLAME", "object": obj, "map": cmap, "armature": arm,
            "unmatched": describe_unmatched(cmap, CHANNEL_NAMES)}


def build_request(scene: bpy.types.Scene, settings: Settings) -> tuple[Request, dict]:
    """Check the inputs and turn the settings into an engine request (no scene changes)."""
    s = settings
    info = character_info(s)
    agent = abspath(s.agent_audio)
    user = agent if s.stereo else abspath(s.user_audio)
    if not agent:
        raise InputError("choose the agent's audio file")
    if not user:
        raise InputError("choose the user's audio file (or tick One Stereo File)")
    for path, who in ((agent, "agent"), (user, "user")):
        if not os.path.isfile(path):
            raise InputError(f"{path}: {who} audio file not found")
    a_ch = s.agent_channel if s.stereo else None
    u_ch = (1 - a_ch) if a_ch is not None else None
    req = Request(
        agent_audio=agent,
        user_audio=user,
        agent_channel=a_ch,
        user_channel=u_ch,
        model=abspath(s.model_path),
        options=s.sampling_options(),
        takes=s.takes,
    )
    other = find_object(s.user_motion_object, "user motion object")
    if other is not None:
        import soundfile

        seconds = max(soundfile.info(agent).duration, soundfile.info(user).duration)
        fps = load_bundle(model_folder(s.model_path), verify_hashes=False).info.fps  # the manifest's, ~10 ms
        req = replace(
            req, user_motion=read_user_motion(other, scene, s.start_frame, int(np.ceil(seconds * fps)), fps)
        )
    return req, info


def strip_start(strip) -> float:
    """Where a strip's content starts (``content_start`` from Blender 5.2, ``frame_start`` before)."""
    return strip.content_start if hasattr(strip, "content_start") else strip.frame_start


def _add_sound(scene: bpy.types.Scene, path: str, start: int) -> None:
    ed = scene.sequence_editor or scene.sequence_editor_create()
    strips = ed.strips if hasattr(ed, "strips") else ed.sequences
    for st in strips:
        if st.type == "SOUND" and st.sound and abspath(st.sound.filepath) == path and strip_start(st) == start:
            return  # already there
    used = {st.channel for st in strips}
    channel = next(c for c in range(1, 128) if c not in used)
    strips.new_sound(os.path.basename(path), path, channel, start)


def take_pipeline(settings: Settings, info: dict) -> TakePipeline:
    """The engine's post-processing for this character (FLAME channel map or ARKit plan)."""
    plan = info.get("plan")
    return TakePipeline.from_settings(settings, plan.target if plan is not None else None)


def write_result(context: bpy.types.Context, settings: Settings, req: Request, info: dict, result: Result) -> dict:
    """Write every take (each its own actions; the last one assigned), add the audio, summarise
    (``report``: one line for the UI)."""
    scene, s = context.scene, settings
    obj, arm, plan = info["object"], info["armature"], info.get("plan")
    pipeline = take_pipeline(settings, info)
    done, written_all = [], []
    try:
        for k, dialogue in enumerate(result.takes):
            seed = req.options.seed + k
            name = f"{obj.name} seed {seed}"
            take = pipeline.take(dialogue.motion, dialogue.fps, seed, info["map"])
            w = keyframes.write_take(scene, obj, arm, take.values, dialogue.fps, take.channel_map, s.start_frame, name)
            written_all.append(w)
            for action in w.actions:
                action.use_fake_user = True  # every take survives saving, not only the assigned one
            meta = {"seed": seed, "rig": info.get("kind", "FLAME"), "blinks": bool(s.blinks),
                    "retarget_map": plan.retarget_path if plan else abspath(s.retarget_map)}
            store_take(w.actions, take.motion, dialogue.fps, meta)
            done.append(
                {
                    "take": name,
                    "actions": [a.name for a in w.actions],
                    "frames": list(w.frames),
                    "fcurves": w.fcurves,
                    "keys": w.keys,
                }
            )
    except Exception:
        for w in reversed(written_all):
            keyframes.rollback(w)
        raise
    warnings = []
    if s.add_sound:
        for path in dict.fromkeys([req.agent_audio, req.user_audio]):
            try:
                _add_sound(scene, path, s.start_frame)
            except (RuntimeError, OSError) as exc:  # e.g. a Blender build without audio support
                warnings.append(f"no sound strip for {os.path.basename(path)}: {exc}")
    summary = {
        "character": obj.name,
        "rig": info.get("kind", "FLAME"),
        "takes": done,
        "unmatched": info["unmatched"],
        "provider": result.provider,
        "provider_reason": result.provider_reason,
        "model": result.model,
        "seconds": result.seconds,
        "scene_fps": keyframes.scene_fps(scene),
        "warnings": warnings,
    }
    report = f"{len(done)} take(s), frames {done[-1]['frames'][0]}-{done[-1]['frames'][1]}; {info['unmatched']}"
    summary["report"] = "; ".join([report, *warnings])
    return summary


def show_summary(ui, result: Result, summary: dict) -> None:
    """Put a written take's one-line report and the provider on a panel's state (``scene.timar``)."""
    ui.provider = f"{result.provider} ({result.provider_reason})"
    ui.last_report = summary["report"]
