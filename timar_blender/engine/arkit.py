"""ARKit-52 rigs: channel names in their three common spellings, the FLAME-56 -> ARKit retarget map,
and the per-rig mapping preset (target shape key, gain, clamp). bpy-free.

The retarget map is linear with a clamp: ``arkit = clip((flame - rest) @ W.T + bias, 0, 1)``, read from
a validated JSON file. The default map (``arkit_retarget.json``) is fitted by
``python -m model_export.retarget_fit`` from paired poses (see that module and the README); a user
can load another one (for example one fitted with the FLAME model itself).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .contract import MOTION_DIM, NECK
from .settings import OPTIONS

# Apple's ARKit order (ARFaceAnchor.BlendShapeLocation); Live Link Face's CSV columns differ by two swaps
# (JawRight before JawLeft, MouthRight before MouthLeft): engine/exports.py
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip
DEFAULT_MAP = Path(__file__).resolve().parent / "arkit_retarget.json"
MAP_FORMAT = "timar-arkit-retarget"
PRESET_FORMAT = "timar-arkit-mapping"
MIN_ARKIT_KEYS = 10


def _key(name: str) -> str:
    """Spelling-free key: ``eyeBlinkLeft`` = ``EyeBlinkLeft`` = ``eyeBlink_L`` = ``eye_blink_left``."""
    name = name.split(":")[-1]
    name = re.sub(r"[_\-. ]?L$", "Left", name)
    name = re.sub(r"[_\-. ]?R$", "Right", name)
    return re.sub(r"[^a-z0-9]", "", name.lower())


_INDEX = {_key(n): i for i, n in enumerate(ARKIT_NAMES)}


def arkit_index(name: str) -> int | None:
    """ARKit channel of a shape-key name in any of the usual spellings, else None."""
    return _INDEX.get(_key(name))


def match_shape_keys(shape_keys: list[str]) -> tuple[dict[int, str], list[int]]:
    """ARKit channel -> the rig's shape-key name (first match wins), and the unmatched channels."""
    found: dict[int, str] = {}
    for name in shape_keys:
        i = arkit_index(name)
        if i is not None and i not in found:
            found[i] = name
    return found, [i for i in range(len(ARKIT_NAMES)) if i not in found]


def looks_like_arkit(shape_keys: list[str]) -> bool:
    return len(match_shape_keys(shape_keys)[0]) >= MIN_ARKIT_KEYS


# ----------------------------------------------------------------------------- retarget map


def _fail(path: object, problem: str) -> ValueError:
    return ValueError(f"{path}: {problem}")


# what a retarget map may hold: a rest pose in FLAME units and radians, and weights/biases that map it
# to [0, 1] (the default map's largest are 2.7 / 8.1 / 0.24); beyond, a file is broken, not unusual
MAP_LIMITS = {"rest": 10.0, "weights": 1000.0, "bias": 1000.0}
GAIN_LIMIT = float(OPTIONS["channel_gain"].max)  # a preset's gain: the channel map's range
CLAMP_LIMIT = 10.0  # a preset's clamp: Blender's shape-key range


def _array(d: dict, key: str, shape: tuple[int, ...], path: object) -> np.ndarray:
    if key not in d:
        raise _fail(path, f"missing '{key}'")
    try:
        a = np.asarray(d[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"'{key}' is not numeric ({exc})") from exc
    if a.shape != shape:
        raise _fail(path, f"'{key}' has shape {a.shape}, expected {shape}")
    if not np.isfinite(a).all():
        raise _fail(path, f"'{key}' contains NaN or infinite values")
    limit = MAP_LIMITS.get(key)
    if limit is not None and a.size and np.abs(a).max() > limit:
        raise _fail(path, f"'{key}' holds {np.abs(a).max():.3g}; a retarget map's '{key}' stays within +-{limit:g}")
    return a


@dataclass
class RetargetMap:
    """FLAME-56 -> ARKit-52: ``clip((m - rest) @ weights.T + bias, 0, 1)``; head = neck - rest neck."""

    weights: np.ndarray  # (52, MOTION_DIM)
    bias: np.ndarray  # (52,)
    rest: np.ndarray  # (MOTION_DIM,) the FLAME frame that maps to the neutral face / forward-looking head
    source: str = ""
    extra: dict = field(default_factory=dict)

    def apply(self, motion: np.ndarray) -> np.ndarray:
        m = np.asarray(motion, np.float64)
        if m.ndim != 2 or m.shape[1] != MOTION_DIM:
            raise ValueError(f"FLAME motion must be (frames, {MOTION_DIM}), got {m.shape}")
        return np.clip((m - self.rest) @ self.weights.T + self.bias, 0.0, 1.0).astype(np.float32)

    def head(self, motion: np.ndarray) -> np.ndarray:
        """(T, 3) neck axis-angle relative to the rest head (radians), for the rig's head bone."""
        m = np.asarray(motion, np.float64)
        return (m[:, NECK] - self.rest[NECK]).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "format": MAP_FORMAT,
            "version": 1,
            "source": self.source,
            "outputs": list(ARKIT_NAMES),
            "rest": self.rest.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias.tolist(),
            **self.extra,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


def retarget_map_from_dict(d: object, path: object = "<retarget map>") -> RetargetMap:
    if not isinstance(d, dict):
        raise _fail(path, "a retarget map must be a JSON object")
    if d.get("format") != MAP_FORMAT:
        raise _fail(path, f"not a retarget map (format {d.get('format')!r}, expected {MAP_FORMAT!r})")
    if d.get("version") != 1:
        raise _fail(path, f"unsupported retarget map version {d.get('version')!r} (this extension reads 1)")
    outputs = d.get("outputs", list(ARKIT_NAMES))
    if not isinstance(outputs, list) or outputs != list(ARKIT_NAMES):
        raise _fail(path, "'outputs' must list the 52 ARKit names in ARKit order")
    known = {"format", "version", "source", "outputs", "rest", "weights", "bias"}
    return RetargetMap(
        weights=_array(d, "weights", (len(ARKIT_NAMES), MOTION_DIM), path),
        bias=_array(d, "bias", (52,), path),
        rest=_array(d, "rest", (MOTION_DIM,), path),
        source=str(d.get("source", "")),
        extra={k: v for k, v in d.items() if k not in known},
    )


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise _fail(path, f"cannot read the {what} ({exc.strerror or exc})") from exc
    except (ValueError, RecursionError) as exc:
        raise _fail(path, f"not valid JSON ({exc})") from None


def load_retarget_map(path: str | Path) -> RetargetMap:
    return retarget_map_from_dict(_read_json(Path(path), "retarget map"), path)


def default_retarget_map() -> RetargetMap:
    return load_retarget_map(DEFAULT_MAP)


# ----------------------------------------------------------------------------- mapping preset


@dataclass
class ChannelSetting:
    target: str  # the rig's shape-key name
    gain: float = 1.0
    clamp_min: float = 0.0
    clamp_max: float = 1.0


@dataclass
class MappingPreset:
    """Which shape key each ARKit channel drives, with gain and clamp (saved per rig as JSON)."""

    channels: dict[str, ChannelSetting] = field(default_factory=dict)  # ARKit name -> setting

    def apply(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        w = np.asarray(weights, np.float32)
        if w.ndim != 2 or w.shape[1] != len(ARKIT_NAMES):
            raise ValueError(f"ARKit weights must be (frames, 52), got {w.shape}")
        out = {}
        for name, s in self.channels.items():
            out[s.target] = np.clip(w[:, ARKIT_NAMES.index(name)] * s.gain, s.clamp_min, s.clamp_max)
        return out

    def to_dict(self) -> dict:
        return {
            "format": PRESET_FORMAT,
            "version": 1,
            "channels": {
                n: {"target": s.target, "gain": s.gain, "clamp": [s.clamp_min, s.clamp_max]}
                for n, s in self.channels.items()
            },
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


def preset_from_dict(d: object, path: object = "<mapping preset>") -> MappingPreset:
    if not isinstance(d, dict):
        raise _fail(path, "a mapping preset must be a JSON object")
    if d.get("format") != PRESET_FORMAT:
        raise _fail(path, f"not a mapping preset (format {d.get('format')!r}, expected {PRESET_FORMAT!r})")
    if d.get("version") != 1:
        raise _fail(path, f"unsupported mapping preset version {d.get('version')!r} (this extension reads 1)")
    chans = d.get("channels")
    if not isinstance(chans, dict):
        raise _fail(path, "'channels' must be an object of ARKit name -> {target, gain, clamp}")
    out: dict[str, ChannelSetting] = {}
    targets: dict[str, str] = {}
    for name, c in chans.items():
        i = arkit_index(name)
        if i is None:
            raise _fail(path, f"'{name}' is not an ARKit channel")
        canon = ARKIT_NAMES[i]
        if canon in out:
            raise _fail(path, f"'{name}' repeats ARKit channel {canon}")
        if not isinstance(c, dict) or not isinstance(c.get("target"), str) or not c["target"]:
            raise _fail(path, f"'{name}': needs a non-empty 'target' shape-key name")
        gain = c.get("gain", 1.0)
        clamp = c.get("clamp", [0.0, 1.0])
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not np.isfinite(gain):
            raise _fail(path, f"'{name}': 'gain' must be a finite number, got {gain!r}")
        if abs(gain) > GAIN_LIMIT:
            raise _fail(path, f"'{name}': 'gain' {gain:g} is outside [-{GAIN_LIMIT:g}, {GAIN_LIMIT:g}]")
        ok = isinstance(clamp, list) and len(clamp) == 2
        if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in clamp):
            raise _fail(path, f"'{name}': 'clamp' must be [min, max], got {clamp!r}")
        if not all(np.isfinite(v) and abs(v) <= CLAMP_LIMIT for v in clamp):
            raise _fail(path, f"'{name}': 'clamp' values must be finite, within the shape-key range "
                              f"[-{CLAMP_LIMIT:g}, {CLAMP_LIMIT:g}], got {clamp!r}")
        if not clamp[0] <= clamp[1]:
            raise _fail(path, f"'{name}': clamp min {clamp[0]} is above max {clamp[1]}")
        if c["target"] in targets:
            raise _fail(path, f"'{name}' and '{targets[c['target']]}' both drive shape key '{c['target']}'")
        targets[c["target"]] = name
        out[canon] = ChannelSetting(c["target"], float(gain), float(clamp[0]), float(clamp[1]))
    return MappingPreset(out)


def load_preset(path: str | Path) -> MappingPreset:
    return preset_from_dict(_read_json(Path(path), "mapping preset"), path)


def preset_for(shape_keys: list[str]) -> tuple[MappingPreset, list[str]]:
    """The automatic preset for a rig's shape keys, and the ARKit channels that matched nothing."""
    found, missing = match_shape_keys(shape_keys)
    preset = MappingPreset({ARKIT_NAMES[i]: ChannelSetting(name) for i, name in sorted(found.items())})
    return preset, [ARKIT_NAMES[i] for i in missing]


# ----------------------------------------------------------------------------- blinks


def blink_track(frames: int, fps: float, seed: int = 0, per_minute: float = 17.0) -> np.ndarray:
    """A natural blink curve in [0, 1] (FLAME-56 has no eyelids): blinks at ~17/min with gamma-spaced
    intervals, 0.25-s close/open shape, deterministic per seed. Frame i does not depend on ``frames``
    (a blink starting near the end shows its first frames), so a shorter track is a prefix of a
    longer one: live display and the written take blink alike."""
    rng = np.random.default_rng([int(seed), 52])
    out = np.zeros(frames, np.float32)
    t = rng.uniform(0.5, 3.0)
    dur = 0.25
    mean_gap = 60.0 / per_minute
    while (t - dur / 2) * fps < frames:
        c = t * fps
        lo, hi = int(np.floor(c - dur * fps / 2)), int(np.ceil(c + dur * fps / 2))
        for i in range(max(lo, 0), min(hi + 1, frames)):
            x = abs(i - c) / (dur * fps / 2)
            out[i] = max(out[i], float(np.clip(1.0 - x * x, 0.0, 1.0)))
        t += max(0.4, rng.gamma(4.0, mean_gap / 4.0))
    return out
