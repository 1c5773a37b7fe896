#!/usr/bin/env bash
# The main job, end to end on this machine: train a small TIMAR on DualTalk-format conversations
# and evaluate it with the DualTalk protocol at context n = 0 and n = 7.
#   DATA=<folder>   DualTalk-format folder (default: ../shared/fixtures/dualtalk_demo when present,
#                   otherwise synthetic conversations written to runs/demo/data)
#   STEPS=<n>       training steps (default 300, about 2 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "error: run 'bash scripts/setup.sh' first" >&2; exit 1; }
RUN=${RUN:-runs/train_demo}
STEPS=${STEPS:-300}
FLAGS=()
if [ -z "${DATA:-}" ]; then
  if [ -d ../shared/fixtures/dualtalk_demo ]; then
    DATA=../shared/fixtures/dualtalk_demo
    FLAGS+=(--allow-missing-motion)   # the published demo has motion for one speaker per conversation
  else
    DATA=$RUN/data
    "$PY" -m model_export.synthetic "$DATA" --clips 4 --seconds 24
  fi
fi
rm -f "$RUN/checkpoint-last.pth"
"$PY" -m model_export.train --data "$DATA" --out "$RUN" --preset timar_cpu_tiny "${FLAGS[@]}" \
  --batch-size 8 --stride-turns 2 --lr 1e-3 --warmup-epochs 1 --max-steps "$STEPS" --log-every 25
"$PY" -m model_export.evaluate --checkpoint "$RUN/checkpoint-last.pth" --data "$DATA" "${FLAGS[@]}" \
  --context 0 7 --out "$RUN/eval"
