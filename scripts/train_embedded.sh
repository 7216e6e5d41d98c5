#!/usr/bin/env bash
# Reproduces the embedded default checkpoint (live_ros/checkpoints/embedded) from scratch:
# synthetic training and held-out streams, feature extraction, event windows and grounding
# clips, six training stages (config/train_embedded.yaml: stage 0 aligns the connector on
# the grounding clips, stage 1 trains on the streams and windows from it, stage 2 continues
# with a fresh order and half the learning rate, stage 3 teaches narration under a standing
# instruction), evaluation; the committed default is stage 3's RUN/final. Stages 4-5 then teach
# the 34-object vocabulary of the world catalog with the object evidence head: a candidate not
# adopted (model card, "Object evidence"); STOP_AFTER_STAGE3=1 leaves them out.
# Every stage resumes where it stopped (--resume) and is skipped once done. Times per stage
# on a 2-core CPU: live_ros/checkpoints/embedded/README.md.
#
#   scripts/train_embedded.sh [DATA_DIR] [RUN_DIR]      (defaults: data/world, runs/embedded)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA="${1:-data/world}"
RUN="${2:-runs/embedded}"
TRAIN_STREAMS="${TRAIN_STREAMS:-200}"
EVAL_STREAMS="${EVAL_STREAMS:-20}"
THREADS="${THREADS:-2}"
LR=.venv/bin/live-ros
t0=$SECONDS
$LR generate world --split train --streams "$TRAIN_STREAMS" --seed 0 --out "$DATA/train" --quiet
$LR generate world --split eval --streams "$EVAL_STREAMS" --seed 1 --out "$DATA/eval" --quiet
echo "[train_embedded] data generated in $((SECONDS - t0)) s"
$LR extract "$DATA/train/videos" --out "$DATA/train/features" --threads "$THREADS" --quiet
$LR extract "$DATA/eval/videos" --out "$DATA/eval/features" --threads "$THREADS" --quiet
echo "[train_embedded] features extracted at $((SECONDS - t0)) s"
rm -rf "$DATA/windows"
$LR generate windows "$DATA/train" --out "$DATA/windows" --per-video 8 --seed 0
rm -rf "$DATA/grounding"
$LR generate grounding "$DATA/train" --out "$DATA/grounding" --per-video 8 --seed 0
DATA_ARGS=(data.train_streams="$DATA/train/streams.jsonl" data.train_features="$DATA/train/features"
           data.extra_streams="$DATA/windows/streams.jsonl"
           data.eval_streams="$DATA/eval/streams.jsonl" data.eval_features="$DATA/eval/features")
resume() { ls -d "$1"/checkpoint-* >/dev/null 2>&1 && echo --resume || true; }
# stage 0 (alignment): 1,440 of the 1,600 grounding clips ("What do you see now?" after 1-3 frames),
# 60 steps of 24: teaches the connector which frame tokens mean which object
[ -f "$RUN/stage0/final/adapter_model.safetensors" ] || \
  $LR train --config config/train_embedded.yaml --out "$RUN/stage0" --threads "$THREADS" \
      data.train_streams="$DATA/grounding/streams.jsonl" data.train_features="$DATA/grounding/features" \
      data.extra_streams=null data.eval_streams=null eval.enabled=false \
      optim.max_steps=60 optim.batch_size=8 optim.grad_accum=3 $(resume "$RUN/stage0")
echo "[train_embedded] stage 0 trained at $((SECONDS - t0)) s"
# stage 1: 200 streams + 1,600 windows once (150 steps of 12) from stage 0, evaluated only at the end
[ -f "$RUN/stage1/final/adapter_model.safetensors" ] || \
  $LR train --config config/train_embedded.yaml --out "$RUN/stage1" --threads "$THREADS" "${DATA_ARGS[@]}" \
      model.init_from="$RUN/stage0/final" eval.enabled=false $(resume "$RUN/stage1")
echo "[train_embedded] stage 1 trained at $((SECONDS - t0)) s"
# stage 2: 40 more steps of 12 from stage 1, another order (seed 1), lr 5e-4
[ -f "$RUN/stage2/final/adapter_model.safetensors" ] || \
  $LR train --config config/train_embedded.yaml --out "$RUN/stage2" --threads "$THREADS" "${DATA_ARGS[@]}" \
      model.init_from="$RUN/stage1/final" seed=1 optim.lr=5e-4 optim.max_steps=40 eval.enabled=false \
      $(resume "$RUN/stage2")
echo "[train_embedded] stage 2 trained at $((SECONDS - t0)) s"
# stage 3 (narration): every stream and window draws its standing instruction afresh (live_llm's
# default "Narrate what you see.", another narration request, or none for 20 %: silent until
# asked), 60 steps of 12 from stage 2 (STAGE3_INIT: another start, e.g. an earlier committed
# checkpoint), seed 2, lr 5e-4, then the held-out evaluation
$LR train --config config/train_embedded.yaml --out "$RUN" --threads "$THREADS" "${DATA_ARGS[@]}" \
    model.init_from="${STAGE3_INIT:-$RUN/stage2/final}" seed=2 optim.lr=5e-4 optim.max_steps=60 $(resume "$RUN")
echo "[train_embedded] stage 3 trained and evaluated at $((SECONDS - t0)) s; checkpoint: $RUN/final"
echo "[train_embedded] to ship it: cp $RUN/final/* $RUN/metrics.json $RUN/loss_curve.png live_ros/checkpoints/embedded/" \
     "&& for s in 0 1 2; do cp $RUN/stage\$s/loss_curve.png live_ros/checkpoints/embedded/loss_curve_stage\$s.png; done"
[ -n "${STOP_AFTER_STAGE3:-}" ] && exit 0
# stage 4 (the 34-object vocabulary with object evidence, live_ros/model/evidence.py): the
# evidence head is fitted on every training frame (the objects in view from the annotations),
# reported on the held-out split, then frozen; 60 steps of 24 on the grounding clips from
# stage 3 (STAGE4_INIT: another start, e.g. STAGE4_INIT=live_ros/checkpoints/embedded, which
# knows 8 objects), naming every trained object and "something I can't name" for the
# generic ones (live_ros/data/generic.py)
[ -f "$RUN/evidence.safetensors" ] || \
  $LR fit-evidence "$DATA/train" --val "$DATA/eval" --out "$RUN/evidence.safetensors" --threads "$THREADS"
EVIDENCE=(model.evidence="$RUN/evidence.safetensors")
[ -f "$RUN/stage4/final/adapter_model.safetensors" ] || \
  $LR train --config config/train_embedded.yaml --out "$RUN/stage4" --threads "$THREADS" "${EVIDENCE[@]}" \
      model.init_from="${STAGE4_INIT:-$RUN/final}" \
      data.train_streams="$DATA/grounding/streams.jsonl" data.train_features="$DATA/grounding/features" \
      data.extra_streams=null data.eval_streams=null eval.enabled=false \
      optim.max_steps=60 optim.batch_size=8 optim.grad_accum=3 run.save_every=20 $(resume "$RUN/stage4")
echo "[train_embedded] stage 4 trained at $((SECONDS - t0)) s"
# stage 5: the streams and windows (standing instruction drawn afresh) from stage 4, 120 steps
# of 12, seed 4, lr 7e-4
[ -f "$RUN/stage5/final/adapter_model.safetensors" ] || \
  $LR train --config config/train_embedded.yaml --out "$RUN/stage5" --threads "$THREADS" "${DATA_ARGS[@]}" \
      "${EVIDENCE[@]}" model.init_from="$RUN/stage4/final" seed=4 optim.lr=7e-4 optim.max_steps=120 \
      run.save_every=20 eval.enabled=false $(resume "$RUN/stage5")
echo "[train_embedded] stage 5 trained at $((SECONDS - t0)) s; the 34-object candidate: $RUN/stage5/final"
