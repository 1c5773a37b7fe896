"""The ``timar-blender`` command (installed by ``pip install -e .``, see scripts/setup.sh): the
headless entry point, ``python -m timar_blender.headless``, from any folder; ``timar-blender farm
BATCH --out DIR ...`` runs a batch on a Ray cluster (``timar_blender.farm``, needs the farm extra)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    if sys.argv[1:2] == ["farm"]:
        from .farm import main as farm_main

        code = farm_main(sys.argv[2:])
    else:
        from .headless import main as headless_main

        code = headless_main(sys.argv[1:])
    # leave without interpreter teardown, as ``python -m timar_blender.headless`` does: the bpy 4.2
    # module can crash there (exit code -11) after all work is saved
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
