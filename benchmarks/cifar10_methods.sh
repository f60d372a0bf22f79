#!/usr/bin/env bash
# CIFAR-10 CPU tier (resnet20 -> resnet8, 5,000 train images): every method tuned alike by `featdistill sweep`.
# Per method: alpha auto with a 6-point grid of target ratios (one grid fits every method's loss scale), trained in
# lockstep on one teacher forward, the best ratio chosen on the holdout split (20 % of the training images), then
# refit on all training images with 5 seeds and scored on the 10,000 test images. Then the table:
#   python benchmarks/cifar10_methods_report.py runs/bench/cifar10_methods/e10 runs/bench/cifar10_methods_e10.log
# Usage: bash benchmarks/cifar10_methods.sh [METHOD ...] > runs/bench/cifar10_methods_e10.log
#   (default: all methods and ablations; a killed run continues where it stopped)
# Env: EPOCHS (10), RATIOS, SEEDS, DATA (../shared/data), OUT (runs/bench/cifar10_methods),
#   DEVICE (cpu; e.g. cuda), FEATDISTILL (.venv/bin/featdistill),
#   TEACHER (benchmarks/results/cifar10_teacher_resnet20.pt; when absent, trained by cifar10_cpu_teacher.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
F=${FEATDISTILL:-.venv/bin/featdistill}
EPOCHS=${EPOCHS:-10}
ROOT=${OUT:-runs/bench/cifar10_methods}
OUT=$ROOT/e$EPOCHS
DATA=${DATA:-../shared/data}
RATIOS=${RATIOS:-0.3,1,3,10,30,100}
SEEDS=${SEEDS:-0,1,2,3,4}
TEACHER=${TEACHER:-benchmarks/results/cifar10_teacher_resnet20.pt}
METHODS=("$@")
[ ${#METHODS[@]} -gt 0 ] || METHODS=(none kd fitnets at cwd mgd cwt_linear cwt cwt_hidden32 cwt_hidden128 cwt_layer23)
COMMON=(--set data.root="$DATA/cifar10" --set output.progress=false)
if [ -n "${DEVICE:-}" ]; then COMMON+=(--set device="$DEVICE"); fi
if [ ! -f "$TEACHER" ]; then  # the same 30-epoch resnet20 from scratch
  [ -f "$ROOT/teacher/metrics.json" ] || $F train configs/classification/cifar10_cpu_teacher.yaml "${COMMON[@]}" \
    --set output.dir="$ROOT/teacher" --resume auto
  TEACHER=$ROOT/teacher/last.pt
fi
SET=("${COMMON[@]}" --set model.teacher_weights="$TEACHER" --set data.holdout=0.2 --set train.epochs="$EPOCHS"
     --set train.eval_every="$EPOCHS" --set distill.alpha=auto)
sweep() {  # sweep NAME ARGS...: one method's ratio grid, then its refits
  local name=$1; shift
  $F sweep configs/classification/cifar10_cpu_cwt.yaml "${SET[@]}" --set output.dir="$OUT/$name" "$@" \
    --refit-seeds "$SEEDS" --resume auto
}
for m in "${METHODS[@]}"; do
  echo "== $m ($(date -u +%H:%M:%S))"
  case "$m" in
    none) sweep none --grid model.teacher=null ;;
    kd) sweep kd --set distill.method=kd --set 'distill.pairs=[[fc, fc]]' --grid distill.auto_ratio="$RATIOS" ;;
    fitnets | at | cwd | mgd | cwt_linear | cwt)
      sweep "$m" --set distill.method="$m" --grid distill.auto_ratio="$RATIOS" ;;
    cwt_hidden32 | cwt_hidden128)  # C_h = C_t/2 and 2 C_t (C_t = 64)
      sweep "$m" --set distill.options.cwt.hidden_channels="${m#cwt_hidden}" --grid distill.auto_ratio="$RATIOS" ;;
    cwt_layer23) sweep "$m" --set 'distill.pairs=[[layer2, layer2], [layer3, layer3]]' --grid distill.auto_ratio="$RATIOS" ;;
    *) echo "unknown method: $m" >&2; exit 2 ;;
  esac
done
echo "== end ($(date -u +%H:%M:%S))"
