"""Motion-behaviour measures (``../shared/docs/motion-behaviour.md``): does a take talk and listen
the way an animator would accept? Pure numpy/scipy (no torch) so tests, the benchmark runner and the
model card share one implementation.

Every measure works on the agent's FLAME-56 motion at 25 fps (exp 0:50, jaw 50:53 with the opening
= channel 50 in radians, neck 53:56 as pitch/yaw/roll in radians) and on per-frame labels built from
the agent's (and user's) audio or a known timeline. A measure whose frames are missing (less than
2 s of talk / silence / listening, 20 s of silence for nods) is ``None`` = n/a (not judged).

Choices the document leaves open, fixed here once:
* energy mask: the noise floor is the 10th percentile and "loud" the 99th percentile of the floored
  frame level; hysteresis (start above the start level, keep going while above start - 6 dB), then
  widened by 0.2 s (5 frames) on each side;
* timeline labels: a frame belongs to a segment when its centre lies inside it;
* a Pearson r with a constant series is 0 (no linear relation; a frozen jaw fails, not n/a);
* cycles / nods count the peaks lying on talk / silent frames of the whole take's smoothed curve;
* nods: ``find_peaks`` window ``wlen`` = 2·round(1.5 s · fps) + 1 frames (±1.5 s);
* seam: every 1-s turn edge with 3 frames on both sides, against frame 13 of every turn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.ndimage import gaussian_filter1d, uniform_filter1d
from scipy.signal import find_peaks

from timar_blender.engine import activity, contract

FPS = int(contract.FPS)
RATE = contract.SPEECH_RATE
JAW = contract.JAW.start  # jaw opening (rad)
HEAD = contract.NECK  # neck pitch, yaw, roll (rad)
DEG = 180.0 / math.pi
MIN_FRAMES_S = 2.0  # seconds of talk / silence / listening a measure needs
MIN_NOD_SILENCE_S = 20.0
START_OVER_FLOOR_DB, START_UNDER_LOUD_DB, HYSTERESIS_DB, WIDEN_S = 13.0, 35.0, 6.0, 0.2  # the energy mask
XKH_JAW_RANGE = (-0.026, 0.098)  # real xkH jaw opening range (rad) the energy baseline maps onto
KEYS = (
    "silent_open",
    "r_jaw_db",
    "artic",
    "cycles",
    "head_listen",
    "head_talk",
    "nods_per_min",
    "jitter_head",
    "jitter_jaw",
    "seed_r_head",
    "seed_r_jaw",
    "seam",
)


@dataclass(frozen=True)
class Goal:
    low: float | None
    high: float | None
    unit: str
    label: str

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit and self.unit not in ("%", "°") else self.unit
        if self.low is not None and self.high is not None:
            return f"{_g(self.low)}–{_g(self.high)}{unit}"
        return f"≥ {_g(self.low)}{unit}" if self.low is not None else f"≤ {_g(self.high)}{unit}"

    def passes(self, value: float | None) -> bool | None:
        """True/False, or None when the value is n/a."""
        if value is None or not math.isfinite(value):
            return None
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


def _g(x: float) -> str:
    return f"{x:g}"


GOALS: dict[str, Goal] = {
    "silent_open": Goal(None, 10.0, "%", "silent frames with open jaw"),
    "r_jaw_db": Goal(0.5, None, "", "r(jaw, agent level)"),
    "artic": Goal(8.0, None, "mrad", "articulation (1.5–6 Hz jaw std)"),
    "cycles": Goal(1.5, None, "/s", "jaw cycles per second of talk"),
    "head_listen": Goal(0.8, 6.0, "°", "head std listening"),
    "head_talk": Goal(1.0, 6.0, "°", "head std talking"),
    "nods_per_min": Goal(15.0, None, "/min", "nods per minute not talking"),
    "jitter_head": Goal(None, 0.30, "°/frame", "jitter head"),
    "jitter_jaw": Goal(None, 10.0, "mrad/frame", "jitter jaw"),
    "seed_r_head": Goal(None, 0.6, "", "seed-pair r of the head"),
    "seed_r_jaw": Goal(0.6, None, "", "seed-pair r of the jaw"),
    "seam": Goal(None, 1.4, "", "jaw step at turn edges ÷ mid-turn"),
}


# ----------------------------------------------------------------------------- frame labels


def frame_level(audio: np.ndarray, frames: int, rate: int = RATE, fps: int = FPS) -> np.ndarray:
    """dB of the track's RMS per motion frame (40 ms at 25 fps; zero-padded past the end), floored
    50 dB under its 99th percentile so digital silence does not dominate."""
    db = activity.frame_db(np.asarray(audio, np.float64).ravel(), round(rate / fps), frames, eps=1e-12)
    return np.maximum(db, np.percentile(db, 99) - 50.0) if frames else db


def energy_mask(db: np.ndarray, fps: int = FPS) -> np.ndarray:
    """Talking frames of a track from its floored level: start above max(floor + 13 dB, loud - 35 dB)
    (floor = p10, loud = p99), keep going while above that - 6 dB, then widen by 0.2 s."""
    gate = activity.Gate(
        over_floor_db=START_OVER_FLOOR_DB,
        loud_pct=99,
        under_loud_db=START_UNDER_LOUD_DB,
        hysteresis_db=HYSTERESIS_DB,
        widen=round(WIDEN_S * fps),
    )
    return gate.mask(np.asarray(db, np.float64), fps)


def timeline_mask(timeline: Sequence, speaker: int, frames: int, fps: int = FPS) -> np.ndarray:
    """Frames whose centre lies inside one of ``speaker``'s segments. Segments are ``Segment``s,
    ``(speaker, start, end, ...)`` tuples or dicts with those keys."""
    centres = (np.arange(frames) + 0.5) / fps
    out = np.zeros(frames, bool)
    for s in timeline:
        spk, a, b = (s["speaker"], s["start"], s["end"]) if isinstance(s, dict) else tuple(s)[:3]
        if int(spk) == speaker:
            out |= (centres >= float(a)) & (centres < float(b))
    return out


@dataclass(frozen=True)
class Labels:
    """Per-frame labels of one case: the agent's floored level (dB) and talk / silent / listen."""

    level: np.ndarray
    talk: np.ndarray
    listen: np.ndarray
    fps: int = FPS
    source: str = "energy"  # "timeline" or "energy"

    @property
    def silent(self) -> np.ndarray:
        return ~self.talk

    def seconds(self) -> dict[str, float]:
        return {
            "talk": float(self.talk.sum() / self.fps),
            "silent": float(self.silent.sum() / self.fps),
            "listen": float(self.listen.sum() / self.fps),
            "total": float(len(self.talk) / self.fps),
        }


def frame_labels(
    agent_audio: np.ndarray,
    user_audio: np.ndarray | None,
    frames: int,
    timeline: Sequence | None = None,
    rate: int = RATE,
    fps: int = FPS,
) -> Labels:
    """Labels for ``frames`` motion frames. With a ``timeline`` (speaker 0 = user, 1 = agent) talk and
    the user's speech come from it; otherwise from the energy mask of each track. listen = the user
    speaks and the agent does not; silent = not talk."""
    level = frame_level(agent_audio, frames, rate, fps)
    if timeline is not None:
        talk = timeline_mask(timeline, 1, frames, fps)
        user = timeline_mask(timeline, 0, frames, fps)
        src = "timeline"
    else:
        talk = energy_mask(level, fps)
        user = energy_mask(frame_level(user_audio, frames, rate, fps), fps) if user_audio is not None else np.zeros(
            frames, bool
        )
        src = "energy"
    return Labels(level=level, talk=talk, listen=user & ~talk, fps=fps, source=src)


# ----------------------------------------------------------------------------- measures


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; 0 when either series is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sa, sb = a.std(), b.std()
    if sa < 1e-12 or sb < 1e-12:
        return 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def _enough(mask: np.ndarray, fps: int, seconds: float = MIN_FRAMES_S) -> bool:
    return bool(mask.sum() >= seconds * fps - 1e-9)


def open_threshold(talk_jaw: np.ndarray, silent_jaw: np.ndarray) -> float:
    """The open-jaw level: p25(talk jaw) + 0.3 (p90(talk jaw) - p10(silent jaw))."""
    t = np.asarray(talk_jaw, np.float64)
    return float(np.percentile(t, 25) + 0.3 * (np.percentile(t, 90) - np.percentile(silent_jaw, 10)))


def silent_open(jaw: np.ndarray, lab: Labels) -> float | None:
    """% of silent frames whose jaw is above ``open_threshold`` of this take's talk and silent frames."""
    if not (_enough(lab.talk, lab.fps) and _enough(lab.silent, lab.fps)):
        return None
    s = jaw[lab.silent]
    return float(100.0 * np.mean(s > open_threshold(jaw[lab.talk], s)))


def r_jaw_db(jaw: np.ndarray, lab: Labels) -> float | None:
    """Pearson r of the jaw opening with the agent's floored frame level over all frames."""
    if not _enough(lab.talk, lab.fps):
        return None
    return pearson(jaw, lab.level)


def articulation(jaw: np.ndarray, lab: Labels) -> float | None:
    """std over talk frames of the jaw band-passed as Gaussian(σ=1) - Gaussian(σ=5) frames, mrad."""
    if not _enough(lab.talk, lab.fps):
        return None
    band = gaussian_filter1d(jaw, 1.0) - gaussian_filter1d(jaw, 5.0)
    return float(1000.0 * band[lab.talk].std())


def cycles(jaw: np.ndarray, lab: Labels) -> float | None:
    """Peaks of the σ=1-smoothed jaw (prominence 0.01 rad) on talk frames, per second of talk."""
    if not _enough(lab.talk, lab.fps):
        return None
    peaks, _ = find_peaks(gaussian_filter1d(jaw, 1.0), prominence=0.01)
    return float(lab.talk[peaks].sum() / (lab.talk.sum() / lab.fps))


def head_std(head_rad: np.ndarray, mask: np.ndarray, fps: int = FPS) -> float | None:
    """Mean over pitch/yaw/roll of the std (deg) of the 5-frame moving average on ``mask`` frames."""
    if not _enough(mask, fps):
        return None
    avg = uniform_filter1d(np.asarray(head_rad, np.float64) * DEG, size=5, axis=0, mode="nearest")
    return float(avg[mask].std(axis=0).mean())


def nods_per_min(head_rad: np.ndarray, lab: Labels) -> float | None:
    """Peaks and troughs of the σ=2-smoothed pitch with prominence ≥ 1° within ±1.5 s, on silent
    frames, per minute of silent frames (needs ≥ 20 s of them)."""
    if not _enough(lab.silent, lab.fps, MIN_NOD_SILENCE_S):
        return None
    pitch = gaussian_filter1d(np.asarray(head_rad[:, 0], np.float64) * DEG, 2.0)
    wlen = 2 * round(1.5 * lab.fps) + 1
    peaks, _ = find_peaks(pitch, prominence=1.0, wlen=wlen)
    troughs, _ = find_peaks(-pitch, prominence=1.0, wlen=wlen)
    count = lab.silent[peaks].sum() + lab.silent[troughs].sum()
    return float(count / (lab.silent.sum() / lab.fps / 60.0))


def jitter_head(head_rad: np.ndarray) -> float:
    """Mean |second difference| of the head rotation, deg/frame (over pitch, yaw, roll)."""
    return float(np.abs(np.diff(np.asarray(head_rad, np.float64) * DEG, 2, axis=0)).mean())


def jitter_jaw(jaw: np.ndarray) -> float:
    """Mean |second difference| of the jaw opening, mrad/frame."""
    return float(1000.0 * np.abs(np.diff(np.asarray(jaw, np.float64), 2)).mean())


def seam(jaw: np.ndarray, frames_per_turn: int = FPS, side: int = 3, mid: int = 13) -> float | None:
    """Mean |mean(3 after) - mean(3 before)| of the jaw at each turn edge ÷ the same at frame 13 of
    each turn (1.0 = edges are no rougher than the middle of a turn)."""
    jaw = np.asarray(jaw, np.float64)

    def step(at: int) -> float:
        return abs(jaw[at : at + side].mean() - jaw[at - side : at].mean())

    n = len(jaw)
    edges = [step(e) for e in range(frames_per_turn, n - side + 1, frames_per_turn) if e - side >= 0]
    mids = [step(m) for m in range(mid, n - side + 1, frames_per_turn) if m - side >= 0]
    if not edges or not mids:
        return None
    denom = float(np.mean(mids))
    return float(np.mean(edges) / denom) if denom > 1e-12 else None


def seed_r(takes: Sequence[np.ndarray], channels: Sequence[int]) -> float | None:
    """Mean over ``channels`` and over every pair of takes of the Pearson r over all frames."""
    if len(takes) < 2:
        return None
    n = min(len(t) for t in takes)
    rs = [pearson(a[:n, c], b[:n, c]) for a, b in combinations(takes, 2) for c in channels]
    return float(np.mean(rs))


def take_measures(motion: np.ndarray, lab: Labels) -> dict[str, float | None]:
    """Every per-take measure of one (T, 56) take (seed measures excluded)."""
    m = np.asarray(motion, np.float64)
    if m.ndim != 2 or m.shape[1] < 56:
        raise ValueError(f"motion must be (frames, 56), got {m.shape}")
    if len(m) != len(lab.talk):
        raise ValueError(f"motion has {len(m)} frames but the labels {len(lab.talk)}")
    jaw, head = m[:, JAW], m[:, HEAD]
    return {
        "silent_open": silent_open(jaw, lab),
        "r_jaw_db": r_jaw_db(jaw, lab),
        "artic": articulation(jaw, lab),
        "cycles": cycles(jaw, lab),
        "head_listen": head_std(head, lab.listen, lab.fps),
        "head_talk": head_std(head, lab.talk, lab.fps),
        "nods_per_min": nods_per_min(head, lab),
        "jitter_head": jitter_head(head),
        "jitter_jaw": jitter_jaw(jaw),
        "seam": seam(jaw, lab.fps),
    }


def behaviour(takes: Sequence[np.ndarray], lab: Labels) -> dict[str, float | None]:
    """All measures of one case: per-take measures averaged over the takes (seeds), and the seed-pair
    correlations (n/a with a single take; seed_r_jaw judged only when the agent talks ≥ 2 s)."""
    if not takes:
        raise ValueError("no takes to measure")
    per = [take_measures(t, lab) for t in takes]
    out: dict[str, float | None] = {}
    for k in per[0]:
        vals = [p[k] for p in per if p[k] is not None and math.isfinite(p[k])]
        out[k] = float(np.mean(vals)) if vals else None
    out["seed_r_head"] = seed_r(takes, (53, 54, 55))
    out["seed_r_jaw"] = seed_r(takes, (JAW,)) if _enough(lab.talk, lab.fps) else None
    return {k: out[k] for k in KEYS}


def verdicts(values: dict[str, float | None]) -> dict[str, bool | None]:
    """PASS (True) / FAIL (False) / n/a (None) per measure."""
    return {k: GOALS[k].passes(values.get(k)) for k in KEYS}


# ----------------------------------------------------------------------------- energy baseline


def energy_baseline(agent_audio: np.ndarray, frames: int, rate: int = RATE, fps: int = FPS) -> np.ndarray:
    """The reference every model must match on the jaw: the agent's floored level mapped linearly
    onto the real xkH jaw range, opened only above max(p99 - 40, p10 + 10) dB; everything else still."""
    db = frame_level(agent_audio, frames, rate, fps)
    p99, p10 = np.percentile(db, 99), np.percentile(db, 10)
    gate = max(p99 - 40.0, p10 + 10.0)
    lo, hi = XKH_JAW_RANGE
    span = max(p99 - gate, 1e-6)
    motion = np.zeros((frames, 56), np.float32)
    motion[:, JAW] = lo + (hi - lo) * np.clip((db - gate) / span, 0.0, 1.0)
    return motion
