"""File exports a game engine or another tool reads, bpy-free: Live Link Face CSV (ARKit-52 + head
rotation) and the raw FLAME-56 motion as NPZ or JSON (with fps and channel names).

Live Link Face CSV is the layout of Epic's Live Link Face app recordings, which Unreal's importers and
many DCC scripts read, matched to a real recording's header byte for byte (addon_tests/test_arkit.py
says which): ``Timecode``, ``BlendShapeCount`` (61), the 52 blendshapes (CamelCase, Apple's ARKit order
except that JawRight comes before JawLeft and MouthRight before MouthLeft), ``HeadYaw/HeadPitch/HeadRoll``
(radians) and six eye-rotation columns (0 here: FLAME-56 has no gaze); values with 10 decimals, LF line
ends. The timecode is ``HH:MM:SS:FF.fff`` as the app writes it: frames ``FF`` at the timecode rate (60)
and the fraction of a frame, from a start timecode (the app's is the time of day of the recording).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from .arkit import ARKIT_NAMES
from .contract import CHANNEL_NAMES, MOTION_DIM, NECK
from .curves import rotvec_to_euler_xyz

EYE_COLUMNS = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
_LIVE_LINK_SWAPS = {"jawLeft": "jawRight", "jawRight": "jawLeft", "mouthLeft": "mouthRight", "mouthRight": "mouthLeft"}
# the ARKit channel (index into ARKIT_NAMES) of each blendshape column, in Live Link Face's order
LIVE_LINK_ORDER: tuple[int, ...] = tuple(ARKIT_NAMES.index(_LIVE_LINK_SWAPS.get(n, n)) for n in ARKIT_NAMES)
LIVE_LINK_COLUMNS: tuple[str, ...] = (
    "Timecode",
    "BlendShapeCount",
    *(ARKIT_NAMES[i][0].upper() + ARKIT_NAMES[i][1:] for i in LIVE_LINK_ORDER),
    "HeadYaw",
    "HeadPitch",
    "HeadRoll",
    *EYE_COLUMNS,
)
TIMECODE_RATE = 60  # Live Link Face's timecode frames per second (its recordings count FF up to 59)
FLAME_FORMAT = "timar-flame56"


def head_ypr(motion: np.ndarray, rest_neck: np.ndarray | None = None) -> np.ndarray:
    """(T, 3) head yaw, pitch, roll in radians from FLAME's neck axis-angle (x = pitch/nod, y = yaw,
    z = roll), optionally relative to a rest orientation (subtracted as axis-angle)."""
    neck = np.asarray(motion, np.float64)[:, NECK]
    if rest_neck is not None:
        neck = neck - np.asarray(rest_neck, np.float64)
    e = rotvec_to_euler_xyz(neck)
    return np.stack([e[:, 1], e[:, 0], e[:, 2]], axis=1).astype(np.float32)


def timecode(seconds: float, rate: int = TIMECODE_RATE) -> str:
    """``HH:MM:SS:FF.fff``: frames at ``rate`` and the fraction of a frame (hours wrap at 24)."""
    milli = round(seconds * rate * 1000)  # thousandths of a frame
    frames, frac = divmod(milli, 1000)
    whole, ff = divmod(frames, rate)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h % 24:02d}:{m:02d}:{s:02d}:{ff:02d}.{frac:03d}"


def parse_timecode(text: str, rate: int = TIMECODE_RATE) -> float:
    """Seconds from ``HH:MM:SS:FF`` or ``HH:MM:SS:FF.fff`` (frames at ``rate``); ValueError says why not."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?", text.strip())
    if m is None:
        raise ValueError(f"timecode '{text}': expected HH:MM:SS:FF or HH:MM:SS:FF.fff")
    h, mi, s, ff = (int(g) for g in m.groups()[:4])
    frac = float("0." + m.group(5)) if m.group(5) else 0.0
    if h > 23 or mi > 59 or s > 59 or ff >= rate:
        raise ValueError(f"timecode '{text}': hours < 24, minutes and seconds < 60, frames < {rate} ({rate} fps)")
    return h * 3600 + mi * 60 + s + (ff + frac) / rate


def write_live_link_csv(path: str | Path, arkit: np.ndarray, head: np.ndarray, fps: float,
                        start_timecode: str = "00:00:00:00.000") -> None:
    """``arkit`` (T, 52) in [0, 1] in ARKIT_NAMES order, ``head`` (T, 3) yaw/pitch/roll radians, one row
    per frame at ``fps``; the first row's timecode is ``start_timecode``."""
    arkit = np.asarray(arkit, np.float64)
    head = np.asarray(head, np.float64)
    if arkit.ndim != 2 or arkit.shape[1] != len(ARKIT_NAMES):
        raise ValueError(f"ARKit weights must be (frames, 52), got {arkit.shape}")
    if head.shape != (len(arkit), 3):
        raise ValueError(f"head rotation must be ({len(arkit)}, 3), got {head.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    start = parse_timecode(start_timecode)
    count = len(LIVE_LINK_COLUMNS) - 2
    values = np.concatenate([arkit[:, LIVE_LINK_ORDER], head, np.zeros((len(arkit), len(EYE_COLUMNS)))], axis=1)
    with open(path, "w", newline="") as fh:
        fh.write(",".join(LIVE_LINK_COLUMNS) + "\n")
        for i, row in enumerate(values):
            fh.write(f"{timecode(start + i / fps)},{count}," + ",".join(f"{v:.10f}" for v in row) + "\n")


def read_live_link_csv(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Header and (T, 61) values of a Live Link Face CSV (blendshapes, head, eyes), columns as in the
    file (``arkit_columns`` puts the blendshapes in ARKIT_NAMES order)."""
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


def arkit_columns(header: list[str], values: np.ndarray) -> np.ndarray:
    """(T, 52) blendshape values of a read Live Link Face CSV in ARKIT_NAMES order."""
    col = {name.lower(): i - 2 for i, name in enumerate(header)}
    return np.stack([values[:, col[n.lower()]] for n in ARKIT_NAMES], axis=1)


def write_flame(path: str | Path, motion: np.ndarray, fps: float) -> None:
    """Raw FLAME-56 motion: ``.npz`` (arrays) or ``.json`` (lists), with fps and channel names."""
    path = Path(path)
    motion = np.asarray(motion, np.float32)
    if motion.ndim != 2 or motion.shape[1] != MOTION_DIM:
        raise ValueError(f"FLAME motion must be (frames, {MOTION_DIM}), got {motion.shape}")
    names = list(CHANNEL_NAMES)
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
