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

from .contract import NECK, ModelInfo
from .layout import ROLE_USER, SEPARATORS, TurnLayout
from .noise import TurnNoise, turn_noise
from .schedule import DiffusionCoefficients, ancestral_step


class Backend(Protocol):
    """The networks of one TIMAR model. Arrays are float32 numpy; batch first."""

    info: ModelInfo

    def separators(self) -> np.ndarray: ...  # (10, token_dim)

    def fake_latent(self) -> np.ndarray: ...  # (token_dim,)

    def encode_speech(self, chunks: np.ndarray) -> np.ndarray: ...  # (B, S) -> (B, F, token_dim)

    def encode_motion(self, frames: np.ndarray) -> np.ndarray: ...  # (N, C) -> (N, token_dim)

    def backbone(self, tokens: np.ndarray, mask: np.ndarray, turn_ids: np.ndarray) -> np.ndarray: ...

    # (B, T, token_dim), (B, T) bool, (B, T) int64 -> (B, T, width). Turn-relative models also take
    # ``band=n`` (turns each turn attends back) and may refuse it (a bundle holding only the cached graph).

    def head(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray: ...

    # (N, C), (N,) int64 original timesteps, (N, width) -> (N, 2C)

    # Turn-relative models only (``info.position == "turn_relative"``):
    # backbone_step(tokens (B, L, D), mask (B, L), per layer: past_k, past_v (H, P_i, dh) in any slot
    #               order and past_distance (P_i,) int64 turns back)
    #   -> z (B, F, width) of the agent-motion tokens, k and v (layers, B, H, L, dh) of this turn


@dataclass(frozen=True)
class SamplingOptions:
    context_turns: int = 7  # n: history turns in the window (window = n + 1 turns)
    sampling_steps: int | str = 5  # respaced diffusion steps
    num_iter: int = 1  # masked-generation iterations per turn
    cfg: float = 1.0  # classifier-free guidance scale (1 = off)
    cfg_schedule: str = "linear"  # "linear" (ramped with progress) or "constant"
    temperature: float = 1.0
    # expression + jaw: their noise scale relative to ``temperature`` (head rotation keeps it), so the
    # mouth can follow the speech closely while the head keeps its full variety
    face_temperature: float = 1.0
    # frames over which the sampling noise is smoothed (0 = white): head rotation, expression + jaw
    head_noise_correlation: float = 0.0
    face_noise_correlation: float = 0.0
    # frames over which a turn's first frames ease from where the previous turn ended (0 = off): the
    # model samples each 1-s turn on its own, so without it the motion can step at every turn edge
    turn_blend: float = 0.0
    seed: int = 0
    mask_history_agent: bool = True  # re-mask the agent motion of history turns (paper setting)
    random_order: bool = True  # frame order for num_iter > 1; False = left to right
    clamp_variance: bool = True  # learned-range variance kept in [beta~, beta]; False = the released code
    # turn-relative models: reuse finished turns' keys/values (exact); False recomputes the whole
    # dialogue every turn (the reference the cache is tested against; cost grows with the context)
    kv_cache: bool = True

    def validate(self, info: ModelInfo) -> None:
        """Every option within its documented range (``settings.OPTIONS``, the one table the panel,
        headless and batches use too) and within the model's shapes; SettingsError (a ValueError)
        naming the option."""
        from .settings import OPTIONS, check_model_limits  # settings imports this module

        values = {name: getattr(self, name) for name in OPTIONS if hasattr(self, name)}
        if isinstance(values.get("sampling_steps"), str):  # respacing specs ("5", "ddim10") go to the schedule
            values.pop("sampling_steps")
        for name, value in values.items():
            OPTIONS[name].check(value)
        check_model_limits(values, info)


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
    temperature: float | np.ndarray = 1.0,  # a scalar, or one per channel (C,)
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


class _Ring:
    """One layer's keys/values of its last ``capacity`` finished turns: a new turn overwrites the oldest
    slot, and the graph takes the slots in place with each key's turn distance, so a full ring is
    handed over without a copy (attention does not care about key order)."""

    def __init__(self, heads: int, dh: int, length: int, capacity: int) -> None:
        self.length, self.capacity = length, capacity
        self.k = np.zeros((heads, capacity * length, dh), np.float32)
        self.v = np.zeros_like(self.k)
        self.turn_of_slot = np.zeros(capacity, np.int64)
        self.count = 0  # turns held (<= capacity)
        self.next_slot = 0

    def past(self, turn: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keys, values and per-key turn distances as seen from ``turn``."""
        dist = np.repeat(turn - self.turn_of_slot[: self.count], self.length)
        if self.count == self.capacity:
            return self.k, self.v, dist
        used = self.count * self.length  # slots fill in order, so a part-full ring is a prefix
        return self.k[:, :used], self.v[:, :used], dist

    def append(self, k: np.ndarray, v: np.ndarray, turn: int) -> None:
        if self.capacity == 0:
            return
        span = slice(self.next_slot * self.length, (self.next_slot + 1) * self.length)
        self.k[:, span], self.v[:, span] = k, v
        self.turn_of_slot[self.next_slot] = turn
        self.next_slot = (self.next_slot + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)


class _KVCache:
    """Per-layer rings of finished turns' keys/values (turn-relative models); a layer keeps only the
    turns it reaches (its band, capped by the context)."""

    def __init__(self, shape: tuple[int, int, int], length: int, reach: tuple[int, ...]) -> None:
        _, heads, dh = shape
        self.rings = [_Ring(heads, dh, length, r) for r in reach]
        self.pending: tuple[np.ndarray, np.ndarray] | None = None  # a finished turn's (tokens, mask) to encode

    def __len__(self) -> int:
        return max((r.count for r in self.rings), default=0)

    def past(self, turn: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Per layer: keys, values and per-key turn distances as seen from ``turn``."""
        parts = [r.past(turn) for r in self.rings]
        return [p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts]

    def append(self, k: np.ndarray, v: np.ndarray, turn: int) -> None:
        """Store turn ``turn``'s keys/values (layers, H, L, dh), each layer dropping its oldest when full."""
        for i, ring in enumerate(self.rings):
            ring.append(k[i], v[i], turn)


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
        if info.position not in ("window", "turn_relative"):
            raise ValueError(f"unknown position scheme {info.position!r}")
        self._turn_relative = info.position == "turn_relative"
        self._cached = self._turn_relative and self.options.kv_cache
        if self._turn_relative and info.kv_shape is None:
            raise ValueError("a turn-relative model needs kv_shape (layers, heads, head_dim)")
        self.reset()

    def reset(self) -> None:
        d = self.backend.info.token_dim
        self._history = _History(np.zeros((0, d), np.float32), np.zeros(0, np.int64), np.zeros(0, bool))
        info = self.backend.info
        reach = info.layer_reach(self.options.context_turns) if self._cached else ()
        self._kv = _KVCache(info.kv_shape, self.layout.length, reach) if self._cached else None
        self.turn_index = 0
        self._last_frame: np.ndarray | None = None  # the previous turn's last output frame (turn blend)

    def _blend_edge(self, motion: np.ndarray) -> np.ndarray:
        """Ease the turn's start from the previous turn's last output frame: the step between them,
        decaying as exp(-i / turn_blend) over the turn's frames (causal: streaming = offline). Only the
        output changes; the model keeps seeing its own samples."""
        tau = self.options.turn_blend
        if tau > 0 and self._last_frame is not None:
            w = np.exp(-np.arange(len(motion), dtype=np.float32) / np.float32(tau))[:, None]
            motion = motion + w * (self._last_frame - motion[0])[None]
        self._last_frame = motion[-1].copy()
        return motion

    def _history_turns(self) -> int:
        """History turns the backbone input holds: the context (window models), or every turn that can
        still reach this one through the layers' bands (turn-relative reference: exact, bounded)."""
        n = self.options.context_turns
        return n * self.backend.info.kv_shape[0] if self._turn_relative else n

    def _encode_pending(self) -> None:
        """A finished turn whose tokens changed after its last backbone run (agent motion visible to
        later turns): its keys/values, against the cache as it stood before it."""
        pend, self._kv.pending = self._kv.pending, None
        if pend is None or self.options.context_turns == 0:
            return
        finished = self.turn_index - 1
        _, k, v = self.backend.backbone_step(pend[0][None], pend[1][None], *self._kv.past(finished))
        self._kv.append(k[:, 0], v[:, 0], finished)

    def _noise_for(self, turn: int) -> TurnNoise:
        if self.noise is not None:
            return self.noise(turn)
        info = self.backend.info
        sigma = np.full(info.motion_dim, self.options.face_noise_correlation)
        sigma[NECK] = self.options.head_noise_correlation
        return turn_noise(self.options.seed, turn, self.coefs.num_steps, info.frames_per_turn, info.motion_dim, sigma)

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

        # window = last n history turns + this turn (whole turns, positions from the window start);
        # with the cache, only this turn (the history is in the cached keys/values)
        h = self._history
        keep = 0 if self._cached else self._history_turns() * lay.length
        start = max(0, len(h.tokens) - keep)
        h_tokens, h_tids, h_agent = h.tokens[start:], h.turn_ids[start:], h.agent[start:]
        if self._cached:
            self._encode_pending()
            past = self._kv.past(self.turn_index)
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
        temperature: float | np.ndarray = opt.temperature
        if opt.face_temperature != 1.0:
            temperature = np.full(info.motion_dim, opt.temperature * opt.face_temperature)
            temperature[NECK] = opt.temperature
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
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            if self._cached:
                z, k_new, v_new = self.backend.backbone_step(batch, np.repeat(mask[None], rows, 0), *past)
                if it == 0:  # this turn as later turns see it when they re-mask its agent motion
                    first_kv = (k_new[:, 0], v_new[:, 0])
            else:
                tids = np.repeat(turn_ids[None], rows, 0)
                band = {"band": opt.context_turns} if self._turn_relative else {}
                z = self.backend.backbone(batch, np.repeat(mask[None], rows, 0), tids, **band)[:, agent_rows]

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
                z[0, sel],
                noise.x_T[sel],
                noise.steps[:, sel],
                temperature,
                uncond=z[1, sel] if guided else None,
                cfg=cfg_it,
                clamp_variance=opt.clamp_variance,
            )
            motion[sel] = info.denormalize_motion(x)
            tokens[agent_pos[sel]] = self.backend.encode_motion(x)
            still_masked[sel] = False
            # MAR: frames generated in this iteration are visible context for the next one
            mask[agent_pos[sel]] = False

        if self._cached:
            window = len(self._kv) + 1
            if opt.mask_history_agent:
                self._kv.append(*first_kv, self.turn_index)
            else:  # its generated motion is visible to later turns: encode it again before the next turn
                self._kv.pending = (tokens, np.zeros(lay.length, bool))
        else:
            self._history = _History(tokens, turn_ids, agent)
            window = T // lay.length
        motion = self._blend_edge(motion)
        result = TurnResult(motion=motion, turn_index=self.turn_index, window_turns=window)
        self.turn_index += 1
        return result
