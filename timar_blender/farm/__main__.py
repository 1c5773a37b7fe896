"""``python -m timar_blender.farm BATCH --out DIR ...`` (the same as ``timar-blender farm``)."""

import sys

from . import main

sys.exit(main())
