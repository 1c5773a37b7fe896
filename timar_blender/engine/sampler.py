"""The TIMAR turn-by-turn sampler, written once over a small ``Backend`` protocol.

The same loop drives the PyTorch model (``model_export.torch_backend``) and the exported ONNX
graphs (``timar_blender.engine``), so the two can only differ by what their networks compute.

Per turn (1 s, F frames): the four streams are interleaved into 4F+10 tokens, appended to the
token history, left-cropped to the last n+1 turns, the agent-motion tokens of the current turn
(and, by default, of every history turn) are masked, the backbone runs with turn-level causal
attention, and the diffusion head samples the current turn's F frames, which are re-encoded and
written back into the history.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .layout import ROLE_USER, SEPARATORS, TurnLayout
from .noise import TurnNoise, turn_noise
from .schedule import DiffusionCoefficients, ancestral_step


@dataclass(frozen=True)
class ModelInfo:
    """What the sampler needs to know about a model's shapes."""

    motion_dim: int
    frames_per_turn: int
    samples_per_turn: int
    token_dim: int
    max_context_turns: int
    speech_rate: int = 16_000
    noise_schedule: str = "cosine"
    train_steps: int = 1000
    # per-channel motion normalisation the networks work in (None = raw FLAME units): the sampler
    # encodes (frame - mean) / std and de-normalises the frames the diffusion head samples
    motion_mean: tuple[float, ...] | None = None
    motion_std: tuple[float, ...] | None = None

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


class Backend(Protocol):
    """The networks of one TIMAR model. Arrays are float32 numpy; batch first."""

    info: ModelInfo

    def separators(self) -> np.ndarray: ...  # (10, token_dim)

    def fake_latent(self) -> np.ndarray: ...  # (token_dim,)

    def encode_speech(self, chunks: np.ndarray) -> np.ndarray: ...  # (B, S) -> (B, F, token_dim)

    def encode_motion(self, frames: np.ndarray) -> np.ndarray: ...  # (N, C) -> (N, token_dim)

    def backbone(self, tokens: np.ndarray, mask: np.ndarray, turn_ids: np.ndarray) -> np.ndarray: ...

    # (B, T, token_dim), (B, T) bool, (B, T) int64 -> (B, T, width)

    def head(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray: ...

    # (N, C), (N,) int64 original timesteps, (N, width) -> (N, 2C)


@dataclass(frozen=True)
class SamplingOptions:
    context_turns: int = 7  # n: history turns in the window (window = n + 1 turns)
    sampling_steps: int | str = 5  # respaced diffusion steps
    num_iter: int = 1  # masked-generation iterations per turn
    cfg: float = 1.0  # classifier-free guidance scale (1 = off)
    cfg_schedule: str = "linear"  # "linear" (ramped with progress) or "constant"
    temperature: float = 1.0
    seed: int = 0
    mask_history_agent: bool = True  # re-mask the agent motion of history turns (paper setting)
    random_order: bool = True  # frame order for num_iter > 1; False = left to right
    clamp_variance: bool = True  # learned-range variance kept in [beta~, beta]; False = the released code

    def validate(self, info: ModelInfo) -> None:
        if not 0 <= self.context_turns <= info.max_context_turns - 1:
            raise ValueError(f"context_turns must be in 0..{info.max_context_turns - 1}, got {self.context_turns}")
        if self.num_iter < 1 or self.num_iter > info.frames_per_turn:
            raise ValueError(f"num_iter must be in 1..{info.frames_per_turn}, got {self.num_iter}")
        if self.cfg_schedule not in ("linear", "constant"):
            raise ValueError(f"cfg_schedule must be 'linear' or 'constant', got {self.cfg_schedule!r}")
        if not math.isfinite(self.cfg) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError("cfg must be finite and temperature finite and >= 0")


def masked_after_step(num_frames: int, remaining: int, step: int, num_iter: int) -> int:
    """MAR cosine schedule: frames still masked after ``step`` (at least 1 until the last step)."""
    if step >= num_iter - 1:
        return 0
    target = math.floor(num_frames * math.cos(math.pi / 2.0 * (step + 1) / num_iter))
    return min(max(1, remaining - 1), target)


def sample_frames(
    backend: Backend,
    coefs: DiffusionCoefficients,
    cond: np.ndarray,
    x_T: np.ndarray,
    step_noise: np.ndarray,
    temperature: float = 1.0,
    uncond: np.ndarray | None = None,
    cfg: float = 1.0,
    clamp_variance: bool = True,
) -> np.ndarray:
    """Ancestral sampling of N frames from their backbone features ``cond`` (N, W).

    With ``uncond`` the head runs on both branches with the same x_t and guidance applies to the
    x0 channels only: x0 = u + cfg (c - u); the variance channels are the conditional ones.
    """
    n, c = x_T.shape
    x = np.asarray(x_T, dtype=np.float32)
    for i in reversed(range(coefs.num_steps)):
        t = np.full(n, coefs.timesteps[i], dtype=np.int64)
        if uncond is None:
            out = backend.head(x, t, cond)
            x0, v = out[:, :c], out[:, c:]
        else:
            out = backend.head(np.concatenate([x, x]), np.concatenate([t, t]), np.concatenate([cond, uncond]))
            oc, ou = out[:n], out[n:]
            x0 = ou[:, :c] + cfg * (oc[:, :c] - ou[:, :c])
            v = oc[:, c:]
        x = ancestral_step(coefs, i, x, x0, v, step_noise[i], temperature, clamp_variance)
    return x


@dataclass
class _History:
    tokens: np.ndarray  # (T_h, D)
    turn_ids: np.ndarray  # (T_h,)
    agent: np.ndarray  # (T_h,) bool, agent-motion positions


@dataclass
class TurnResult:
    motion: np.ndarray  # (F, C) agent frames of this turn
    turn_index: int
    window_turns: int  # turns the backbone saw (history + current)


NoiseFn = Callable[[int], TurnNoise]


@dataclass
class TurnSampler:
    """Stateful turn-by-turn generator; feed one turn of audio at a time (streaming)."""

    backend: Backend
    options: SamplingOptions = field(default_factory=SamplingOptions)
    noise: NoiseFn | None = None  # turn index -> TurnNoise; default: seeded from options.seed

    def __post_init__(self) -> None:
        info = self.backend.info
        self.options.validate(info)
        self.layout = TurnLayout(info.frames_per_turn)
        self.coefs = DiffusionCoefficients.respaced(self.options.sampling_steps, info.noise_schedule, info.train_steps)
        self._seps = np.asarray(self.backend.separators(), dtype=np.float32)
        if self._seps.shape[0] != len(SEPARATORS):
            raise ValueError(f"backend has {self._seps.shape[0]} separators, expected {len(SEPARATORS)}")
        self._fake = np.asarray(self.backend.fake_latent(), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        d = self.backend.info.token_dim
        self._history = _History(np.zeros((0, d), np.float32), np.zeros(0, np.int64), np.zeros(0, bool))
        self.turn_index = 0

    def _noise_for(self, turn: int) -> TurnNoise:
        if self.noise is not None:
            return self.noise(turn)
        info = self.backend.info
        return turn_noise(self.options.seed, turn, self.coefs.num_steps, info.frames_per_turn, info.motion_dim)

    def step(
        self,
        user_speech: np.ndarray,
        agent_speech: np.ndarray,
        user_motion: np.ndarray | None = None,
    ) -> TurnResult:
        """Generate the agent's frames for one turn.

        ``user_speech``/``agent_speech``: (S,) normalised 16 kHz samples of this turn;
        ``user_motion``: (F, C) the user's frames, or None (its tokens become ``fake_latent``).
        """
        info, lay, opt = self.backend.info, self.layout, self.options
        f = info.frames_per_turn
        s = info.samples_per_turn
        if user_speech.shape != (s,) or agent_speech.shape != (s,):
            raise ValueError(f"each turn needs {s} samples per track, got {user_speech.shape} and {agent_speech.shape}")
        speech = self.backend.encode_speech(np.stack([user_speech, agent_speech]).astype(np.float32))
        if user_motion is None:
            mu = np.broadcast_to(self._fake, (f, info.token_dim))
        else:
            if user_motion.shape != (f, info.motion_dim):
                raise ValueError(f"user motion for a turn must be ({f}, {info.motion_dim}), got {user_motion.shape}")
            mu = self.backend.encode_motion(info.normalize_motion(np.asarray(user_motion, dtype=np.float32)))
        placeholder = np.zeros((f, info.token_dim), np.float32)
        cur = lay.interleave(self._seps, speech[0], mu, speech[1], placeholder)

        # window = last n history turns + this turn (whole turns, positions from the window start)
        h = self._history
        keep = opt.context_turns * lay.length
        start = max(0, len(h.tokens) - keep)
        h_tokens, h_tids, h_agent = h.tokens[start:], h.turn_ids[start:], h.agent[start:]
        tokens = np.concatenate([h_tokens, cur])
        turn_ids = np.concatenate([h_tids, np.full(lay.length, self.turn_index, np.int64)])
        cur_agent = np.zeros(lay.length, bool)
        cur_agent[lay.agent_motion] = True
        agent = np.concatenate([h_agent, cur_agent])
        mask = np.concatenate([h_agent if opt.mask_history_agent else np.zeros_like(h_agent), cur_agent])
        T = len(tokens)
        agent_pos = T - lay.length + np.arange(lay.agent_motion.start, lay.agent_motion.stop)
        agent_rows = agent_pos - (T - lay.length)  # the same positions among the last turn's z rows
        user_cur = T - lay.length + np.flatnonzero(lay.role == ROLE_USER)

        noise = self._noise_for(self.turn_index)
        order = noise.order if opt.random_order else np.arange(f)
        motion = np.zeros((f, info.motion_dim), np.float32)
        still_masked = np.ones(f, bool)
        guided = opt.cfg != 1.0
        for it in range(opt.num_iter):
            batch = tokens[None]
            if guided:  # unconditional branch: this turn's user tokens -> fake_latent
                uncond = tokens.copy()
                uncond[user_cur] = self._fake
                batch = np.stack([tokens, uncond])
            rows = len(batch)
            z = self.backend.backbone(
                np.ascontiguousarray(batch, dtype=np.float32),
                np.repeat(mask[None], rows, 0),
                np.repeat(turn_ids[None], rows, 0),
            )

            remaining = int(still_masked.sum())
            after = masked_after_step(f, remaining, it, opt.num_iter)
            k = max(1, remaining - after)
            sel = np.asarray([i for i in order if still_masked[i]][:k], dtype=np.int64)
            sel.sort()
            if opt.cfg_schedule == "linear":
                cfg_it = 1.0 + (opt.cfg - 1.0) * (f - after) / f
            else:
                cfg_it = opt.cfg
            x = sample_frames(
                self.backend,
                self.coefs,
                z[0, agent_rows[sel]],
                noise.x_T[sel],
                noise.steps[:, sel],
                opt.temperature,
                uncond=z[1, agent_rows[sel]] if guided else None,
                cfg=cfg_it,
                clamp_variance=opt.clamp_variance,
            )
            motion[sel] = info.denormalize_motion(x)
            tokens[agent_pos[sel]] = self.backend.encode_motion(x)
            still_masked[sel] = False
            # MAR: frames generated in this iteration are visible context for the next one
            mask[agent_pos[sel]] = False

        self._history = _History(tokens, turn_ids, agent)
        result = TurnResult(motion=motion, turn_index=self.turn_index, window_turns=T // lay.length)
        self.turn_index += 1
        return result
