#!/usr/bin/env bash
# Create .venv (Python 3.11) with every pinned dependency. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || { echo "error: $PY not found (Python 3.11 is required: Blender 4.2-5.0 embed it)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
# this project itself, editable: `python -m timar_blender.headless` and `timar-blender` from any folder
.venv/bin/python -m pip install --quiet --no-deps -e .
# the Khronos glTF validator for the glTF tests (they skip, saying so, without it; .ci/run requires it)
if command -v npm >/dev/null; then
  npm ci --prefix addon_tests/gltf_validator --no-audit --no-fund --silent
else
  echo "note: npm not found: the glTF tests will skip the Khronos validator" >&2
fi
.venv/bin/python -c "import torch, onnxruntime, bpy, numpy; print('setup ok: torch', torch.__version__, '| onnxruntime', onnxruntime.__version__, '| bpy', bpy.app.version_string, '| numpy', numpy.__version__)"
