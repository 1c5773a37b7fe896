"""Phones of clean speech for the corpus teacher: pocketsphinx in allphone mode (its wheel ships the
en-us acoustic model and a phone language model; no network, no word recogniser) and the mouth
classes the teacher animates.

Training-time only (``model_export``): the extension never imports pocketsphinx.

``recognise(x, spans)`` -> phones ``(start_s, end_s, phone)`` of the 16-kHz track ``x`` inside the
given time spans (the speaker's timeline segments); ``class_track(phones, n)`` -> one class index per
10-ms frame (``SIL`` outside the phones).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from timar_blender.engine.contract import SPEECH_RATE

PHONE_FPS = 100  # pocketsphinx frames (10 ms)
PAD_S = 0.15  # context decoded around each span (phones outside the span are dropped)
MERGE_S = 0.35  # spans closer than this are decoded as one utterance

CLASSES = ("open", "mid", "round", "bilabial", "labiodental", "sibilant", "other", "SIL")
SIL = CLASSES.index("SIL")
PHONE_CLASS = {
    **dict.fromkeys(("AA", "AE", "AO", "AW", "AY"), "open"),
    **dict.fromkeys(("AH", "EH", "ER", "EY", "IH", "IY"), "mid"),
    **dict.fromkeys(("OW", "OY", "UH", "UW", "W"), "round"),
    **dict.fromkeys(("P", "B", "M"), "bilabial"),
    **dict.fromkeys(("F", "V"), "labiodental"),
    **dict.fromkeys(("S", "Z", "SH", "ZH", "CH", "JH"), "sibilant"),
    **dict.fromkeys(("T", "D", "K", "G", "N", "NG", "L", "R", "Y", "HH", "TH", "DH"), "other"),
}


def phone_class(phone: str) -> int:
    """Class index of a pocketsphinx phone; silence and noise fillers (``SIL``, ``+NSN+``...) -> SIL."""
    return CLASSES.index(PHONE_CLASS.get(phone, "SIL"))


def decoder():
    """A fresh allphone decoder. A decoder carries state from one utterance to the next (its results
    on the same audio change after its first use), so each ``recognise`` call starts a new one: the
    teacher must be deterministic."""
    try:
        from pocketsphinx import Decoder, get_model_path
    except ImportError as exc:  # pragma: no cover - requirements.txt pins it
        raise ImportError("the corpus teacher needs pocketsphinx (pip install -r requirements.txt)") from exc
    model = get_model_path()
    d = Decoder(
        hmm=f"{model}/en-us/en-us",
        allphone=f"{model}/en-us/en-us-phone.lm.bin",
        lw=2.0,
        beam=1e-20,
        pbeam=1e-20,
        loglevel="FATAL",
    )
    return d


def _merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted((float(a), float(b)) for a, b in spans if b > a):
        if out and a - out[-1][1] < MERGE_S:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def decode(x: np.ndarray, d=None) -> list[tuple[int, int, str]]:
    """Phones of one utterance: (start frame, end frame inclusive, phone) at 100 frames/s, with the
    decoder ``d`` (a fresh one when None)."""
    x = np.asarray(x, np.float64)
    peak = np.abs(x).max() if len(x) else 0.0
    if peak < 1e-6:
        return []
    pcm = np.clip(x * (0.7 / peak), -1, 1)  # level-independent (the decoder normalises cepstra anyway)
    d = decoder() if d is None else d
    d.start_utt()
    d.process_raw((pcm * 32767).astype(np.int16).tobytes(), full_utt=True)
    d.end_utt()
    return [(s.start_frame, s.end_frame, s.word) for s in d.seg()]


def recognise(
    x: np.ndarray, spans: Sequence[tuple[float, float]], rate: int = SPEECH_RATE
) -> list[tuple[float, float, str]]:
    """Phones (start s, end s, phone) of track ``x`` inside ``spans`` (seconds), time-ordered."""
    if rate != SPEECH_RATE:
        raise ValueError(f"phones: expected {SPEECH_RATE}-Hz audio, got {rate}")
    x = np.asarray(x, np.float32)
    out: list[tuple[float, float, str]] = []
    d = None
    for a, b in _merge(spans):
        lo = max(0, int((a - PAD_S) * rate))
        hi = min(len(x), int((b + PAD_S) * rate))
        if hi - lo < rate // 20:
            continue
        t0 = lo / rate
        d = decoder() if d is None else d
        for f0, f1, ph in decode(x[lo:hi], d):
            s, e = t0 + f0 / PHONE_FPS, t0 + (f1 + 1) / PHONE_FPS
            s, e = max(s, a), min(e, b)
            if e > s:
                out.append((round(s, 3), round(e, 3), ph))
    return out


def class_track(phones: Iterable[tuple[float, float, str]], n: int, fps: int = PHONE_FPS) -> np.ndarray:
    """Class index per frame (``n`` frames at ``fps``), SIL where no phone covers the frame centre."""
    cls = np.full(n, SIL, np.int64)
    for s, e, ph in phones:
        i0, i1 = int(np.ceil(s * fps - 0.5)), int(np.ceil(e * fps - 0.5))
        cls[max(i0, 0) : max(min(i1, n), 0)] = phone_class(ph)
    return cls
