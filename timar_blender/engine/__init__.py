"""The TIMAR engine: bpy-free, torch-free (numpy + onnxruntime). The Blender layer, the headless
entry point, the farm and the tools call it through the names below; everything else in the
package is an implementation detail that may change.

Where things are decided:

* the motion contract (channels, groups, rates, DualTalk layout, ``ModelInfo``): ``contract``
* every generation option (defaults, ranges, model recommendations): ``settings``
* a take's post-processing (strength, smoothing, ARKit retarget, blinks): ``take``
* model bundles (manifest, checks): ``bundle``; running them: ``onnx_backend``, ``sampler``
* a dialogue, offline or streamed: ``dialogue``; a whole request (audio, model, takes): ``job``
* live input: ``capture``, ``live``; exported files: ``exports``, ``arkit``

Names are imported on first use (``from timar_blender.engine import Settings``), so importing the
package costs nothing and no module's dependencies load before they are needed.
"""

from __future__ import annotations

import importlib
from typing import Any

_API: dict[str, str] = {
    # contract
    "CHANNEL_NAMES": "contract", "MOTION_DIM": "contract", "EXPRESSION": "contract", "JAW": "contract",
    "NECK": "contract", "GROUPS": "contract", "FPS": "contract", "SPEECH_RATE": "contract",
    "ModelInfo": "contract", "motion_from_dualtalk": "contract", "dualtalk_from_motion": "contract",
    # settings
    "Settings": "settings", "SettingsError": "settings", "OPTIONS": "settings", "resolve": "settings",
    "check_values": "settings", "read_recommended": "settings",
    # take pipeline
    "TakePipeline": "take", "ArkitTarget": "take", "Take": "take",
    # models
    "Bundle": "bundle", "BundleError": "bundle", "load_bundle": "bundle", "OnnxBackend": "onnx_backend",
    "SamplingOptions": "sampler", "TurnSampler": "sampler", "Backend": "sampler",
    # generation
    "generate_dialogue": "dialogue", "DialogueStream": "dialogue", "DialogueMotion": "dialogue",
    "live_normalization": "dialogue",
    "Cancelled": "dialogue", "Request": "job", "Result": "job", "run": "job", "backend_for": "job",
    "load_audio": "audio", "AudioError": "audio",
    # live input and files
    "LiveSession": "live", "LiveTake": "live", "CaptureError": "capture", "SoundDeviceSource": "capture",
    "WaveSource": "capture", "write_live_link_csv": "exports", "write_flame": "exports",
    "RetargetMap": "arkit", "MappingPreset": "arkit", "load_retarget_map": "arkit", "load_preset": "arkit",
}  # fmt: skip
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return __all__
