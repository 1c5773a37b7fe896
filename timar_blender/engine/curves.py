"""From model frames to animation curves (bpy-free): strength per channel group, optional
smoothing, resampling from the model's frame rate to the scene's, and rotation conversions."""

from __future__ import annotations

import numpy as np

from .contract import EXPRESSION, JAW, NECK


def apply_strengths(motion: np.ndarray, expression: float = 1.0, jaw: float = 1.0, head: float = 1.0) -> np.ndarray:
    """Scale each channel group (0 = off, 1 = as generated)."""
    out = np.array(motion, dtype=np.float32, copy=True)
    out[:, EXPRESSION] *= expression
    out[:, JAW] *= jaw
    out[:, NECK] *= head
    return out


def smoothing_radius(sigma_frames: float) -> int:
    """Frames on each side a smoothed frame depends on (0 without smoothing)."""
    return max(1, round(3 * sigma_frames)) if sigma_frames > 0 else 0


def smooth(motion: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing along time (edges padded by reflection); sigma 0 returns a copy. Sigma
    outside the smoothing option's range raises SettingsError."""
    from .settings import OPTIONS

    sigma_frames = OPTIONS["smoothing"].check(sigma_frames)
    motion = np.asarray(motion, dtype=np.float32)
    if sigma_frames <= 0 or len(motion) < 2:
        return motion.copy()
    radius = smoothing_radius(sigma_frames)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma_frames) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(motion, ((radius, radius), (0, 0)), mode="reflect" if len(motion) > radius else "edge")
    out = np.empty_like(motion)
    for c in range(motion.shape[1]):
        out[:, c] = np.convolve(padded[:, c], kernel, mode="valid")
    return out


def resample(motion: np.ndarray, src_fps: float, dst_fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Values at every destination frame covering the motion's duration, by linear interpolation.

    Returns (frame offsets from the start, (N, C) values). Equal rates return the input as is.
    """
    motion = np.asarray(motion, dtype=np.float32)
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError("frame rates must be positive")
    n_src = len(motion)
    if abs(src_fps - dst_fps) < 1e-9:
        return np.arange(n_src, dtype=np.float64), motion.copy()
    duration = (n_src - 1) / src_fps
    n_dst = int(np.floor(duration * dst_fps + 1e-6)) + 1
    t_dst = np.arange(n_dst) / dst_fps
    t_src = np.arange(n_src) / src_fps
    values = np.stack([np.interp(t_dst, t_src, motion[:, c]) for c in range(motion.shape[1])], axis=1)
    return np.arange(n_dst, dtype=np.float64), values.astype(np.float32)


def rotvec_to_quaternion(rotvec: np.ndarray) -> np.ndarray:
    """(N, 3) axis-angle -> (N, 4) unit quaternions (w, x, y, z), stable near zero."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = np.linalg.norm(rotvec, axis=1)
    half = angle / 2
    # sin(half)/angle -> 1/2 as angle -> 0
    k = np.where(angle > 1e-8, np.sin(half) / np.maximum(angle, 1e-12), 0.5 - angle**2 / 48)
    q = np.concatenate([np.cos(half)[:, None], rotvec * k[:, None]], axis=1)
    # keep consecutive quaternions on one hemisphere so interpolation takes the short way
    for i in range(1, len(q)):
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    return q.astype(np.float32)


def rotvec_to_euler_xyz(rotvec: np.ndarray) -> np.ndarray:
    """(N, 3) axis-angle -> (N, 3) XYZ Euler angles (Blender's 'XYZ' order)."""
    q = rotvec_to_quaternion(rotvec).astype(np.float64)
    w, x, y, z = q.T
    ex = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    ey = np.arcsin(np.clip(2 * (w * y - z * x), -1, 1))
    ez = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.stack([ex, ey, ez], axis=1).astype(np.float32)
