#!/usr/bin/env bash
# CamVid CPU tier (benchmarks/results/camvid_cpu.md): the PSPNet-R18 teacher (60 epochs), then `featdistill compare`
# of the PSPNet-R18 students (plain, CWT on backbone.layer4, CWD on the logits; seeds 0 and 1: the arms in the
# config's `compare:` section), then the report. About 72 min on 2 idle AMD EPYC cores, 2.4x that on the Intel Xeon
# of later sessions. Resumable: run it again after a kill. Extra arguments are --set options for both commands:
#   bash benchmarks/camvid_cpu.sh 2>&1 | tee benchmarks/results/camvid_cpu.log
set -euo pipefail
cd "$(dirname "$0")/.."
F=(${FEATDISTILL:-featdistill})
RUNS="${RUNS:-runs/bench/camvid_cpu}"
OUT="${OUT:-benchmarks/results/camvid_cpu.md}"
start=$SECONDS
"${F[@]}" train configs/segmentation/camvid_cpu_teacher.yaml "$@" \
  --set output.dir="$RUNS/teacher" --set output.progress=false --resume auto
"${F[@]}" compare configs/segmentation/camvid_cpu_cwt.yaml "$@" \
  --set model.teacher_weights="$RUNS/teacher/last.pt" --set output.dir="$RUNS/compare" --set output.progress=false \
  --resume auto
python benchmarks/compare_report.py "$RUNS/compare" --teacher "$RUNS/teacher" --metrics miou,pixel_acc \
  --title "CamVid, CPU tier: PSPNet-R18 student, plain vs CWT vs CWD (real data)" \
  --command "bash benchmarks/camvid_cpu.sh $*" \
  --note "teacher PSPNet-R18, 60 epochs (configs/segmentation/camvid_cpu_teacher.yaml); students PSPNet-R18, 20 epochs; CWT backbone.layer4, α = 5.69e-4; CWD logits, α = 3, τ = 4 (configs/segmentation/camvid_cpu_cwt.yaml)" \
  --note "crop 96, scale 0.75-1.5, flip, photometric jitter; SGD lr 0.02 poly 0.9, wd 5e-4; random init; test split evaluated whole" \
  --minutes "$(( (SECONDS - start) / 60 ))" --out "$OUT"
