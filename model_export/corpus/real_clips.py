"""Real speech in the corpus: the DualTalk demo conversations (when ``../shared`` is present) copied
in DualTalk layout, with a timeline estimated from each track's energy (``energy_segments``, also
the timeline of real clips for the teacher, the calibration, the behaviour benchmark and the card)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from timar_blender.engine import activity
from timar_blender.engine.contract import FPS, SPEECH_RATE

from .dialogue import Segment, write_wav

DEMO_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "dualtalk_demo"
ENERGY_SEGMENTS = activity.Gate(over_floor_db=12, loud_pct=99, under_loud_db=30, bridge_s=0.3, min_run_s=0.2)


def energy_segments(x: np.ndarray, speaker: int, rate: int = SPEECH_RATE, fps: float = FPS) -> list[Segment]:
    """Energy-based voice activity of one track as segments (a rough estimate, not a VAD model):
    frames 12 dB above the track's noise floor (10th percentile) and within 30 dB of its loudest
    frames; gaps under 0.3 s are bridged and blips under 0.2 s dropped."""
    db = activity.frame_db(x, int(rate // fps), eps=1e-10, power=True, tail="drop", dtype=None)
    # frame indices stay numpy integers: round() of the numpy seconds, as the timelines always were
    return [Segment(speaker, round(a / fps, 3), round(b / fps, 3), "turn") for a, b in ENERGY_SEGMENTS.runs(db, fps)]


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
            write_wav(folder / f"{name}_speaker{k + 1}.wav", x[:n])
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
