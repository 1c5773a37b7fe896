"""engine/contract.py: the FLAME-56 layout and DualTalk's file layout, checked against hand-made arrays."""

from __future__ import annotations

import numpy as np

from timar_blender.engine import contract as C


def test_channel_layout():
    assert C.MOTION_DIM == len(C.CHANNEL_NAMES) == 56
    assert C.CHANNEL_NAMES[C.EXPRESSION][-1] == "exp_49"
    assert C.CHANNEL_NAMES[C.JAW] == ("jaw_x", "jaw_y", "jaw_z")
    assert C.CHANNEL_NAMES[C.NECK] == ("neck_x", "neck_y", "neck_z")
    covered = sorted(i for s in C.GROUPS.values() for i in range(s.start, s.stop))
    assert covered == list(range(56))


def test_dualtalk_pose_is_neck_then_jaw():
    exp = np.arange(2 * 100, dtype=np.float32).reshape(2, 100)  # DualTalk stores 100; FLAME-56 uses 50
    pose = np.array([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]], np.float32)
    m = C.motion_from_dualtalk(exp, pose)
    assert m.shape == (2, 56) and m.dtype == np.float32
    np.testing.assert_array_equal(m[:, :50], exp[:, :50])
    np.testing.assert_array_equal(m[0, 50:53], [4, 5, 6])  # jaw = pose[:, 3:6]
    np.testing.assert_array_equal(m[0, 53:56], [1, 2, 3])  # neck = pose[:, 0:3]
    e2, p2 = C.dualtalk_from_motion(m)
    np.testing.assert_array_equal(e2, exp[:, :50])
    np.testing.assert_array_equal(p2, pose)


def test_model_info_rates():
    info = C.ModelInfo(motion_dim=56, frames_per_turn=25, samples_per_turn=16000, token_dim=8, max_context_turns=8)
    assert info.fps == C.FPS and info.speech_rate == C.SPEECH_RATE
