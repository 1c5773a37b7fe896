"""Speech encoders behind one interface.

A speech encoder turns 1-s chunks of 16 kHz audio into frame features, each chunk on its own (so a
stream can be encoded as it arrives). The audio is normalised per file (the official contract) or, for
models with ``audio_normalization="none"``, raw samples in [-1, 1]. Two kinds:

* ``Wav2Vec2Features``: the official path with a frozen ``Wav2Vec2Model`` loaded from a local
  folder: conv features -> linear interpolation to F frames (align_corners) -> feature
  projection -> transformer encoder -> last hidden state. Its weights are not in TIMAR's
  checkpoint.
* ``LogMelFeatures``: fixed log-mel filterbank features that need no pretrained weights; the
  trainable part (``LogMelFrontend``) lives inside the TIMAR model as ``speech_frontend``. Its input
  norm is either a LayerNorm per frame (``logmel_frame_norm``, the v1 models: it erases each frame's
  level) or ``LevelPreservingNorm`` (fixed per-bin standardisation + learnable affine: level survives).

Both are ``nn.Module``s, so training (feature caching), sampling and ONNX export run the very
same code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TimarConfig


def interpolate_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, L, D) -> (B, frames, D), linear with align_corners=True (the official resampling)."""
    return F.interpolate(x.transpose(1, 2), size=frames, mode="linear", align_corners=True).transpose(1, 2)


class Wav2Vec2Features(nn.Module):
    def __init__(self, folder: str | Path, frames_per_chunk: int) -> None:
        super().__init__()
        from transformers import Wav2Vec2Model

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder}: not a wav2vec2 folder (no config.json). Download "
                "facebook/wav2vec2-large-960h-lv60-self yourself and pass its local folder."
            )
        self.wav2vec = Wav2Vec2Model.from_pretrained(str(folder), local_files_only=True)
        self.wav2vec.eval()
        for p in self.wav2vec.parameters():
            p.requires_grad_(False)
        self.frames = frames_per_chunk
        self.feature_dim = int(self.wav2vec.config.hidden_size)
        self.source = str(folder)

    def train(self, mode: bool = True) -> Wav2Vec2Features:  # always frozen, always eval
        return super().train(False)

    @torch.no_grad()
    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, F, hidden)."""
        h = self.wav2vec.feature_extractor(chunks).transpose(1, 2)
        h = interpolate_frames(h, self.frames)
        h = self.wav2vec.feature_projection(h)[0]
        return self.wav2vec.encoder(h).last_hidden_state


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 20.0) -> np.ndarray:
    """(n_mels, n_fft//2+1) triangular HTK-mel filters, each normalised to unit area."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(f_min)), hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    fb = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, mid, hi = edges[i : i + 3]
        up = (freqs - lo) / (mid - lo)
        down = (hi - freqs) / (hi - mid)
        fb[i] = np.maximum(0.0, np.minimum(up, down))
    fb /= np.maximum(fb.sum(axis=1, keepdims=True), 1e-12)
    return fb.astype(np.float32)


class LogMelFeatures(nn.Module):
    """Fixed log-mel features of one chunk: (B, S) -> (B, S // hop, n_mels).

    The STFT is a strided convolution with a windowed DFT basis (so it exports to any ONNX
    runtime as a plain Conv); frames are centred with zero padding inside the chunk only, so a
    chunk's features never depend on its neighbours.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> None:
        super().__init__()
        self.n_fft, self.hop, self.n_mels = n_fft, hop, n_mels
        self.feature_dim = n_mels
        n_freq = n_fft // 2 + 1
        window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
        k = np.arange(n_freq)[:, None]
        n = np.arange(n_fft)[None, :]
        ang = 2 * np.pi * k * n / n_fft
        basis = np.concatenate([np.cos(ang), -np.sin(ang)]) * window
        self.register_buffer("dft", torch.from_numpy(basis.astype(np.float32))[:, None, :], persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)), persistent=False)

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        frames = chunks.shape[-1] // self.hop
        x = F.pad(chunks.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2))
        spec = F.conv1d(x, self.dft, stride=self.hop)[:, :, :frames]  # (B, 2*n_freq, L)
        re, im = spec.chunk(2, dim=1)
        power = re * re + im * im
        mel = torch.matmul(self.mel, power)  # (B, n_mels, L)
        return torch.log(mel + 1e-5).transpose(1, 2)


LOGMEL_EPS = 1e-5  # the floor LogMelFeatures adds to the mel power before the log


def logmel_gain(feats: torch.Tensor, gain_db: torch.Tensor | float) -> torch.Tensor:
    """Log-mel features of the same audio ``gain_db`` louder: exact for ``LogMelFeatures`` (the power
    scales by 10^(gain/10) under the floor), so a training gain augmentation can work on cached
    features. ``gain_db`` broadcasts against ``feats`` (e.g. (B, 1, 1, 1) per track)."""
    power = torch.clamp(torch.exp(feats.float()) - LOGMEL_EPS, min=0.0)
    g = torch.as_tensor(gain_db, dtype=torch.float32, device=feats.device)
    return torch.log(power * torch.pow(10.0, g / 10.0) + LOGMEL_EPS).to(feats.dtype)


class LevelPreservingNorm(nn.Module):
    """(..., n_mels) log-mel -> fixed per-bin standardisation, then a learnable per-bin affine.

    Unlike a LayerNorm over each frame, this keeps the frame's level: room tone at -60 dBFS stays
    ~3 std under speech instead of looking like speech. The constants are the log-mel statistics of
    speech at -26 dBFS (``model_export.logmel_level``); they are part of the model's definition (not
    in the state dict, like the mel filterbank) and must never change. Parameter names and shapes are
    LayerNorm's (``weight``, ``bias``), so both norms fit one state-dict layout.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int) -> None:
        super().__init__()
        from .logmel_level import speech_logmel_stats

        mean, std = speech_logmel_stats(sample_rate, n_fft, hop, n_mels)
        self.register_buffer("level_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("level_inv_std", 1.0 / torch.tensor(std, dtype=torch.float32), persistent=False)
        self.weight = nn.Parameter(torch.ones(n_mels))
        self.bias = nn.Parameter(torch.zeros(n_mels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.level_mean) * self.level_inv_std * self.weight + self.bias


class LogMelFrontend(nn.Module):
    """Trainable part of the log-mel encoder: (B, L, n_mels) -> (B, F, feature_dim).

    ``level_norm``: None = LayerNorm per frame (v1: erases the level); else the (sample_rate, n_fft,
    hop) of the features, for ``LevelPreservingNorm``.
    """

    def __init__(
        self, n_mels: int, channels: int, out_dim: int, frames: int, level_norm: tuple[int, int, int] | None = None
    ) -> None:
        super().__init__()
        self.frames = frames
        self.norm: nn.Module = nn.LayerNorm(n_mels) if level_norm is None else LevelPreservingNorm(*level_norm, n_mels)
        self.convs = nn.Sequential(
            nn.Conv1d(n_mels, channels, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.out = nn.Linear(channels, out_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        lead = feats.shape[:-2]
        x = self.norm(feats.reshape(-1, *feats.shape[-2:]))
        x = self.convs(x.transpose(1, 2)).transpose(1, 2)
        if x.shape[1] != self.frames:
            x = interpolate_frames(x, self.frames)
        return self.out(x).reshape(*lead, self.frames, -1)


def build_speech_features(cfg: TimarConfig, wav2vec2: str | Path | None = None) -> nn.Module:
    """The fixed (non-trainable) speech feature module a config needs."""
    if cfg.speech_encoder == "logmel":
        m = cfg.logmel
        return LogMelFeatures(cfg.speech_rate, m["n_fft"], m["hop"], m["n_mels"]).eval()
    if wav2vec2 is None:
        raise ValueError(
            "this model uses wav2vec2 speech features: pass the local folder of "
            "facebook/wav2vec2-large-960h-lv60-self (nothing is downloaded at run time)"
        )
    feats = Wav2Vec2Features(wav2vec2, cfg.frames_per_turn)
    if feats.feature_dim != cfg.speech_feature_dim:
        raise ValueError(
            f"{wav2vec2}: wav2vec2 hidden size {feats.feature_dim} does not match the checkpoint's "
            f"speech_projection input {cfg.speech_feature_dim}"
        )
    return feats
