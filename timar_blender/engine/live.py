"""Live listening (bpy-free): microphone -> 1-s user turns -> DialogueStream -> the agent's frames.

Three threads, so neither capture nor inference ever waits on the UI: the source's (PortAudio's
callback: copy the block, queue it), a worker (resample to 16 kHz, cut turns, run the model) and
the caller's (``poll``/``frame_at``: Blender's main thread applies frames from a timer).

The model sees exactly what ``generate_dialogue(captured user, agent track,
normalization=live_normalization(info))`` would see: the same DialogueStream, turn by turn, the last
partial turn padded with silence on ``stop``. Live audio cannot be normalised per file in advance, so
a per-file model gets ``"running"`` statistics; a raw-level model hears the samples as captured.

Latency of a turn = from the moment its last sample was captured (the arrival of the block that
holds it, less the samples after it) to its frames being available (worker) and applied (caller).
"""

from __future__ import annotations

import datetime
import queue
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .capture import Source, seconds_to_samples
from .dialogue import DialogueMotion, DialogueStream, live_normalization, speaking_frames
from .sampler import Backend, SamplingOptions

_LIMIT = object()  # the source reached max_seconds
_STOP = object()  # stop() was called


@dataclass
class LiveTurn:
    index: int
    motion: np.ndarray  # (F, C) this turn's agent frames
    audio_end: float  # perf_counter when the turn's last sample was captured
    available: float  # perf_counter when its frames were ready
    applied: float | None = None  # perf_counter when the caller first showed them
    final: bool = False  # the padded last turn, generated on stop (not a live latency)


@dataclass
class LiveTake:
    """What a live session leaves: the audio the model heard and the frames it made."""

    user_audio: np.ndarray  # (N,) captured microphone audio at ``rate`` (after resampling)
    agent_audio: np.ndarray  # (N,) the agent track fed alongside (file samples or silence)
    motion: np.ndarray  # (T, C) agent frames at ``fps``, T = round(N / rate * fps)
    fps: float
    rate: int
    turns: list[LiveTurn]
    source: str
    capture_rate: int
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.user_audio) / self.rate

    def save_wav(self, folder: str | Path, stem: str) -> Path:
        """The audio the model heard as ``<stem>_live_<date-time>.wav`` in ``folder`` (float WAV at
        ``rate``: bit-exact, so offline generation on it reproduces the take); never overwrites."""
        import soundfile

        folder = Path(folder)
        base = f"{stem}_live_{datetime.datetime.now():%Y%m%d-%H%M%S}"
        path, k = folder / f"{base}.wav", 1
        while path.exists():
            path, k = folder / f"{base}_{k}.wav", k + 1
        soundfile.write(str(path), self.user_audio, self.rate, subtype="FLOAT")
        return path

    def dialogue_motion(self) -> DialogueMotion:
        """The take in the offline result's form, for the same keyframe writer."""
        t = len(self.motion)
        f = len(self.turns[0].motion) if self.turns else 1
        return DialogueMotion(
            motion=self.motion,
            fps=self.fps,
            turn_index=np.repeat(np.arange(len(self.turns)), f)[:t],
            agent_speaking=speaking_frames(self.agent_audio, t, self.rate, self.fps),
        )


def latency_stats(seconds: list[float]) -> dict:
    """Median, 95th percentile and worst of a list of latencies, in milliseconds."""
    if not seconds:
        return {"n": 0, "median_ms": None, "p95_ms": None, "max_ms": None}
    ms = np.asarray(seconds) * 1000.0
    return {
        "n": len(ms),
        "median_ms": round(float(statistics.median(ms)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


class LiveSession:
    """One live take. ``start``, then ``poll``/``frame_at`` from the UI, then ``stop`` -> LiveTake.

    ``agent_audio``: the agent's own track at the model's rate, aligned with the microphone by sample
    count from the start (silence after its end); None: silence. ``max_seconds``: stop capturing
    after that much audio (``done`` turns True). ``watchdog_seconds``: a source silent that long is
    reported as failed. Errors never raise from a thread: they land in ``error``, and what was
    captured so far stays in the take."""

    def __init__(
        self,
        backend: Backend,
        source: Source,
        options: SamplingOptions | None = None,
        *,
        agent_audio: np.ndarray | None = None,
        max_seconds: float | None = None,
        watchdog_seconds: float = 2.0,
    ) -> None:
        info = backend.info
        self.backend, self.source = backend, source
        self.options = options or SamplingOptions()
        self.stream = DialogueStream(backend, self.options, normalization=live_normalization(info))
        self.rate, self.fps = info.speech_rate, info.fps
        self.samples_per_turn, self.frames_per_turn = info.samples_per_turn, info.frames_per_turn
        self.agent = None if agent_audio is None else np.asarray(agent_audio, np.float32)
        self.limit = seconds_to_samples(max_seconds, self.rate)
        resampling = source.rate != self.rate
        margin = source.rate // 10 if resampling else 0  # covers the resampler's delay
        in_limit = seconds_to_samples(max_seconds, source.rate)
        self._in_limit = None if in_limit is None else in_limit + margin
        self._resampler = None
        if resampling:
            import soxr

            self._resampler = soxr.ResampleStream(source.rate, self.rate, 1, dtype="float32", quality="HQ")
        self.watchdog = watchdog_seconds
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._user: list[np.ndarray] = []
        self._agent: list[np.ndarray] = []
        self._n = 0  # samples captured (model rate)
        self._in = 0  # samples received (source rate)
        self._turns: list[LiveTurn] = []
        self._polled = 0
        self._errors: list[str] = []
        self._infer = True
        self._limit_sent = False
        self._last_block = 0.0
        self.done = False  # max_seconds reached: the caller should stop
        self.stopped = False
        self._worker = threading.Thread(target=self._run, name="timar-live", daemon=True)

    # --- state for the caller -------------------------------------------------------------------

    @property
    def error(self) -> str | None:
        with self._lock:
            return self._errors[0] if self._errors else None

    @property
    def captured_seconds(self) -> float:
        return self._n / self.rate

    @property
    def turns(self) -> list[LiveTurn]:
        with self._lock:
            return list(self._turns)

    def poll(self) -> list[LiveTurn]:
        """Turns completed since the last call (in order, none skipped)."""
        with self._lock:
            new = self._turns[self._polled :]
            self._polled = len(self._turns)
        return new

    def frame_at(self, now: float) -> tuple[int, int, np.ndarray] | None:
        """(turn, frame, values) to show at ``now``: the newest turn, played in real time from when it
        became available, holding its last frame until the next arrives (lowest latency; a late turn
        costs a few held frames, an early one a few skipped)."""
        with self._lock:
            if not self._turns:
                return None
            turn = self._turns[-1]
        i = min(max(0, int((now - turn.available) * self.fps)), len(turn.motion) - 1)
        return turn.index, i, turn.motion[i]

    def mark_applied(self, index: int, when: float) -> None:
        with self._lock:
            t = self._turns[index]
            if t.applied is None:
                t.applied = when

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the source (CaptureError if it cannot) and the worker."""
        self._last_block = time.perf_counter()
        self._worker.start()
        try:
            self.source.start(self._on_audio, self._on_error)
        except Exception:
            self._queue.put(_STOP)
            self._worker.join()
            self.stopped = True
            raise

    def stop(self) -> LiveTake:
        """Stop capturing, run what is left (the partial last turn padded), return the take."""
        if not self.stopped:
            self.stopped = True
            try:
                self.source.stop()
            except Exception as exc:  # a vanished device can fail to close; the audio is already here
                self._fail(f"closing the microphone failed: {exc}")
            self._queue.put(_STOP)
            self._worker.join()
        return self._take()

    # --- capture thread ------------------------------------------------------------------------

    def _on_audio(self, block: np.ndarray, when: float) -> bool:
        if self.stopped or self._limit_sent:
            return False
        if self._in_limit is not None and self._in + len(block) >= self._in_limit:
            block = block[: self._in_limit - self._in]
            self._limit_sent = True
        self._in += len(block)
        self._queue.put((np.array(block, np.float32), when))
        if self._limit_sent:
            self._queue.put(_LIMIT)
        return not self._limit_sent

    def _on_error(self, message: str) -> None:
        self._fail(message)

    def _fail(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    # --- worker thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                silent = time.perf_counter() - self._last_block
                if not (self.done or self.error) and silent > self.watchdog:
                    self._fail(f"no audio from {self.source.name!r} for {silent:.1f} s (unplugged or muted?)")
                continue
            if item is _STOP:
                break
            try:
                if item is _LIMIT:
                    self._end_of_input()
                    self.done = True
                else:
                    self._last_block = item[1]
                    self._add(self._resample(item[0]), item[1])
            except Exception as exc:  # keep capturing; the take keeps every sample
                self._infer = False
                self._fail(f"live generation stopped: {type(exc).__name__}: {exc}")
        try:
            if not self.done:
                self._end_of_input()
            if self._infer:
                for r in self.stream.flush():
                    now = time.perf_counter()
                    self._publish(LiveTurn(r.turn_index, r.motion, now, now, final=True))
        except Exception as exc:
            self._fail(f"the last turn failed: {type(exc).__name__}: {exc}")

    def _resample(self, block: np.ndarray) -> np.ndarray:
        return block if self._resampler is None else self._resampler.resample_chunk(block)

    def _end_of_input(self) -> None:
        if self._resampler is not None:
            tail, self._resampler = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True), None
            self._add(tail, time.perf_counter())

    def _agent_slice(self, start: int, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        if self.agent is not None and start < len(self.agent):
            part = self.agent[start : start + n]
            out[: len(part)] = part
        return out

    def _add(self, chunk: np.ndarray, when: float) -> None:
        """Append captured samples and run every turn they complete, each timed on its own."""
        if self.limit is not None:
            chunk = chunk[: max(0, self.limit - self._n)]
        if not len(chunk):
            return
        start, s = self._n, self.samples_per_turn
        agent = self._agent_slice(start, len(chunk))
        with self._lock:
            self._user.append(chunk)
            self._agent.append(agent)
        self._n += len(chunk)
        pos = 0
        while pos < len(chunk) and self._infer:
            k = min(s - (start + pos) % s, len(chunk) - pos)
            results = self.stream.push(chunk[pos : pos + k], agent[pos : pos + k])
            pos += k
            now = time.perf_counter()
            for r in results:  # the turn's last sample is `after` samples before the chunk's end
                after = self._n - (r.turn_index + 1) * s
                self._publish(LiveTurn(r.turn_index, r.motion, when - after / self.rate, now))

    def _publish(self, turn: LiveTurn) -> None:
        with self._lock:
            self._turns.append(turn)

    def _take(self) -> LiveTake:
        with self._lock:
            user = np.concatenate(self._user) if self._user else np.zeros(0, np.float32)
            agent = np.concatenate(self._agent) if self._agent else np.zeros(0, np.float32)
            turns = list(self._turns)
            errors = list(self._errors)
        frames = round(len(user) / self.samples_per_turn * self.frames_per_turn) if len(user) else 0
        motion = np.concatenate([t.motion for t in turns]) if turns else np.zeros((0, 0), np.float32)
        motion = motion[: max(1, frames)] if frames else motion[:0]
        warnings = errors[1:]
        overflows = getattr(self.source, "overflows", 0)
        if overflows:
            warnings.append(f"the microphone overflowed {overflows} time(s): some audio was lost")
        return LiveTake(
            user_audio=user,
            agent_audio=agent,
            motion=motion,
            fps=self.fps,
            rate=self.rate,
            turns=turns,
            source=self.source.name,
            capture_rate=self.source.rate,
            error=errors[0] if errors else None,
            warnings=warnings,
        )
