#!/usr/bin/env bash
# Reproduce the bundled model: corpus, two-fold training, export into timar_blender/model, model card.
#
# The teacher is calibrated on the real DualTalk demo clips, so there are two folds: each is
# calibrated on one real clip (and may train on that conversation's audio) and evaluated on the
# other. Both folds train at once, one CPU thread each; the xkHwlcDSOjc fold is the one shipped
# (its clip's jaw follows the speaker's audio; see MODEL_CARD.md).
#   STEPS=<n>        optimizer steps of the shipped fold (default 1700)
#   STEPS_OTHER=<n>  optimizer steps of the other fold (default 1000; it only serves the evaluation)
#   STAGE=corpus|train|export|card|all (default all); every stage resumes / reuses what exists.
# Needs ../shared/fixtures/dualtalk_demo (calibration folds, real audio and the evaluation clips).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "error: run 'bash scripts/setup.sh' first" >&2; exit 1; }
[ -d ../shared/fixtures/dualtalk_demo ] || { echo "error: ../shared/fixtures/dualtalk_demo is needed" >&2; exit 1; }
STEPS=${STEPS:-1700}
STEPS_OTHER=${STEPS_OTHER:-1000}
STAGE=${STAGE:-all}
C=runs/corpus
R=runs/bundle
SHIP=xkHwlcDSOjc_sub_video_109_000_speaker1
OTHER=UbjUDM1MiGE_sub_video_72_speaker2
declare -A TAG=([$SHIP]=foldX [$OTHER]=foldU)
declare -A NSTEPS=([$SHIP]=$STEPS [$OTHER]=$STEPS_OTHER)

if [[ $STAGE == all || $STAGE == corpus ]]; then
  [ -f $C/foldX/corpus.json ] || "$PY" -m model_export.corpus.build $C/foldX --dialogues 200 --seconds 60 \
    --seed 0 --jobs 2 --fold $SHIP --real
  [ -f $C/foldU/corpus.json ] || "$PY" -m model_export.corpus.build $C/foldU --dialogues 200 --seconds 60 \
    --seed 0 --jobs 2 --fold $OTHER --real --audio-from $C/foldX
  # held out: other seeds, never trained on
  [ -f $C/testX/corpus.json ] || "$PY" -m model_export.corpus.build $C/testX --dialogues 8 --seconds 60 \
    --seed 900000 --jobs 2 --fold $SHIP
  [ -f $C/testU/corpus.json ] || "$PY" -m model_export.corpus.build $C/testU --dialogues 8 --seconds 60 \
    --seed 900000 --jobs 2 --fold $OTHER --audio-from $C/testX
  [ -f $C/long/corpus.json ] || "$PY" -m model_export.corpus.build $C/long --dialogues 1 --seconds 600 \
    --seed 990000 --fold $SHIP
fi

if [[ $STAGE == all || $STAGE == train ]]; then
  mkdir -p $R
  for fold in $SHIP $OTHER; do
    t=${TAG[$fold]}
    "$PY" -m model_export.train --data $C/$t --out $R/$t --preset timar_cpu_bundle --threads 1 \
      --batch-size 16 --lr 1e-3 --warmup-epochs 0.5 --cosine --max-steps "${NSTEPS[$fold]}" --stride-turns 4 \
      --ema-rate 0.999 --save-every-steps 100 --log-every 50 --resume auto > $R/$t.log 2>&1 &
  done
  wait
fi

if [[ $STAGE == all || $STAGE == export ]]; then
  "$PY" -m model_export export --checkpoint $R/foldX/checkpoint-last.pth --out timar_blender/model \
    --name timar-blender-cpu-bundle --provenance-file $C/foldX/corpus.json \
    --license "Apache-2.0; trained by the TIMAR for Blender project on its own synthetic corpus (see MODEL_CARD.md)"
fi

if [[ $STAGE == all || $STAGE == card ]]; then
  "$PY" -m model_export.model_card --bundle timar_blender/model \
    --fold $SHIP=$R/foldX/checkpoint-last.pth=$C/testX=$C/foldX \
    --fold $OTHER=$R/foldU/checkpoint-last.pth=$C/testU=$C/foldU \
    --long $C/long --out MODEL_CARD.md
fi
