"""A take's post-processing, defined once (bpy-free): the model's FLAME-56 frames -> strength per
channel group -> smoothing -> the values a rig is keyed with (FLAME rigs: the motion itself through
their channel map; ARKit rigs: the retarget map, natural blinks, the mapping preset and the head
bone's rotation). Generate, headless, live mode (display and the take written on Stop) and the
exports all call it, so what is shown, keyed and exported cannot differ.

Live display computes a turn's rows from the frames so far with ``TakePipeline.rows_for_turn``: the
same function over a prefix of the take. Every row equals the written take's, except, with
smoothing on, the last ``smoothing_radius`` rows of each turn (their smoothing window reaches into
frames that do not exist yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .arkit import ARKIT_NAMES, MappingPreset, RetargetMap, blink_track
from .curves import apply_strengths, smooth, smoothing_radius
from .rigmap import ChannelMap, Target

BLINKS = ("eyeBlinkLeft", "eyeBlinkRight")


def arkit_weights(retarget: RetargetMap, motion: np.ndarray, fps: float, seed: int, blinks: bool,
                  first: int = 0) -> np.ndarray:
    """(T, 52) ARKit weights of FLAME frames ``first ..`` of a take, with natural blinks (seeded per
    take, placed by absolute frame, so a prefix of a take gets the take's own blinks) when asked for."""
    w = retarget.apply(motion)
    if blinks:
        blink = blink_track(first + len(w), fps, seed)[first:]
        for name in BLINKS:
            i = ARKIT_NAMES.index(name)
            w[:, i] = np.maximum(w[:, i], blink)
    return w


@dataclass(frozen=True)
class ArkitTarget:
    """How FLAME motion reaches one ARKit rig: retarget map, mapping preset, head bone, blinks."""

    retarget: RetargetMap
    preset: MappingPreset
    head_bone: str | None
    blinks: bool = True

    def weights(self, motion: np.ndarray, fps: float, seed: int, first: int = 0) -> np.ndarray:
        return arkit_weights(self.retarget, motion, fps, seed, self.blinks, first)

    def channel_map(self) -> ChannelMap:
        """Columns of ``columns``: one per driven shape key (sorted), then the head bone's rotation vector."""
        cmap = ChannelMap()
        for name in sorted(s.target for s in self.preset.channels.values()):
            cmap.targets[len(cmap.targets)] = Target("SHAPE_KEY", name)
        if self.head_bone is not None:
            for _ in range(3):
                cmap.targets[len(cmap.targets)] = Target("BONE", self.head_bone)
        return cmap

    def columns(self, motion: np.ndarray, fps: float, seed: int, first: int = 0) -> np.ndarray:
        """The values to key, in ``channel_map()`` order."""
        per_key = self.preset.apply(self.weights(motion, fps, seed, first))
        cols = [per_key[name] for name in sorted(per_key)]
        if self.head_bone is not None:
            rot = self.retarget.head(motion)
            cols += [rot[:, c] for c in range(3)]
        return np.stack(cols, axis=1).astype(np.float32) if cols else np.zeros((len(motion), 0), np.float32)


@dataclass(frozen=True)
class Take:
    """A take ready to key: the FLAME motion after strength and smoothing (what exports read back),
    the rig's values and the map that says what each column drives."""

    motion: np.ndarray  # (T, 56) at the model's fps
    values: np.ndarray  # (T, K)
    channel_map: ChannelMap


@dataclass(frozen=True)
class TakePipeline:
    strengths: tuple[float, float, float] = (1.0, 1.0, 1.0)  # expression, jaw, head
    smoothing: float = 0.0  # Gaussian sigma in model frames
    arkit: ArkitTarget | None = None  # None: a FLAME rig keyed through its own channel map

    @classmethod
    def from_settings(cls, settings, arkit: ArkitTarget | None = None) -> TakePipeline:
        """From a ``settings.Settings`` (its strengths and smoothing, already range-checked)."""
        return cls(tuple(settings.strengths), float(settings.smoothing), arkit)

    @property
    def smoothing_radius(self) -> int:
        return smoothing_radius(self.smoothing)

    def motion(self, raw: np.ndarray) -> np.ndarray:
        """The model's frames after strength and smoothing."""
        return smooth(apply_strengths(raw, *self.strengths), self.smoothing)

    def channel_map(self, flame_map: ChannelMap | None) -> ChannelMap:
        return self.arkit.channel_map() if self.arkit is not None else flame_map

    def values(self, motion: np.ndarray, fps: float, seed: int, first: int = 0) -> np.ndarray:
        """Rig values of post-processed frames ``first ..`` of a take."""
        if self.arkit is None:
            return np.asarray(motion, np.float32)
        return self.arkit.columns(motion, fps, seed, first)

    def take(self, raw: np.ndarray, fps: float, seed: int, flame_map: ChannelMap | None = None) -> Take:
        """A whole take (``seed``: the take's, for its blinks)."""
        motion = self.motion(raw)
        return Take(motion, self.values(motion, fps, seed), self.channel_map(flame_map))

    def rows_for_turn(self, turns: Sequence[np.ndarray], fps: float, seed: int) -> np.ndarray:
        """The rig values of the newest turn's frames, given every turn's raw frames so far (live
        display): the take's own rows, computed on the frames known now."""
        start = sum(len(t) for t in turns[:-1])
        need = self.smoothing_radius  # left context the smoothing reads
        k, first = len(turns) - 1, start
        while k > 0 and start - first < need:
            k -= 1
            first -= len(turns[k])
        motion = self.motion(np.concatenate(list(turns[k:])))
        return self.values(motion[start - first :], fps, seed, start)
