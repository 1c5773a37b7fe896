"""Two-person dialogue audio for a self-built corpus, with its timeline.

A seeded scheduler lays out who speaks when (long turns, quick exchanges, listener backchannels,
overlapping turn starts, pauses); every utterance is synthesized with espeak-ng or flite (one voice,
rate and pitch per speaker), resampled to 16 kHz and placed on its speaker's track; then per-speaker
level, background noise and an optional mild room effect. The timeline is built from the actual
utterance lengths, so it says where each track really carries speech.

Output follows the DualTalk layout: ``<clip>_speaker1.wav``, ``<clip>_speaker2.wav`` (mono float32,
16 kHz, equal length) plus ``<clip>_timeline.json``. Speaker index 0 is ``speaker1`` (called "user"
in summaries), index 1 is ``speaker2`` ("agent"); the data loader uses every clip in both directions.

CLI: ``python -m model_export.corpus.dialogue OUT --dialogues N --seconds S --seed K [--real]``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import soxr
from scipy.io import wavfile
from scipy.signal import fftconvolve

from timar_blender.engine.contract import FPS, SPEECH_RATE

MIX_FPS = 100  # 10-ms frames: the activity that sets each track's noise level against its speech
KINDS = ("turn", "quick", "backchannel", "overlap")
TURN_S = (3.0, 12.0)
QUICK_S = (0.8, 2.5)
BACKCHANNEL_S = (0.2, 1.0)
PAUSE_S = (0.1, 1.5)
OVERLAP_S = (0.1, 0.6)
BACKCHANNELS = ("mm hmm", "yeah", "right", "okay", "uh huh")
DEMO_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "dualtalk_demo"


class Segment(NamedTuple):
    """One utterance: ``speaker`` 0|1, ``start``/``end`` in seconds, ``kind`` in KINDS."""

    speaker: int
    start: float
    end: float
    kind: str
    text: str = ""


# ---------------------------------------------------------------------------------------------
# text: sentences from built-in templates (no downloaded text)

_SUBJ = ("I", "we", "my sister", "the team", "our neighbour", "my friend", "the manager", "everyone", "you")
_VERB = ("visited", "talked about", "fixed", "forgot", "planned", "looked at", "finished", "changed", "liked", "moved")
_OBJ = (
    "the old kitchen",
    "that new restaurant",
    "the garden",
    "the report",
    "our trip to the coast",
    "the car",
    "the budget",
    "the little park",
    "the schedule",
    "the concert",
    "a few photos",
    "the project",
)
_TIME = ("yesterday", "last week", "this morning", "on Sunday", "after lunch", "a while ago", "today", "in March")
_ADJ = ("great", "strange", "busy", "quiet", "expensive", "fun", "difficult", "nice", "confusing", "lovely")
_OPEN = ("so", "well", "honestly", "actually", "you know", "anyway", "to be fair", "I mean")
_TEMPLATES = (
    "{S} {V} {O} {T}.",
    "{open}, {S} {V} {O} {T}, and it was {A}.",
    "Did you hear that {S} {V} {O}?",
    "I think {O} is a bit {A}, to be honest.",
    "{open}, it was {A}, because {S} {V} {O}.",
    "When {S} {V} {O}, it felt really {A}.",
    "What do you think about {O}?",
    "{open}, we should look at {O} again {T}.",
    "The thing is, {O} was {A} {T}.",
    "Maybe {S} could check {O} before the weekend.",
)
_QUICK = (
    "Really?",
    "Sure, why not.",
    "I think so.",
    "Not yet.",
    "That sounds {A}.",
    "Wait, {T}?",
    "No, {O}.",
    "Oh, that's {A}.",
    "Yes, exactly.",
    "Okay, let's do that.",
    "I'm not sure.",
    "Which one?",
    "Sounds good to me.",
    "Why {T}?",
    "Fair enough.",
    "Good point.",
)


def _pick(rng: np.random.Generator, seq: tuple[str, ...]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _fill(template: str, rng: np.random.Generator) -> str:
    s = template.format(
        S=_pick(rng, _SUBJ),
        V=_pick(rng, _VERB),
        O=_pick(rng, _OBJ),
        T=_pick(rng, _TIME),
        A=_pick(rng, _ADJ),
        open=_pick(rng, _OPEN),
    )
    return s[0].upper() + s[1:]


def sentence(rng: np.random.Generator, kind: str = "turn") -> str:
    """One English sentence: a backchannel word, a short reply ("quick") or a longer statement."""
    if kind == "backchannel":
        return _pick(rng, BACKCHANNELS)
    return _fill(_pick(rng, _QUICK if kind == "quick" else _TEMPLATES), rng)


# ---------------------------------------------------------------------------------------------
# scheduler

# utter(speaker, kind, target_s, rng) -> (text, actual seconds); kind is the length class
Utter = Callable[[int, str, float, np.random.Generator], tuple[str, float]]


def _nominal_utter(speaker: int, kind: str, target: float, rng: np.random.Generator) -> tuple[str, float]:
    n = 1 if kind != "turn" else max(1, round(target / 2.5))
    return " ".join(sentence(rng, kind) for _ in range(n)), target


def schedule(seconds: float, rng: np.random.Generator, utter: Utter | None = None) -> list[Segment]:
    """A dialogue timeline of ``seconds``, sorted by start. Main segments alternate between the
    speakers (sometimes one keeps the floor after a pause); consecutive segments are separated by a
    pause (0.1-1.5 s) or the next speaker starts 0.1-0.6 s early (kind "overlap", its length drawn
    like a turn or a quick reply); the listener backchannels during long segments. ``utter`` renders
    each utterance and returns its real length, which (clipped to the kind's range) becomes the
    segment's length; without it, lengths are the drawn targets."""
    utter = utter or _nominal_utter
    ranges = {"turn": TURN_S, "quick": QUICK_S}
    segs: list[Segment] = []
    last_end = [-1.0, -1.0]  # per speaker: end of its latest segment (incl. backchannels)
    t = float(rng.uniform(0.2, 1.0))
    spk = int(rng.integers(2))
    prev: Segment | None = None
    while True:
        cls = "turn" if rng.random() < 0.5 else "quick"
        kind = cls
        if prev is None:
            start = t
        else:
            switch = rng.random() < 0.85
            spk = 1 - prev.speaker if switch else prev.speaker
            ov = float(rng.uniform(*OVERLAP_S))
            if switch and rng.random() < 0.3 and prev.end - ov >= last_end[spk] + 0.1 and ov < prev.end - prev.start:
                start, kind = prev.end - ov, "overlap"
            else:
                start = max(prev.end, last_end[spk]) + float(rng.uniform(*PAUSE_S))
        if start > seconds - 1.0:
            break
        lo, hi = ranges[cls]
        text, dur = utter(spk, cls, float(rng.uniform(lo, hi)), rng)
        end = min(start + float(np.clip(dur, lo, hi)), seconds - 0.05)
        if end - start < 0.3:
            break
        seg = Segment(spk, round(start, 3), round(end, 3), kind, text)
        segs.append(seg)
        last_end[spk] = seg.end
        # backchannels from the listener, well inside the segment (before any overlapping reply)
        lis = 1 - spk
        if seg.end - seg.start >= TURN_S[0]:
            cursor = max(seg.start + 0.5, last_end[lis] + 0.3)
            for _ in range(min(2, int(rng.poisson((seg.end - seg.start) / 6.0)))):
                b0 = cursor + float(rng.uniform(0.3, 2.5))
                btext, bdur = utter(lis, "backchannel", float(rng.uniform(0.3, 0.8)), rng)
                b1 = b0 + float(np.clip(bdur, *BACKCHANNEL_S))
                if b1 > seg.end - 1.0:
                    break
                segs.append(Segment(lis, round(b0, 3), round(b1, 3), "backchannel", btext))
                cursor = last_end[lis] = round(b1, 3)
        prev = seg
    return sorted(segs, key=lambda s: (s.start, s.speaker))


def activity(timeline: list[Segment] | list, seconds: float, fps: float = FPS) -> np.ndarray:
    """(T, 2) bool voice activity per frame (frame centre inside a segment), T = round(seconds*fps).
    Accepts Segments, tuples ``(speaker, start, end, ...)`` or the JSON dicts."""
    n = round(seconds * fps)
    centres = (np.arange(n) + 0.5) / fps
    act = np.zeros((n, 2), bool)
    for s in timeline:
        spk, a, b = (s["speaker"], s["start"], s["end"]) if isinstance(s, dict) else s[:3]
        act[:, int(spk)] |= (centres >= a) & (centres < b)
    return act


def shares(act: np.ndarray) -> dict[str, float]:
    """Share of frames: user-only (speaker 0), agent-only (speaker 1), both, silence; sums to 1."""
    n = max(len(act), 1)
    u, a = act[:, 0], act[:, 1]
    return {
        "user_only": float((u & ~a).sum() / n),
        "agent_only": float((a & ~u).sum() / n),
        "both": float((u & a).sum() / n),
        "silence": float((~u & ~a).sum() / n),
    }


# ---------------------------------------------------------------------------------------------
# text to speech

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


class _TTSUtter:
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


# ---------------------------------------------------------------------------------------------
# mixing


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim (with a 20-ms fade-out) or zero-pad to ``n`` samples."""
    if len(x) >= n:
        y = x[:n].copy()
        f = min(n, SPEECH_RATE // 50)
        y[n - f :] *= np.linspace(1, 0, f, dtype=np.float32)
        return y
    return np.pad(x, (0, n - len(x)))


def _noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    w = rng.standard_normal(n)
    if color == "pink":
        spec = np.fft.rfft(w)
        f = np.arange(len(spec), dtype=float)
        f[0] = 1.0
        w = np.fft.irfft(spec / np.sqrt(f), n)
    return (w / (np.sqrt(np.mean(w**2)) + 1e-12)).astype(np.float32)


def _room(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A short synthetic impulse response: direct path plus an exponentially decaying noise tail."""
    n = int(rt60 * SPEECH_RATE)
    t = np.arange(n) / SPEECH_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.003 * SPEECH_RATE)] = 0.0
    ir = 0.25 * tail / np.sqrt(np.sum(tail**2) + 1e-12)
    ir[0] = 1.0
    return ir.astype(np.float32)


@dataclass
class Dialogue:
    """Two equal-length mono float32 16-kHz tracks (speaker1, speaker2) and their timeline."""

    tracks: tuple[np.ndarray, np.ndarray]
    timeline: list[Segment]
    seconds: float
    seed: int
    voices: list[Voice]
    snr_db: float | None
    noise: str | None
    rt60: float | None
    extra: dict = field(default_factory=dict)

    def meta(self) -> dict:
        return {
            "seed": self.seed,
            "seconds": self.seconds,
            "sample_rate": SPEECH_RATE,
            "fps": int(FPS),
            "tracks": ["speaker1", "speaker2"],
            "voices": [asdict(v) for v in self.voices],
            "snr_db": self.snr_db,
            "noise": self.noise,
            "rt60_s": self.rt60,
            "segments": [s._asdict() for s in self.timeline],
            **self.extra,
        }


def make_dialogue(seed: int, seconds: float) -> Dialogue:
    """A synthetic two-person dialogue of exactly ``round(seconds * 16000)`` samples per track."""
    rng = np.random.default_rng(seed)
    v0 = pick_voice(rng)
    voices = [v0, pick_voice(rng, exclude=v0.name)]
    utter = _TTSUtter(voices)
    timeline = schedule(seconds, rng, utter)
    n = round(seconds * SPEECH_RATE)
    tracks = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    for s in timeline:
        a, b = round(s.start * SPEECH_RATE), min(round(s.end * SPEECH_RATE), n)
        jitter = 10 ** (float(rng.uniform(-2, 2)) / 20) * (0.7 if s.kind == "backchannel" else 1.0)
        tracks[s.speaker][a:b] += jitter * _fit(utter.render(s.speaker, s.text), b - a)
    rt60 = round(float(rng.uniform(0.15, 0.35)), 3) if rng.random() < 0.5 else None
    color = ("white", "pink")[int(rng.integers(2))] if rng.random() < 0.8 else None
    snr = round(float(rng.uniform(15, 40)), 2) if color else None
    act = activity(timeline, seconds, fps=MIX_FPS)
    for k, v in enumerate(voices):
        x = tracks[k]
        if rt60:
            x = fftconvolve(x, _room(rng, rt60))[:n].astype(np.float32)
        x *= 10 ** (v.gain_db / 20)
        if color:
            on = np.repeat(act[:, k], SPEECH_RATE // MIX_FPS)[:n]
            on = np.pad(on, (0, n - len(on)))
            speech_rms = float(np.sqrt(np.mean(x[on] ** 2))) if on.any() else 0.01
            x = x + _noise(rng, n, color) * speech_rms * 10 ** (-snr / 20)
        peak = float(np.abs(x).max())
        tracks[k] = (x * (0.98 / peak) if peak > 0.98 else x).astype(np.float32)
    return Dialogue((tracks[0], tracks[1]), timeline, float(seconds), int(seed), voices, snr, color, rt60)


def _write_wav(path: Path, x: np.ndarray) -> None:
    """Mono float32 WAV. scipy rather than soundfile: libsndfile adds a PEAK chunk with a timestamp,
    which would make two runs with the same seed differ byte for byte."""
    wavfile.write(path, SPEECH_RATE, np.ascontiguousarray(x, dtype=np.float32))


def write_dialogue(folder: str | Path, clip_name: str, seed: int, seconds: float) -> Dialogue:
    """Synthesize one dialogue and write ``<clip>_speaker1.wav``, ``<clip>_speaker2.wav`` (float32,
    16 kHz) and ``<clip>_timeline.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = make_dialogue(seed, seconds)
    for k, x in enumerate(d.tracks):
        _write_wav(folder / f"{clip_name}_speaker{k + 1}.wav", x)
    (folder / f"{clip_name}_timeline.json").write_text(json.dumps(d.meta(), indent=1))
    return d


# ---------------------------------------------------------------------------------------------
# real speech (DualTalk demo conversations, when ../shared is present)


def energy_segments(x: np.ndarray, speaker: int, rate: int = SPEECH_RATE, fps: float = FPS) -> list[Segment]:
    """Energy-based voice activity of one track as segments (a rough estimate, not a VAD model):
    frames 12 dB above the track's noise floor (10th percentile) and within 30 dB of its loudest
    frames; gaps under 0.3 s are bridged and blips under 0.2 s dropped."""
    hop = int(rate // fps)
    n = len(x) // hop
    db = 10 * np.log10((x[: n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-10)
    thr = max(np.percentile(db, 10) + 12, np.percentile(db, 99) - 30)
    on = db > thr
    segs: list[list[float]] = []
    for i in np.flatnonzero(on):
        t0 = i / fps
        if segs and t0 - segs[-1][1] < 0.3:
            segs[-1][1] = (i + 1) / fps
        else:
            segs.append([t0, (i + 1) / fps])
    return [Segment(speaker, round(a, 3), round(b, 3), "turn") for a, b in segs if b - a >= 0.2]


def add_real_dialogues(folder: str | Path, src: str | Path = DEMO_DIR) -> list[str]:
    """Copy the real DualTalk demo conversations (both speakers' tracks, resampled to 16 kHz and cut
    to equal length) into ``folder`` as ``real_<clip>`` with an energy-based timeline. Returns the
    clip names written; empty when ``src`` is absent."""
    src, folder = Path(src), Path(folder)
    if not src.is_dir():
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for w1 in sorted(src.glob("*_speaker1.wav")):
        clip = w1.name[: -len("_speaker1.wav")]
        w2 = w1.with_name(f"{clip}_speaker2.wav")
        if not w2.exists():
            continue
        xs = []
        for w in (w1, w2):
            x, sr = sf.read(w, dtype="float32", always_2d=True)
            x = x.mean(axis=1)
            xs.append(soxr.resample(x, sr, SPEECH_RATE).astype(np.float32) if sr != SPEECH_RATE else x)
        n = min(map(len, xs))
        seconds = n / SPEECH_RATE
        timeline = sorted(
            [s for k, x in enumerate(xs) for s in energy_segments(x[:n], k)], key=lambda s: (s.start, s.speaker)
        )
        name = f"real_{clip}"
        for k, x in enumerate(xs):
            _write_wav(folder / f"{name}_speaker{k + 1}.wav", x[:n])
        meta = {
            "source": str(w1.parent.name),
            "clip": clip,
            "seconds": seconds,
            "sample_rate": SPEECH_RATE,
            "fps": int(FPS),
            "tracks": ["speaker1", "speaker2"],
            "activity": "energy estimate",
            "segments": [s._asdict() for s in timeline],
        }
        (folder / f"{name}_timeline.json").write_text(json.dumps(meta, indent=1))
        written.append(name)
    return written


# ---------------------------------------------------------------------------------------------
# CLI


def corpus_summary(folder: str | Path) -> dict:
    """Totals over every ``*_timeline.json`` in ``folder``: hours, voices, activity shares."""
    acts, seconds, voices, n = [], 0.0, set(), 0
    for p in sorted(Path(folder).glob("*_timeline.json")):
        m = json.loads(p.read_text())
        acts.append(activity(m["segments"], m["seconds"]))
        seconds += m["seconds"]
        voices.update(v["name"] for v in m.get("voices", []))
        n += 1
    sh = shares(np.concatenate(acts)) if acts else shares(np.zeros((0, 2), bool))
    return {"dialogues": n, "hours": seconds / 3600, "voices": sorted(voices), **sh}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dialogues", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", action="store_true", help=f"also add the real demo conversations from {DEMO_DIR}")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    for i in range(args.dialogues):
        write_dialogue(args.out, f"dlg{args.seed + i:06d}", args.seed + i, args.seconds)
    real = add_real_dialogues(args.out) if args.real else []
    s = corpus_summary(args.out)
    print(
        f"{s['dialogues']} dialogues ({len(real)} real) in {args.out}: {s['hours']:.3f} h, "
        f"{len(s['voices'])} voices ({', '.join(s['voices'])}); share of time: "
        f"agent-only {s['agent_only']:.3f}, user-only {s['user_only']:.3f}, both {s['both']:.3f}, "
        f"silence {s['silence']:.3f}; {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
