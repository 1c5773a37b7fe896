"""Behaviour benchmark: every measure of ``../shared/docs/motion-behaviour.md`` on held-out real
material, for a model bundle run through the engine exactly as the product runs it, next to the
energy baseline and the real people's own motion.

    python -m model_export.behaviour --bundle timar_blender/model --out behaviour.md --json behaviour.json
    python -m model_export.behaviour --bundle DIR --seeds 0 1 2 --sources bundle energy real teacher

Cases (none ever trained on): the two DualTalk conversations with both tracks as recorded (their
labels from the energy mask), dialogues assembled from the held-out LibriSpeech speakers with real
room tone and partner bleed, a pure-talking and a pure-listening case (labels from their timelines).

From Python, any motion source can be scored on the same table::

    from model_export import behaviour as B
    report = B.run_benchmark([B.BundleSource("timar_blender/model"), B.EnergySource(), B.teacher_source()],
                             B.default_cases(), seeds=(0, 1, 2))

A motion source is a callable ``(case, seed) -> (T, 56) agent motion at 25 fps`` (or None: it has
nothing for this case) with a ``name`` and ``deterministic`` (one take instead of one per seed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import behaviour_measures as bm

FPS = bm.FPS
RATE = bm.RATE
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"
DEMO = SHARED / "dualtalk_demo"
DUALTALK = (  # (clip, agent speaker file, short name)
    ("xkHwlcDSOjc_sub_video_109_000", "speaker1", "xkH"),
    ("UbjUDM1MiGE_sub_video_72", "speaker2", "UbjUDM1MiGE"),
)
CALIBRATION = "xkH"  # teacher v2 is calibrated on this clip: real audio that may choose options, not judge them


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One held-out dialogue: (user, agent) tracks as a microphone recorded them, 16 kHz mono.

    ``timeline``: segments with speaker 0 = user, 1 = agent (None: labels from the energy mask);
    ``clean``: the (user, agent) clean speech a teacher may use; ``real_motion``: the agent's own
    tracked FLAME-56 motion when there is one."""

    name: str
    tracks: tuple[np.ndarray, np.ndarray]
    timeline: list | None = None
    clean: tuple[np.ndarray, np.ndarray] | None = None
    real_motion: np.ndarray | None = None
    description: str = ""
    info: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return max(1, round(max(len(self.tracks[0]), len(self.tracks[1])) / RATE * FPS))

    def labels(self, frames: int | None = None) -> bm.Labels:
        n = self.frames if frames is None else frames
        return bm.frame_labels(self.tracks[1], self.tracks[0], n, self.timeline)


def _read(path: Path) -> np.ndarray:
    from timar_blender.engine.audio import load_audio

    return load_audio(path)


def load_flame56(path: Path) -> np.ndarray:
    """(T, 56) = exp[0:50] | jaw = pose[3:6] | neck = pose[0:3] (as ``model_export.data``; torch-free)."""
    with np.load(path, allow_pickle=False) as z:
        exp, pose = np.asarray(z["exp"]), np.asarray(z["pose"])
    return np.concatenate([exp[:, :50], pose[:, 3:6], pose[:, 0:3]], axis=1).astype(np.float32)


def dualtalk_cases(folder: Path = DEMO, only: str | None = None) -> list[Case]:
    """The two DualTalk conversations (or the one named ``only``), both tracks as recorded; the agent
    is the speaker with FLAME."""
    out = []
    for clip, agent, short in DUALTALK:
        if only is not None and short != only:
            continue
        user = "speaker2" if agent == "speaker1" else "speaker1"
        a, u = _read(folder / f"{clip}_{agent}.wav"), _read(folder / f"{clip}_{user}.wav")
        real = load_flame56(folder / f"{clip}_{agent}.npz")
        out.append(
            Case(
                name=f"DualTalk {short}",
                tracks=(u, a),
                real_motion=real,
                description=f"{clip}: agent = {agent} (its FLAME is the real-motion row), real bleed and room tone",
                info={"clip": clip, "agent": agent, "labels": "energy mask"},
            )
        )
    return out


@dataclass
class HeldOutDialogue:
    """What ``held_out_dialogue`` returns: clean and recorded (user, agent) tracks, the true timeline."""

    clean: tuple[np.ndarray, np.ndarray]
    tracks: tuple[np.ndarray, np.ndarray]
    timeline: list
    info: dict


def held_out_dialogue(seed: int, seconds: float, shared: Path = SHARED) -> HeldOutDialogue:
    """A two-person dialogue of held-out LibriSpeech speakers (``test-other``), degraded as two
    microphones record it. Uses ``model_export.corpus.voices.real_voice_dialogue`` (the corpus's own
    scheduler) when it exists; otherwise a plain assembly: turns of 3-8 s alternating between two
    speakers with 0.3-1.0-s gaps, the timeline from the clean utterances' energy segments, then
    ``acoustics.degrade_pair(profile="eval")``."""
    try:
        from .corpus import voices
    except ImportError:
        voices = None
    if voices is not None and hasattr(voices, "real_voice_dialogue"):
        d = voices.real_voice_dialogue("test-other", seed=int(seed), seconds=seconds)
        meta = d.meta() if callable(getattr(d, "meta", None)) else {}
        return HeldOutDialogue(
            (np.asarray(d.clean[0], np.float32), np.asarray(d.clean[1], np.float32)),
            (np.asarray(d.tracks[0], np.float32), np.asarray(d.tracks[1], np.float32)),
            list(d.timeline),
            {"assembled_by": "corpus.voices.real_voice_dialogue", **_jsonable(meta)},
        )
    return _plain_dialogue(seed, seconds, shared / "librispeech" / "test-other")


def _plain_dialogue(seed: int, seconds: float, folder: Path) -> HeldOutDialogue:
    from .corpus.acoustics import degrade_pair
    from .corpus.real_clips import energy_segments

    rng = np.random.default_rng([int(seed), 2024])
    speakers = sorted(p for p in folder.iterdir() if p.is_dir())
    if len(speakers) < 2:
        raise FileNotFoundError(f"{folder}: needs two speaker folders of held-out utterances")
    pick = rng.choice(len(speakers), 2, replace=False)
    files = [sorted(speakers[int(k)].glob("*.flac")) for k in pick]
    n = round(seconds * RATE)
    clean = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    timeline, used, t, who = [], [0, 0], float(rng.uniform(0.3, 1.0)), int(rng.integers(2))
    while t < seconds - 1.0:
        x = _read(files[who][used[who] % len(files[who])])
        used[who] += 1
        start = int(rng.integers(0, max(1, len(x) - 3 * RATE)))
        a = round(t * RATE)
        chunk = x[start : start + min(int(rng.uniform(3.0, 8.0) * RATE), n - a)]
        clean[who][a : a + len(chunk)] += chunk
        timeline += [(who, round(t + s.start, 3), round(t + s.end, 3), "turn") for s in energy_segments(chunk, who)]
        t += len(chunk) / RATE + float(rng.uniform(0.3, 1.0))
        who = 1 - who
    u, ag, info = degrade_pair(clean[0], clean[1], rng, profile="eval")
    info = {"assembled_by": "behaviour._plain_dialogue", "speakers": [speakers[int(k)].name for k in pick], **info}
    return HeldOutDialogue((clean[0], clean[1]), (u, ag), sorted(timeline, key=lambda s: s[1]), _jsonable(info))


def librispeech_cases(seeds: Sequence[int] = (0, 1), seconds: float = 60.0, shared: Path = SHARED) -> list[Case]:
    """Dialogues of two held-out LibriSpeech speakers, degraded as two microphones record them."""
    out = []
    for s in seeds:
        d = held_out_dialogue(int(s), seconds, shared)
        out.append(
            Case(
                name=f"LibriSpeech dialogue {s}",
                tracks=(np.asarray(d.tracks[0], np.float32), np.asarray(d.tracks[1], np.float32)),
                timeline=list(d.timeline),
                clean=(np.asarray(d.clean[0], np.float32), np.asarray(d.clean[1], np.float32)),
                description=f"held-out LibriSpeech speakers, seed {s}, {seconds:g} s, room tone and bleed",
                info=d.info,
            )
        )
    return out


def held_out_monologue(seed: int, seconds: float, folder: Path) -> tuple[np.ndarray, list]:
    """One held-out LibriSpeech speaker talking nearly without a break: utterances back to back with
    0.2-0.6-s gaps; returns the clean track and its (speaker 1) timeline from energy segments."""
    from .corpus.real_clips import energy_segments

    rng = np.random.default_rng([int(seed), 2025])
    speakers = sorted(p for p in folder.iterdir() if p.is_dir())
    if not speakers:
        raise FileNotFoundError(f"{folder}: no speaker folders of held-out utterances")
    files = sorted(speakers[int(rng.integers(len(speakers)))].glob("*.flac"))
    n = round(seconds * RATE)
    clean = np.zeros(n, np.float32)
    timeline, t, k = [], 0.3, int(rng.integers(len(files)))
    while t < seconds - 0.5:
        x = _read(files[k % len(files)])
        k += 1
        a = round(t * RATE)
        chunk = x[: n - a]
        clean[a : a + len(chunk)] += chunk
        timeline += [(1, round(t + s.start, 3), round(t + s.end, 3), "turn") for s in energy_segments(chunk, 1)]
        t += len(chunk) / RATE + float(rng.uniform(0.2, 0.6))
    return clean, timeline


def one_sided_case(kind: str, seed: int = 0, seconds: float = 60.0, shared: Path = SHARED) -> Case:
    """``"talking"``: only the agent speaks (a held-out voice nearly without a break; the user's track
    is room tone and the agent's bleed); ``"listening"``: only the user speaks (the agent's track is
    room tone and the user's bleed)."""
    from .corpus.acoustics import degrade_pair

    if kind not in ("talking", "listening"):
        raise ValueError(f"kind must be 'talking' or 'listening', got {kind!r}")
    speech, timeline = held_out_monologue(seed + (0 if kind == "talking" else 1), seconds,
                                          shared / "librispeech" / "test-other")
    silent = np.zeros_like(speech)
    if kind == "talking":
        clean = (silent, speech)
    else:
        clean = (speech, silent)
        timeline = [(0, *s[1:]) for s in timeline]
    rng = np.random.default_rng([int(seed), 11 if kind == "talking" else 12])
    u, a, info = degrade_pair(clean[0], clean[1], rng, profile="eval")
    return Case(
        name=f"pure {kind}",
        tracks=(u, a),
        timeline=timeline,
        clean=clean,
        description=f"only the {'agent' if kind == 'talking' else 'user'} speaks (a held-out LibriSpeech voice); "
        "the other track is room tone and bleed",
        info=_jsonable(info),
    )


# "calibration": only the DualTalk clip teacher v2 was calibrated on (validation for option sweeps)
CASE_GROUPS = ("dualtalk", "librispeech", "pure", "calibration")


def default_cases(
    shared: Path = SHARED,
    dialogues: Sequence[int] = (0, 1),
    seconds: float = 60.0,
    groups: Sequence[str] = CASE_GROUPS,
) -> list[Case]:
    """The held-out cases of ``groups``; raises FileNotFoundError naming what is missing."""
    need = [shared / "dualtalk_demo"] if {"dualtalk", "calibration"} & set(groups) else []
    if "librispeech" in groups or "pure" in groups:
        need.append(shared / "librispeech" / "test-other")
    for path in need:
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: fixtures missing (the benchmark needs ../shared/fixtures)")
    cases = dualtalk_cases(shared / "dualtalk_demo") if "dualtalk" in groups else []
    if "calibration" in groups and "dualtalk" not in groups:
        cases += dualtalk_cases(shared / "dualtalk_demo", only=CALIBRATION)
    if "librispeech" in groups:
        cases += librispeech_cases(dialogues, seconds, shared)
    if "pure" in groups:
        cases += [one_sided_case(k, 0, seconds, shared) for k in ("talking", "listening")]
    return cases


# ----------------------------------------------------------------------------- motion sources


class MotionSource:
    """``source(case, seed)`` -> (T, 56) agent motion at 25 fps, or None when it has none for the case."""

    name: str = "source"
    deterministic: bool = False

    def __call__(self, case: Case, seed: int) -> np.ndarray | None:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "deterministic": self.deterministic}


class FunctionSource(MotionSource):
    """Any ``fn(case, seed) -> motion`` as a source."""

    def __init__(self, name: str, fn: Callable[[Case, int], np.ndarray | None], deterministic: bool = False) -> None:
        self.name, self.fn, self.deterministic = name, fn, deterministic

    def __call__(self, case: Case, seed: int) -> np.ndarray | None:
        return self.fn(case, seed)


class EnergySource(MotionSource):
    """The energy baseline of the document: the agent's level on the jaw, the head still."""

    name = "energy baseline"
    deterministic = True

    def __call__(self, case: Case, seed: int) -> np.ndarray:
        return bm.energy_baseline(case.tracks[1], case.frames)


class RealSource(MotionSource):
    """The agent's own tracked motion (DualTalk clips only)."""

    name = "real person"
    deterministic = True

    def __call__(self, case: Case, seed: int) -> np.ndarray | None:
        if case.real_motion is None:
            return None
        return np.asarray(case.real_motion[: min(len(case.real_motion), case.frames)], np.float32)


def teacher_source(teach: Callable | None = None, calib: dict | None = None, name: str = "teacher") -> MotionSource:
    """The corpus teacher: ``teach(tracks, timeline, seed, calib) -> (speaker1, speaker2)`` on the clean
    speech and the true timeline where the case has them (else the recorded tracks and the energy
    segments the corpus uses for real clips); the agent is speaker 2."""
    if teach is None:
        from .corpus.teacher import teach

    def fn(case: Case, seed: int) -> np.ndarray:
        from .corpus.real_clips import energy_segments

        tracks = case.clean if case.clean is not None else case.tracks
        timeline = case.timeline
        if timeline is None:
            timeline = energy_segments(case.tracks[0], 0) + energy_segments(case.tracks[1], 1)
        motion = np.asarray(teach([tracks[0], tracks[1]], timeline, seed, calib)[1], np.float32)
        return _fit_frames(motion, case.frames)

    return FunctionSource(name, fn)


def _fit_frames(motion: np.ndarray, frames: int) -> np.ndarray:
    if len(motion) >= frames:
        return motion[:frames]
    return np.concatenate([motion, np.repeat(motion[-1:], frames - len(motion), 0)])


class BundleSource(MotionSource):
    """A model bundle through the engine as Generate runs it: the case's tracks written to WAV files,
    a ``job.Request`` with the bundle's default options (the settings' defaults under the bundle's
    recommended options), ``job.run``, then the default strengths and smoothing the writer applies.
    Records the wall time of every generated turn (the first turn of a run, which may include
    loading the model, is left out)."""

    deterministic = False

    def __init__(self, folder: str | Path = "", threads: int = 0, name: str | None = None) -> None:
        from timar_blender.engine.job import BUNDLED_MODEL

        self.folder = str(Path(folder).resolve()) if folder else ""
        shown = Path(self.folder) if self.folder else BUNDLED_MODEL
        self.name = name or ("bundled model" if not self.folder or Path(self.folder) == BUNDLED_MODEL else shown.name)
        self.threads = threads
        self.settings = _default_settings(shown)
        self.turn_seconds: list[float] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="timar-behaviour-")
        self._files: dict[str, tuple[str, str]] = {}

    def describe(self) -> dict:
        s = self.settings
        return {
            **super().describe(),
            "folder": self.folder or "(bundled)",
            "options": {k: getattr(s, k) for k in _OPTION_FIELDS if hasattr(s, k)},
        }

    def _wavs(self, case: Case) -> tuple[str, str]:
        import soundfile as sf

        if case.name not in self._files:
            base = Path(self._tmp.name) / f"case{len(self._files)}"
            paths = (f"{base}_user.wav", f"{base}_agent.wav")
            for p, x in zip(paths, case.tracks):
                sf.write(p, np.asarray(x, np.float32), RATE, subtype="FLOAT")
            self._files[case.name] = paths
        return self._files[case.name]

    def __call__(self, case: Case, seed: int) -> np.ndarray:
        from dataclasses import replace

        from timar_blender.engine import job
        from timar_blender.engine.curves import apply_strengths, smooth

        user, agent = self._wavs(case)
        s = self.settings
        req = job.Request(
            agent_audio=agent,
            user_audio=user,
            model=self.folder,
            threads=self.threads,
            options=replace(s.sampling_options(), seed=int(seed)),
        )
        stamps: list[float] = []

        def progress(frac: float, text: str) -> None:
            if text.startswith("take"):
                stamps.append(time.perf_counter())

        result = job.run(req, progress=progress)
        self.turn_seconds += list(np.diff(stamps))
        motion = apply_strengths(result.takes[0].motion, *s.strengths)
        return smooth(motion, s.smoothing)


_OPTION_FIELDS = ("context_turns", "sampling_steps", "num_iter", "cfg", "cfg_schedule", "temperature",
                  "face_temperature", "head_noise_correlation", "face_noise_correlation", "turn_blend",
                  "mask_history_agent", "random_order", "clamp_variance", "smoothing", "strength_expression",
                  "strength_jaw", "strength_head")


def _default_settings(folder: Path):
    """What Generate uses for a bundle when the artist changes nothing."""
    from timar_blender.engine import settings

    return settings.resolve({}, settings.read_recommended(folder))


# ----------------------------------------------------------------------------- running and reporting


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def score_case(source: MotionSource, case: Case, seeds: Sequence[int]) -> dict | None:
    """The measures of one source on one case (None when the source has nothing for it)."""
    runs = [int(seeds[0])] if source.deterministic else [int(s) for s in seeds]
    takes = []
    for s in runs:
        m = source(case, s)
        if m is None:
            return None
        m = np.asarray(m, np.float32)
        if m.ndim != 2 or m.shape[1] != 56:
            raise ValueError(f"{source.name} on {case.name}: motion must be (frames, 56), got {m.shape}")
        if not np.isfinite(m).all():
            raise ValueError(f"{source.name} on {case.name}: motion holds NaN or infinite values")
        takes.append(m)
    n = min(len(t) for t in takes)
    takes = [t[:n] for t in takes]
    lab = case.labels(n)
    values = bm.behaviour(takes, lab)
    return {
        "values": values,
        "verdicts": bm.verdicts(values),
        "per_take": [bm.take_measures(t, lab) for t in takes],
        "seeds": runs,
        "frames": n,
        "_takes": takes,
        "_labels": lab,
    }


POOLED = "silent_open_pooled"
POOLED_LABEL = "open jaw without talk (threshold from the source's talking cases)"


def pooled_silent_open(per_case: dict[str, dict | None]) -> dict[str, float]:
    """silent_open where the document's rule cannot judge it (under 2 s of talk, e.g. pure listening):
    the open-jaw threshold from the same source's (and seed's) talk and silent frames of the cases
    that have them, applied to the silent frames of the case without talk. An addition to the
    document, not one of its measures: it catches a jaw that opens on room tone alone."""
    done = [r for r in per_case.values() if r is not None]
    with_talk = [r for r in done if r["values"]["silent_open"] is not None]
    out: dict[str, float] = {}
    if not with_talk:
        return out
    for name, r in per_case.items():
        lab = r["_labels"] if r else None
        if r is None or r["values"]["silent_open"] is not None or lab.silent.sum() < bm.MIN_FRAMES_S * lab.fps:
            continue
        shares = []
        for k, take in enumerate(r["_takes"]):
            ref = [(c["_takes"][min(k, len(c["_takes"]) - 1)], c["_labels"]) for c in with_talk]
            thr = bm.open_threshold(
                np.concatenate([t[lb.talk, bm.JAW] for t, lb in ref]),
                np.concatenate([t[lb.silent, bm.JAW] for t, lb in ref]),
            )
            shares.append(100.0 * float(np.mean(take[lab.silent, bm.JAW] > thr)))
        out[name] = float(np.mean(shares))
    return out


def summarise(per_case: dict[str, dict | None]) -> dict[str, dict]:
    """Per measure over the cases a source was judged on: min, max, PASS (every judged case passes)."""
    out = {}
    for k in bm.KEYS:
        vals = [r["values"][k] for r in per_case.values() if r and r["values"][k] is not None]
        ok = [r["verdicts"][k] for r in per_case.values() if r and r["verdicts"][k] is not None]
        out[k] = {
            "min": min(vals) if vals else None,
            "max": max(vals) if vals else None,
            "cases": len(vals),
            "pass": all(ok) if ok else None,
        }
    return out


def run_benchmark(
    sources: Sequence[MotionSource],
    cases: Sequence[Case],
    seeds: Sequence[int] = (0, 1, 2),
    log: Callable[[str], None] | None = None,
) -> dict:
    """Score every source on every case; returns the report as a JSON-ready dict."""
    t0 = time.perf_counter()
    report: dict = {"seeds": [int(s) for s in seeds], "goals": {}, "cases": {}, "sources": {}}
    for k in bm.KEYS:
        g = bm.GOALS[k]
        report["goals"][k] = {"low": g.low, "high": g.high, "unit": g.unit, "label": g.label, "text": g.text()}
    for case in cases:
        lab = case.labels()
        report["cases"][case.name] = {
            "description": case.description,
            "labels": lab.source,
            "seconds": lab.seconds(),
            "info": _jsonable(case.info),
        }
    for src in sources:
        t1 = time.perf_counter()
        per_case = {}
        for case in cases:
            if log:
                log(f"{src.name}: {case.name}")
            per_case[case.name] = score_case(src, case, seeds)
        pooled = pooled_silent_open(per_case)
        for v in per_case.values():
            if v is not None:
                del v["_takes"], v["_labels"]
        summary = summarise(per_case)
        goal = bm.GOALS["silent_open"]
        summary[POOLED] = {
            "min": min(pooled.values()) if pooled else None,
            "max": max(pooled.values()) if pooled else None,
            "cases": len(pooled),
            "pass": all(goal.passes(v) for v in pooled.values()) if pooled else None,
            "per_case": pooled,
        }
        entry = {
            **src.describe(),
            "cases": {k: v for k, v in per_case.items() if v is not None},
            "summary": summary,
            "seconds": time.perf_counter() - t1,
        }
        turns = getattr(src, "turn_seconds", None)
        if turns:
            ms = 1000.0 * np.asarray(turns)
            entry["turn_latency_ms"] = {
                "median": float(np.median(ms)),
                "p95": float(np.percentile(ms, 95)),
                "max": float(ms.max()),
                "turns": len(ms),
            }
        report["sources"][src.name] = entry
    report["seconds"] = time.perf_counter() - t0
    return _jsonable(report)


def _fmt(key: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    if key in ("silent_open", "nods_per_min"):
        return f"{v:.1f}"
    if key in ("artic", "jitter_jaw"):
        return f"{v:.1f}"
    return f"{v:.2f}"


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def _columns(report: dict) -> list[tuple[str, str | None]]:
    """(source, case-or-None): a real-person column per clip, one column for every other source."""
    cols = []
    for name, src in report["sources"].items():
        if name == RealSource.name:
            cols += [(name, c) for c in src["cases"]]
        else:
            cols.append((name, None))
    return cols


def markdown(report: dict) -> str:
    """The report as Markdown: summary (ranges over cases, PASS/FAIL per goal), then each case."""
    cols = _columns(report)
    heads = [f"{n} ({c.removeprefix('DualTalk ')})" if c else n for n, c in cols]
    lines = [
        "# Behaviour benchmark",
        "",
        f"Seeds {', '.join(map(str, report['seeds']))}; measures and goals: `../shared/docs/motion-behaviour.md`; "
        f"run time {report['seconds']:.0f} s.",
        "",
        "## Summary (range over the held-out cases; PASS = every judged case meets the goal)",
        "",
        "| measure | goal | " + " | ".join(heads) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for k in bm.KEYS:
        g = report["goals"][k]
        cells = []
        for name, case in cols:
            src = report["sources"][name]
            if case is not None:
                r = src["cases"][case]
                cells.append(f"{_fmt(k, r['values'][k])}{_mark(r['verdicts'][k])}")
                continue
            s = src["summary"][k]
            if s["min"] is None:
                cells.append("n/a")
                continue
            rng = _fmt(k, s["min"]) if s["min"] == s["max"] else f"{_fmt(k, s['min'])}–{_fmt(k, s['max'])}"
            cells.append(f"{rng} {_verdict(s['pass'])}")
        lines.append(f"| {k} ({g['label']}) | {g['text']} | " + " | ".join(cells) + " |")
    cells = []
    for name, case in cols:
        s = report["sources"][name]["summary"].get(POOLED, {})
        per = s.get("per_case", {})
        if case is not None or not per:
            cells.append("n/a")
            continue
        vals = "; ".join(f"{c}: {v:.1f}" for c, v in per.items())
        cells.append(f"{vals} {_verdict(s['pass'])}")
    lines += [
        f"| {POOLED}\\* ({POOLED_LABEL}) | {report['goals']['silent_open']['text']} | " + " | ".join(cells) + " |",
        "",
        f"\\* not a measure of the document: silent_open is n/a on a case without 2 s of talk; {POOLED} "
        "applies the open-jaw threshold of the same source's (and seed's) talking cases to that case's frames.",
        "",
    ]
    for name, src in report["sources"].items():
        if "turn_latency_ms" in src:
            lat = src["turn_latency_ms"]
            lines.append(
                f"{name}: per-turn latency in this run (1 s of audio per turn) median {lat['median']:.0f} ms, "
                f"p95 {lat['p95']:.0f} ms, max {lat['max']:.0f} ms over {lat['turns']} turns."
            )
        if "options" in src:
            opts = ", ".join(f"{k}={v}" for k, v in src["options"].items())
            lines.append(f"{name}: {src['folder']}, default options: {opts}.")
    lines += ["", "## Cases", "", "| case | labels | s | talk s | silent s | listen s | what |", "|" + "---|" * 7]
    for cname, c in report["cases"].items():
        sec = c["seconds"]
        lines.append(
            f"| {cname} | {c['labels']} | {sec['total']:.1f} | {sec['talk']:.1f} | {sec['silent']:.1f} | "
            f"{sec['listen']:.1f} | {c['description']} |"
        )
    for cname in report["cases"]:
        present = [n for n, s in report["sources"].items() if cname in s["cases"]]
        lines += ["", f"### {cname}", "", "| measure | goal | " + " | ".join(present) + " |",
                  "|---|---|" + "---|" * len(present)]
        for k in bm.KEYS:
            cells = []
            for n in present:
                r = report["sources"][n]["cases"][cname]
                cells.append(f"{_fmt(k, r['values'][k])}{_mark(r['verdicts'][k])}")
            lines.append(f"| {k} | {report['goals'][k]['text']} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


SOURCES = ("bundle", "energy", "real", "teacher")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model_export.behaviour", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default="", help="model bundle folder (default: the bundled model)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sources", nargs="+", choices=SOURCES, default=["bundle", "energy", "real"],
                   help="what to score (teacher: model_export.corpus.teacher on clean speech and true timing)")
    p.add_argument("--shared", type=Path, default=SHARED, help="the shared fixtures folder")
    p.add_argument("--cases", nargs="+", choices=CASE_GROUPS, default=list(CASE_GROUPS),
                   help="which held-out cases (default: all)")
    p.add_argument("--dialogues", type=int, nargs="+", default=[0, 1], help="held-out LibriSpeech dialogue seeds")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the assembled dialogues and one-sided cases")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0 = its default, as Generate)")
    p.add_argument("--out", type=Path, help="Markdown report")
    p.add_argument("--json", type=Path, help="JSON report")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bundle and not (Path(args.bundle) / "manifest.json").is_file():
        print(f"error: {args.bundle}: not a model bundle (no manifest.json)", file=sys.stderr)
        return 2
    try:
        cases = default_cases(args.shared, args.dialogues, args.seconds, args.cases)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sources: list[MotionSource] = []
    for s in args.sources:
        if s == "bundle":
            sources.append(BundleSource(args.bundle, threads=args.threads))
        elif s == "energy":
            sources.append(EnergySource())
        elif s == "real":
            sources.append(RealSource())
        else:
            sources.append(teacher_source())
    report = run_benchmark(sources, cases, args.seeds, log=lambda m: print(m, file=sys.stderr, flush=True))
    text = markdown(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
