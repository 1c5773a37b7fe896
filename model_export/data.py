"""DualTalk-format conversations: reading, checking, and cutting into training windows.

A folder holds ``<clip>_speaker1.{wav,npz}`` and ``<clip>_speaker2.{wav,npz}``. Every
conversation is used in both directions (user = one speaker, agent = the other), and every full
window of ``window_turns`` seconds is a sample (the released loader kept only the last window of
each file; this one keeps them all). Problems raise ``DataError`` naming the file; anything
skipped is counted in the log.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from timar_blender.engine.audio import AudioError, load_audio, normalize_per_file
from timar_blender.engine.contract import EXPRESSION_DIM, motion_from_dualtalk

log = logging.getLogger(__name__)

MOTION_DIM = 56
SPEAKERS = ("speaker1", "speaker2")
_NAME = re.compile(r"^(?P<clip>.+)_(?P<spk>speaker[12])\.(?P<ext>wav|npz)$")


class DataError(ValueError):
    """A conversation file that cannot be used; the message names the file."""


def load_flame56(path: str | Path) -> np.ndarray:
    """(T, 56) FLAME-56 motion of a DualTalk .npz (layout: ``engine/contract.py``), float32."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: motion file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: motion file is empty (0 bytes)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "exp" not in z or "pose" not in z:
                raise DataError(f"{path}: needs arrays 'exp' and 'pose', has {sorted(z.files)}")
            exp, pose = np.asarray(z["exp"]), np.asarray(z["pose"])
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read motion ({type(exc).__name__}: {exc})") from exc
    if exp.ndim != 2 or exp.shape[1] < EXPRESSION_DIM or pose.ndim != 2 or pose.shape[1] != 6 or len(exp) != len(pose):
        raise DataError(f"{path}: expected exp (T, 50) and pose (T, 6), got {exp.shape} and {pose.shape}")
    if len(exp) == 0:
        raise DataError(f"{path}: motion holds no frames")
    motion = motion_from_dualtalk(exp, pose)
    if not np.isfinite(motion).all():
        raise DataError(f"{path}: motion holds NaN or infinite values")
    return motion


@dataclass
class Direction:
    """One conversation seen from one side: the agent is the speaker we animate."""

    name: str  # the agent's file stem, e.g. "<clip>_speaker2"
    user_wav: Path
    agent_wav: Path
    agent_npz: Path | None
    user_npz: Path | None


@dataclass
class ScanReport:
    directions: list[Direction]
    skipped: Counter = field(default_factory=Counter)  # what was left out, by reason
    notes: Counter = field(default_factory=Counter)  # what was kept with a caveat

    def summary(self) -> str:
        parts = [f"{len(self.directions)} directions"]
        parts += [f"{n} {why}" for why, n in sorted(self.notes.items())]
        parts += [f"{n} skipped: {why}" for why, n in sorted(self.skipped.items())]
        return "; ".join(parts)


def scan_folder(
    folder: str | Path, *, require_agent_motion: bool = True, allow_missing_motion: bool = False
) -> ScanReport:
    """Find every conversation direction in a DualTalk-format folder.

    Both speakers' audio is required. A missing ``.npz`` is an error unless
    ``allow_missing_motion``: then a direction without agent motion is skipped (counted) when
    ``require_agent_motion``, and a missing user motion means the user's motion is unknown.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found")
    clips: dict[str, dict[tuple[str, str], Path]] = {}
    ignored = 0
    for p in sorted(folder.iterdir()):
        m = _NAME.match(p.name)
        if m is None:
            ignored += 1
            continue
        clips.setdefault(m["clip"], {})[(m["spk"], m["ext"])] = p
    if not clips:
        raise DataError(f"{folder}: no <clip>_speaker1/2 .wav/.npz files")
    report = ScanReport([])
    if ignored:
        report.skipped["entries not named <clip>_speaker{1,2}.{wav,npz}"] += ignored
    for clip, files in sorted(clips.items()):
        for spk in SPEAKERS:
            if (spk, "wav") not in files:
                raise DataError(f"{folder / f'{clip}_{spk}.wav'}: missing audio of {clip}")
        for agent, user in (SPEAKERS, SPEAKERS[::-1]):
            a_npz, u_npz = files.get((agent, "npz")), files.get((user, "npz"))
            for spk, npz in ((agent, a_npz), (user, u_npz)):
                if npz is None and not allow_missing_motion:
                    raise DataError(f"{folder / f'{clip}_{spk}.npz'}: missing motion of {clip}")
            if a_npz is None and require_agent_motion:
                report.skipped["directions whose agent has no motion"] += 1
                continue
            if u_npz is None:
                report.notes["directions without user motion (user tokens = fake_latent)"] += 1
            report.directions.append(
                Direction(f"{clip}_{agent}", files[(user, "wav")], files[(agent, "wav")], a_npz, u_npz)
            )
    log.info("%s: %s", folder, report.summary())
    return report


@dataclass
class Conversation:
    """A direction's loaded data: 16 kHz audio (normalised as the model hears it) and FLAME-56 motion."""

    direction: Direction
    user_audio: np.ndarray
    agent_audio: np.ndarray
    agent_motion: np.ndarray | None
    user_motion: np.ndarray | None

    @property
    def name(self) -> str:
        return self.direction.name


# DualTalk's audio was cut to whole AAC frames (1024 samples = 1.6 motion frames at 16 kHz / 25 fps),
# so its real clips disagree with their motion by up to 1.6 frames; more than 2 is a real mismatch.
LENGTH_TOLERANCE_FRAMES = 2.0


def _check_length(wav: Path, n_samples: int, npz: Path, n_frames: int, fps: int, rate: int) -> None:
    expected = n_samples * fps / rate
    if abs(expected - n_frames) > LENGTH_TOLERANCE_FRAMES:
        raise DataError(
            f"{npz}: {n_frames} motion frames but {wav.name} lasts {n_samples / rate:.2f} s "
            f"({expected:.1f} frames at {fps} fps)"
        )


def load_conversation(
    d: Direction, fps: int = 25, rate: int = 16_000, normalize: bool | str = True
) -> Conversation:
    """``normalize``: the model's ``audio_normalization`` — "file" (or True: each track to zero mean /
    unit variance over the file) or "none" (or False: the samples as recorded)."""
    if normalize not in (True, False, "file", "none"):
        raise ValueError(f"normalize must be 'file', 'none', True or False, got {normalize!r}")
    try:
        ua, aa = load_audio(d.user_wav, target_rate=rate), load_audio(d.agent_wav, target_rate=rate)
    except AudioError as exc:
        raise DataError(str(exc)) from exc
    if abs(len(ua) - len(aa)) * fps / rate > LENGTH_TOLERANCE_FRAMES:
        raise DataError(
            f"{d.agent_wav}: lasts {len(aa) / rate:.2f} s but its partner {d.user_wav.name} "
            f"lasts {len(ua) / rate:.2f} s"
        )
    am = load_flame56(d.agent_npz) if d.agent_npz else None
    um = load_flame56(d.user_npz) if d.user_npz else None
    if am is not None:
        _check_length(d.agent_wav, len(aa), d.agent_npz, len(am), fps, rate)
    if um is not None:
        _check_length(d.user_wav, len(ua), d.user_npz, len(um), fps, rate)
    if normalize in (True, "file"):
        ua, aa = normalize_per_file(ua), normalize_per_file(aa)
    return Conversation(d, ua, aa, am, um)


def whole_turns(conv: Conversation, samples_per_turn: int, frames_per_turn: int) -> int:
    n = min(len(conv.user_audio), len(conv.agent_audio)) // samples_per_turn
    for m in (conv.agent_motion, conv.user_motion):
        if m is not None:
            n = min(n, len(m) // frames_per_turn)
    return n


class WindowDataset(torch.utils.data.Dataset):
    """Every ``window_turns``-second window of every direction, with speech features precomputed.

    Speech features come from the model's fixed speech encoder (wav2vec2 or log-mel), run once
    per 1-s chunk of each file and cached in memory as float16; the model's trainable layers run
    in the training step.
    """

    def __init__(
        self,
        conversations: list[Conversation],
        speech_features: torch.nn.Module,
        *,
        samples_per_turn: int,
        frames_per_turn: int,
        window_turns: int,
        stride_turns: int | None = None,
        batch_chunks: int = 64,
    ) -> None:
        self.window, self.stride = window_turns, stride_turns or window_turns
        self.f, self.s = frames_per_turn, samples_per_turn
        self.items: list[tuple[int, int]] = []  # (conversation index, first turn)
        self.features: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.convs = conversations
        cache: dict[Path, torch.Tensor] = {}
        too_short = 0
        for ci, conv in enumerate(conversations):
            if conv.agent_motion is None:
                raise DataError(f"{conv.direction.agent_wav}: a training direction needs agent motion")
            n = whole_turns(conv, samples_per_turn, frames_per_turn)
            starts = list(range(0, n - window_turns + 1, self.stride))
            if not starts:
                too_short += 1
            pair = []
            for wav, audio in (
                (conv.direction.user_wav, conv.user_audio),
                (conv.direction.agent_wav, conv.agent_audio),
            ):
                if wav not in cache:
                    cache[wav] = self._encode(speech_features, audio, n, batch_chunks)
                pair.append(cache[wav][:n])
            self.features.append((pair[0], pair[1]))
            self.items += [(ci, s) for s in starts]
        if too_short:
            log.info("%d directions shorter than one %d-s window skipped", too_short, window_turns)
        log.info("%d windows of %d s from %d directions", len(self.items), window_turns, len(conversations))

    def _encode(self, feats: torch.nn.Module, audio: np.ndarray, n: int, batch: int) -> torch.Tensor:
        chunks = torch.from_numpy(np.ascontiguousarray(audio[: n * self.s].reshape(n, self.s)))
        with torch.no_grad():
            out = [feats(chunks[i : i + batch]) for i in range(0, n, batch)]
        return torch.cat(out).to(torch.float16) if out else torch.zeros(0)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ci, start = self.items[i]
        conv = self.convs[ci]
        us, as_ = self.features[ci]
        t0, t1 = start, start + self.window
        f0, f1 = t0 * self.f, t1 * self.f
        present = conv.user_motion is not None
        um = conv.user_motion[f0:f1] if present else np.zeros((f1 - f0, MOTION_DIM), np.float32)
        return {
            "user_speech": us[t0:t1].float(),
            "agent_speech": as_[t0:t1].float(),
            "user_motion": torch.from_numpy(np.ascontiguousarray(um)),
            "agent_motion": torch.from_numpy(np.ascontiguousarray(conv.agent_motion[f0:f1])),
            "user_motion_present": torch.tensor(present),
        }
