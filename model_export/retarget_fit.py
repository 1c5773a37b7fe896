"""Fit the default FLAME-56 -> ARKit-52 retarget map from paired poses; writes
``timar_blender/engine/arkit_retarget.json``.

    python -m model_export.retarget_fit [--fold CLIP] [--out PATH]

The FLAME side of every pair is a pose of the bundled model's teacher, built from the calibration
measured on a real DualTalk clip (``corpus/flame_calibration.json``): the neutral listening face, the
talking jaw at its 5th / 50th / 95th percentile with the expression that goes with it (mean + the
measured exp-on-jaw slope), the three measured mouth-shape directions at +/- 2 std, and jaw
side-to-side. The ARKit side is authored to match each pose (an artist's judgement, listed in
``POSES``): the jaw drives jawOpen / mouthLowerDown / mouthClose, the mouth-shape directions are
mapped to rounding (funnel, pucker), spreading (stretch, smile), corners down (frown) and lip roll.
FLAME's expression basis itself is not available here, so the mouth-shape assignments are
informed guesses; a user with the FLAME model can fit a better map and load it in the panel.

The map is linear with a clamp to [0, 1]; it is solved per ARKit channel by least squares under that
bound: a pose whose target is 0 only needs the linear output to be <= 0 (the clamp makes it 0),
so such poses leave the fit once they are satisfied (an active-set loop), plus a small ridge term.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from timar_blender.engine.arkit import ARKIT_NAMES, DEFAULT_MAP, RetargetMap
from timar_blender.engine.contract import EXPRESSION, JAW, MOTION_DIM, NECK

from .corpus.teacher import load_calibration

SHIPPED_FOLD = "xkHwlcDSOjc_sub_video_109_000_speaker1"
RIDGE = 1e-4


def _lr(name: str, v: float) -> dict[str, float]:
    return {f"{name}Left": v, f"{name}Right": v}


# (label, FLAME recipe, ARKit pose). Recipe keys: jaw = talking jaw percentile ("p5".."p95" or "rest"),
# pc = (index, +/- std multiple), jaw_side = rad.
POSES: list[tuple[str, dict, dict[str, float]]] = [
    ("neutral (listening)", {"jaw": "rest"}, {}),
    ("closure p/b/m", {"jaw": "p5"}, {"mouthClose": 0.35, **_lr("mouthPress", 0.45)}),
    ("relaxed speech", {"jaw": "p50"}, {"jawOpen": 0.18, **_lr("mouthLowerDown", 0.08)}),
    ("mid vowel e", {"jaw": "p75"}, {"jawOpen": 0.33, **_lr("mouthLowerDown", 0.18), **_lr("mouthStretch", 0.12)}),
    (
        "open vowel a",
        {"jaw": "p95"},
        {"jawOpen": 0.62, **_lr("mouthLowerDown", 0.38), **_lr("mouthUpperUp", 0.15), **_lr("mouthStretch", 0.08)},
    ),
    ("rounded o/u", {"jaw": "p50", "pc": (0, 2.0)}, {"jawOpen": 0.18, "mouthFunnel": 0.45, "mouthPucker": 0.35}),
    (
        "spread i/ee",
        {"jaw": "p50", "pc": (0, -2.0)},
        {"jawOpen": 0.12, **_lr("mouthStretch", 0.35), **_lr("mouthSmile", 0.2)},
    ),
    ("smile", {"jaw": "rest", "pc": (1, 2.0)}, {**_lr("mouthSmile", 0.5), **_lr("cheekSquint", 0.2)}),
    ("corners down", {"jaw": "rest", "pc": (1, -2.0)}, {**_lr("mouthFrown", 0.4), "mouthShrugLower": 0.2}),
    ("lips rolled in (f/v)", {"jaw": "p25", "pc": (2, 2.0)}, {"mouthRollLower": 0.45, "mouthRollUpper": 0.25}),
    (
        "lips out (sh)",
        {"jaw": "p25", "pc": (2, -2.0)},
        {"mouthShrugUpper": 0.3, "mouthFunnel": 0.25, "mouthPucker": 0.15},
    ),
    ("jaw to the left", {"jaw": "p50", "jaw_side": 0.06}, {"jawOpen": 0.18, "jawLeft": 0.5, "mouthLeft": 0.2}),
    ("jaw to the right", {"jaw": "p50", "jaw_side": -0.06}, {"jawOpen": 0.18, "jawRight": 0.5, "mouthRight": 0.2}),
]


def flame_pose(recipe: dict, st: dict) -> np.ndarray:
    """A FLAME-56 frame of the teacher from a recipe (see POSES)."""
    m = np.zeros(MOTION_DIM)
    exp_mean = np.asarray(st["exp_mean"])
    slope = np.asarray(st["mouth"]["slope"])
    basis, basis_std = np.asarray(st["mouth"]["basis"]), np.asarray(st["mouth"]["basis_std"])
    jx = st["jaw_x"]
    rest_jaw = jx["listen"]["p50"]
    j = rest_jaw if recipe["jaw"] == "rest" else jx["talk"][recipe["jaw"]]
    exp = exp_mean + slope * (j - jx["talk"]["p50"]) * (recipe["jaw"] != "rest")
    if "pc" in recipe:
        k, mult = recipe["pc"]
        exp = exp + basis[k] * basis_std[k] * mult
    m[EXPRESSION] = exp
    m[JAW.start] = j  # jaw_x: opening
    m[JAW.start + 1] = recipe.get("jaw_side", 0.0)
    m[NECK] = st["neck_mean"]
    return m


def rest_pose(st: dict) -> np.ndarray:
    return flame_pose({"jaw": "rest"}, st)


def fit(st: dict) -> tuple[RetargetMap, dict]:
    rest = rest_pose(st)
    X = np.stack([flame_pose(r, st) - rest for _, r, _ in POSES])  # (P, 56)
    A = np.array([[a.get(n, 0.0) for n in ARKIT_NAMES] for _, _, a in POSES])  # (P, 52)
    for _, _, a in POSES:
        unknown = set(a) - set(ARKIT_NAMES)
        if unknown:
            raise ValueError(f"unknown ARKit names in POSES: {sorted(unknown)}")
    Xb = np.concatenate([X, np.ones((len(X), 1))], axis=1)
    W = np.zeros((52, 57))
    for c in range(52):
        active = np.ones(len(X), bool)
        for _ in range(20):  # active set: zero targets whose output is already <= 0 leave the fit
            Xa, ya = Xb[active], A[active, c]
            w = np.linalg.solve(Xa.T @ Xa + RIDGE * np.eye(57), Xa.T @ ya)
            out = Xb @ w
            new = (A[:, c] > 0) | (out > 0)
            if np.array_equal(new, active):
                break
            active = new
        W[c] = w
    rmap = RetargetMap(weights=W[:, :56], bias=W[:, 56], rest=rest)
    pred = rmap.apply(X + rest)
    residual = {label: float(np.abs(pred[i] - A[i]).max()) for i, (label, _, _) in enumerate(POSES)}
    return rmap, residual


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.retarget_fit", description=__doc__.split("\n")[0])
    p.add_argument("--fold", default=SHIPPED_FOLD, help="calibration fold whose teacher poses are used")
    p.add_argument("--out", type=Path, default=DEFAULT_MAP)
    args = p.parse_args(argv)
    calib = load_calibration()
    st = calib["folds"][args.fold]
    rmap, residual = fit(st)
    rmap.source = (
        f"python -m model_export.retarget_fit: {len(POSES)} paired poses (teacher FLAME poses calibrated on "
        f"{args.fold}, ARKit poses authored to match), clamp-aware least squares"
    )
    poses = [{"label": lab, "flame": rec, "arkit": a} for lab, rec, a in POSES]
    rmap.extra = {"poses": poses, "fit_max_error": residual}
    rmap.save(args.out)
    worst = max(residual.values())
    print(f"wrote {args.out}: {len(POSES)} poses, worst |ARKit error| on a pose {worst:.3f}")
    for lab, e in residual.items():
        print(f"  {lab:24s} {e:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
