"""The exported TIMAR graphs on onnxruntime, as a sampler ``Backend`` (no torch).

CUDA is used when the installed onnxruntime has the CUDA provider and it initialises; otherwise
the CPU. Which one runs, and why not CUDA, is reported in ``provider``/``provider_reason`` (the
Blender panel shows them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import Bundle, BundleError, load_bundle
from .bundle_checks import BundleCheckError, check_graph_io

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class ProviderChoice:
    provider: str  # what the sessions actually run on
    reason: str  # why (in particular, why not CUDA)


def _session_options(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # a failed CUDA start is reported through ProviderChoice, not the log
    # four sessions run one after another: idle threads spinning for work steal the cores from the next
    # session (measured: 41 -> see the benchmark in README), so they sleep instead
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads > 0:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return so


class OnnxBackend:
    def __init__(
        self,
        bundle: Bundle | str | Path,
        device: str = "auto",
        threads: int = 0,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        """``should_cancel`` is asked between graphs; when it says so, ``Cancelled`` is raised."""
        import onnxruntime as ort

        from .dialogue import Cancelled

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.info = self.bundle.info
        if device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
        available = ort.get_available_providers()
        want_cuda = device in ("auto", "cuda") and CUDA in available
        providers = [CUDA, CPU] if want_cuda else [CPU]
        so = _session_options(threads)
        self.sessions = {}
        for name in ("speech_encoder", "motion_encoder", "backbone", "diffusion_head"):
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled while loading the model")
            path = self.bundle.graph_path(name)
            try:
                self.sessions[name] = ort.InferenceSession(str(path), so, providers=providers)
            except Exception as exc:  # a corrupt graph surfaces here when hashes were not checked
                raise BundleError(f"{path}: onnxruntime cannot load it ({str(exc).strip().splitlines()[-1]})") from None
            try:  # the manifest against the graph's own inputs, outputs and fixed dimensions
                entry = self.bundle.manifest["files"][name]
                check_graph_io(name, path, self.sessions[name], entry, self.bundle.manifest["model"],
                               str(self.bundle.folder / "manifest.json"))
            except BundleCheckError as exc:
                raise BundleError(str(exc)) from None
        running = self.sessions["backbone"].get_providers()[0]
        if running == CUDA:
            reason = "CUDA provider initialised"
        elif device == "cpu":
            reason = "CPU requested"
        elif CUDA not in available:
            reason = "this onnxruntime build has no CUDA provider (install onnxruntime-gpu for CUDA)"
        else:
            reason = "CUDA provider present but it did not start (needs an NVIDIA GPU with CUDA 13 and cuDNN 9)"
        if device == "cuda" and running != CUDA:
            raise RuntimeError(f"CUDA was requested but is not available: {reason}")
        self.choice = ProviderChoice(running, reason)

    @property
    def provider(self) -> str:
        return self.choice.provider

    def _run(self, name: str, **feeds: np.ndarray) -> np.ndarray:
        return self.sessions[name].run(None, feeds)[0]

    def separators(self) -> np.ndarray:
        return self.bundle.separators

    def fake_latent(self) -> np.ndarray:
        return self.bundle.fake_latent

    def encode_speech(self, chunks: np.ndarray) -> np.ndarray:
        return self._run("speech_encoder", audio=np.ascontiguousarray(chunks, dtype=np.float32))

    def encode_motion(self, frames: np.ndarray) -> np.ndarray:
        return self._run("motion_encoder", motion=np.ascontiguousarray(frames, dtype=np.float32))

    def backbone(
        self, tokens: np.ndarray, mask: np.ndarray, turn_ids: np.ndarray, band: int | None = None
    ) -> np.ndarray:
        if self.info.position != "window":
            raise ValueError(
                "this bundle holds the cached turn-relative backbone only; the whole-dialogue recomputation "
                "(kv_cache off) needs the PyTorch model"
            )
        # the graph takes the turn structure from the whole-turn layout: check the window has it
        length = self.bundle.manifest["model"]["turn_length"]
        t = tokens.shape[1]
        expected = np.repeat(np.arange(t // length), length)
        if t % length or not np.array_equal(turn_ids[0] - turn_ids[0, 0], expected):
            raise ValueError(f"the backbone needs a window of whole turns of {length} tokens")
        return self._run(
            "backbone",
            tokens=np.ascontiguousarray(tokens, dtype=np.float32),
            mask=np.ascontiguousarray(mask, dtype=bool),
        )

    def backbone_step(
        self,
        tokens: np.ndarray,
        mask: np.ndarray,
        past_k: list[np.ndarray],
        past_v: list[np.ndarray],
        past_distance: list[np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One turn against cached keys/values (bundles whose backbone is ``turn_relative_cached``).

        Per layer: keys/values (H, P_i, dh) in any slot order and each key's turn distance (P_i,);
        each goes in as its own input, so a contiguous ring buffer is not copied."""
        if self.info.position != "turn_relative":
            raise ValueError("this bundle's backbone recomputes the window; it has no cached step")
        feeds = {
            "tokens": np.ascontiguousarray(tokens, dtype=np.float32),
            "mask": np.ascontiguousarray(mask, dtype=bool),
        }
        for i, (k, v, d) in enumerate(zip(past_k, past_v, past_distance, strict=True)):
            feeds[f"past_distance_{i}"] = np.ascontiguousarray(d, dtype=np.int64)
            feeds[f"past_k_{i}"] = np.ascontiguousarray(k, dtype=np.float32)
            feeds[f"past_v_{i}"] = np.ascontiguousarray(v, dtype=np.float32)
        z, k, v = self.sessions["backbone"].run(None, feeds)
        return z, k, v

    def head(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self._run(
            "diffusion_head",
            x=np.ascontiguousarray(x, dtype=np.float32),
            t=np.ascontiguousarray(t, dtype=np.int64),
            c=np.ascontiguousarray(c, dtype=np.float32),
        )
