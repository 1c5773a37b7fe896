#!/usr/bin/env bash
# Reproduce the bundled model (v4): corpus v2 -> training -> option sweep -> export into
# timar_blender/model (+ its PyTorch weights) -> MODEL_CARD.md -> README pictures.
#
# Corpus v2: LibriSpeech train-clean-100 voices mixed with TTS voices, recorded with room tone and
# bleed (model_export/corpus/voices.py, acoustics.py); motion from teacher v2 (phonemes, teacher.py)
# calibrated on the real xkH clip only, so the other DualTalk conversation (UbjUDM) stays held out.
# Two corpora of 400 dialogues (seeds 0 and 1). Training runs in two stages:
#   train:    timar_cpu_v2 from scratch on corpus seed 0 (STEPS, default 2600)
#   finetune: from that run's EMA weights with the upper layers' reach narrowed to 2 turns
#             (timar_cpu_v3: layer_bands 7,2,2, so the per-turn cost hardly grows with the context)
#             on both corpora (FINETUNE_STEPS, default 2400, lr 5e-4)
#   refine:   from that run's EMA weights with the jaw weighing 3x in the head's loss
#             (jaw_loss_weight 3: a sharper jaw from the audio, less of it seed noise), both corpora
#             (REFINE_STEPS, default 1800, lr 3e-4)
# Each stage is ~40-60 min on 2 quiet cores. One fold is trained (the shipped one); the held-out real
# clip and test-other voices evaluate it.
#   THREADS=<n>   torch threads (default 2)
#   WARM=1        skip 'train' and 'finetune': refine from the shipped weights (model_export/weights/bundled-ema.pth)
#   STAGE=corpus|train|finetune|refine|sweep|export|card|pictures|all (default all); every stage reuses what exists.
# Needs ../shared/fixtures (LibriSpeech voices, the DualTalk clips for calibration and evaluation).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "error: run 'bash scripts/setup.sh' first" >&2; exit 1; }
[ -d ../shared/fixtures/librispeech ] || { echo "error: ../shared/fixtures is needed" >&2; exit 1; }
STEPS=${STEPS:-2600}
FINETUNE_STEPS=${FINETUNE_STEPS:-2400}
REFINE_STEPS=${REFINE_STEPS:-1800}
THREADS=${THREADS:-2}
STAGE=${STAGE:-all}
C=runs/corpus_v2
R0=runs/bundle_v2
R3=runs/bundle_v3
R=runs/bundle_v4
SHIP=xkHwlcDSOjc_sub_video_109_000_speaker1
WEIGHTS=model_export/weights/bundled-ema.pth
GRID=(mask_history_agent=true,false head_noise_correlation=3,5 face_noise_correlation=0.5,1 turn_blend=0,1,2)
stage() { [[ $STAGE == all || $STAGE == "$1" ]]; }

if stage corpus; then
  for seed in 0 1; do
    [ -f $C/audio$seed/corpus.json ] || "$PY" -m model_export.corpus.build $C/audio$seed --dialogues 400 \
      --seconds 40 --seed $seed --jobs 2
    [ -f $C/foldX$seed/corpus.json ] || "$PY" -m model_export.corpus.build $C/foldX$seed --audio-from $C/audio$seed \
      --dialogues 400 --seconds 40 --seed $seed --jobs 2 --fold $SHIP --real
  done
  [ -f $C/test/corpus.json ] || "$PY" -m model_export.corpus.build $C/test --dialogues 8 --seconds 60 \
    --seed 900000 --jobs 2 --fold $SHIP
fi

if stage train && [[ ${WARM:-0} != 1 ]]; then
  "$PY" -m model_export.train --data $C/foldX0 --out $R0 --preset timar_cpu_v2 --threads "$THREADS" \
    --batch-size 16 --lr 1e-3 --warmup-epochs 0.5 --cosine --max-steps "$STEPS" --stride-turns 4 \
    --ema-rate 0.999 --save-every-steps 100 --log-every 50 --resume auto 2>&1 | tee -a $R0.log
fi

if stage finetune && [[ ${WARM:-0} != 1 ]]; then
  bands=$(mktemp --suffix .json)
  echo '{"layer_bands": [7, 2, 2]}' > "$bands"
  "$PY" -m model_export.train --data $C/foldX0 $C/foldX1 --out $R3 --init $R0/checkpoint-last.pth --config "$bands" \
    --threads "$THREADS" --batch-size 16 --lr 5e-4 --warmup-epochs 0.1 --cosine --max-steps "$FINETUNE_STEPS" \
    --stride-turns 4 --ema-rate 0.999 --save-every-steps 100 --log-every 50 --resume auto 2>&1 | tee -a $R3.log
fi

if stage refine; then
  init=$R3/checkpoint-last.pth
  [[ ${WARM:-0} == 1 ]] && init=$WEIGHTS
  jaw=$(mktemp --suffix .json)
  echo '{"layer_bands": [7, 2, 2], "jaw_loss_weight": 3.0}' > "$jaw"
  "$PY" -m model_export.train --data $C/foldX0 $C/foldX1 --out $R --init "$init" --config "$jaw" \
    --threads "$THREADS" --batch-size 16 --lr 3e-4 --warmup-epochs 0.1 --cosine --max-steps "$REFINE_STEPS" \
    --stride-turns 4 --ema-rate 0.999 --save-every-steps 100 --log-every 50 --resume auto 2>&1 | tee -a $R.log
fi

if stage sweep; then
  "$PY" -m model_export export --checkpoint $R/checkpoint-last.pth --out $R/bundle --force --no-check
  "$PY" -m model_export.option_sweep --bundle $R/bundle --grid "${GRID[@]}" --json $R/sweep.json | tee $R/sweep.txt
fi

if stage export; then
  # the sweep's best options become the bundle's recommended options
  mapfile -t rec < <(tail -1 $R/sweep.txt | tr ' ' '\n' | grep -v '^--recommend$')
  flags=(); for r in "${rec[@]}"; do flags+=(--recommend "$r"); done
  "$PY" -m model_export export --checkpoint $R/checkpoint-last.pth --out timar_blender/model \
    --name timar-blender-cpu-v4 --provenance-file $C/foldX0/corpus.json $C/foldX1/corpus.json "${flags[@]}" --save-weights $WEIGHTS \
    --license "Apache-2.0; trained by the TIMAR for Blender project on its own corpus: LibriSpeech voices (CC BY 4.0, (c) 2014 Vassil Panayotov et al.) and TTS voices; see MODEL_CARD.md"
fi

if stage card; then
  "$PY" -m model_export.model_card --bundle timar_blender/model --fold $SHIP=bundle=$C/test=$C/foldX0 \
    --out MODEL_CARD.md --figures docs/model_card
fi

if stage pictures; then
  bash scripts/readme_pictures.sh
fi
