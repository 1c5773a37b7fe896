"""One generation request, start to finish, without bpy: read the audio, load (and cache) the
model, generate every take. The Blender operators run it on a worker thread (UI) or directly
(background mode); the headless entry point reuses it for batches."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .audio import load_audio
from .dialogue import Cancelled, DialogueMotion, generate_dialogue
from .onnx_backend import OnnxBackend
from .sampler import SamplingOptions

BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "model"


@dataclass
class Request:
    agent_audio: str
    user_audio: str  # may equal agent_audio for one stereo file
    agent_channel: int | None = None  # None: mix down; for a stereo file, the agent's channel
    user_channel: int | None = None
    user_motion: np.ndarray | None = None  # (T, 56) at the model's fps, or None
    model: str = ""  # bundle folder; "" = the bundled model
    device: str = "auto"
    threads: int = 0
    options: SamplingOptions = field(default_factory=SamplingOptions)
    takes: int = 1  # take k uses seed + k


@dataclass
class Result:
    takes: list[DialogueMotion]
    provider: str
    provider_reason: str
    model: str
    seconds: float  # audio duration


_cache: dict[tuple[str, str, int], OnnxBackend] = {}
_cache_lock = threading.Lock()
_process_threads = 0  # set_process_threads


def set_process_threads(threads: int) -> None:
    """Inference threads for this process's requests that leave ``threads`` at 0: a farm worker's
    share of the cores (onnxruntime would otherwise size its pool to the whole machine in every
    worker process, and the workers would fight over the cores). 0 = onnxruntime's choice."""
    global _process_threads
    _process_threads = max(0, int(threads))


def backend_for(
    model: str, device: str = "auto", threads: int = 0, should_cancel: Callable[[], bool] | None = None
) -> OnnxBackend:
    """Load a bundle once per (folder, device, threads) and keep it for later takes."""
    folder = str(Path(model).resolve()) if model else str(BUNDLED_MODEL)
    key = (folder, device, threads)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = OnnxBackend(folder, device=device, threads=threads, should_cancel=should_cancel)
        return _cache[key]


def run(
    req: Request,
    progress: Callable[[float, str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Result:
    """All takes of a request. Raises AudioError/BundleError/Cancelled with a clear message."""

    def report(frac: float, text: str) -> None:
        if progress is not None:
            progress(frac, text)

    report(0.0, "reading audio")
    agent = load_audio(req.agent_audio, channel=req.agent_channel)
    user = load_audio(req.user_audio, channel=req.user_channel)
    if should_cancel is not None and should_cancel():
        raise Cancelled("cancelled")
    report(0.0, "loading model")
    backend = backend_for(req.model, req.device, req.threads or _process_threads, should_cancel)
    takes = []
    for k in range(req.takes):
        opts = replace(req.options, seed=req.options.seed + k)

        def step(i: int, n: int, k: int = k) -> None:
            report((k + i / n) / req.takes, f"take {k + 1}/{req.takes}: turn {i}/{n}")

        takes.append(
            generate_dialogue(backend, user, agent, req.user_motion, opts, progress=step, should_cancel=should_cancel)
        )
    if should_cancel is not None and should_cancel():
        raise Cancelled("cancelled")
    report(1.0, "done")
    return Result(
        takes,
        backend.provider,
        backend.choice.reason,
        str(backend.bundle.folder),
        max(len(agent), len(user)) / backend.info.speech_rate,
    )
