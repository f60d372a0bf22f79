#!/usr/bin/env bash
# CamVid CPU tier, models of other families (benchmarks/results/segmentation_models.md): the PSPNet-R18 teacher
# (camvid_cpu_teacher.yaml), then `featdistill compare` of configs/segmentation/camvid_cpu_segformer.yaml (a
# SegFormer-B0-sized hf: student, random init, plain vs CWT with pairs: auto from the PSPNet teacher; an
# smp:Unet/resnet18 student; seeds 0 and 1), then the report. TEACHER_EPOCHS / STUDENT_EPOCHS shorten the
# schedule (defaults: the configs' 60 / 20). Resumable: run it again after a kill.
#   TEACHER_EPOCHS=8 STUDENT_EPOCHS=4 bash benchmarks/segmentation_models.sh 2>&1 | tee benchmarks/results/segmentation_models.log
set -euo pipefail
cd "$(dirname "$0")/.."
F=(${FEATDISTILL:-featdistill})
PY="${PYTHON:-python}"
RUNS="${RUNS:-runs/bench/segmentation_models}"
OUT="${OUT:-benchmarks/results/segmentation_models.md}"
TEACHER_EPOCHS="${TEACHER_EPOCHS:-60}"
STUDENT_EPOCHS="${STUDENT_EPOCHS:-20}"
start=$SECONDS
# the SegFormer-B0 architecture (transformers' SegformerConfig defaults), random init, as the config names it
"$PY" -c "
import torch; from transformers import SegformerConfig, SegformerForSemanticSegmentation
torch.manual_seed(0); SegformerForSemanticSegmentation(SegformerConfig(num_labels=11)).save_pretrained('runs/bench/segformer_b0')"
"${F[@]}" train configs/segmentation/camvid_cpu_teacher.yaml "$@" --set train.epochs="$TEACHER_EPOCHS" \
  --set train.eval_every="$TEACHER_EPOCHS" --set output.dir="$RUNS/teacher" --set output.progress=false --resume auto
"${F[@]}" compare configs/segmentation/camvid_cpu_segformer.yaml "$@" --set train.epochs="$STUDENT_EPOCHS" \
  --set train.eval_every="$STUDENT_EPOCHS" --set model.teacher_weights="$RUNS/teacher/last.pt" \
  --set output.dir="$RUNS/compare" --set output.progress=false --resume auto
"$PY" benchmarks/compare_report.py "$RUNS/compare" --teacher "$RUNS/teacher" --metrics miou,pixel_acc \
  --title "CamVid, CPU tier: SegFormer-B0-sized (hf:) and smp:Unet/resnet18 students, PSPNet-R18 teacher (real data)" \
  --command "TEACHER_EPOCHS=$TEACHER_EPOCHS STUDENT_EPOCHS=$STUDENT_EPOCHS bash benchmarks/segmentation_models.sh $*" \
  --note "teacher PSPNet-R18, $TEACHER_EPOCHS epochs (configs/segmentation/camvid_cpu_teacher.yaml); students $STUDENT_EPOCHS epochs (configs/segmentation/camvid_cpu_segformer.yaml)" \
  --note "SegFormer-B0-sized student: transformers SegformerConfig() defaults (3.7 M parameters), RANDOM INIT (not the ImageNet mit-b0); CWT on pairs: auto (stages.0 <- backbone.layer1, stages.1 <- backbone.layer4), α = 5.69e-4 per pair, untuned" \
  --note "crop 96, scale 0.75-1.5, flip, photometric jitter; SGD lr 0.02 poly 0.9, wd 5e-4; random init; test split evaluated whole" \
  --minutes "$(( (SECONDS - start) / 60 ))" --out "$OUT"
