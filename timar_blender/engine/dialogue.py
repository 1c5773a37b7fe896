"""Generation over a whole dialogue, offline or as a stream.

Offline (``generate_dialogue``): two whole speech tracks in, the agent's motion out. Streaming
(``DialogueStream``): push audio as it arrives, get each turn's frames as soon as both tracks
have a full turn. For the same audio, seed and normalisation both give the same frames.

Audio normalisation follows the model (``info.audio_normalization``) unless the caller asks for one.
A per-file model (the official contract) hears each track normalised over the whole file: offline
``"file"`` (a stream needs the statistics up front), live ``"running"`` (causal statistics), or
``"none"`` (the caller normalised already). A raw-level model (``"none"``) hears the samples as
recorded: no statistics, so streaming = offline = live exactly; "file"/"running" are refused for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .activity import Gate, frame_db
from .audio import Normalizer, check_finite
from .contract import ModelInfo
from .sampler import Backend, SamplingOptions, TurnResult, TurnSampler

NORMALIZATIONS = ("file", "running", "none")
SPEAKING = Gate(over_floor_db=12.0, min_db=-50.0, widen=3)  # speaking_frames' detector


def offline_normalization(info: ModelInfo) -> str:
    """What a whole-file generation feeds the model: per-file statistics, or the raw samples."""
    return "file" if info.audio_normalization == "file" else "none"


def live_normalization(info: ModelInfo) -> str:
    """What a live stream feeds the model: running statistics for a per-file model, else raw samples."""
    return "running" if info.audio_normalization == "file" else "none"


def check_normalization(info: ModelInfo, normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if info.audio_normalization == "none" and normalization != "none":
        raise ValueError(
            f"this model hears raw audio levels (audio normalisation 'none'); {normalization!r} would rescale them"
        )


class Cancelled(Exception):
    """Generation was cancelled by the caller; nothing partial is returned."""


@dataclass
class DialogueMotion:
    motion: np.ndarray  # (T, C) agent frames at ``fps``
    fps: float
    turn_index: np.ndarray  # (T,) which turn produced each frame
    agent_speaking: np.ndarray  # (T,) bool, the agent's track is voiced at this frame


def count_turns(num_samples: int, samples_per_turn: int, last_turn: str) -> int:
    if last_turn == "pad":
        return -(-num_samples // samples_per_turn)
    if last_turn == "drop":
        return num_samples // samples_per_turn
    raise ValueError(f"last_turn must be 'pad' or 'drop', got {last_turn!r}")


def speaking_frames(wave: np.ndarray, frames: int, rate: int, fps: float) -> np.ndarray:
    """Per-frame voice activity of a (raw) track: frame RMS above an adaptive noise floor.

    A simple energy gate (no model): the floor is the 10th percentile of frame energies, speech is
    > 12 dB above it and above an absolute -50 dBFS; a frame is speaking when it or a close
    neighbour is (hangover), so syllable gaps do not flicker."""
    db = frame_db(np.asarray(wave, dtype=np.float32), rate / fps, frames, eps=1e-9, tail="partial")
    return SPEAKING.mask(db, fps)


class DialogueStream:
    """Streaming generation: ``push`` audio (and optionally the user's motion) as it arrives."""

    def __init__(
        self,
        backend: Backend,
        options: SamplingOptions | None = None,
        *,
        normalization: str | None = None,
        user_stats: tuple[float, float] | None = None,
        agent_stats: tuple[float, float] | None = None,
    ) -> None:
        """``normalization``: None = the model's live normalisation (``live_normalization``)."""
        if normalization is None:
            normalization = live_normalization(backend.info)
        check_normalization(backend.info, normalization)
        if normalization == "file" and (user_stats is None or agent_stats is None):
            raise ValueError("'file' normalisation in a stream needs each track's (mean, variance) up front")
        self.backend = backend
        self.sampler = TurnSampler(backend, options or SamplingOptions())
        info = backend.info
        self.s, self.f = info.samples_per_turn, info.frames_per_turn
        none = normalization == "none"
        self._norm = [None if none else Normalizer(user_stats), None if none else Normalizer(agent_stats)]
        self._buf = [np.zeros(0, np.float32), np.zeros(0, np.float32)]
        self._motion = np.zeros((0, info.motion_dim), np.float32)
        self._motion_known = False
        self.turns_done = 0

    def push(self, user: np.ndarray, agent: np.ndarray, user_motion: np.ndarray | None = None) -> list[TurnResult]:
        """Add samples (16 kHz mono, any length) and return the turns completed by them."""
        self._buf[0] = np.concatenate([self._buf[0], check_finite(user, "user audio")])
        self._buf[1] = np.concatenate([self._buf[1], check_finite(agent, "agent audio")])
        if user_motion is not None:
            self._motion = np.concatenate([self._motion, np.asarray(user_motion, np.float32)])
            self._motion_known = True
        out = []
        while min(len(b) for b in self._buf) >= self.s:
            out.append(self._turn())
        return out

    def flush(self) -> list[TurnResult]:
        """Finish: pad both tracks with silence (zero samples) to the end of the last turn and run it."""
        n = max(len(b) for b in self._buf)
        if n == 0:
            return []
        end = -(-n // self.s) * self.s
        self._buf = [np.concatenate([b, np.zeros(end - len(b), np.float32)]) for b in self._buf]
        return [self._turn() for _ in range(end // self.s)]

    def _turn(self) -> TurnResult:
        chunks = []
        for i in (0, 1):
            raw, self._buf[i] = self._buf[i][: self.s], self._buf[i][self.s :]
            norm = self._norm[i]
            chunks.append(raw if norm is None else norm(raw))
        um = None
        if self._motion_known:
            t0 = self.turns_done * self.f
            um = self._motion[t0 : t0 + self.f]
            if len(um) < self.f:  # hold the last known pose rather than snapping to zero
                last = self._motion[-1] if len(self._motion) else np.zeros(self.backend.info.motion_dim, np.float32)
                um = np.concatenate([um, np.repeat(last[None], self.f - len(um), 0)])
        self.turns_done += 1
        return self.sampler.step(chunks[0], chunks[1], um)


def _turn_chunk(track: np.ndarray, i: int, s: int) -> np.ndarray:
    """Turn ``i`` of a track (a view); silence pads a shorter track and the last partial turn. Turn
    by turn rather than one padded copy of each track: a 30-min dialogue would hold both twice."""
    chunk = track[i * s : (i + 1) * s]
    if len(chunk) < s:
        chunk = np.concatenate([chunk, np.zeros(s - len(chunk), np.float32)])
    return chunk


def generate_dialogue(
    backend: Backend,
    user_audio: np.ndarray,
    agent_audio: np.ndarray,
    user_motion: np.ndarray | None = None,
    options: SamplingOptions | None = None,
    *,
    normalization: str | None = None,
    last_turn: str = "pad",
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> DialogueMotion:
    """Agent motion for a whole dialogue (mono audio at the model's rate).

    Tracks of different lengths: the shorter is padded with silence. ``last_turn="pad"`` pads the
    final partial turn and trims the output to the audio's length; ``"drop"`` keeps whole turns
    only (the DualTalk evaluation protocol). Silence is fine; NaN/Inf samples raise AudioError.
    ``normalization``: None = the model's (``offline_normalization``).
    """
    info = backend.info
    if normalization is None:
        normalization = offline_normalization(info)
    check_normalization(info, normalization)
    s, f = info.samples_per_turn, info.frames_per_turn
    user_audio = check_finite(user_audio, "user audio")
    agent_audio = check_finite(agent_audio, "agent audio")
    n_samples = max(len(user_audio), len(agent_audio))
    turns = count_turns(n_samples, s, last_turn)
    if turns == 0:
        raise ValueError(f"the dialogue is shorter than one turn ({n_samples} samples < {s})")
    if user_motion is not None:
        user_motion = np.asarray(user_motion, np.float32)
        if user_motion.ndim != 2 or user_motion.shape[1] != info.motion_dim:
            raise ValueError(f"user motion must be (frames, {info.motion_dim}), got {user_motion.shape}")
        if not np.isfinite(user_motion).all():
            raise ValueError("user motion holds NaN or infinite values")
    stats = {}
    if normalization == "file":
        stats = {
            "user_stats": Normalizer.of_file(user_audio).fixed,
            "agent_stats": Normalizer.of_file(agent_audio).fixed,
        }
    stream = DialogueStream(backend, options, normalization=normalization, **stats)
    results: list[TurnResult] = []
    for i in range(turns):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"cancelled after {i} of {turns} turns")
        um = user_motion[i * f : (i + 1) * f] if user_motion is not None else None
        results += stream.push(_turn_chunk(user_audio, i, s), _turn_chunk(agent_audio, i, s), um)
        if progress is not None:
            progress(i + 1, turns)
    motion = np.concatenate([r.motion for r in results])
    total = turns * f if last_turn == "drop" else round(n_samples / s * f)
    motion = motion[: max(1, total)]
    speaking = speaking_frames(agent_audio, len(motion), info.speech_rate, info.fps)
    return DialogueMotion(
        motion=motion, fps=info.fps, turn_index=np.repeat(np.arange(turns), f)[: len(motion)], agent_speaking=speaking
    )
