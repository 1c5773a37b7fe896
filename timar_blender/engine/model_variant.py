"""What a bundle's manifest says about how its graphs are driven, beyond the official layout:
which backbone graph it holds (the window recomputed every turn, or one turn against cached
keys/values), the motion normalisation its networks work in (both optional in the manifest; absent
means the official behaviour: window backbone, raw FLAME units) and the audio its speech encoder
expects (per-file normalised, the official contract, or raw samples)."""

from __future__ import annotations

import math
from typing import Any

from .contract import AUDIO_NORMALIZATION_MANIFEST

BACKBONE_KINDS = ("window", "turn_relative_cached")
# the cached graph's inputs and outputs, in the order the engine feeds/reads them
CACHED_INPUTS = ("tokens", "mask", "past_k", "past_v")
CACHED_OUTPUTS = ("z", "k", "v")
MAX_LAYERS = 512
STD_RANGE = (1e-8, 1e4)
MEAN_LIMIT = 1e4


class VariantError(ValueError):
    """Raised for a bad backbone kind or normalisation; ``bundle.load_bundle`` names it as a BundleError."""


def _int(model: dict[str, Any], key: str, where: str) -> int:
    value = model.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise VariantError(f"{where} [model]: '{key}' must be an integer for a cached backbone")
    return value


def audio_fields(man: dict[str, Any], where: str) -> dict[str, Any]:
    """``ModelInfo.audio_normalization`` from the manifest's ``audio.normalization``."""
    audio = man.get("audio")
    value = audio.get("normalization") if isinstance(audio, dict) else None
    for key, name in AUDIO_NORMALIZATION_MANIFEST.items():
        if value == name:
            return {"audio_normalization": key}
    known = " or ".join(repr(n) for n in AUDIO_NORMALIZATION_MANIFEST.values())
    raise VariantError(f"{where} [audio]: unknown normalisation {value!r} (this engine reads {known})")


def backbone_fields(man: dict[str, Any], width: int, motion_dim: int, where: str) -> dict[str, Any]:
    """``ModelInfo`` fields from the manifest: position, kv_shape, motion_mean, motion_std."""
    model = man.get("model", {})
    kind = model.get("backbone", "window")
    if kind not in BACKBONE_KINDS:
        raise VariantError(f"{where} [model]: unknown backbone {kind!r} (this engine runs {', '.join(BACKBONE_KINDS)})")
    fields: dict[str, Any] = {"position": "window", "kv_shape": None}
    files = man.get("files")
    entry = files.get("backbone") if isinstance(files, dict) else None
    entry = entry if isinstance(entry, dict) else {}
    if kind == "window" and isinstance(entry.get("inputs"), list) and "past_k" in entry["inputs"]:
        raise VariantError(
            f"{where} [model]: the backbone graph is a cached one (its inputs include 'past_k') but 'backbone' is "
            f"{model.get('backbone', 'missing')!r}; a cached backbone needs 'turn_relative_cached'"
        )
    if kind == "turn_relative_cached":
        depth, heads = _int(model, "depth", where), _int(model, "num_heads", where)
        if not 1 <= depth <= MAX_LAYERS:
            raise VariantError(f"{where} [model]: 'depth' is {depth}; this engine accepts 1..{MAX_LAYERS}")
        if not 1 <= heads <= width or width % heads:
            raise VariantError(f"{where} [model]: 'num_heads' {heads} does not divide width {width}")
        if entry.get("inputs") != list(CACHED_INPUTS) or entry.get("outputs") != list(CACHED_OUTPUTS):
            raise VariantError(
                f"{where} [files]: a turn_relative_cached backbone has inputs {list(CACHED_INPUTS)} and outputs "
                f"{list(CACHED_OUTPUTS)}; the manifest lists {entry.get('inputs')!r} -> {entry.get('outputs')!r}"
            )
        fields = {"position": "turn_relative", "kv_shape": (depth, heads, width // heads)}
    norm = man.get("motion_normalization")
    fields["motion_mean"] = fields["motion_std"] = None
    if norm is not None:
        if not isinstance(norm, dict):
            raise VariantError(f"{where}: 'motion_normalization' must be null or {{'mean': [...], 'std': [...]}}")
        for key in ("mean", "std"):
            values = norm.get(key)
            if (
                not isinstance(values, list)
                or len(values) != motion_dim
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
            ):
                raise VariantError(f"{where} [motion_normalization]: '{key}' must be {motion_dim} finite numbers")
        if not all(STD_RANGE[0] <= v <= STD_RANGE[1] for v in norm["std"]):
            low, high = STD_RANGE
            raise VariantError(f"{where} [motion_normalization]: 'std' values must lie in {low:g}..{high:g}")
        if not all(abs(v) <= MEAN_LIMIT for v in norm["mean"]):
            raise VariantError(f"{where} [motion_normalization]: 'mean' values must lie within +-{MEAN_LIMIT:g}")
        fields["motion_mean"] = tuple(float(v) for v in norm["mean"])
        fields["motion_std"] = tuple(float(v) for v in norm["std"])
    return fields
