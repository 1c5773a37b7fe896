"""The generation settings, defined once (bpy-free): every option's default, type, documented range,
label and help text, and one frozen ``Settings`` object built from the panel, the command line or a
batch entry and validated in one place.

Where a value comes from, lowest priority first:

1. the default written here (``Settings()``),
2. the model bundle's ``recommended_options`` (manifest field; only the options marked
   ``recommendable``, e.g. smoothing, temperature, num_iter, cfg, mask_history_agent) and its
   ``diffusion.default_sampling_steps``,
3. what the user set: panel values the artist changed, the scene's settings, then command-line flags
   that were given, then a batch entry's keys.

``resolve(values, recommended)`` merges 2 and 3 over 1; ``check_values`` validates a partial mapping
from one source (naming that source); ``Settings.validate(info)`` adds the checks that need the
loaded model (context turns, num_iter, sampling steps against its shapes). Every problem raises
``SettingsError`` (a ``ValueError``) naming the option and, when given, the dialogue or file.

The Blender properties (``blender/props.py``) take their default, min/max and soft limits from
``OPTIONS``, so the panel cannot hold what the CLI refuses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .contract import ModelInfo
from .sampler import SamplingOptions

MAX_FRAME = 1_048_574  # Blender's frame limit (MAXFRAME); keys are exact there (float32 has 24 bits)
MAX_SEED = 2**31 - 1  # Blender's IntProperty limit


class SettingsError(ValueError):
    """An option with a wrong type or a value outside its documented range."""

    def __init__(self, option: str, problem: str, where: str = "") -> None:
        self.option, self.problem, self.where = option, problem, where
        super().__init__(f"{where}: {option}: {problem}" if where else f"{option}: {problem}")


@dataclass(frozen=True)
class Option:
    """How one setting is typed, bounded and described (for the panel, the CLI and the docs)."""

    name: str
    kind: type  # bool, int, float or str
    default: Any
    label: str
    doc: str
    min: float | None = None  # hard limits: values outside are refused everywhere
    max: float | None = None
    soft_min: float | None = None  # the panel slider's range (Blender soft_min/soft_max)
    soft_max: float | None = None
    choices: tuple[str, ...] = ()
    recommendable: bool = False  # a model bundle may recommend its default
    unit: str = ""  # what the number counts, for messages and help

    def check(self, value: Any, where: str = "", spell: str | None = None) -> Any:
        """``value`` converted to this option's type; SettingsError if it is not allowed."""
        name = spell or self.name
        if self.kind is bool:
            if not isinstance(value, bool):
                raise SettingsError(name, f"must be true or false, got {value!r}", where)
            return value
        if self.kind is str:
            if not isinstance(value, str):
                raise SettingsError(name, f"must be a text, got {value!r}", where)
            if self.choices and value not in self.choices:
                raise SettingsError(name, f"must be one of {', '.join(self.choices)}, got {value!r}", where)
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(name, f"must be a number, got {value!r}", where)
        if self.kind is int:
            if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
                raise SettingsError(name, f"must be a whole number, got {value!r}", where)
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise SettingsError(name, f"must be a finite number, got {value!r}", where)
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise SettingsError(name, f"{_num(value)} is outside its range {self.range_text()}", where)
        return value

    def range_text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"[{_num(self.min)}, {_num(self.max)}]{unit}"


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _opt(default: Any, label: str, doc: str, **kw: Any) -> Any:
    return field(default=default, metadata={"option": (label, doc, kw)})


@dataclass(frozen=True)
class Settings:
    """Everything one generation uses, validated. Paths are as the user gave them (the Blender layer
    makes ``//``-relative ones absolute); ``character`` and ``user_motion_object`` are object names."""

    character: str = _opt("", "Character", "Mesh with FLAME expression shape keys (or ARKit ones) to animate")
    agent_audio: str = _opt("", "Agent Audio", "The character's own speech")
    user_audio: str = _opt("", "User Audio", "The other person's speech (leave empty with a stereo file)")
    stereo: bool = _opt(False, "One Stereo File", "Both voices in one stereo file, one per channel")
    agent_channel: int = _opt(0, "Agent Channel", "Which channel of the stereo file is the agent (0 left, 1 right)",
                              min=0, max=1)
    user_motion_object: str = _opt("", "User Motion", "Optional: the other person's animated FLAME head")
    model_path: str = _opt("", "Model", "A converted model bundle folder; empty = the bundled model")
    context_turns: int = _opt(7, "Context Turns", "Seconds of past dialogue the model sees (n)",
                              min=0, max=63, soft_max=7, recommendable=True, unit="turns")
    cfg: float = _opt(1.0, "Guidance", "Classifier-free guidance scale (1 = off)",
                      min=1.0, max=10.0, soft_max=3.0, recommendable=True)
    cfg_schedule: str = _opt("linear", "Guidance Schedule", "Guidance ramped with progress, or constant",
                             choices=("linear", "constant"), recommendable=True)
    temperature: float = _opt(1.0, "Temperature", "Scale of the sampling noise (0 = none after the seeded start)",
                              min=0.0, max=5.0, soft_max=1.5, recommendable=True)
    face_temperature: float = _opt(1.0, "Face Temperature",
                                   "Expression and jaw: their sampling noise relative to Temperature (lower = "
                                   "the mouth follows the speech more closely and alike in every seed; the head "
                                   "keeps Temperature)", min=0.0, max=2.0, recommendable=True)
    head_noise_correlation: float = _opt(0.0, "Head Noise Correlation",
                                         "Head rotation: sampling noise smoothed over this many frames (0 = "
                                         "independent frames), so sway the speech leaves open is coherent",
                                         min=0.0, max=6.0, soft_max=4.0, recommendable=True, unit="frames")
    face_noise_correlation: float = _opt(0.0, "Face Noise Correlation",
                                         "Expression and jaw: sampling noise smoothed over this many frames "
                                         "(0 = independent frames)",
                                         min=0.0, max=6.0, soft_max=4.0, recommendable=True, unit="frames")
    turn_blend: float = _opt(0.0, "Turn Blend",
                             "Frames over which each 1-s turn eases from where the previous one ended (0 = off)",
                             min=0.0, max=12.0, soft_max=6.0, recommendable=True, unit="frames")
    num_iter: int = _opt(1, "Iterations", "Masked-generation rounds per turn (later frames see earlier ones)",
                         min=1, max=100, soft_max=25, recommendable=True)
    sampling_steps: int = _opt(5, "Diffusion Steps", "Respaced diffusion steps per frame",
                               min=1, max=1000, soft_max=50, recommendable=True)
    mask_history_agent: bool = _opt(True, "Mask Own History",
                                    "Hide the character's own past motion from the model (the paper's setting)",
                                    recommendable=True)
    random_order: bool = _opt(True, "Random Order", "Frame order of the rounds (off = left to right)",
                              recommendable=True)
    clamp_variance: bool = _opt(True, "Clamp Variance",
                                "Keep the learned variance in [beta~, beta] (off = the released code)",
                                recommendable=True)
    seed: int = _opt(0, "Seed", "Random seed of the first take", min=0, max=MAX_SEED)
    takes: int = _opt(1, "Takes", "Takes to generate (seed, seed+1, ...)", min=1, max=16)
    start_frame: int = _opt(1, "Start Frame", "Scene frame of the first key", min=-MAX_FRAME, max=MAX_FRAME)
    strength_expression: float = _opt(1.0, "Expression", "Scale of the expression channels (0 = off)",
                                      min=0.0, max=10.0, soft_max=2.0)
    strength_jaw: float = _opt(1.0, "Jaw", "Scale of the jaw rotation (0 = off)", min=0.0, max=10.0, soft_max=2.0)
    strength_head: float = _opt(1.0, "Head", "Scale of the head rotation (0 = off)", min=0.0, max=10.0, soft_max=2.0)
    smoothing: float = _opt(0.0, "Smoothing", "Gaussian smoothing, in model frames (0 = off)",
                            min=0.0, max=25.0, soft_max=4.0, recommendable=True, unit="frames")
    add_sound: bool = _opt(True, "Add Sound Strips", "Add the audio to the sequencer")
    rig_type: str = _opt("AUTO", "Rig Type", "Auto, FLAME or ARKit", choices=("AUTO", "FLAME", "ARKIT"))
    retarget_map: str = _opt("", "Retarget Map", "FLAME-56 -> ARKit-52 map (JSON); empty = the bundled map")
    mapping_preset: str = _opt("", "Mapping Preset",
                               "ARKit channel -> shape key, gain and clamp (JSON); empty = matched by name")
    blinks: bool = _opt(True, "Blinks", "ARKit rigs: add natural blinks (FLAME motion has no eyelids)")

    def validate(self, info: ModelInfo | None = None, where: str = "") -> Settings:
        """Every option in range (and, with the loaded model's ``info``, within its shapes); returns self."""
        for name, opt in OPTIONS.items():
            if name in SETTING_NAMES:
                opt.check(getattr(self, name), where)
        if info is not None:
            check_model_limits({name: getattr(self, name) for name in SETTING_NAMES}, info, where)
        return self

    def sampling_options(self) -> SamplingOptions:
        return SamplingOptions(
            context_turns=self.context_turns,
            sampling_steps=self.sampling_steps,
            num_iter=self.num_iter,
            cfg=self.cfg,
            cfg_schedule=self.cfg_schedule,
            temperature=self.temperature,
            face_temperature=self.face_temperature,
            head_noise_correlation=self.head_noise_correlation,
            face_noise_correlation=self.face_noise_correlation,
            turn_blend=self.turn_blend,
            seed=self.seed,
            mask_history_agent=self.mask_history_agent,
            random_order=self.random_order,
            clamp_variance=self.clamp_variance,
        )

    @property
    def strengths(self) -> tuple[float, float, float]:
        return (self.strength_expression, self.strength_jaw, self.strength_head)

    def changed(self, where: str = "", **values: Any) -> Settings:
        """A copy with some options replaced, each checked."""
        return replace(self, **check_values(values, where))


def _options() -> dict[str, Option]:
    out = {}
    for f in fields(Settings):
        label, doc, kw = f.metadata["option"]
        kind = {"bool": bool, "int": int, "float": float, "str": str}[str(f.type)]
        out[f.name] = Option(f.name, kind, f.default, label, doc, **kw)
    return out


OPTIONS: dict[str, Option] = _options()
SETTING_NAMES: tuple[str, ...] = tuple(OPTIONS)  # the Settings fields, in order
# settings that are not generation options but still need a documented range
OPTIONS["live_max_seconds"] = Option("live_max_seconds", float, 0.0, "Stop After",
                                     "Stop by itself after this much audio (0 = until Stop)",
                                     min=0.0, max=86_400.0, soft_max=600.0, unit="s")
OPTIONS["channel_gain"] = Option("channel_gain", float, 1.0, "Gain", "Multiplier (negative flips)",
                                 min=-100.0, max=100.0, soft_min=-10.0, soft_max=10.0)
RECOMMENDABLE: tuple[str, ...] = tuple(n for n, o in OPTIONS.items() if o.recommendable)
DEFAULTS = Settings()


def check_model_limits(values: Mapping[str, Any], info: ModelInfo, where: str = "") -> None:
    """The options bounded by a model's shapes (context turns, num_iter, sampling steps) within them."""
    limits = {
        "context_turns": info.max_context_turns - 1,
        "num_iter": info.frames_per_turn,
        "sampling_steps": info.train_steps,
    }
    for name, top in limits.items():
        if name in values and values[name] > top:
            raise SettingsError(name, f"{values[name]} is more than this model allows (at most {top})", where)


def check_values(values: Mapping[str, Any], where: str = "", spell: Any = None) -> dict[str, Any]:
    """A partial mapping of option -> value from one source, type-converted and range-checked.

    Unknown names are refused (with the closest known name). ``spell(name)`` renders an option's
    name in messages (e.g. ``--smoothing`` for the command line)."""
    import difflib

    out = {}
    for name, value in values.items():
        shown = spell(name) if spell else name
        opt = OPTIONS.get(name)
        if opt is None or name not in SETTING_NAMES:
            close = difflib.get_close_matches(name, sorted(SETTING_NAMES), n=1)
            hint = f" (did you mean '{spell(close[0]) if spell else close[0]}'?)" if close else ""
            raise SettingsError(shown, f"unknown option{hint}", where)
        out[name] = opt.check(value, where, shown)
    return out


def resolve(
    values: Mapping[str, Any] | None = None,
    recommended: Mapping[str, Any] | None = None,
    *,
    where: str = "",
) -> Settings:
    """Defaults, then the model's recommendations, then ``values`` (what the user set), validated."""
    merged = {**(recommended or {}), **check_values(values or {}, where)}
    return replace(DEFAULTS, **merged).validate(where=where)


# ----------------------------------------------------------------------------- model recommendations

RECOMMENDED_FIELD = "recommended_options"


def parse_recommended(manifest: Mapping[str, Any], where: str = "manifest.json") -> dict[str, Any]:
    """The options a bundle's manifest recommends: its ``recommended_options`` object (only
    recommendable options, each in range) over ``diffusion.default_sampling_steps``.
    SettingsError names the manifest and the field."""
    out: dict[str, Any] = {}
    diffusion = manifest.get("diffusion")
    if isinstance(diffusion, Mapping) and "default_sampling_steps" in diffusion:
        field_name = "diffusion.default_sampling_steps"
        out["sampling_steps"] = OPTIONS["sampling_steps"].check(diffusion["default_sampling_steps"], where, field_name)
    rec = manifest.get(RECOMMENDED_FIELD, {})
    if not isinstance(rec, Mapping):
        raise SettingsError(RECOMMENDED_FIELD, "must be an object of option -> value", where)
    for name, value in rec.items():
        shown = f"{RECOMMENDED_FIELD}.{name}"
        if name not in RECOMMENDABLE:
            raise SettingsError(shown, f"not an option a model can recommend (those are: {', '.join(RECOMMENDABLE)})",
                                where)
        out[name] = OPTIONS[name].check(value, where, shown)
    return out


_recommended_cache: dict[str, tuple[int, dict[str, Any]]] = {}


def read_recommended(folder: str | Path) -> dict[str, Any]:
    """A bundle folder's recommended options, read from its manifest only (cheap; cached per
    modification time, for the panel). SettingsError if the field is malformed; a folder without a
    readable manifest recommends nothing (loading the bundle reports that problem)."""
    path = Path(folder) / "manifest.json"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    key = str(path)
    hit = _recommended_cache.get(key)
    if hit is not None and hit[0] == stamp:
        return dict(hit[1])
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    rec = parse_recommended(man, str(path)) if isinstance(man, dict) else {}
    _recommended_cache[key] = (stamp, rec)
    return dict(rec)
