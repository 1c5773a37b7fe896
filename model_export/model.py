"""The TIMAR network (encoder-only backbone, turn-level causal attention, diffusion head).

Parameter names and shapes match the official ``TIMAR`` module, so the released checkpoint
loads with a strict key match. Sampling lives in ``timar_blender.engine.sampler`` and reaches
this module through ``model_export.torch_backend``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from timar_blender.engine.layout import AGENT_MOTION, ROLE_USER, SEPARATORS, TurnLayout

from .config import TimarConfig
from .diffusion import DiffusionLoss
from .layers import Block, SimpleMLPAdaLN, turn_causal_mask
from .speech import LogMelFrontend


class DiffusionHead(nn.Module):
    """Holds the head network as ``diffloss.net`` (the official key prefix) and its loss."""

    def __init__(self, cfg: TimarConfig) -> None:
        super().__init__()
        self.net = SimpleMLPAdaLN(cfg.motion_dim, cfg.head_width, cfg.width, cfg.head_depth)
        self.loss = DiffusionLoss(cfg.noise_schedule, cfg.diffusion_steps, cfg.use_kl, cfg.rescale_learned_sigmas)


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
                m["n_mels"], m["channels"], cfg.speech_feature_dim, cfg.frames_per_turn
            )
        else:
            self.speech_frontend = None
        self.speech_projection = nn.Linear(cfg.speech_feature_dim, td)
        self.sep_tok_emb = nn.Embedding(len(SEPARATORS), td)
        self.fake_latent = nn.Parameter(torch.zeros(1, td))

        self.z_proj = nn.Linear(td, w)
        self.z_proj_ln = nn.LayerNorm(w, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, w))
        self.encoder_pos_embed_learned = nn.Parameter(torch.zeros(1, cfg.seq_len, w))
        self.encoder_blocks = nn.ModuleList(
            [
                Block(w, cfg.num_heads, cfg.mlp_ratio, cfg.norm_eps, cfg.attn_dropout, cfg.proj_dropout)
                for _ in range(cfg.depth)
            ]
        )
        self.encoder_norm = nn.LayerNorm(w, eps=cfg.norm_eps)
        self.diffusion_pos_embed_learned = nn.Parameter(torch.zeros(1, cfg.seq_len, w))
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
        return self.motion_encoder(motion)

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
    def backbone(self, tokens: torch.Tensor, mask: torch.Tensor, turn_ids: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, D), agent-motion mask (B, T) and turn ids (B, T) -> z (B, T, width)."""
        t = tokens.shape[1]
        x = self.z_proj(tokens)
        x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        x = self.z_proj_ln(x + self.encoder_pos_embed_learned[:, :t])
        attn_mask = turn_causal_mask(turn_ids) if self.cfg.turn_causal else None
        for block in self.encoder_blocks:
            x = block(x, attn_mask)
        return self.encoder_norm(x) + self.diffusion_pos_embed_learned[:, :t]

    def head(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """One call of the diffusion MLP: (N, 56), original timesteps (N,), (N, width) -> (N, 112)."""
        return self.diffloss.net(x, t, c)

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
        (B, C*F, 56) raw FLAME frames; ``user_motion_present``: (B,) bool, False where the user's
        motion is unknown (its tokens are ``fake_latent``, as at inference).
        """
        cfg, lay = self.cfg, self.layout
        b, c = user_speech.shape[:2]
        f = cfg.frames_per_turn
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

        # MAR masking of agent-motion tokens only: one ratio per batch, a random subset per sample
        ratio = truncated_normal_ratio(cfg.mask_ratio_min)
        n_mask = math.ceil(n_agent * ratio)
        scores = torch.rand(b, n_agent, device=device)
        masked_sel = torch.zeros(b, n_agent, dtype=torch.bool, device=device)
        masked_sel.scatter_(1, scores.argsort(dim=1)[:, :n_mask], True)
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
