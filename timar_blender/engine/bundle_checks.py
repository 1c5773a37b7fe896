"""Checks that make a bad model bundle fail when it is loaded, fast, naming the bundle and the field.

* Every number the engine uses from the manifest is bounded before anything is built from it (a
  ``train_steps`` of 1e8 would otherwise spend minutes and gigabytes building the noise schedule).
* Every path is confined to the bundle folder after resolving links (a manifest could otherwise
  make the engine read and hash ``../../etc/hostname``, or a graph symlinked elsewhere).
* The manifest is compared with the graphs' own input/output names and fixed dimensions, so a
  swapped graph or a manifest that lies about the shapes is named at load time instead of failing
  later inside numpy or onnxruntime.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from .audio import TARGET_RATE

# (section, key) -> inclusive (low, high); each a range any real TIMAR bundle sits well inside
LIMITS: dict[tuple[str, str], tuple[int, int]] = {
    ("model", "motion_dim"): (56, 56),  # FLAME-56: the rig maps, exports and writer are built for it
    ("model", "frames_per_turn"): (1, 250),
    ("model", "samples_per_turn"): (1_600, 160_000),  # 0.1-10 s turns at 16 kHz
    ("model", "speech_rate"): (TARGET_RATE, TARGET_RATE),  # the engine feeds the graphs 16 kHz audio
    ("model", "token_dim"): (1, 16_384),
    ("model", "width"): (1, 16_384),
    ("model", "max_context_turns"): (1, 64),
    ("model", "turn_length"): (14, 1_010),
    ("diffusion", "train_steps"): (1, 10_000),  # the schedule is built step by step in Python
    ("diffusion", "default_sampling_steps"): (1, 1_000),
}
FPS_RANGE = (1.0, 240.0)  # motion frames per second implied by frames/samples per turn
MAX_BUNDLE_FILES = 10_000  # a bundle has ~6 files; this only bounds the link scan
SHA256 = re.compile(r"[0-9a-f]{64}")


class BundleCheckError(ValueError):
    """Raised by these checks; ``bundle.load_bundle`` re-raises it as ``BundleError``."""


def check_number(section: str, key: str, value: int, where: str) -> int:
    lo, hi = LIMITS[(section, key)]
    if not lo <= value <= hi:
        span = f"{lo}" if lo == hi else f"{lo}..{hi}"
        raise BundleCheckError(f"{where} [{section}]: '{key}' is {value}; this engine accepts {span}")
    return value


def check_fps(frames_per_turn: int, samples_per_turn: int, speech_rate: int, where: str) -> float:
    fps = frames_per_turn * speech_rate / samples_per_turn
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        raise BundleCheckError(
            f"{where} [model]: frames_per_turn {frames_per_turn} per {samples_per_turn} samples at {speech_rate} Hz "
            f"is {fps:g} frames/s; this engine accepts {FPS_RANGE[0]:g}..{FPS_RANGE[1]:g}"
        )
    return fps


def check_channels(channels: Any, expected: tuple[str, ...], where: str) -> tuple[str, ...]:
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise BundleCheckError(f"{where}: 'channels' must be a list of channel names (strings)")
    if tuple(channels) != expected:
        raise BundleCheckError(
            f"{where}: 'channels' must be the {len(expected)} FLAME channel names in order "
            f"({expected[0]}..{expected[-1]}); got {len(channels)} channel names starting {channels[:3]}"
        )
    return tuple(channels)


def check_coefficients(stored: dict, key: str, length: int, where: str) -> list[float]:
    """A stored respaced coefficient list: numbers, the right length, finite."""
    values = stored.get(key)
    if not isinstance(values, list) or len(values) != length:
        raise BundleCheckError(f"{where} [diffusion]: respaced '{key}' must be a list of {length} numbers")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise BundleCheckError(f"{where} [diffusion]: respaced '{key}' holds {v!r}, not a finite number")
    return values


def file_entry(files: dict, name: str, where: str) -> tuple[str, list[str], dict[str, str]]:
    """One ``files`` entry, type-checked: (path, external data paths, sha256 by path)."""
    entry = files.get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
        raise BundleCheckError(f"{where} [files]: no entry for '{name}'")
    external = entry.get("external_data", [])
    if not isinstance(external, list) or not all(isinstance(p, str) and p for p in external):
        raise BundleCheckError(f"{where} [files]: '{name}' external_data must be a list of file names")
    hashes = entry.get("sha256", {})
    if not isinstance(hashes, dict) or not all(isinstance(v, str) for v in hashes.values()):
        raise BundleCheckError(f"{where} [files]: '{name}' sha256 must map file names to hex digests")
    return entry["path"], external, hashes


def confined(folder: Path, part: str, where: str, field: str) -> Path:
    """``folder / part`` after resolving links, refused unless it stays inside ``folder``."""
    rel = Path(part)
    root = folder.resolve()
    if rel.is_absolute() or ".." in rel.parts:
        raise BundleCheckError(f"{where} [files]: {field} path {part!r} must stay inside the bundle")
    target = (folder / rel).resolve()
    if not target.is_relative_to(root):
        raise BundleCheckError(f"{where} [files]: {field} {part!r} leads outside the bundle (to {target})")
    return target


def check_no_escaping_links(folder: Path) -> None:
    """No file or folder in the bundle may resolve outside it (a graph's own external data is read
    by onnxruntime from the bundle folder, so a link there would leak another file into the model)."""
    root = folder.resolve()
    for count, p in enumerate(folder.rglob("*")):
        if count > MAX_BUNDLE_FILES:
            raise BundleCheckError(f"{folder}: more than {MAX_BUNDLE_FILES} files; not a model bundle")
        if p.is_symlink() and not p.resolve().is_relative_to(root):
            raise BundleCheckError(f"{p}: a link leading outside the bundle (to {p.resolve()})")


# ----------------------------------------------------------------------------- graph inputs/outputs

# per graph: name -> expected dims (None = any) for the inputs the engine feeds / outputs it reads
def expected_io(dims: dict[str, int]) -> dict[str, tuple[dict, dict]]:
    s, f, d, c, w = (dims[k] for k in ("samples_per_turn", "frames_per_turn", "token_dim", "motion_dim", "width"))
    return {
        "speech_encoder": ({"audio": (None, s)}, {"speech_tokens": (None, f, d)}),
        "motion_encoder": ({"motion": (None, c)}, {"motion_tokens": (None, d)}),
        # the backbone's kind decides its other inputs; these two every kind has
        "backbone": ({"tokens": (None, None, d)}, {"z": (None, None, w)}),
        "diffusion_head": ({"x": (None, c), "t": (None,), "c": (None, w)}, {"out": (None, 2 * c)}),
    }


def _dims_differ(actual: list, expected: tuple) -> bool:
    if len(actual) != len(expected):
        return True
    return any(isinstance(a, int) and e is not None and a != e for a, e in zip(actual, expected))


def check_graph_io(name: str, path: Path, session, entry: dict, dims: dict[str, int], where: str) -> None:
    """The graph's own input/output names against the manifest's, and its fixed dimensions against
    the manifest's model numbers. ``session``: an onnxruntime InferenceSession of the graph."""
    ins = {i.name: list(i.shape) for i in session.get_inputs()}
    outs = {o.name: list(o.shape) for o in session.get_outputs()}
    for label, actual, declared in (("inputs", ins, entry.get("inputs")), ("outputs", outs, entry.get("outputs"))):
        names = declared if isinstance(declared, list) and all(isinstance(n, str) for n in declared) else None
        if declared is not None and (names is None or sorted(actual) != sorted(names)):
            raise BundleCheckError(
                f"{path}: the graph's {label} are {sorted(actual)} but {where} [files] '{name}' lists {declared!r} "
                "(swapped or wrong graph?)"
            )
    want_in, want_out = expected_io(dims)[name]
    for label, actual, want in (("input", ins, want_in), ("output", outs, want_out)):
        for key, shape in want.items():
            if key not in actual:
                raise BundleCheckError(f"{path}: the {name} graph has no {label} '{key}' (has {sorted(actual)})")
            if _dims_differ(actual[key], shape):
                shown = [d if d is not None else "*" for d in shape]
                raise BundleCheckError(
                    f"{path}: {label} '{key}' has shape {actual[key]}, but {where} [model] implies {shown}"
                )


def check_npz_shapes(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """The arrays of an .npz have the expected shapes and a float dtype, read from their headers
    before any data is decompressed (a few-kB file could otherwise expand to gigabytes)."""
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(path) as zf:
            for name, shape in shapes.items():
                with zf.open(f"{name}.npy") as fh:
                    version = np.lib.format.read_magic(fh)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    got, _, dtype = read(fh)
                if tuple(got) != shape or dtype.kind != "f":
                    raise BundleCheckError(f"{path}: shapes disagree with the manifest: '{name}' is {dtype} "
                                           f"{tuple(got)}, expected float {shape}")
    except BundleCheckError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BundleCheckError(f"{path}: cannot read separators/fake_latent ({exc})") from None
