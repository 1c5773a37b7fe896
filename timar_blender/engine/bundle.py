"""Model bundles: a folder of ONNX graphs plus a versioned, validated ``manifest.json``.

A bundle is self-describing: the manifest gives the shapes, timing, token layout, the diffusion
schedule, the names of the output channels, the audio normalisation, where the learned separator /
``fake_latent`` vectors live, the source checkpoint's SHA-256 and the weights' licence, and the
SHA-256 of every file (so a truncated or swapped file is caught before it is run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bundle_checks import (
    BundleCheckError,
    check_channels,
    check_coefficients,
    check_fps,
    check_no_escaping_links,
    check_npz_shapes,
    check_number,
    confined,
    file_entry,
)
from .contract import CHANNEL_NAMES, ModelInfo
from .layout import SEPARATORS
from .model_variant import VariantError, audio_fields, backbone_fields
from .schedule import DiffusionCoefficients
from .settings import SettingsError, check_model_limits, parse_recommended

FORMAT = "timar-model-bundle"
VERSION = 1
GRAPHS = ("speech_encoder", "motion_encoder", "backbone", "diffusion_head")
SCHEDULES = ("cosine", "linear")
MAX_MANIFEST_BYTES = 16 << 20


class BundleError(ValueError):
    """A model bundle that cannot be used; the message names the file and the problem."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _need(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise BundleError(f"{where}: missing '{key}'")
    if not isinstance(d[key], kind) or (kind is int and isinstance(d[key], bool)):
        raise BundleError(f"{where}: '{key}' has the wrong type ({type(d[key]).__name__})")
    return d[key]


@dataclass
class Bundle:
    folder: Path
    manifest: dict[str, Any]
    info: ModelInfo
    separators: np.ndarray  # (10, token_dim)
    fake_latent: np.ndarray  # (token_dim,)
    channels: tuple[str, ...]
    recommended: dict[str, Any]  # options the model is best used with (settings.parse_recommended)

    def graph_path(self, name: str) -> Path:
        return self.folder / self.manifest["files"][name]["path"]

    @property
    def license(self) -> str:
        return str(self.manifest["license"]["weights"])


def load_bundle(folder: str | Path, verify_hashes: bool = True) -> Bundle:
    """Read and validate a bundle; every problem raises BundleError naming the file (and the field)."""
    try:
        return _load_bundle(Path(folder), verify_hashes)
    except BundleCheckError as exc:
        raise BundleError(str(exc)) from None


def _load_bundle(folder: Path, verify_hashes: bool) -> Bundle:
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        raise BundleError(f"{mpath}: not found (is {folder} a TIMAR model bundle?)")
    check_no_escaping_links(folder)
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{mpath}: {mpath.stat().st_size} bytes; a manifest is a few kB (limit {MAX_MANIFEST_BYTES})")
    try:
        man = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{mpath}: not valid JSON ({reason})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise BundleError(f"{mpath}: not a {FORMAT} manifest")
    if man.get("version") != VERSION:
        raise BundleError(f"{mpath}: manifest version {man.get('version')!r}; this engine reads version {VERSION}")
    where = str(mpath)
    model = _need(man, "model", dict, where)
    ints = {
        k: _need(model, k, int, f"{where} [model]")
        for k in (
            "motion_dim",
            "frames_per_turn",
            "samples_per_turn",
            "speech_rate",
            "token_dim",
            "width",
            "max_context_turns",
            "turn_length",
        )
    }
    for k, v in ints.items():
        check_number("model", k, v, where)
    check_fps(ints["frames_per_turn"], ints["samples_per_turn"], ints["speech_rate"], where)
    if ints["turn_length"] != 4 * ints["frames_per_turn"] + len(SEPARATORS):
        raise BundleError(f"{where} [model]: turn_length disagrees with frames_per_turn")
    if _need(model, "separators", list, f"{where} [model]") != list(SEPARATORS):
        raise BundleError(f"{where} [model]: separators are not the TIMAR separators in the official order")
    diff = _need(man, "diffusion", dict, where)
    schedule = _need(diff, "schedule", str, f"{where} [diffusion]")
    if schedule not in SCHEDULES:
        raise BundleError(f"{where} [diffusion]: unknown schedule {schedule!r} (known: {', '.join(SCHEDULES)})")
    check_number("diffusion", "train_steps", _need(diff, "train_steps", int, f"{where} [diffusion]"), where)
    steps = check_number(
        "diffusion", "default_sampling_steps", _need(diff, "default_sampling_steps", int, f"{where} [diffusion]"), where
    )
    try:
        variant = backbone_fields(man, ints["width"], ints["motion_dim"], where)
        _need(man, "audio", dict, where)
        variant.update(audio_fields(man, where))
    except VariantError as exc:
        raise BundleError(str(exc)) from None
    info = ModelInfo(
        motion_dim=ints["motion_dim"],
        frames_per_turn=ints["frames_per_turn"],
        samples_per_turn=ints["samples_per_turn"],
        token_dim=ints["token_dim"],
        max_context_turns=ints["max_context_turns"],
        speech_rate=ints["speech_rate"],
        noise_schedule=_need(diff, "schedule", str, f"{where} [diffusion]"),
        train_steps=_need(diff, "train_steps", int, f"{where} [diffusion]"),
        **variant,
    )
    if steps > info.train_steps:
        raise BundleError(f"{where} [diffusion]: default_sampling_steps {steps} exceeds train_steps {info.train_steps}")
    try:
        coefs = DiffusionCoefficients.respaced(steps, info.noise_schedule, info.train_steps)
    except ValueError as exc:
        raise BundleError(f"{where} [diffusion]: cannot respace {info.train_steps} steps to {steps} ({exc})") from None
    stored = _need(diff, "respaced", dict, f"{where} [diffusion]").get(str(steps))
    if not isinstance(stored, dict) or stored.get("timesteps") != coefs.timesteps.tolist():
        raise BundleError(f"{where} [diffusion]: respaced timesteps for {steps} steps disagree with the schedule")
    for key in ("posterior_mean_coef1", "posterior_mean_coef2", "posterior_log_variance_clipped", "log_betas"):
        values = check_coefficients(stored, key, coefs.num_steps, where)
        if not np.allclose(np.asarray(values, dtype=np.float64), getattr(coefs, key), rtol=1e-9):
            raise BundleError(f"{where} [diffusion]: '{key}' disagrees with the {info.noise_schedule} schedule")
    channels = check_channels(_need(man, "channels", list, where), CHANNEL_NAMES[: info.motion_dim], where)
    _need(man, "license", dict, where)
    _need(man, "source", dict, where)
    try:  # optional "recommended_options" (and default_sampling_steps): the defaults of every front end
        recommended = parse_recommended(man, where)
        check_model_limits(recommended, info, where)
    except SettingsError as exc:
        raise BundleError(str(exc)) from None

    files = _need(man, "files", dict, where)
    for name in (*GRAPHS, "constants"):
        path, external, hashes = file_entry(files, name, where)
        for field, part in [(f"'{name}'", path), *((f"'{name}' external_data", e) for e in external)]:
            confined(folder, part, where, field)
            p = folder / part
            if not p.is_file():
                raise BundleError(f"{p}: missing from the bundle")
            expected = hashes.get(part)
            if verify_hashes:
                if expected is None:
                    raise BundleError(f"{where} [files]: no sha256 for {part}")
                if sha256_of(p) != expected:
                    raise BundleError(f"{p}: contents do not match the manifest's SHA-256 (truncated or replaced?)")

    cpath = folder / files["constants"]["path"]
    check_npz_shapes(cpath, {"separators": (len(SEPARATORS), info.token_dim), "fake_latent": (info.token_dim,)})
    try:
        with np.load(cpath, allow_pickle=False) as z:
            seps, fake = np.asarray(z["separators"], np.float32), np.asarray(z["fake_latent"], np.float32)
    except Exception as exc:
        raise BundleError(f"{cpath}: cannot read separators/fake_latent ({exc})") from exc
    if seps.shape != (len(SEPARATORS), info.token_dim) or fake.shape != (info.token_dim,):
        raise BundleError(f"{cpath}: shapes {seps.shape}/{fake.shape} disagree with token_dim {info.token_dim}")
    if not (np.isfinite(seps).all() and np.isfinite(fake).all()):
        raise BundleError(f"{cpath}: holds non-finite values")
    return Bundle(folder, man, info, seps, fake, channels, recommended)
