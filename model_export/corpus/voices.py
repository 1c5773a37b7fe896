"""Real voices for corpus v2: two-person dialogues of LibriSpeech speakers (mixed with TTS voices),
recorded the way two microphones record a conversation.

Each speaker of a dialogue is one real voice (a LibriSpeech speaker; its utterances are cut into
phrases at pauses) or, with a smaller share, a TTS voice (``tts.TTSUtter``). The existing
scheduler (``dialogue.schedule``) lays out turns, quick replies, backchannels, overlaps and pauses;
the utterance source here renders each as a real phrase of about the asked length (backchannels are
single short words). The clean tracks and the timeline are kept for the teacher; the tracks the model
hears come from ``acoustics.degrade_pair`` (room tone, partner bleed, room, phone line, gain, clipping).

Splits: ``train-clean-100`` (251 speakers, one ~12-s utterance each) feeds the corpus; ``test-other``
(10 speakers, never trained on) feeds the behaviour benchmark's held-out dialogues.

LibriSpeech ASR corpus (c) 2014 Vassil Panayotov et al., CC BY 4.0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.ndimage import uniform_filter1d

from timar_blender.engine.contract import SPEECH_RATE

from .acoustics import degrade_pair
from .dialogue import Segment, place, schedule, timeline_meta
from .text import BACKCHANNEL_S, QUICK_S, TURN_S
from .tts import TTSUtter, pick_voice

LIBRISPEECH = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "librispeech"
SPLITS = ("train-clean-100", "test-other")
ATTRIBUTION = {
    "name": "LibriSpeech ASR corpus (subset: train-clean-100 one utterance per speaker; test-other held out)",
    "copyright": "(c) 2014 Vassil Panayotov, Guoguo Chen, Daniel Povey, Sanjeev Khudanpur",
    "license": "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)",
    "url": "https://www.openslr.org/12",
    "redistributed_via": "resemble-ai/Resemblyzer audio_data/",
}
ANALYSIS_FPS = 100  # 10-ms analysis frames for phrase boundaries
HOP = SPEECH_RATE // ANALYSIS_FPS


@dataclass
class RealVoice:
    """One LibriSpeech speaker: its utterances (float32, 16 kHz, RMS ~ -20 dBFS) and, per utterance,
    the sample offsets where a phrase may start or end (pauses: low-energy 10-ms frames)."""

    speaker: str
    utterances: list[np.ndarray]
    cuts: list[np.ndarray] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"librispeech:{self.speaker}"


def _cut_points(x: np.ndarray) -> np.ndarray:
    """Sample offsets of pauses: centres of runs of frames under the utterance's quiet level
    (20th percentile + 6 dB, smoothed over 50 ms), plus the two ends."""
    n = len(x) // HOP
    db = 10 * np.log10((x[: n * HOP].reshape(n, HOP) ** 2).mean(axis=1) + 1e-10)
    db = uniform_filter1d(db, 5)
    quiet = db < np.percentile(db, 20) + 6
    cuts = [0]
    i = 0
    while i < n:
        if quiet[i]:
            j = i
            while j < n and quiet[j]:
                j += 1
            cuts.append(((i + j) // 2) * HOP)
            i = j
        else:
            i += 1
    cuts.append(len(x))
    return np.unique(np.asarray(cuts, np.int64))


def _level(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
    return (x * (0.1 / rms) if rms > 0 else x).astype(np.float32)


@functools.cache
def _read(path: str) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    if sr != SPEECH_RATE:
        raise ValueError(f"{path}: sample rate {sr}, expected {SPEECH_RATE}")
    return _level(x.mean(axis=1))


def speakers(split: str, root: Path = LIBRISPEECH) -> dict[str, list[Path]]:
    """Speaker id -> its utterance files, for ``train-clean-100`` (flat ``<spk>-<ch>-<utt>.flac``)
    or ``test-other`` (``<spk>/*.flac``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown LibriSpeech split {split!r}; known: {SPLITS}")
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: LibriSpeech fixtures missing (they live in ../shared/fixtures)")
    out: dict[str, list[Path]] = {}
    for p in sorted(folder.rglob("*.flac")):
        out.setdefault(p.name.split("-")[0], []).append(p)
    return out


def real_voice(speaker: str, files: list[Path]) -> RealVoice:
    utts = [_read(str(p)) for p in files]
    return RealVoice(speaker, utts, [_cut_points(u) for u in utts])


class RealUtter:
    """``Utter`` (see ``dialogue.schedule``) for one real voice: a phrase of about the target length,
    cut at pauses of one of the speaker's utterances. Returns a key as the "text"; ``render`` gives
    the audio."""

    def __init__(self, voice: RealVoice):
        self.voice = voice
        self.audio: dict[str, np.ndarray] = {}

    def render(self, text: str) -> np.ndarray:
        return self.audio[text]

    def __call__(self, kind: str, target: float, rng: np.random.Generator) -> tuple[str, float]:
        lo, hi = {"turn": TURN_S, "quick": QUICK_S, "backchannel": BACKCHANNEL_S}.get(kind, QUICK_S)
        u = int(rng.integers(len(self.voice.utterances)))
        x, cuts = self.voice.utterances[u], self.voice.cuts[u]
        want = target * SPEECH_RATE
        best: tuple[float, int, int] | None = None
        starts = rng.permutation(len(cuts) - 1)[:12]
        for i in starts:
            a = int(cuts[i])
            ends = cuts[cuts > a + lo * SPEECH_RATE * 0.5]
            if not len(ends):
                continue
            b = int(ends[np.argmin(np.abs(ends - a - want))])
            cost = abs((b - a) - want) / SPEECH_RATE
            if best is None or cost < best[0]:
                best = (cost, a, b)
        if best is None:  # a very short utterance: take all of it
            best = (0.0, 0, len(x))
        _, a, b = best
        b = min(b, a + int(hi * SPEECH_RATE))
        y = x[a:b].copy()
        f = min(len(y) // 4, SPEECH_RATE // 100)  # 10-ms fades so cuts never click
        if f:
            y[:f] *= np.linspace(0, 1, f, dtype=np.float32)
            y[-f:] *= np.linspace(1, 0, f, dtype=np.float32)
        key = f"{self.voice.name}/{u}/{a}-{b}"
        self.audio[key] = y
        return key, len(y) / SPEECH_RATE


class MixedUtter:
    """``Utter`` over two speakers, each a real voice or a TTS voice."""

    def __init__(self, sources: list[RealUtter | TTSUtter]):
        self.sources = sources

    def __call__(self, speaker: int, kind: str, target: float, rng: np.random.Generator) -> tuple[str, float]:
        src = self.sources[speaker]
        if isinstance(src, RealUtter):
            return src(kind, target, rng)
        return src(speaker, kind, target, rng)

    def render(self, speaker: int, text: str) -> np.ndarray:
        src = self.sources[speaker]
        return src.render(text) if isinstance(src, RealUtter) else src.render(speaker, text)


@dataclass
class RealVoiceDialogue:
    """Clean and recorded (speaker1, speaker2) tracks of one dialogue, its true timeline and make-up."""

    clean: tuple[np.ndarray, np.ndarray]
    tracks: tuple[np.ndarray, np.ndarray]
    timeline: list[Segment]
    seconds: float
    seed: int
    split: str
    voices: list[dict]
    acoustics: dict

    def meta(self) -> dict:
        return timeline_meta(
            self.seed,
            self.seconds,
            split=self.split,
            voices=self.voices,
            acoustics=self.acoustics,
            segments=[s._asdict() for s in self.timeline],
        )


def real_voice_dialogue(
    split: str, seed: int, seconds: float, *, tts_share: float = 0.0, root: Path = LIBRISPEECH
) -> RealVoiceDialogue:
    """A two-person dialogue of ``seconds`` between two speakers of ``split`` (each replaced by a TTS
    voice with probability ``tts_share``), degraded with the ``"train"`` profile for the training
    split and ``"eval"`` for ``test-other``. Reproducible from ``seed``."""
    rng = np.random.default_rng([int(seed), 7, SPLITS.index(split) if split in SPLITS else 99])
    pool = speakers(split, root)
    ids = sorted(pool)
    pick = rng.choice(len(ids), 2, replace=False)
    sources: list[RealUtter | TTSUtter] = []
    voices: list[dict] = []
    tts_voices = []
    for k in range(2):
        if rng.random() < tts_share:
            v = pick_voice(rng, exclude=tts_voices[0].name if tts_voices else None)
            tts_voices.append(v)
            voices.append({"name": v.name, "kind": "tts", "rate": v.rate, "pitch": v.pitch})
            sources.append(TTSUtter([v, v]))
        else:
            spk = ids[int(pick[k])]
            voices.append({"name": f"librispeech:{spk}", "kind": "librispeech", "split": split})
            sources.append(RealUtter(real_voice(spk, pool[spk])))
    utter = MixedUtter(sources)
    timeline = schedule(seconds, rng, utter)
    clean = place(timeline, utter.render, round(seconds * SPEECH_RATE), rng, gain_db=3.0)
    profile = "eval" if split == "test-other" else "train"
    u, ag, info = degrade_pair(clean[0], clean[1], rng, profile=profile)
    return RealVoiceDialogue((clean[0], clean[1]), (u, ag), timeline, float(seconds), int(seed), split, voices, info)
