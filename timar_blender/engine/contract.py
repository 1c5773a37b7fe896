"""The motion contract, defined once (bpy-free, torch-free): what a frame of TIMAR motion is (FLAME-56:
50 expression coefficients, jaw and neck rotations), the names of its channels, the rates of the
official model and of DualTalk, the layout of DualTalk's motion files, and ``ModelInfo`` (what the
sampler and every front end know of a loaded model's shapes).

Code that has a loaded model reads its rates from ``bundle.info`` (``info.fps``, ``info.speech_rate``);
``FPS`` and ``SPEECH_RATE`` are the official model's and DualTalk's, for tools without a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXPRESSION_DIM = 50
MOTION_DIM = 56
EXPRESSION = slice(0, 50)  # FLAME expression coefficients
JAW = slice(50, 53)  # jaw rotation, axis-angle (radians)
NECK = slice(53, 56)  # neck = the head's rotation, axis-angle (radians); DualTalk's metrics call it "pose"
GROUPS: dict[str, slice] = {"expression": EXPRESSION, "jaw": JAW, "neck": NECK}
CHANNEL_NAMES: tuple[str, ...] = (
    *(f"exp_{i:02d}" for i in range(EXPRESSION_DIM)),
    "jaw_x",
    "jaw_y",
    "jaw_z",
    "neck_x",
    "neck_y",
    "neck_z",
)

FPS = 25.0  # motion frames per second of the official model and of DualTalk
SPEECH_RATE = 16_000  # audio samples per second the speech encoder takes

# DualTalk's per-speaker .npz: ``exp`` (T, >=50) and ``pose`` (T, 6) = neck (global rotation) | jaw
DUALTALK_NECK = slice(0, 3)
DUALTALK_JAW = slice(3, 6)


def motion_from_dualtalk(exp: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """DualTalk ``exp`` (T, >=50) and ``pose`` (T, 6) -> FLAME-56 motion (T, 56), float32."""
    return np.concatenate([exp[:, :EXPRESSION_DIM], pose[:, DUALTALK_JAW], pose[:, DUALTALK_NECK]], axis=1).astype(
        np.float32
    )


def dualtalk_from_motion(motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FLAME-56 motion (T, 56) -> DualTalk ``exp`` (T, 50) and ``pose`` (T, 6)."""
    return motion[:, EXPRESSION], np.concatenate([motion[:, NECK], motion[:, JAW]], axis=1)


# ModelInfo.audio_normalization -> the manifest's "audio.normalization"
AUDIO_NORMALIZATION_MANIFEST = {"file": "per_file_zero_mean_unit_variance", "none": "none"}


@dataclass(frozen=True)
class ModelInfo:
    """What the sampler needs to know about a model's shapes."""

    motion_dim: int
    frames_per_turn: int
    samples_per_turn: int
    token_dim: int
    max_context_turns: int
    speech_rate: int = SPEECH_RATE
    noise_schedule: str = "cosine"
    train_steps: int = 1000
    # per-channel motion normalisation the networks work in (None = raw FLAME units): the sampler
    # encodes (frame - mean) / std and de-normalises the frames the diffusion head samples
    motion_mean: tuple[float, ...] | None = None
    motion_std: tuple[float, ...] | None = None
    # "window": positions from the window start, every turn recomputes the window (official);
    # "turn_relative": the backend has ``backbone_step`` and history keys/values are cached
    position: str = "window"
    kv_shape: tuple[int, int, int] | None = None  # (layers, heads, head_dim) of the cached keys/values
    # turn-relative: per layer, how many turns back its attention reaches (None = the whole context)
    layer_bands: tuple[int, ...] | None = None

    def layer_reach(self, context_turns: int) -> tuple[int, ...]:
        """Per layer, the finished turns whose keys/values a turn reads with ``context_turns``."""
        layers = self.kv_shape[0] if self.kv_shape else 0
        bands = self.layer_bands or (context_turns,) * layers
        return tuple(min(context_turns, b) for b in bands)
    # the audio the speech encoder expects (a key of AUDIO_NORMALIZATION_MANIFEST): "file" = each
    # track at zero mean / unit variance over the whole file (official; live input approximates it
    # with running statistics), "none" = the samples as recorded: a quiet track stays quiet, live =
    # offline exactly
    audio_normalization: str = "file"

    @property
    def fps(self) -> float:
        return self.frames_per_turn * self.speech_rate / self.samples_per_turn

    def normalize_motion(self, frames: np.ndarray) -> np.ndarray:
        """Raw FLAME frames (N, C) -> the networks' motion space."""
        if self.motion_mean is None or self.motion_std is None:
            return frames
        mean, std = np.asarray(self.motion_mean, np.float32), np.asarray(self.motion_std, np.float32)
        return ((frames - mean) / std).astype(np.float32)

    def denormalize_motion(self, frames: np.ndarray) -> np.ndarray:
        """The networks' motion space (N, C) -> raw FLAME frames."""
        if self.motion_mean is None or self.motion_std is None:
            return frames
        mean, std = np.asarray(self.motion_mean, np.float32), np.asarray(self.motion_std, np.float32)
        return (frames * std + mean).astype(np.float32)
