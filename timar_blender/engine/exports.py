"""File exports a game engine or another tool reads, bpy-free: Live Link Face CSV (ARKit-52 + head
rotation) and the raw FLAME-56 motion as NPZ or JSON (with fps and channel names).

Live Link Face CSV is the layout of Epic's Live Link Face app recordings, which Unreal's importers and
many DCC scripts read: ``Timecode`` (``HH:MM:SS:FF.mmm``), ``BlendShapeCount`` (61), the 52 blendshapes
in ARKit order (CamelCase), ``HeadYaw/HeadPitch/HeadRoll`` (radians) and six eye-rotation columns
(0 here: FLAME-56 has no gaze).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .arkit import ARKIT_NAMES
from .bundle import CHANNEL_NAMES
from .curves import rotvec_to_euler_xyz

EYE_COLUMNS = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
LIVE_LINK_COLUMNS: tuple[str, ...] = (
    "Timecode",
    "BlendShapeCount",
    *(n[0].upper() + n[1:] for n in ARKIT_NAMES),
    "HeadYaw",
    "HeadPitch",
    "HeadRoll",
    *EYE_COLUMNS,
)
FLAME_FORMAT = "timar-flame56"


def head_ypr(motion: np.ndarray, rest_neck: np.ndarray | None = None) -> np.ndarray:
    """(T, 3) head yaw, pitch, roll in radians from FLAME's neck axis-angle (x = pitch/nod, y = yaw,
    z = roll), optionally relative to a rest orientation (subtracted as axis-angle)."""
    neck = np.asarray(motion, np.float64)[:, 53:56]
    if rest_neck is not None:
        neck = neck - np.asarray(rest_neck, np.float64)
    e = rotvec_to_euler_xyz(neck)
    return np.stack([e[:, 1], e[:, 0], e[:, 2]], axis=1).astype(np.float32)


def timecode(frame: int, fps: float) -> str:
    whole = max(round(fps), 1)
    s, f = divmod(int(frame), whole)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{f:02d}.000"


def write_live_link_csv(path: str | Path, arkit: np.ndarray, head: np.ndarray, fps: float) -> None:
    """``arkit`` (T, 52) in [0, 1], ``head`` (T, 3) yaw/pitch/roll radians, one row per frame at ``fps``."""
    arkit = np.asarray(arkit, np.float64)
    head = np.asarray(head, np.float64)
    if arkit.ndim != 2 or arkit.shape[1] != len(ARKIT_NAMES):
        raise ValueError(f"ARKit weights must be (frames, 52), got {arkit.shape}")
    if head.shape != (len(arkit), 3):
        raise ValueError(f"head rotation must be ({len(arkit)}, 3), got {head.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    count = len(LIVE_LINK_COLUMNS) - 2
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LIVE_LINK_COLUMNS)
        for i in range(len(arkit)):
            vals = [*arkit[i], *head[i], *([0.0] * len(EYE_COLUMNS))]
            w.writerow([timecode(i, fps), count, *(f"{v:.6f}" for v in vals)])


def read_live_link_csv(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Header and (T, 61) values of a Live Link Face CSV (blendshapes, head, eyes)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0][:2] != ["Timecode", "BlendShapeCount"]:
        raise ValueError(f"{path}: not a Live Link Face CSV (first columns must be Timecode, BlendShapeCount)")
    header = rows[0]
    try:
        values = np.array([[float(v) for v in r[2:]] for r in rows[1:]], np.float64).reshape(len(rows) - 1, -1)
    except ValueError as exc:
        raise ValueError(f"{path}: a value is not a number ({exc})") from exc
    return header, values


def write_flame(path: str | Path, motion: np.ndarray, fps: float) -> None:
    """Raw FLAME-56 motion: ``.npz`` (arrays) or ``.json`` (lists), with fps and channel names."""
    path = Path(path)
    motion = np.asarray(motion, np.float32)
    if motion.ndim != 2 or motion.shape[1] != 56:
        raise ValueError(f"FLAME motion must be (frames, 56), got {motion.shape}")
    names = list(CHANNEL_NAMES[:56])
    layout = "exp[0:50] | jaw[50:53] | neck[53:56]; jaw and neck axis-angle radians"
    if path.suffix.lower() == ".npz":
        np.savez(path, motion=motion, fps=np.float64(fps), channels=np.array(names), layout=np.array(layout))
    elif path.suffix.lower() == ".json":
        data = {"format": FLAME_FORMAT, "version": 1, "fps": float(fps), "channels": names, "layout": layout,
                "frames": motion.round(6).tolist()}
        path.write_text(json.dumps(data))
    else:
        raise ValueError(f"{path}: FLAME export needs a .npz or .json file name")


def read_flame(path: str | Path) -> tuple[np.ndarray, float, list[str]]:
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return z["motion"], float(z["fps"]), [str(c) for c in z["channels"]]
    data = json.loads(path.read_text())
    if data.get("format") != FLAME_FORMAT:
        raise ValueError(f"{path}: not a FLAME-56 export (format {data.get('format')!r})")
    return np.asarray(data["frames"], np.float32), float(data["fps"]), list(data["channels"])
