"""The TIMAR network (encoder-only backbone, turn-level causal attention, diffusion head).

Parameter names and shapes match the official ``TIMAR`` module, so the released checkpoint
loads with a strict key match. Sampling lives in ``timar_blender.engine.sampler`` and reaches
this module through ``model_export.torch_backend``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from timar_blender.engine.layout import AGENT_MOTION, ROLE_USER, SEPARATORS, TurnLayout

from .config import TimarConfig
from .diffusion import DiffusionLoss
from .layers import Block, SimpleMLPAdaLN, alibi_slopes, banded_turn_bias, turn_causal_mask
from .speech import LogMelFrontend


class DiffusionHead(nn.Module):
    """Holds the head network as ``diffloss.net`` (the official key prefix) and its loss."""

    def __init__(self, cfg: TimarConfig) -> None:
        super().__init__()
        self.net = SimpleMLPAdaLN(cfg.motion_dim, cfg.head_width, cfg.width, cfg.head_depth)
        self.loss = DiffusionLoss(
            cfg.noise_schedule, cfg.diffusion_steps, cfg.use_kl, cfg.rescale_learned_sigmas, cfg.jaw_loss_weight
        )


def truncated_normal_ratio(low: float) -> float:
    """One draw from N(1, 0.25) truncated to [low, 1] (MAR's masking-ratio distribution)."""
    a = torch.special.ndtr(torch.tensor((low - 1.0) / 0.25, dtype=torch.float64))
    b = torch.special.ndtr(torch.tensor(0.0, dtype=torch.float64))
    u = torch.rand((), dtype=torch.float64)
    return float(1.0 + 0.25 * torch.special.ndtri(a + (b - a) * u))


class Timar(nn.Module):
    def __init__(self, cfg: TimarConfig) -> None:
        super().__init__()
        self.cfg = cfg
        td, w = cfg.token_dim, cfg.width
        self.layout = TurnLayout(cfg.frames_per_turn)

        self.motion_encoder = nn.Sequential(
            nn.Linear(cfg.motion_dim, td // 2), nn.ReLU(), nn.Linear(td // 2, td), nn.ReLU()
        )
        if cfg.speech_encoder == "logmel":
            m = cfg.logmel
            self.speech_frontend: nn.Module | None = LogMelFrontend(
                m["n_mels"],
                m["channels"],
                cfg.speech_feature_dim,
                cfg.frames_per_turn,
                level_norm=None if cfg.logmel_frame_norm else (cfg.speech_rate, m["n_fft"], m["hop"]),
            )
        else:
            self.speech_frontend = None
        self.speech_projection = nn.Linear(cfg.speech_feature_dim, td)
        self.sep_tok_emb = nn.Embedding(len(SEPARATORS), td)
        self.fake_latent = nn.Parameter(torch.zeros(1, td))

        self.z_proj = nn.Linear(td, w)
        self.z_proj_ln = nn.LayerNorm(w, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, w))
        self.encoder_pos_embed_learned = nn.Parameter(torch.zeros(1, cfg.position_rows, w))
        self.encoder_blocks = nn.ModuleList(
            [
                Block(w, cfg.num_heads, cfg.mlp_ratio, cfg.norm_eps, cfg.attn_dropout, cfg.proj_dropout)
                for _ in range(cfg.depth)
            ]
        )
        self.encoder_norm = nn.LayerNorm(w, eps=cfg.norm_eps)
        self.diffusion_pos_embed_learned = nn.Parameter(torch.zeros(1, cfg.position_rows, w))
        if cfg.position == "turn_relative":
            # ALiBi over turns: per head, a fixed logit penalty slope x turn distance (0..n_ctx). Fixed,
            # not learned: a bias that needs a gradient takes attention off its fast kernel (measured 2x
            # slower training steps on CPU). Derived from the config, so not in the state dict.
            slopes = alibi_slopes(cfg.num_heads)[:, None]
            dist = torch.arange(cfg.max_context_turns, dtype=torch.float32)[None]
            self.register_buffer("turn_distance_bias", -slopes * dist, persistent=False)
        # motion normalisation (identity in raw units); not in the state dict: it lives in the config
        stats = cfg.motion_stats
        mean = torch.tensor(stats[0]) if stats else torch.zeros(cfg.motion_dim)
        std = torch.tensor(stats[1]) if stats else torch.ones(cfg.motion_dim)
        self.register_buffer("motion_mean", mean.float(), persistent=False)
        self.register_buffer("motion_std", std.float(), persistent=False)
        self._init_weights()
        self.diffloss = DiffusionHead(cfg)  # after _init_weights: the head has its own init

    def _init_weights(self) -> None:
        for p in (
            self.sep_tok_emb.weight,
            self.fake_latent,
            self.mask_token,
            self.encoder_pos_embed_learned,
            self.diffusion_pos_embed_learned,
        ):
            nn.init.normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ token streams
    def speech_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Speech-encoder features (..., L, feature) of one or more chunks -> (..., F, token_dim)."""
        if self.speech_frontend is not None:
            features = self.speech_frontend(features)
        return self.speech_projection(features)

    def motion_tokens(self, motion: torch.Tensor) -> torch.Tensor:
        """Motion frames in the model's space (normalised when ``motion_norm``) -> tokens."""
        return self.motion_encoder(motion)

    def normalize_motion(self, motion: torch.Tensor) -> torch.Tensor:
        """Raw FLAME-56 frames -> the model's motion space (identity without ``motion_norm``)."""
        if not self.cfg.motion_norm:
            return motion
        return (motion - self.motion_mean.to(motion.dtype)) / self.motion_std.to(motion.dtype)

    def denormalize_motion(self, motion: torch.Tensor) -> torch.Tensor:
        """The model's motion space -> raw FLAME-56 frames."""
        if not self.cfg.motion_norm:
            return motion
        return motion * self.motion_std.to(motion.dtype) + self.motion_mean.to(motion.dtype)

    def separators(self) -> torch.Tensor:
        return self.sep_tok_emb.weight

    def interleave(
        self, su: torch.Tensor, mu: torch.Tensor, sa: torch.Tensor, ma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Four (B, C, F, D) streams -> tokens (B, C*(4F+10), D) and turn ids (B, C*(4F+10))."""
        b, c, _, d = su.shape
        lay = self.layout
        tokens = su.new_empty(b, c, lay.length, d)
        tokens[:, :, torch.from_numpy(lay.separator_positions)] = self.separators().to(su.dtype)
        tokens[:, :, lay.user_speech] = su
        tokens[:, :, lay.user_motion] = mu
        tokens[:, :, lay.agent_speech] = sa
        tokens[:, :, lay.agent_motion] = ma
        turn_ids = torch.arange(c, device=su.device).repeat_interleave(lay.length).expand(b, -1)
        return tokens.reshape(b, c * lay.length, d), turn_ids

    # ------------------------------------------------------------------ backbone and head
    def positions(self, table: torch.Tensor, t: int) -> torch.Tensor:
        """Position rows for a window of ``t`` tokens: from the window start ("window"), or the
        within-turn table repeated for every turn ("turn_relative", whole turns only)."""
        if self.cfg.position == "window":
            return table[:, :t]
        length = self.cfg.turn_length
        if t % length:
            raise ValueError(f"turn-relative positions need whole turns of {length} tokens, got {t} tokens")
        return table.repeat(1, t // length, 1)

    def backbone(
        self, tokens: torch.Tensor, mask: torch.Tensor, turn_ids: torch.Tensor, band: int | None = None
    ) -> torch.Tensor:
        """Tokens (B, T, D), agent-motion mask (B, T) and turn ids (B, T) -> z (B, T, width).

        With turn-relative positions the whole sequence is one dialogue of any length: in each layer
        a turn attends to itself and the turns before it up to that layer's band (``cfg.bands``),
        capped at ``band`` when given (the computation a per-layer key/value cache reproduces
        exactly); turn ids must be the same in every row.
        """
        t = tokens.shape[1]
        x = self.z_proj(tokens)
        x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        x = self.z_proj_ln(x + self.positions(self.encoder_pos_embed_learned, t))
        if self.cfg.position == "turn_relative":
            if turn_ids.shape[0] > 1 and not bool((turn_ids == turn_ids[:1]).all()):
                raise ValueError("turn-relative attention needs the same turn ids in every batch row")
            masks: dict[int, torch.Tensor] = {}  # one mask per distinct band
            for block, layer_band in zip(self.encoder_blocks, self.cfg.bands):
                reach = layer_band if band is None else min(band, layer_band)
                if reach not in masks:
                    masks[reach] = banded_turn_bias(turn_ids[0], self.turn_distance_bias[:, : reach + 1]).to(x.dtype)
                x = block(x, masks[reach])
        else:
            attn_mask = turn_causal_mask(turn_ids) if self.cfg.turn_causal else None
            for block in self.encoder_blocks:
                x = block(x, attn_mask)
        return self.encoder_norm(x) + self.positions(self.diffusion_pos_embed_learned, t)

    def backbone_step(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        past_k: Sequence[torch.Tensor],
        past_v: Sequence[torch.Tensor],
        past_distance: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One turn of a turn-relative model against the cached keys/values of the turns before it.

        ``tokens`` (B, L, D) and ``mask`` (B, L): the new turn (rows: e.g. conditional and
        unconditional); ``past_k[i]``/``past_v[i]`` (H, P_i, head_dim): layer i's keys/values of P_i
        cached tokens in any order, shared by all rows; ``past_distance[i]`` (P_i,) int64: how many
        turns before this one each cached token's turn is (1..the layer's band: a layer reads only the
        turns it reaches). Returns z (B, F, width) of the turn's agent-motion tokens only (all the
        diffusion head reads) and this turn's keys/values
        (depth, B, H, L, head_dim). A turn's keys/values depend only on its own tokens and the cached
        ones, so this equals ``backbone`` over the whole dialogue with the banded mask.

        Shaped for the engine's ring-buffer cache: keys are taken in slot order with their distances
        (no reordering copy), attention to the cache is a broadcast matmul (no per-row copy of it),
        and the last layer computes only the agent-motion queries.
        """
        rows = self.layout.agent_motion
        b = tokens.shape[0]
        x = self.z_proj(tokens)
        x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        x = self.z_proj_ln(x + self.encoder_pos_embed_learned)
        table = self.turn_distance_bias.to(x.dtype)
        own_bias = table[:, :1][None, :, :, None]  # (1, H, 1, 1): distance 0
        keys, values = [], []
        depth = len(self.encoder_blocks)
        for i, blk in enumerate(self.encoder_blocks):
            c, heads = x.shape[-1], blk.attn.num_heads
            n = x.shape[1]
            qkv = blk.attn.qkv(blk.norm1(x)).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            keys.append(k)
            values.append(v)
            if i == depth - 1:  # later layers would only feed z rows the head never reads
                q, x = q[:, :, rows], x[:, rows]
            q = q * (c // heads) ** -0.5
            past_bias = table[:, past_distance[i]][None, :, None, :]  # (1, H, 1, P_i)
            s_past = torch.matmul(q, past_k[i].transpose(-1, -2)) + past_bias  # (B, H, Q, P_i)
            s_own = torch.matmul(q, k.transpose(-1, -2)) + own_bias  # (B, H, Q, L)
            p = torch.softmax(torch.cat([s_past, s_own], dim=-1), dim=-1)
            n_past = s_past.shape[-1]
            out = torch.matmul(p[..., :n_past], past_v[i]) + torch.matmul(p[..., n_past:], v)
            x = x + blk.attn.proj(out.transpose(1, 2).reshape(b, x.shape[1], c))
            x = x + blk.mlp(blk.norm2(x))
        z = self.encoder_norm(x) + self.diffusion_pos_embed_learned[:, rows]
        return z, torch.stack(keys), torch.stack(values)

    def head(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """One call of the diffusion MLP: (N, 56), original timesteps (N,), (N, width) -> (N, 112)."""
        return self.diffloss.net(x, t, c)

    def training_mask(self, b: int, c: int, n_agent: int, device: torch.device) -> torch.Tensor:
        """(B, n_agent) bool: which agent-motion tokens of each sample are masked (and predicted).

        "window": MAR masking, one ratio per batch (>= mask_ratio_min), a random subset per sample.
        "mixed": a third of the samples as "window"; the others draw a ratio ~ U(0, 1] per turn and
        mask that share of the turn's frames (at least one), so visible own-past turns and partly
        sampled turns are in the training distribution."""
        cfg = self.cfg
        ratio = truncated_normal_ratio(cfg.mask_ratio_min)
        n_mask = math.ceil(n_agent * ratio)
        scores = torch.rand(b, n_agent, device=device)
        sel = torch.zeros(b, n_agent, dtype=torch.bool, device=device)
        sel.scatter_(1, scores.argsort(dim=1)[:, :n_mask], True)
        if cfg.mask_scheme == "window":
            return sel
        f = n_agent // c
        per_turn_ratio = 1.0 - torch.rand(b, c, 1, device=device)  # (0, 1]
        n_turn = torch.ceil(per_turn_ratio * f)  # frames masked per turn, >= 1
        rank = torch.rand(b, c, f, device=device).argsort(dim=2).argsort(dim=2).to(n_turn.dtype)
        per_turn = (rank < n_turn).reshape(b, n_agent)
        use_window = torch.rand(b, 1, device=device) < 1.0 / 3.0
        return torch.where(use_window, sel, per_turn)

    # ------------------------------------------------------------------ training
    def forward(
        self,
        user_speech: torch.Tensor,
        agent_speech: torch.Tensor,
        user_motion: torch.Tensor,
        agent_motion: torch.Tensor,
        user_motion_present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training loss of a batch of C-turn windows.

        ``*_speech``: speech features (B, C, L, feature) of each 1-s chunk; ``*_motion``:
        (B, C*F, 56) raw FLAME frames (normalised here when ``motion_norm``; the loss is then in
        normalised units); ``user_motion_present``: (B,) bool, False where the user's
        motion is unknown (its tokens are ``fake_latent``, as at inference).
        """
        cfg, lay = self.cfg, self.layout
        b, c = user_speech.shape[:2]
        f = cfg.frames_per_turn
        user_motion, agent_motion = self.normalize_motion(user_motion), self.normalize_motion(agent_motion)
        su, sa = self.speech_tokens(user_speech), self.speech_tokens(agent_speech)
        mu = self.motion_tokens(user_motion).reshape(b, c, f, -1)
        ma = self.motion_tokens(agent_motion).reshape(b, c, f, -1)
        fake = self.fake_latent.to(mu.dtype)
        if user_motion_present is not None:
            mu = torch.where(user_motion_present.view(b, 1, 1, 1), mu, fake.view(1, 1, 1, -1))
        tokens, turn_ids = self.interleave(su, mu, sa, ma)
        t = tokens.shape[1]
        device = tokens.device

        agent_idx = torch.from_numpy(np.flatnonzero(np.tile(lay.token_type, c) == AGENT_MOTION)).to(device)
        n_agent = agent_idx.numel()

        masked_sel = self.training_mask(b, c, n_agent, device)
        mask = torch.zeros(b, t, dtype=torch.bool, device=device)
        mask[:, agent_idx] = masked_sel

        # condition dropout: every user token independently -> fake_latent
        if self.training and cfg.cond_drop_prob > 0:
            role = torch.from_numpy(np.tile(lay.role, c)).to(device)
            drop = (torch.rand(b, t, device=device) < cfg.cond_drop_prob) & (role == ROLE_USER)
            tokens = torch.where(drop.unsqueeze(-1), fake, tokens)

        z = self.backbone(tokens, mask, turn_ids)
        z_sel = z[:, agent_idx].reshape(b * n_agent, -1)
        target = agent_motion.reshape(b * n_agent, -1)
        m = masked_sel.reshape(-1)
        k = cfg.diffusion_batch_mul
        losses = self.diffloss.loss.losses(self.diffloss.net, target.repeat(k, 1), z_sel.repeat(k, 1))
        m = m.repeat(k).to(losses.dtype)
        return (losses * m).sum() / m.sum()
