#!/usr/bin/env bash
# Regenerate the README's pictures from the bundled model (run again after the model changes):
#   docs/demo_preview.png     scripts/demo.sh's preview (the demo head on the DualTalk demo conversation)
#   docs/demo_head_strip.png  six Workbench frames of the demo head (scripts/render_demo_head.py)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d ../shared/fixtures/dualtalk_demo ] || echo "note: ../shared/fixtures is absent: the pictures show synthetic speech" >&2
OUT=runs/readme_pictures bash scripts/demo.sh
cp runs/readme_pictures/preview.png docs/demo_preview.png
HOME=$PWD/runs/readme_pictures/home .venv/bin/python scripts/render_demo_head.py --out docs/demo_head_strip.png
echo "wrote docs/demo_preview.png and docs/demo_head_strip.png"
