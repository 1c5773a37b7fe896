"""Text to speech for the synthetic dialogues: the installed espeak-ng / flite voices, one seeded
voice (rate, pitch, level) per speaker, synthesis to mono float32 16-kHz speech, and ``TTSUtter``,
the utterance source the scheduler (``dialogue.schedule``) calls to render each turn."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from timar_blender.engine.contract import SPEECH_RATE

from .text import QUICK_S, TURN_S, sentence

_ESPEAK_BASES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan")
_ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 5))
_FLITE = ("kal", "kal16", "slt", "rms", "awb")


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.cache
def available_voices() -> tuple[str, ...]:
    """Installed voices as ``espeak:<lang>+<variant>`` / ``flite:<name>``, sorted (deterministic)."""
    voices: list[str] = []
    if shutil.which("espeak-ng"):
        langs = {ln.split()[1] for ln in _run(["espeak-ng", "--voices=en"]).splitlines()[1:] if len(ln.split()) > 4}
        files = {
            ln.split()[4].split("/")[-1]
            for ln in _run(["espeak-ng", "--voices=variant"]).splitlines()[1:]
            if len(ln.split()) > 4
        }
        variants = [v for v in _ESPEAK_VARIANTS if v in files]
        voices += [f"espeak:{lang}+{v}" for lang in _ESPEAK_BASES if lang in langs for v in variants]
    if shutil.which("flite"):
        listed = _run(["flite", "-lv"]).replace("Voices available:", "").split()
        voices += [f"flite:{v}" for v in _FLITE if v in listed]
    return tuple(sorted(voices))


@dataclass
class Voice:
    """One speaker's voice for a whole dialogue."""

    name: str  # "espeak:en-us+m3" or "flite:slt"
    rate: float  # espeak: words per minute; flite: 1 / duration_stretch * 170 (nominal wpm)
    pitch: float  # espeak: 0-99; flite: mean F0 in Hz
    gain_db: float = 0.0

    @property
    def engine(self) -> str:
        return self.name.split(":")[0]


def pick_voice(rng: np.random.Generator, exclude: str | None = None) -> Voice:
    pool = [v for v in available_voices() if v != exclude] or list(available_voices())
    if not pool:
        raise RuntimeError("no TTS voice found: install espeak-ng and/or flite (apt-get install espeak-ng flite)")
    # espeak has far more entries (language x variant); give flite a fair ~1/3 share when present
    flite = [v for v in pool if v.startswith("flite:")]
    espeak = [v for v in pool if v.startswith("espeak:")]
    group = flite if flite and (not espeak or rng.random() < 0.33) else espeak
    name = group[int(rng.integers(len(group)))]
    female = name.endswith(("slt",)) or "+f" in name
    if name.startswith("espeak:"):
        rate, pitch = rng.uniform(135, 195), rng.uniform(30, 70)
    else:
        rate, pitch = rng.uniform(140, 200), (rng.uniform(170, 230) if female else rng.uniform(95, 135))
    return Voice(name, round(float(rate), 1), round(float(pitch), 1), round(float(rng.uniform(-12, 0)), 2))


def _trim_silence(x: np.ndarray, rate: int = SPEECH_RATE) -> np.ndarray:
    hop = rate // 100
    n = len(x) // hop
    if n == 0:
        return x
    e = np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1))
    on = np.flatnonzero(e > e.max() * 10 ** (-40 / 20))
    if len(on) == 0:
        return x
    return x[max(on[0] - 2, 0) * hop : min(on[-1] + 3, n) * hop]


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """Mono float32 16-kHz speech for ``text``, leading/trailing silence trimmed, RMS ~ -20 dBFS."""
    if voice.engine == "espeak":
        cmd = [
            "espeak-ng",
            "-v",
            voice.name.split(":", 1)[1],
            "-s",
            str(round(voice.rate)),
            "-p",
            str(round(voice.pitch)),
            "--stdout",
            text,
        ]
        out = subprocess.run(cmd, capture_output=True, timeout=60, check=True).stdout
        x, sr = sf.read(io.BytesIO(out), dtype="float32")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "u.wav"
            cmd = [
                "flite",
                "-voice",
                voice.name.split(":", 1)[1],
                "-t",
                text,
                "-o",
                str(path),
                "--setf",
                f"duration_stretch={170.0 / voice.rate:.3f}",
                "--setf",
                f"int_f0_target_mean={voice.pitch:.1f}",
            ]
            subprocess.run(cmd, capture_output=True, timeout=60, check=True)
            x, sr = sf.read(path, dtype="float32")
    if x.ndim > 1:
        x = x.mean(axis=1)
    if sr != SPEECH_RATE:
        x = soxr.resample(x, sr, SPEECH_RATE).astype(np.float32)
    x = _trim_silence(x)
    rms = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
    return (x * (0.1 / rms) if rms > 0 else x).astype(np.float32)


class TTSUtter:
    """``Utter`` backed by real synthesis: grows a turn sentence by sentence until it reaches the
    target length, and keeps every rendered utterance for placement."""

    def __init__(self, voices: list[Voice]):
        self.voices = voices
        self.audio: dict[tuple[int, str], np.ndarray] = {}

    def render(self, speaker: int, text: str) -> np.ndarray:
        key = (speaker, text)
        if key not in self.audio:
            self.audio[key] = synthesize(text, self.voices[speaker])
        return self.audio[key]

    def __call__(self, speaker: int, kind: str, target: float, rng: np.random.Generator) -> tuple[str, float]:
        text = sentence(rng, kind)
        x = self.render(speaker, text)
        if kind == "quick" and len(x) / SPEECH_RATE < QUICK_S[0]:
            text = f"{text} {sentence(rng, kind)}"
            x = self.render(speaker, text)
        for _ in range(8 if kind == "turn" else 0):
            if len(x) / SPEECH_RATE >= max(target * 0.9, TURN_S[0]):
                break
            longer = f"{text} {sentence(rng, kind)}"
            y = self.render(speaker, longer)
            if len(y) / SPEECH_RATE > TURN_S[1] and len(x) / SPEECH_RATE >= TURN_S[0]:
                break
            text, x = longer, y
        return text, len(x) / SPEECH_RATE
