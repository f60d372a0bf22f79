#!/usr/bin/env bash
# `distill.alpha: auto` against the best alpha of a 5-point grid (chosen on the holdout split) and the plain
# student: test metric of 3 refit seeds each, all through `featdistill sweep`. Then the table:
#   python benchmarks/alpha_auto_report.py runs/bench/alpha_auto > benchmarks/results/alpha_auto.md
# Usage: bash benchmarks/alpha_auto.sh cifar10|fashionmnist|camvid|camvid_long   (a killed run continues where it
# stopped). camvid: teacher 20 epochs, students 6; camvid_long: teacher 40 epochs, students 10.
set -euo pipefail
cd "$(dirname "$0")/.."
F=${FEATDISTILL:-.venv/bin/featdistill}
OUT=${OUT:-runs/bench/alpha_auto}/$1
DATA=${DATA:-../shared/data}
SEEDS=0,1,2
case "$1" in
  cifar10)
    CFG=configs/classification/cifar10_cpu_cwt.yaml
    GRID=3e-4,1e-3,3e-3,1e-2,3e-2
    SET=(--set data.root="$DATA/cifar10" --set train.epochs=10 --set train.eval_every=10)
    ;;
  fashionmnist)
    CFG=configs/classification/fashionmnist_cpu_cwt.yaml
    GRID=3e-4,1e-3,3e-3,1e-2,3e-2
    TEACHER="$OUT/teacher"
    [ -f "$TEACHER/metrics.json" ] || $F train configs/classification/fashionmnist_cpu_teacher.yaml \
      --set data.root="$DATA" --set output.dir="$TEACHER" --set output.progress=false --resume auto
    SET=(--set data.root="$DATA" --set model.teacher_weights="$TEACHER/last.pt")
    ;;
  camvid | camvid_long)
    if [ "$1" = camvid ]; then TEACHER_EPOCHS=20 EPOCHS=6; else TEACHER_EPOCHS=40 EPOCHS=10; fi
    CFG=configs/segmentation/camvid_cpu_cwt.yaml
    GRID=1e-5,3e-5,1e-4,3e-4,1e-3
    TEACHER="$OUT/teacher"
    COMMON=(--set data.root="$DATA/camvid" --set data.batch_size=8 --set data.options.crop_size=96)
    [ -f "$TEACHER/metrics.json" ] || $F train configs/segmentation/camvid_cpu_teacher.yaml "${COMMON[@]}" \
      --set model.options.backbone=resnet18 --set train.epochs=$TEACHER_EPOCHS --set train.eval_every=$TEACHER_EPOCHS \
      --set output.dir="$TEACHER" --set output.progress=false --resume auto
    SET=("${COMMON[@]}" --set model.options.teacher.backbone=resnet18 --set model.teacher_weights="$TEACHER/last.pt"
         --set train.epochs=$EPOCHS --set train.eval_every=$EPOCHS)
    ;;
  *) echo "usage: $0 cifar10|fashionmnist|camvid|camvid_long" >&2; exit 2 ;;
esac
run() { $F sweep "$CFG" "${SET[@]}" --set output.progress=false "$@" --refit-seeds "$SEEDS" --resume auto; }
run --set output.dir="$OUT/grid" --grid distill.alpha="$GRID"
run --set output.dir="$OUT/auto" --grid distill.alpha=auto
run --set output.dir="$OUT/plain" --grid model.teacher=null
