"""Seeded fuzzing of the engine's file inputs: mutations of a WAV, a FLAC and a bundle manifest.

Every mutated file either is refused with the project's own error (AudioError / BundleError, one line
naming the file) or gives a take whose every value is finite — no other exception type, no hang
(each case runs under an alarm), no non-finite frame. The seeds are fixed, so a failure names the
case that reproduces it."""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from bad_input_helpers import BUNDLED, RATE, copy_bundle, sound, speech

from timar_blender.engine.audio import AudioError, load_audio
from timar_blender.engine.bundle import BundleError
from timar_blender.engine.dialogue import generate_dialogue
from timar_blender.engine.onnx_backend import OnnxBackend
from timar_blender.engine.sampler import SamplingOptions

pytestmark = pytest.mark.skipif(not (BUNDLED / "manifest.json").exists(), reason="no bundled model")

CASES = {"wav": 200, "flac": 200, "manifest": 200}
CASE_SECONDS = 10  # a case taking longer than this is a hang


@contextmanager
def deadline(seconds: int, label: str) -> Iterator[None]:
    def expire(*_):
        raise TimeoutError(f"{label}: still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ----------------------------------------------------------------------------- byte-level mutations

EXTREMES = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate_bytes(data: bytes, rng: np.random.Generator, header: int) -> bytes:
    """One to three of: flip bytes, write an extreme 16/32-bit value (mostly into the header),
    truncate, duplicate a block, drop a block."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(0, 5))
        if op == 0:
            for _ in range(int(rng.integers(1, 16))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        elif op == 1:
            at = int(rng.integers(0, min(header, len(b) - 4)))
            width = 4 if rng.random() < 0.6 else 2
            value = int(rng.choice(EXTREMES)) & ((1 << (8 * width)) - 1)
            b[at : at + width] = value.to_bytes(width, "little" if rng.random() < 0.7 else "big")
        elif op == 2:
            b = b[: int(rng.integers(1, len(b)))]
        elif op == 3:
            at, n = int(rng.integers(0, len(b))), int(rng.integers(1, 2000))
            b[at:at] = b[at : at + n]
        else:
            at, n = int(rng.integers(0, len(b))), int(rng.integers(1, 2000))
            del b[at : at + n]
        if len(b) < 8:
            b += bytes(8)
    return bytes(b)


@pytest.fixture(scope="module")
def backend() -> OnnxBackend:
    return OnnxBackend(BUNDLED, device="cpu", threads=1)


def _check_take(backend: OnnxBackend, wave: np.ndarray, label: str) -> None:
    assert wave.dtype == np.float32 and wave.ndim == 1 and np.isfinite(wave).all(), label
    if len(wave) == 0:
        return
    wave = wave[: 8 * RATE]  # the take's behaviour is the same past a few turns; keep the case short
    take = generate_dialogue(backend, wave, wave, options=SamplingOptions(seed=0))
    assert np.isfinite(take.motion).all(), f"{label}: non-finite frames"


@pytest.mark.parametrize("kind", ["wav", "flac"])
def test_fuzzed_audio_gives_a_take_or_an_audio_error(kind: str, tmp_path: Path, backend: OnnxBackend) -> None:
    base = tmp_path / f"base.{kind}"
    if kind == "wav":
        sound(base, speech(1.0, 4), subtype="PCM_16")
    else:
        sound(base, speech(1.0, 5, rate=22_050), 22_050, format="FLAC")
    data = base.read_bytes()
    outcomes = {"refused": 0, "take": 0}
    t0 = time.perf_counter()
    for seed in range(CASES[kind]):
        rng = np.random.default_rng([12, seed])
        path = tmp_path / f"case{seed}.{kind}"
        path.write_bytes(mutate_bytes(data, rng, header=44 if kind == "wav" else 42))
        label = f"{kind} seed {seed}"
        with deadline(CASE_SECONDS, label):
            try:
                wave = load_audio(path)
            except AudioError as exc:
                assert str(exc).startswith(str(path)) and "\n" not in str(exc), label
                outcomes["refused"] += 1
                continue
            _check_take(backend, wave, label)
            outcomes["take"] += 1
        path.unlink()
    print(f"{kind}: {CASES[kind]} mutations -> {outcomes} in {time.perf_counter() - t0:.1f} s")
    assert outcomes["refused"] and outcomes["take"]  # the mutations reach both outcomes


# ----------------------------------------------------------------------------- manifest mutations

def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:8]):
            out += _paths(v, (*prefix, i))
    return out


def _replacement(rng: np.random.Generator, old: object) -> object:
    choices: list[Callable[[], object]] = [
        lambda: 10**int(rng.integers(6, 40)),
        lambda: -int(rng.integers(1, 10**6)),
        lambda: 0,
        lambda: 1,
        lambda: float(rng.choice([1e308, -1e308, 1e-308, 0.5, 3.7])),
        lambda: math.nan,
        lambda: math.inf,
        lambda: "x" * int(rng.integers(0, 5)),
        lambda: "../../../../etc/hostname",
        lambda: [],
        lambda: {},
        lambda: None,
        lambda: True,
        lambda: [old, old] if not isinstance(old, (dict, list)) else old,
    ]
    if isinstance(old, int) and not isinstance(old, bool):
        choices += [lambda: old + int(rng.integers(-3, 4)), lambda: old * 2, lambda: float(old)]
    return choices[int(rng.integers(0, len(choices)))]()


def mutate_manifest(man: dict, rng: np.random.Generator) -> str:
    """JSON-aware: replace, delete or add one to three values anywhere in the manifest; sometimes
    then damage the text itself."""
    man = json.loads(json.dumps(man))
    for _ in range(int(rng.integers(1, 4))):
        paths = [p for p in _paths(man) if p]
        path = paths[int(rng.integers(0, len(paths)))]
        parent = man
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = rng.random()
        if op < 0.7:
            parent[key] = _replacement(rng, parent[key])
        elif op < 0.85:
            del parent[key]
        elif isinstance(parent, dict):
            parent[f"extra{int(rng.integers(0, 99))}"] = _replacement(rng, None)
    text = json.dumps(man)
    if rng.random() < 0.15:
        text = mutate_bytes(text.encode(), rng, header=len(text)).decode("utf-8", "replace")
    return text


def test_fuzzed_manifest_gives_a_take_or_a_bundle_error(tmp_path: Path) -> None:
    folder = copy_bundle(tmp_path / "bundle")
    pristine = json.loads((folder / "manifest.json").read_text())
    outcomes = {"refused": 0, "take": 0}
    wave = speech(1.2, 6)
    t0 = time.perf_counter()
    for seed in range(CASES["manifest"]):
        rng = np.random.default_rng([34, seed])
        (folder / "manifest.json").write_text(mutate_manifest(pristine, rng))
        label = f"manifest seed {seed}"
        with deadline(CASE_SECONDS, label):
            try:
                be = OnnxBackend(folder, device="cpu", threads=1)
            except BundleError as exc:
                assert str(folder) in str(exc) and "\n" not in str(exc), f"{label}: {exc}"
                outcomes["refused"] += 1
                continue
            take = generate_dialogue(be, wave, wave, options=SamplingOptions(seed=0, context_turns=0))
            assert np.isfinite(take.motion).all(), f"{label}: non-finite frames"
            outcomes["take"] += 1
    print(f"manifest: {CASES['manifest']} mutations -> {outcomes} in {time.perf_counter() - t0:.1f} s")
    assert outcomes["refused"] and outcomes["take"]
