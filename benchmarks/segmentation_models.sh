#!/usr/bin/env bash
# CamVid CPU tier, models of other families (benchmarks/results/segmentation_models_camvid.md): the PSPNet-R18 teacher
# (camvid_cpu_teacher.yaml) and a SegFormer-B2-sized teacher, then `featdistill compare` of
# configs/segmentation/camvid_cpu_segformer.yaml (a SegFormer-B0-sized hf: student, random init, plain vs CWT with
# pairs: auto from either teacher; an smp:Unet/resnet18 student; seeds 0 and 1), then the report.
# TEACHER_EPOCHS / STUDENT_EPOCHS shorten the schedule (defaults: the configs' 60 / 20). Resumable: run it again
# after a kill. Extra arguments are --set options for every command.
#   TEACHER_EPOCHS=10 STUDENT_EPOCHS=6 bash benchmarks/segmentation_models.sh 2>&1 | tee benchmarks/results/segmentation_models_camvid.log
set -euo pipefail
cd "$(dirname "$0")/.."
F=(${FEATDISTILL:-featdistill})
PY="${PYTHON:-python}"
RUNS="runs/bench/segmentation_models"  # the B2 arm of the config names its teacher under this folder
OUT="${OUT:-benchmarks/results/segmentation_models_camvid.md}"
TEACHER_EPOCHS="${TEACHER_EPOCHS:-60}"
STUDENT_EPOCHS="${STUDENT_EPOCHS:-20}"
start=$SECONDS
# the SegFormer-B0 and -B2 architectures (transformers' SegformerConfig), random init, as the config names them
"$PY" -c "
import torch; from transformers import SegformerConfig as C, SegformerForSemanticSegmentation as S
torch.manual_seed(0); S(C(num_labels=11)).save_pretrained('runs/bench/segformer_b0')
torch.manual_seed(0); S(C(num_labels=11, hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 6, 3], decoder_hidden_size=768)).save_pretrained('runs/bench/segformer_b2')"
teacher=(--set train.epochs="$TEACHER_EPOCHS" --set train.eval_every="$TEACHER_EPOCHS" --set output.progress=false --resume auto)
"${F[@]}" train configs/segmentation/camvid_cpu_teacher.yaml "$@" "${teacher[@]}" --set output.dir="$RUNS/teacher"
"${F[@]}" train configs/segmentation/camvid_cpu_segformer.yaml "$@" "${teacher[@]}" --set output.dir="$RUNS/teacher_b2" \
  --set model.student=hf:runs/bench/segformer_b2 --set model.teacher=null --set model.teacher_weights=null
"${F[@]}" compare configs/segmentation/camvid_cpu_segformer.yaml "$@" --set train.epochs="$STUDENT_EPOCHS" \
  --set train.eval_every="$STUDENT_EPOCHS" --set model.teacher_weights="$RUNS/teacher/last.pt" \
  --set output.dir="$RUNS/compare" --set output.progress=false --resume auto
"$PY" benchmarks/compare_report.py "$RUNS/compare" --teacher "PSPNet-R18=$RUNS/teacher" --teacher "SegFormer-B2-sized=$RUNS/teacher_b2" \
  --metrics miou,pixel_acc \
  --title "CamVid, CPU tier: SegFormer-B0-sized (hf:) and smp:Unet/resnet18 students, PSPNet-R18 and SegFormer-B2-sized teachers (real data)" \
  --command "TEACHER_EPOCHS=$TEACHER_EPOCHS STUDENT_EPOCHS=$STUDENT_EPOCHS bash benchmarks/segmentation_models.sh $*" \
  --note "teachers: PSPNet-R18 (configs/segmentation/camvid_cpu_teacher.yaml) and SegFormer-B2-sized (hf:, SegformerConfig(hidden_sizes=[64, 128, 320, 512], depths=[3, 4, 6, 3], decoder_hidden_size=768), 27 M parameters, camvid_cpu_segformer.yaml's recipe), $TEACHER_EPOCHS epochs each; students $STUDENT_EPOCHS epochs (configs/segmentation/camvid_cpu_segformer.yaml)" \
  --note "SegFormer-B0-sized student: transformers SegformerConfig() defaults (3.7 M parameters); every model RANDOM INIT (not the ImageNet mit-b0/b2); CWT on pairs: auto from the PSPNet teacher, on the four stage maps from the B2 teacher, α = 5.69e-4 per pair, untuned" \
  --note "crop 96, scale 0.75-1.5, flip, photometric jitter; SGD lr 0.02 poly 0.9, wd 5e-4; test split evaluated whole" \
  --minutes "$(( (SECONDS - start) / 60 ))" --out "$OUT"
