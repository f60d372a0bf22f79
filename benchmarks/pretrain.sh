#!/usr/bin/env bash
# task: pretrain on CIFAR-10, the CPU analogue of distilling a foundation model (issue 27):
#   1. a ResNet-20 "foundation" teacher trained on classes 0-4 only (configs/pretrain/cifar10_cpu_teacher_0to4.yaml);
#   2. ResNet-8 backbones distilled from it without labels on 2,000 images of all classes, with CWT, cosine and
#      FitNets, 3 seeds (featdistill compare configs/pretrain/cifar10_cpu_pretrain.yaml): kNN top-1 on classes 5-9;
#   3. every backbone and a random-init ResNet-8 (no pretraining) probed on classes 5-9 (featdistill probe: kNN and
#      linear top-1), then fine-tuned on 50 labels per class of classes 5-9 (cifar10_cpu_finetune.yaml).
# Then the table: python benchmarks/pretrain_report.py runs/bench/pretrain > benchmarks/results/pretrain.md
# Usage: DATA=/path/to/shared/data bash benchmarks/pretrain.sh   (a killed run continues where it stopped)
set -euo pipefail
cd "$(dirname "$0")/.."
F=${FEATDISTILL:-.venv/bin/featdistill}
OUT=runs/bench/pretrain
DATA=${DATA:-../shared/data}
SEEDS=(0 1 2)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # on a shared, loaded 2-core machine one thread ran 10x faster than two
${PYTHON:-python} benchmarks/pretrain_data.py "$DATA/cifar10" "$OUT/data" 100 50
[ -f "$OUT/teacher/metrics.json" ] || $F train configs/pretrain/cifar10_cpu_teacher_0to4.yaml \
  --set output.progress=false --resume auto
$F compare configs/pretrain/cifar10_cpu_pretrain.yaml --set data.root="$DATA/cifar10/train" \
  --set output.progress=false --resume auto
for seed in "${SEEDS[@]}"; do
  for arm in none cwt cosine fitnets; do
    run=$(ls -d "$OUT"/distil/v*_arm="${arm}"_seed="${seed}" 2>/dev/null || true)  # compare's run folder
    if [ "$arm" = none ]; then model=(resnet8 --model --seed "$seed"); weights=null; else model=("$run/last.pt"); weights="$run/last.pt"; fi
    [ -f "$OUT/probe/$arm-$seed.json" ] || { mkdir -p "$OUT/probe"
      $F probe "${model[@]}" "$OUT/data/unseen_probe" --device cpu | tail -1 > "$OUT/probe/$arm-$seed.json"; }
    [ -f "$OUT/finetune/$arm-$seed/metrics.json" ] || $F train configs/pretrain/cifar10_cpu_finetune.yaml \
      --set model.student_weights="$weights" --set train.seed="$seed" --set output.dir="$OUT/finetune/$arm-$seed" \
      --set output.progress=false --resume auto
  done
done
