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
# the cached graph's outputs, in the order the engine reads them
CACHED_OUTPUTS = ("z", "k", "v")
MAX_LAYERS = 512
STD_RANGE = (1e-8, 1e4)
MEAN_LIMIT = 1e4


def cached_inputs(depth: int) -> tuple[str, ...]:
    """The cached graph's inputs in feed order: the turn, then per layer each cached key's turn
    distance, the keys and the values (the engine passes views of its ring buffers, no copies)."""
    return ("tokens", "mask", *(f"past_{part}_{i}" for part in ("distance", "k", "v") for i in range(depth)))


class VariantError(ValueError):
    """Raised for a bad backbone kind or normalisation; ``bundle.load_bundle`` names it as a BundleError."""


def _int(model: dict[str, Any], key: str, where: str) -> int:
    value = model.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise VariantError(f"{where} [model]: '{key}' must be an integer for a cached backbone")
    return value


def _layer_bands(model: dict[str, Any], depth: int, where: str) -> tuple[int, ...] | None:
    """``model.layer_bands``: absent/null = every layer reaches the whole context."""
    bands = model.get("layer_bands")
    if bands is None:
        return None
    top = _int(model, "max_context_turns", where) - 1
    if (
        not isinstance(bands, list)
        or len(bands) != depth
        or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= top for b in bands)
    ):
        raise VariantError(f"{where} [model]: 'layer_bands' must list {depth} integers in 0..{top}, got {bands!r}")
    return tuple(bands)


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
    inputs = entry.get("inputs")
    if kind == "window" and isinstance(inputs, list) and any(str(n).startswith("past_") for n in inputs):
        raise VariantError(
            f"{where} [model]: the backbone graph is a cached one (its inputs include past keys) but 'backbone' is "
            f"{model.get('backbone', 'missing')!r}; a cached backbone needs 'turn_relative_cached'"
        )
    if kind == "turn_relative_cached":
        depth, heads = _int(model, "depth", where), _int(model, "num_heads", where)
        if not 1 <= depth <= MAX_LAYERS:
            raise VariantError(f"{where} [model]: 'depth' is {depth}; this engine accepts 1..{MAX_LAYERS}")
        if not 1 <= heads <= width or width % heads:
            raise VariantError(f"{where} [model]: 'num_heads' {heads} does not divide width {width}")
        expected = list(cached_inputs(depth))
        if inputs != expected or entry.get("outputs") != list(CACHED_OUTPUTS):
            hint = " (a bundle exported before the ring-buffer cache: export it again)" if inputs == [
                "tokens", "mask", "past_k", "past_v"] else ""
            raise VariantError(
                f"{where} [files]: a turn_relative_cached backbone of depth {depth} has inputs {expected} and outputs "
                f"{list(CACHED_OUTPUTS)}; the manifest lists {inputs!r} -> {entry.get('outputs')!r}{hint}"
            )
        fields = {"position": "turn_relative", "kv_shape": (depth, heads, width // heads),
                  "layer_bands": _layer_bands(model, depth, where)}
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
