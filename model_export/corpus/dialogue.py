"""Two-person dialogue audio for a self-built corpus, with its timeline.

A seeded scheduler (``schedule``) lays out who speaks when (long turns, quick exchanges, listener
backchannels, overlapping turn starts, pauses); every utterance is synthesized (``tts.py``: espeak-ng
or flite, one voice, rate and pitch per speaker; sentences from ``text.py``), resampled to 16 kHz and
placed on its speaker's track; then per-speaker level, background noise and an optional mild room
effect. The timeline is built from the actual utterance lengths, so it says where each track really
carries speech. Real conversations join the corpus through ``real_clips.py``.

Output follows the DualTalk layout: ``<clip>_speaker1.wav``, ``<clip>_speaker2.wav`` (mono float32,
16 kHz, equal length) plus ``<clip>_timeline.json``. Speaker index 0 is ``speaker1`` (called "user"
in summaries), index 1 is ``speaker2`` ("agent"); the data loader uses every clip in both directions.

CLI: ``python -m model_export.corpus.dialogue OUT --dialogues N --seconds S --seed K [--real]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.io import wavfile
from scipy.signal import fftconvolve

from timar_blender.engine.contract import FPS, SPEECH_RATE

from .text import BACKCHANNEL_S, QUICK_S, TURN_S, sentence
from .tts import TTSUtter, Voice, pick_voice

MIX_FPS = 100  # 10-ms frames: the activity that sets each track's noise level against its speech
KINDS = ("turn", "quick", "backchannel", "overlap")
PAUSE_S = (0.1, 1.5)
OVERLAP_S = (0.1, 0.6)


class Segment(NamedTuple):
    """One utterance: ``speaker`` 0|1, ``start``/``end`` in seconds, ``kind`` in KINDS."""

    speaker: int
    start: float
    end: float
    kind: str
    text: str = ""


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
# mixing


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
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


def timeline_meta(seed: int, seconds: float, **rest) -> dict:
    """A ``<clip>_timeline.json``: the fields every corpus dialogue has, then its own (``segments``...)."""
    return {"seed": seed, "seconds": seconds, "sample_rate": SPEECH_RATE, "fps": int(FPS),
            "tracks": ["speaker1", "speaker2"], **rest}


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
        return timeline_meta(
            self.seed,
            self.seconds,
            voices=[asdict(v) for v in self.voices],
            snr_db=self.snr_db,
            noise=self.noise,
            rt60_s=self.rt60,
            segments=[s._asdict() for s in self.timeline],
            **self.extra,
        )


def place(timeline: list[Segment], render, n: int, rng: np.random.Generator, gain_db: float) -> list[np.ndarray]:
    """Two tracks of ``n`` samples with every utterance of ``timeline`` (``render(speaker, text)``)
    fitted to its segment, at a random gain within +-``gain_db`` (backchannels 3 dB softer)."""
    tracks = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    for s in timeline:
        a, b = round(s.start * SPEECH_RATE), min(round(s.end * SPEECH_RATE), n)
        gain = 10 ** (float(rng.uniform(-gain_db, gain_db)) / 20) * (0.7 if s.kind == "backchannel" else 1.0)
        tracks[s.speaker][a:b] += gain * fit_length(render(s.speaker, s.text), b - a)
    return tracks


def make_dialogue(seed: int, seconds: float) -> Dialogue:
    """A synthetic two-person dialogue of exactly ``round(seconds * 16000)`` samples per track."""
    rng = np.random.default_rng(seed)
    v0 = pick_voice(rng)
    voices = [v0, pick_voice(rng, exclude=v0.name)]
    utter = TTSUtter(voices)
    timeline = schedule(seconds, rng, utter)
    n = round(seconds * SPEECH_RATE)
    tracks = place(timeline, utter.render, n, rng, gain_db=2.0)
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


def write_wav(path: Path, x: np.ndarray) -> None:
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
        write_wav(folder / f"{clip_name}_speaker{k + 1}.wav", x)
    (folder / f"{clip_name}_timeline.json").write_text(json.dumps(d.meta(), indent=1))
    return d


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
    ap.add_argument("--real", action="store_true", help="also add the real DualTalk demo conversations (../shared)")
    args = ap.parse_args(argv)
    from .real_clips import add_real_dialogues
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
