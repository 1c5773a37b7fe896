#!/usr/bin/env bash
# The main job: animate a character in a two-person dialogue with the bundled model, headless,
# through the same code as the Blender panel: the demo head in an empty scene (with its own camera
# and light), keys written, sound strips, .blend saved; then a preview picture next to it (frames
# where the character talks and listens, its jaw and head curves over the dialogue, who speaks).
#   AGENT=<wav> USER=<wav>   the two speech tracks (default: a real DualTalk demo conversation from
#                            ../shared/fixtures when present, otherwise synthetic speech written here)
#   OUT=<folder>             where take.blend, preview.png and summary.json go (default: runs/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "error: run 'bash scripts/setup.sh' first" >&2; exit 1; }
SECONDS=0
OUT=${OUT:-runs/demo}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEMO=../shared/fixtures/dualtalk_demo
if [ -z "${AGENT:-}" ]; then
  if [ -d "$DEMO" ]; then
    AGENT=$DEMO/xkHwlcDSOjc_sub_video_109_000_speaker1.wav
    USER=$DEMO/xkHwlcDSOjc_sub_video_109_000_speaker2.wav
  else
    "$PY" -c "
import soundfile as sf
from model_export.synthetic import synth_speech
sf.write('$OUT/agent.wav', synth_speech(20, 16000, 1, [(0.3, 6), (12, 19)]), 16000)
sf.write('$OUT/user.wav', synth_speech(20, 16000, 2, [(6.5, 11.5)]), 16000)"
    AGENT=$OUT/agent.wav USER=$OUT/user.wav
  fi
fi
# Blender writes preferences and caches under HOME: keep them inside the output folder
export HOME=$OUT/home XDG_CACHE_HOME=$OUT/home/.cache BLENDER_USER_RESOURCES=$OUT/home/blender
"$PY" -m timar_blender.headless --add-demo-head --agent-audio "$AGENT" --user-audio "$USER" --seed 0 \
  --out "$OUT/take.blend" --json "$OUT/summary.json"
"$PY" -c "
import json; s = json.load(open('$OUT/summary.json'))['dialogues'][0]
t = s['takes'][0]
print(f\"wrote {t['keys']} keys on {t['fcurves']} curves, frames {t['frames'][0]}-{t['frames'][1]}, \"
      f\"{s['seconds']:.1f} s of dialogue in {s['generation_seconds']:.1f} s on {s['provider']} -> $OUT/take.blend\")"
"$PY" scripts/preview_take.py "$OUT/take.blend" --out "$OUT/preview.png"
echo "demo done in ${SECONDS} s: open $OUT/take.blend in Blender, or look at $OUT/preview.png"
