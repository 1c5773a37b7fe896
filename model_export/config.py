"""TIMAR configuration: one dataclass, the paper's presets, CPU-sized presets, and the mapping
from the official checkpoint's ``args`` namespace."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from timar_blender.engine.contract import AUDIO_NORMALIZATION_MANIFEST, ModelInfo

POSITION_SCHEMES = ("window", "turn_relative")
AUDIO_NORMALIZATIONS = tuple(AUDIO_NORMALIZATION_MANIFEST)  # "file", "none"
MASK_SCHEMES = ("window", "mixed")
# smallest per-channel std used for normalisation: a (nearly) constant channel is not blown up
MOTION_STD_FLOOR = 1e-3


@dataclass(frozen=True)
class TimarConfig:
    # streams and timing
    motion_dim: int = 56
    motion_fps: int = 25
    speech_rate: int = 16_000
    turn_seconds: int = 1
    max_context_time: int = 8  # seconds of context the position tables cover
    # token embedding
    token_dim: int = 1024
    speech_encoder: str = "wav2vec2"  # "wav2vec2" (external weights) or "logmel" (no pretrained weights)
    speech_feature_dim: int = 1024  # what the speech encoder hands to speech_projection
    # backbone (encoder-only; depth = encoder_depth + decoder_depth of the official code)
    width: int = 1024
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    turn_causal: bool = True  # turn-level causal attention (TLCA)
    # "window": learned absolute positions numbered from the window start (the official code);
    # "turn_relative": learned positions within a turn (turn_length rows, the same for every turn)
    # plus an ALiBi-style per-head bias over turn distance, and attention banded to the last
    # max_context_turns turns. Nothing then depends on where the window starts, so a finished turn's
    # keys and values never change and can be cached (issue 15).
    position: str = "window"
    # turn_relative only: per layer, how many turns back its attention reaches (0..max_context_turns-1);
    # None = every layer reaches the whole context. Narrow upper layers keep the per-turn cost nearly
    # flat in the context (the cached keys they read stay few); the first layer still sees it all and
    # hands it up through the current turn's tokens.
    layer_bands: tuple[int, ...] | None = None
    attn_dropout: float = 0.1  # dropout on attention probabilities in training
    proj_dropout: float = 0.1  # dropout after attention/MLP projections in training
    # diffusion head
    head_depth: int = 3
    head_width: int = 1024
    noise_schedule: str = "cosine"
    diffusion_steps: int = 1000
    sampling_steps: str = "5"
    diffusion_batch_mul: int = 4
    use_kl: bool = False
    rescale_learned_sigmas: bool = False
    # training
    mask_ratio_min: float = 0.7
    cond_drop_prob: float = 0.1
    # which agent-motion tokens a training window masks: "window" = one MAR ratio (>= mask_ratio_min)
    # over the whole window (the paper); "mixed" = that for a third of the samples, and for the rest an
    # independent uniform ratio per turn, so the model also learns from turns whose own past motion is
    # visible and from partly sampled turns (num_iter > 1, history agent motion visible at inference)
    mask_scheme: str = "window"
    # log-mel speech encoder (speech_encoder == "logmel")
    logmel: dict[str, int] = field(default_factory=dict)
    # audio the speech encoder hears: "file" = each track to zero mean / unit variance over the whole
    # file (the official contract; a track of room tone looks as loud as speech); "none" = the samples
    # as recorded in [-1, 1], so a quiet track stays quiet, and causal: live = streaming = offline
    audio_normalization: str = "file"
    # log-mel input norm: True = LayerNorm over each frame's bins (v1; erases the frame's level);
    # False = fixed per-bin standardisation by speech at -26 dBFS + a learnable per-bin affine
    # (speech.LevelPreservingNorm), so the level survives
    logmel_frame_norm: bool = True
    # training only: each track of each sample is made louder or quieter by U(-x, +x) dB (applied to
    # the cached log-mel features, exactly), so a model that hears raw levels copes with mic gains
    audio_gain_jitter_db: float = 0.0
    # training only: weight of the jaw group in the head's x0 loss (expression and neck weigh 1).
    # The jaw is three of 56 channels but carries talking; more weight sharpens what the network
    # learns of it from audio, so less of the sampled jaw is seed noise.
    jaw_loss_weight: float = 1.0
    # motion normalisation: the network sees (frame - motion_mean) / motion_std per channel, so
    # jaw and neck (0.01-0.1 rad) weigh as much in the loss as expression (order 1). The statistics
    # come from the training data (train.py fills them in); off = raw FLAME units (official).
    motion_norm: bool = False
    motion_mean: tuple[float, ...] | None = None
    motion_std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.speech_encoder not in ("wav2vec2", "logmel"):
            raise ValueError(f"unknown speech encoder {self.speech_encoder!r}")
        if self.speech_rate % 1 or self.speech_rate <= 0:
            raise ValueError("speech_rate must be a positive integer")
        if self.mask_scheme not in MASK_SCHEMES:
            raise ValueError(f"mask_scheme must be one of {MASK_SCHEMES}, got {self.mask_scheme!r}")
        if self.audio_normalization not in AUDIO_NORMALIZATIONS:
            raise ValueError(
                f"audio_normalization must be one of {AUDIO_NORMALIZATIONS}, got {self.audio_normalization!r}"
            )
        if self.speech_encoder == "wav2vec2" and self.audio_normalization != "file":
            raise ValueError("the wav2vec2 speech encoder needs audio_normalization 'file' (its contract)")
        if not math.isfinite(self.audio_gain_jitter_db) or self.audio_gain_jitter_db < 0:
            raise ValueError(f"audio_gain_jitter_db must be >= 0, got {self.audio_gain_jitter_db!r}")
        if self.audio_gain_jitter_db and self.speech_encoder != "logmel":
            raise ValueError("audio_gain_jitter_db works on log-mel features: it needs speech_encoder 'logmel'")
        if not math.isfinite(self.jaw_loss_weight) or self.jaw_loss_weight <= 0:
            raise ValueError(f"jaw_loss_weight must be > 0, got {self.jaw_loss_weight!r}")
        if self.position not in POSITION_SCHEMES:
            raise ValueError(f"position must be one of {POSITION_SCHEMES}, got {self.position!r}")
        if self.position == "turn_relative" and not self.turn_causal:
            raise ValueError("position 'turn_relative' needs turn_causal attention (the cache relies on it)")
        if self.layer_bands is not None:
            bands = tuple(int(b) for b in self.layer_bands)  # JSON gives lists
            object.__setattr__(self, "layer_bands", bands)
            if self.position != "turn_relative":
                raise ValueError("layer_bands needs position 'turn_relative'")
            if len(bands) != self.depth or not all(0 <= b < self.max_context_turns for b in bands):
                raise ValueError(
                    f"layer_bands must give {self.depth} values in 0..{self.max_context_turns - 1}, got {bands}"
                )
        for name in ("motion_mean", "motion_std"):
            value = getattr(self, name)
            if value is None:
                continue
            value = tuple(float(v) for v in value)  # JSON gives lists
            object.__setattr__(self, name, value)
            if len(value) != self.motion_dim or not all(math.isfinite(v) for v in value):
                raise ValueError(f"{name} must hold {self.motion_dim} finite values")
        if (self.motion_mean is None) != (self.motion_std is None):
            raise ValueError("motion_mean and motion_std must be given together")
        if self.motion_std is not None and min(self.motion_std) <= 0:
            raise ValueError("motion_std values must be > 0")
        if self.motion_mean is not None and not self.motion_norm:
            raise ValueError("motion_mean/motion_std given but motion_norm is off")

    @property
    def frames_per_turn(self) -> int:
        return self.turn_seconds * self.motion_fps

    @property
    def samples_per_turn(self) -> int:
        return self.turn_seconds * self.speech_rate

    @property
    def turn_length(self) -> int:
        return 4 * self.frames_per_turn + 10

    @property
    def max_context_turns(self) -> int:
        return self.max_context_time // self.turn_seconds

    @property
    def bands(self) -> tuple[int, ...]:
        """Per layer, the turns back its attention reaches."""
        return self.layer_bands or (self.max_context_turns - 1,) * self.depth

    @property
    def seq_len(self) -> int:
        """Rows of the window positional tables (the official formula)."""
        return self.max_context_time * (4 * self.motion_fps * self.turn_seconds + 10)

    @property
    def position_rows(self) -> int:
        """Rows of the positional tables under this config's position scheme."""
        return self.seq_len if self.position == "window" else self.turn_length

    @property
    def motion_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) when the model works in normalised motion space, else None (raw units)."""
        if not self.motion_norm:
            return None
        if self.motion_mean is None or self.motion_std is None:
            raise ValueError("motion_norm is on but motion_mean/motion_std are not set (train.py computes them)")
        return self.motion_mean, self.motion_std

    def model_info(self) -> ModelInfo:
        return ModelInfo(
            motion_dim=self.motion_dim,
            frames_per_turn=self.frames_per_turn,
            samples_per_turn=self.samples_per_turn,
            token_dim=self.token_dim,
            max_context_turns=self.max_context_turns,
            speech_rate=self.speech_rate,
            noise_schedule=self.noise_schedule,
            train_steps=self.diffusion_steps,
            motion_mean=self.motion_stats[0] if self.motion_norm else None,
            motion_std=self.motion_stats[1] if self.motion_norm else None,
            position=self.position,
            kv_shape=(self.depth, self.num_heads, self.width // self.num_heads)
            if self.position == "turn_relative"
            else None,
            audio_normalization=self.audio_normalization,
            layer_bands=self.layer_bands,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimarConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TIMAR config fields: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TimarConfig:
        return dataclasses.replace(self, **changes)


# The paper's presets (backbone only; the rest comes from the run's arguments).
PAPER_PRESETS: dict[str, dict[str, Any]] = {
    "timar_base": dict(width=768, depth=24, num_heads=12),
    "timar_large": dict(width=1024, depth=32, num_heads=16),
    "timar_huge": dict(width=1280, depth=40, num_heads=16),
}

DEFAULT_LOGMEL = dict(n_fft=400, hop=160, n_mels=64, channels=128)

# Small configurations for CPU training and inference, with the weights-free log-mel encoder.
# Dropout on the attention probabilities is off: on CPU it costs ~45% of a training step.
CPU_PRESETS: dict[str, dict[str, Any]] = {
    "timar_cpu_tiny": dict(
        token_dim=64,
        width=64,
        depth=2,
        num_heads=4,
        head_depth=2,
        head_width=64,
        speech_encoder="logmel",
        speech_feature_dim=64,
        logmel=dict(DEFAULT_LOGMEL, channels=64),
        attn_dropout=0.0,
    ),
    "timar_cpu_small": dict(
        token_dim=128,
        width=128,
        depth=4,
        num_heads=4,
        head_depth=3,
        head_width=128,
        speech_encoder="logmel",
        speech_feature_dim=128,
        logmel=dict(DEFAULT_LOGMEL),
        attn_dropout=0.0,
    ),
    "timar_cpu_medium": dict(
        token_dim=192,
        width=192,
        depth=6,
        num_heads=6,
        head_depth=3,
        head_width=192,
        speech_encoder="logmel",
        speech_feature_dim=192,
        logmel=dict(DEFAULT_LOGMEL, channels=192),
        attn_dropout=0.0,
    ),
}

# the size chosen for the bundled model: under 20 ms per turn at n = 7 in the engine on 2 cores
# (measured 17.3 ms median, 18.8 ms p95; 1.38 M parameters, 6.7 MB bundle). Depth 4 measured 26 ms.
CPU_PRESETS["timar_cpu_bundle"] = dict(CPU_PRESETS["timar_cpu_small"], depth=3)
# model v2: the bundle's size with turn-relative positions (cacheable backbone, issue 15) and
# normalised motion (issue 16)
CPU_PRESETS["timar_cpu_v2"] = dict(
    CPU_PRESETS["timar_cpu_bundle"], position="turn_relative", motion_norm=True, mask_scheme="mixed"
)
# ... and a level-preserving, causal audio path (issue 11): raw samples, log-mel standardised by fixed
# speech statistics instead of per frame, trained with +-6 dB gain jitter per track
CPU_PRESETS["timar_cpu_v2"].update(audio_normalization="none", logmel_frame_norm=False, audio_gain_jitter_db=6.0)
# model v3: v2 whose upper layers reach 2 turns back (the first layer all 7), so a turn at full context
# costs little more than one at the start (issue 15)
CPU_PRESETS["timar_cpu_v3"] = dict(CPU_PRESETS["timar_cpu_v2"], layer_bands=(7, 2, 2))

# Paper-run settings that differ from the dataclass defaults when a preset is named.
_PAPER_RUN = dict(token_dim=1024, speech_feature_dim=1024, head_depth=3, head_width=1024)


def preset(name: str, **overrides: Any) -> TimarConfig:
    if name in PAPER_PRESETS:
        return TimarConfig(**{**_PAPER_RUN, **PAPER_PRESETS[name], **overrides})
    if name in CPU_PRESETS:
        return TimarConfig(**{**CPU_PRESETS[name], **overrides})
    raise KeyError(f"unknown preset {name!r}; known: {sorted(PAPER_PRESETS) + sorted(CPU_PRESETS)}")


PRESET_NAMES = tuple(PAPER_PRESETS) + tuple(CPU_PRESETS)

# official argparse field -> our field
_ARG_FIELDS = {
    "motion_embed_dim": "motion_dim",
    "motion_fps": "motion_fps",
    "speech_frequency": "speech_rate",
    "chunk_second": "turn_seconds",
    "max_context_time": "max_context_time",
    "token_embed_dim": "token_dim",
    "speech_snippet_embed_dim": "speech_feature_dim",
    "encoder_embed_dim": "width",
    "encoder_num_heads": "num_heads",
    "use_causal_attn": "turn_causal",
    "diffloss_d": "head_depth",
    "diffloss_w": "head_width",
    "noise_schedule": "noise_schedule",
    "num_sampling_steps": "sampling_steps",
    "diffusion_batch_mul": "diffusion_batch_mul",
    "use_kl": "use_kl",
    "rescale_learned_sigmas": "rescale_learned_sigmas",
    "mask_ratio_min": "mask_ratio_min",
    "cond_drop_prob": "cond_drop_prob",
    "attn_dropout": "attn_dropout",
    "proj_dropout": "proj_dropout",
}

# official options this implementation does not provide, with the value it requires
_REQUIRED_ARGS = {
    "use_encoder_only": True,  # the MAE encoder-decoder variant is an ablation, not the released model
    "use_mseloss": False,  # the MLP-head ablation
    "epsilon_pred": False,  # TIMAR predicts x0
    "clip_denoised": False,
}


def config_from_official_args(args: Any, fallback_preset: str | None = None) -> tuple[TimarConfig, list[str]]:
    """Config from an official checkpoint's ``args`` namespace.

    The preset named in ``args.model`` (or ``fallback_preset``) gives the backbone; explicit
    per-layer fields override it. Returns the config and the list of fields that were not given.
    """
    a = vars(args) if not isinstance(args, dict) else dict(args)
    for key, required in _REQUIRED_ARGS.items():
        if key in a and a[key] is not None and bool(a[key]) != required:
            raise ValueError(f"checkpoint was trained with {key}={a[key]!r}; only {key}={required} is supported")
    name = a.get("model")
    base: dict[str, Any] = {}
    if name in PAPER_PRESETS:
        base.update({**_PAPER_RUN, **PAPER_PRESETS[name]})
    elif fallback_preset is not None:
        base.update({**_PAPER_RUN, **PAPER_PRESETS.get(fallback_preset, {}), **CPU_PRESETS.get(fallback_preset, {})})
    for src, dst in _ARG_FIELDS.items():
        if a.get(src) is not None:
            base[dst] = a[src]
    if a.get("encoder_depth") is not None:
        dec = a.get("decoder_depth") or 0
        base["depth"] = int(a["encoder_depth"]) + int(dec)
    if "sampling_steps" in base:
        base["sampling_steps"] = str(base["sampling_steps"])
    base.setdefault("speech_encoder", "wav2vec2")
    missing = [f for f in ("width", "depth", "num_heads") if f not in base]
    return TimarConfig(**base), missing
