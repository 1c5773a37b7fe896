"""The PyTorch model as a sampler ``Backend``: the turn-by-turn API on the PyTorch side."""

from __future__ import annotations

import numpy as np
import torch

from timar_blender.engine.contract import ModelInfo
from timar_blender.engine.dialogue import DialogueMotion, generate_dialogue
from timar_blender.engine.sampler import SamplingOptions

from .model import Timar


class TorchBackend:
    def __init__(self, model: Timar, speech_features: torch.nn.Module) -> None:
        self.model = model.eval()
        self.speech_features = speech_features.eval()
        self.info: ModelInfo = model.cfg.model_info()

    @staticmethod
    def _np(x: torch.Tensor) -> np.ndarray:
        return x.detach().float().cpu().numpy()

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def separators(self) -> np.ndarray:
        return self._np(self.model.separators())

    @torch.no_grad()
    def fake_latent(self) -> np.ndarray:
        return self._np(self.model.fake_latent[0])

    @torch.no_grad()
    def encode_speech(self, chunks: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(chunks, dtype=np.float32)).to(self._device)
        return self._np(self.model.speech_tokens(self.speech_features(x)))

    @torch.no_grad()
    def encode_motion(self, frames: np.ndarray) -> np.ndarray:
        return self._np(self.model.motion_tokens(torch.from_numpy(np.asarray(frames, np.float32)).to(self._device)))

    @torch.no_grad()
    def backbone(
        self, tokens: np.ndarray, mask: np.ndarray, turn_ids: np.ndarray, band: int | None = None
    ) -> np.ndarray:
        d = self._device
        z = self.model.backbone(
            torch.from_numpy(tokens).to(d), torch.from_numpy(mask).to(d), torch.from_numpy(turn_ids).to(d), band=band
        )
        return self._np(z[:, -self.model.cfg.turn_length :])  # the sampler reads the last turn

    @torch.no_grad()
    def backbone_step(
        self,
        tokens: np.ndarray,
        mask: np.ndarray,
        past_k: list[np.ndarray],
        past_v: list[np.ndarray],
        past_distance: list[np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self._device

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(d)

        z, k, v = self.model.backbone_step(
            t(tokens), t(mask), [t(a) for a in past_k], [t(a) for a in past_v], [t(a) for a in past_distance]
        )
        return self._np(z), self._np(k), self._np(v)

    @torch.no_grad()
    def head(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        d = self._device
        return self._np(
            self.model.head(torch.from_numpy(x).to(d), torch.from_numpy(t).to(d), torch.from_numpy(c).to(d))
        )


def sample_dialogue(
    model: Timar,
    speech_features: torch.nn.Module,
    user_audio: np.ndarray,
    agent_audio: np.ndarray,
    user_motion: np.ndarray | None = None,
    options: SamplingOptions | None = None,
    **kwargs,
) -> DialogueMotion:
    """Turn-by-turn generation of the agent's motion with the PyTorch model."""
    return generate_dialogue(
        TorchBackend(model, speech_features), user_audio, agent_audio, user_motion, options, **kwargs
    )
