#!/usr/bin/env bash
# coco128 CPU tier (benchmarks/results/coco128_cpu.md): the Faster R-CNN R34-FPN teacher, then `featdistill compare`
# of the R18-FPN students (plain, CWT, MGD on P2-P5; seeds 0 and 1: the arms in the config's `compare:` section),
# then the report. A fitting test: the first 32 images are both training and evaluation set (see the config).
# Resumable: run it again after a kill. Extra arguments are --set options for both commands, e.g. a quick check:
#   bash benchmarks/coco128_cpu.sh 2>&1 | tee benchmarks/results/coco128_cpu.log
#   RUNS=/tmp/coco128-quick OUT=/tmp/coco128-quick/report.md bash benchmarks/coco128_cpu.sh \
#     --set data.limit=8 --set data.val_limit=8 --set train.epochs=1 --set train.milestones=[]
set -euo pipefail
cd "$(dirname "$0")/.."
F=(${FEATDISTILL:-featdistill})
RUNS="${RUNS:-runs/bench/coco128_cpu}"
OUT="${OUT:-benchmarks/results/coco128_cpu.md}"
start=$SECONDS
"${F[@]}" train configs/detection/coco128_cpu_faster_rcnn_teacher.yaml "$@" \
  --set output.dir="$RUNS/teacher" --set output.progress=false --resume auto
"${F[@]}" compare configs/detection/coco128_cpu_faster_rcnn_cwt.yaml "$@" \
  --set model.teacher_weights="$RUNS/teacher/last.pt" --set output.dir="$RUNS/compare" --set output.progress=false \
  --resume auto
python benchmarks/compare_report.py "$RUNS/compare" --teacher "$RUNS/teacher" --metrics bbox/AP,bbox/AP50 \
  --scale 100 --title "coco128, CPU tier: Faster R-CNN R18-FPN student, CWT vs MGD vs none" \
  --command "bash benchmarks/coco128_cpu.sh $*" \
  --note "teacher Faster R-CNN R34-FPN, 32 epochs, seed 0 (configs/detection/coco128_cpu_faster_rcnn_teacher.yaml); students R18-FPN, 16 epochs, CWT and MGD on P2-P5 with α = 5e-6 (configs/detection/coco128_cpu_faster_rcnn_cwt.yaml)" \
  --note "protocol: fitting test, the first 32 images of coco128 are both training and evaluation set (AP measures fitting, not generalisation); COCO AP over the categories present, in %" \
  --minutes "$(( (SECONDS - start) / 60 ))" --out "$OUT"
