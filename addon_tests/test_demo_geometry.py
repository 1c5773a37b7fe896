"""engine/demo_geometry.py: the demo head's mesh, shape keys, weights and bones without bpy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import ROOT

from timar_blender.engine.arkit import ARKIT_NAMES
from timar_blender.engine.demo_geometry import HEAD_CENTER, bones, build_geometry, shape_keys, skin_weights


def test_geometry_needs_no_blender():
    code = ("import sys; from timar_blender.engine import demo_geometry as g; h = g.build_geometry(); "
            "g.shape_keys(h); assert 'bpy' not in sys.modules; print(len(h.co))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 1000


def test_shape_keys_weights_and_bones():
    h = build_geometry()
    keys = shape_keys(h)
    names = [n for n, _ in keys]
    assert len(names) == 43 and set(names) <= set(ARKIT_NAMES)
    assert names == sorted(names, key=ARKIT_NAMES.index)  # ARKit order
    deltas = dict(keys)
    assert all(d.shape == h.co.shape and np.isfinite(d).all() for d in deltas.values())
    jaw = deltas["jawOpen"]
    assert jaw[:, 2].min() < -0.03 and jaw[:, 2].sum() < 0  # the chin drops (it turns about the hinge)
    w = skin_weights(h)
    total = w["head"] + w["jaw"] + w["neck"]
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert min(v.min() for v in w.values()) >= -1e-9
    b = bones()
    assert b["head"][2] == "neck" and b["jaw"][2] == "head"
    np.testing.assert_allclose(b["neck"][1], b["head"][0])  # head sits on the neck
    assert b["jaw"][0][2] < HEAD_CENTER[2] < b["head"][1][2]
