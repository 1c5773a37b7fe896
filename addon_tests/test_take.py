"""engine/take.py: the one post-processing every front end uses. Strength then smoothing, FLAME
rigs keyed with the motion itself, ARKit rigs through retarget + blinks + preset + head bone; and
live display (rows computed on the frames so far) equal to the written take."""

from __future__ import annotations

import numpy as np
import pytest

from timar_blender.engine.arkit import ARKIT_NAMES, blink_track, default_retarget_map, preset_for
from timar_blender.engine.rigmap import ChannelMap, Target
from timar_blender.engine.settings import resolve
from timar_blender.engine.take import ArkitTarget, TakePipeline

FPS = 25.0


def raw_turns(n: int = 6, f: int = 25, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.1, (f, 56)).astype(np.float32) for _ in range(n)]


def arkit_target(blinks: bool = True) -> ArkitTarget:
    preset, _ = preset_for(list(ARKIT_NAMES))
    return ArkitTarget(default_retarget_map(), preset, "head", blinks)


def test_flame_take_is_the_scaled_motion_through_the_rigs_own_map():
    raw = np.ones((30, 56), np.float32)
    cmap = ChannelMap({0: Target("SHAPE_KEY", "Exp001")})
    take = TakePipeline((2.0, 0.5, 0.0), 0.0).take(raw, FPS, 0, cmap)
    assert (take.motion[:, :50] == 2.0).all() and (take.motion[:, 50:53] == 0.5).all()
    assert (take.motion[:, 53:] == 0.0).all()
    np.testing.assert_array_equal(take.values, take.motion)
    assert take.channel_map is cmap


def test_pipeline_from_settings_uses_their_strengths_and_smoothing():
    p = TakePipeline.from_settings(resolve({"strength_head": 0.25, "smoothing": 1.5}))
    assert p.strengths == (1.0, 1.0, 0.25) and p.smoothing == 1.5 and p.smoothing_radius == 4


def test_arkit_columns_follow_the_channel_map():
    target = arkit_target()
    motion = np.concatenate(raw_turns(2))
    values = target.columns(motion, FPS, 3)
    cmap = target.channel_map()
    assert values.shape == (50, len(cmap.targets)) == (50, 52 + 3)
    names = [t.name for _, t in sorted(cmap.targets.items())]
    assert names[:52] == sorted(ARKIT_NAMES) and names[52:] == ["head"] * 3
    np.testing.assert_allclose(values[:, 52:], motion[:, 53:56] - target.retarget.rest[53:56], atol=1e-6)
    blink = blink_track(50, FPS, 3)
    i = names.index("eyeBlinkLeft")
    assert (values[:, i] >= blink - 1e-6).all()  # blinks are drawn over the retargeted lids


def test_blink_tracks_are_prefixes_of_each_other():
    full = blink_track(2000, FPS, 9)
    assert (full > 0.99).sum() >= 10
    for n in (1, 37, 500, 1999):
        np.testing.assert_array_equal(blink_track(n, FPS, 9), full[:n])


@pytest.mark.parametrize("arkit", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 2.0])
def test_live_rows_equal_the_take(arkit, smoothing):
    turns = raw_turns(8)
    p = TakePipeline((1.0, 1.3, 0.7), smoothing, arkit_target() if arkit else None)
    take = p.take(np.concatenate(turns), FPS, 5, ChannelMap())
    r = p.smoothing_radius
    for k in range(len(turns)):
        rows = p.rows_for_turn(turns[: k + 1], FPS, 5)
        f0 = 25 * k
        exact = 25 - r if k < len(turns) - 1 else 25
        np.testing.assert_allclose(rows[:exact], take.values[f0 : f0 + exact], atol=1e-6, err_msg=f"turn {k}")
        if r and k < len(turns) - 1:
            assert not np.allclose(rows[exact:], take.values[f0 + exact : f0 + 25], atol=1e-6)
