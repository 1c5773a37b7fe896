"""Which part of a character each of the 56 FLAME channels drives (bpy-free matching rules).

A FLAME rig has 50 expression shape keys and jaw / neck bones. Names vary between exporters, so
matching is tolerant: case, separators and zero padding are ignored, and the numbering may start
at 0 (``exp_00``..``exp_49``) or at 1 (``Exp001``..``Exp050``, the FLAME Blender add-on's). Jaw and
neck are bones (axis-angle -> the bone's rotation) or, where a rig has them, shape keys (``jaw_open``
driven by the jaw's opening angle). Whatever matches nothing is reported, never dropped in silence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .contract import EXPRESSION_DIM as EXP_CHANNELS
from .contract import JAW, NECK

JAW_CHANNELS = tuple(range(JAW.start, JAW.stop))
NECK_CHANNELS = tuple(range(NECK.start, NECK.stop))

_EXP = re.compile(r"^(?:flame)?(?:exp|expr|expression)(\d+)$")
JAW_BONE_NAMES = ("jaw",)
NECK_BONE_NAMES = ("neck", "head")  # DualTalk's "neck" rotation behaves as global head rotation
JAW_SHAPE_NAMES = ("jawopen", "jaw", "mouthopen")
JAW_OPEN_GAIN = 1 / 0.35  # ~20 degrees of jaw rotation = a fully open jaw shape key


def normalize(name: str) -> str:
    """Lower case, letters and digits only, prefixes like ``DEF-`` / ``mixamorig:`` removed."""
    name = name.split(":")[-1]
    name = re.sub(r"^(def|org|mch)[-_.]", "", name, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class Target:
    """One channel's destination: a shape key's value, or one component of a bone's rotation."""

    kind: str  # "SHAPE_KEY" or "BONE"
    name: str  # shape key or bone name, exactly as in the rig
    gain: float = 1.0  # value multiplier (a sign flip is a negative gain)


@dataclass
class ChannelMap:
    targets: dict[int, Target] = field(default_factory=dict)  # channel index -> target
    unmatched: list[int] = field(default_factory=list)  # channels with no target

    def bones(self) -> dict[str, list[int]]:
        """Bone name -> the (3) channels whose rotation vector drives it."""
        out: dict[str, list[int]] = {}
        for ch, t in sorted(self.targets.items()):
            if t.kind == "BONE":
                out.setdefault(t.name, []).append(ch)
        return out


def expression_keys(shape_keys: list[str]) -> dict[int, str]:
    """Channel 0..49 -> shape key name, for a 0- or 1-based numbering."""
    numbered: dict[int, str] = {}
    for name in shape_keys:
        m = _EXP.match(normalize(name))
        if m:
            numbered.setdefault(int(m.group(1)), name)
    if not numbered:
        return {}
    base = 0 if 0 in numbered else 1
    return {n - base: name for n, name in numbered.items() if 0 <= n - base < EXP_CHANNELS}


def _find(names: list[str], wanted: tuple[str, ...]) -> str | None:
    by_norm = {normalize(n): n for n in names}
    for w in wanted:
        if w in by_norm:
            return by_norm[w]
    return None


def auto_map(shape_keys: list[str], bones: list[str], channel_names: tuple[str, ...]) -> ChannelMap:
    """The default FLAME mapping for a rig with these shape keys and bones."""
    cmap = ChannelMap()
    for ch, name in expression_keys(shape_keys).items():
        cmap.targets[ch] = Target("SHAPE_KEY", name)
    jaw_bone = _find(bones, JAW_BONE_NAMES)
    neck_bone = _find(bones, NECK_BONE_NAMES)
    if jaw_bone:
        for ch in JAW_CHANNELS:
            cmap.targets[ch] = Target("BONE", jaw_bone)
    else:
        jaw_key = _find(shape_keys, JAW_SHAPE_NAMES)
        if jaw_key:  # only the opening (rotation about x) has a shape-key counterpart
            cmap.targets[JAW_CHANNELS[0]] = Target("SHAPE_KEY", jaw_key, JAW_OPEN_GAIN)
    if neck_bone:
        for ch in NECK_CHANNELS:
            cmap.targets[ch] = Target("BONE", neck_bone)
    cmap.unmatched = [ch for ch in range(len(channel_names)) if ch not in cmap.targets]
    return cmap


def describe_unmatched(cmap: ChannelMap, channel_names: tuple[str, ...]) -> str:
    if not cmap.unmatched:
        return "all channels matched"
    names = [channel_names[c] for c in cmap.unmatched]
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f"{len(names)} channels match nothing on this character: {shown}"
