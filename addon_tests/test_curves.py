"""engine/curves.py on its own: strength per channel group, Gaussian smoothing (and its bounds),
resampling to the scene's rate, and axis-angle -> quaternion / Euler, against values worked out
independently (hand-made arrays, the Gaussian's analytic peak, Rodrigues' rotation matrices)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from timar_blender.engine.curves import (
    apply_strengths,
    resample,
    rotvec_to_euler_xyz,
    rotvec_to_quaternion,
    smooth,
    smoothing_radius,
)
from timar_blender.engine.settings import SettingsError


def test_strengths_scale_each_group_only():
    m = np.ones((4, 56), np.float32)
    out = apply_strengths(m, 2.0, 0.5, 0.0)
    assert (out[:, :50] == 2.0).all() and (out[:, 50:53] == 0.5).all() and (out[:, 53:] == 0.0).all()
    assert (m == 1.0).all()  # the input is not modified


def test_smoothing_keeps_constants_and_lines_and_spreads_an_impulse_as_a_gaussian():
    assert smoothing_radius(0.0) == 0 and smoothing_radius(0.1) == 1 and smoothing_radius(2.0) == 6
    const = np.full((40, 56), 0.3, np.float32)
    np.testing.assert_allclose(smooth(const, 2.0), const, atol=1e-6)  # reflection at both edges
    ramp = np.repeat(np.arange(40, dtype=np.float32)[:, None], 56, 1)
    np.testing.assert_allclose(smooth(ramp, 2.0)[6:-6], ramp[6:-6], atol=1e-4)  # symmetric kernel
    impulse = np.zeros((41, 56), np.float32)
    impulse[20] = 1.0
    out = smooth(impulse, 2.0)[:, 0]
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(out[20 - 6 : 20 + 7], out[20 - 6 : 20 + 7][::-1], atol=1e-7)
    # truncated at 3 sigma and renormalised: the peak is 1 / (sigma sqrt(2 pi)) / 0.9973 (within 1 %)
    assert out[20] == pytest.approx(1 / (2.0 * math.sqrt(2 * math.pi)) / 0.9973, rel=0.01)
    assert out[20 + 7] == 0.0 and out[20 - 7] == 0.0  # nothing beyond the radius
    np.testing.assert_array_equal(smooth(impulse, 0.0), impulse)


@pytest.mark.parametrize("sigma", [1e6, -1.0, math.nan, math.inf])
def test_smoothing_outside_its_range_is_refused(sigma):
    with pytest.raises(SettingsError, match="smoothing"):
        smooth(np.zeros((10, 56), np.float32), sigma)


def test_resample_is_linear_interpolation_at_the_destination_frames():
    ramp = np.arange(26, dtype=np.float32)[:, None] / 25.0  # value = time in seconds, 1 s at 25 fps
    frames, same = resample(ramp, 25.0, 25.0)
    np.testing.assert_array_equal(frames, np.arange(26))
    np.testing.assert_array_equal(same, ramp)
    frames, v = resample(ramp, 25.0, 24.0)
    assert len(frames) == 25  # 0 .. 1 s at 24 fps: 25 frames
    np.testing.assert_allclose(v[:, 0], frames / 24.0, atol=1e-6)
    frames, v = resample(ramp, 25.0, 60.0)
    assert len(frames) == 61 and v[-1, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        resample(ramp, 25.0, 0.0)


def _rodrigues(rv: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(rv)
    if angle < 1e-12:
        return np.eye(3)
    k = rv / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def _euler_xyz_matrix(e: np.ndarray) -> np.ndarray:
    (cx, cy, cz), (sx, sy, sz) = np.cos(e), np.sin(e)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx  # Blender's XYZ Euler: X applied first


def test_axis_angle_to_quaternion_and_euler():
    q = rotvec_to_quaternion(np.array([[0.0, 0.0, math.pi / 2], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(q, [[math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)], [1, 0, 0, 0]], atol=1e-6)
    rng = np.random.default_rng(0)
    rv = rng.normal(0, 0.4, (50, 3))
    e = rotvec_to_euler_xyz(rv)
    for r, eu in zip(rv, e):
        np.testing.assert_allclose(_euler_xyz_matrix(eu), _rodrigues(r), atol=1e-5)
    # consecutive quaternions stay on one hemisphere (a turn through pi is not flipped half way)
    path = np.array([[0.0, 0.0, a] for a in np.linspace(3.0, 3.3, 7)])
    path = np.where(np.linalg.norm(path, axis=1, keepdims=True) > math.pi,
                    path - 2 * math.pi * path / np.linalg.norm(path, axis=1, keepdims=True), path)
    qs = rotvec_to_quaternion(path)
    assert (np.sum(qs[1:] * qs[:-1], axis=1) > 0).all()
