"""Shared by the bad-input suite (test_bad_input_*.py): hostile input files written on the fly (WAV
headers with any rate, FLAC headers declaring any length), the state of every input file, and the
rule every refusal follows (one line, naming the file or field)."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "timar_blender" / "model"
RATE = 16_000


def speech(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """A voiced-ish test signal (the corpus' synthetic speech)."""
    from model_export.synthetic import synth_speech

    return synth_speech(seconds, rate, seed, [(0.05, seconds - 0.05)])


def pcm16_wav(rate: int, samples: np.ndarray, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV with whatever rate its header should claim (soundfile refuses to write some)."""
    data = np.clip(np.asarray(samples, np.float64) * 32767, -32768, 32767).astype("<i2").tobytes()
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack(
        "<I", len(data)
    ) + data


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def sound(path: Path, samples: np.ndarray, rate: int = RATE, **kw) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate, **kw)
    return path


def flac_declaring(path: Path, seconds: float, rate: int = 8_000) -> Path:
    """A short real FLAC whose STREAMINFO claims ``seconds`` of audio (the header, not the data)."""
    sound(path, speech(0.5, 1, rate), rate, format="FLAC")
    raw = bytearray(path.read_bytes())
    assert raw[:4] == b"fLaC" and raw[4] & 0x7F == 0  # STREAMINFO first
    # bytes 18..25 of the file: rate (20 bits) | channels-1 (3) | bits-1 (5) | total samples (36)
    word = int.from_bytes(raw[18:26], "big")
    total = int(seconds * rate)
    assert total < 1 << 36
    word = (word & ~((1 << 36) - 1)) | total
    raw[18:26] = word.to_bytes(8, "big")
    path.write_bytes(bytes(raw))
    return path


def tree_state(*paths: Path) -> dict[str, object]:
    """Every file (and link) under ``paths``: its SHA-256, or where a link points. Compared before and
    after a refused run: no input may change."""
    out: dict[str, object] = {}
    for root in paths:
        items = [root] if not root.is_dir() or root.is_symlink() else sorted(root.rglob("*"))
        for p in items:
            if p.is_symlink():
                out[str(p)] = ("link", str(p.readlink()))
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                out[str(p)] = "dir"
            elif not p.exists():
                out[str(p)] = "absent"
    return out


def assert_one_line(message: str, *names: str) -> None:
    """A refusal is one line that names the file or field it is about (and relays no advice to load
    checkpoints unsafely)."""
    assert message and "\n" not in message.strip(), f"not one line: {message!r}"
    assert "Traceback" not in message and "weights_only=False" not in message.replace(" ", "")
    for name in names:
        assert name in message, f"{name!r} not named in: {message}"


def copy_bundle(dst: Path) -> Path:
    shutil.copytree(BUNDLED, dst)
    return dst


def edit_manifest(folder: Path, fn) -> None:
    path = folder / "manifest.json"
    man = json.loads(path.read_text())
    fn(man)
    path.write_text(json.dumps(man))
