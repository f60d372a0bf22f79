#!/usr/bin/env bash
# coco128 CPU tier, detectors of other families (benchmarks/results/detection_models_coco128.md): the Faster R-CNN
# R34-FPN teacher (coco128_cpu_faster_rcnn_teacher.yaml), then `featdistill compare` of
# configs/detection/coco128_cpu_models.yaml (a timm:resnet18d Faster R-CNN and an RT-DETR-R18-sized hf: student,
# each plain and with CWT; seeds 0 and 1), then the report. A fitting test: the first 32 images are both training
# and evaluation set. TEACHER_EPOCHS / STUDENT_EPOCHS shorten the schedule (defaults: the configs' 32 / 16; the
# step milestones scale with them). Resumable: run it again after a kill. Extra arguments are --set options.
#   TEACHER_EPOCHS=16 STUDENT_EPOCHS=8 bash benchmarks/detection_models.sh 2>&1 | tee benchmarks/results/detection_models_coco128.log
set -euo pipefail
cd "$(dirname "$0")/.."
F=(${FEATDISTILL:-featdistill})
PY="${PYTHON:-python}"
RUNS="${RUNS:-runs/bench/detection_models}"
OUT="${OUT:-benchmarks/results/detection_models_coco128.md}"
TEACHER_EPOCHS="${TEACHER_EPOCHS:-32}"
STUDENT_EPOCHS="${STUDENT_EPOCHS:-16}"
milestones() { echo "[$(( $1 * 2 / 3 )),$(( $1 * 9 / 10 ))]"; }
start=$SECONDS
# an RT-DETR with rtdetr_r18vd's sizes (ResNet-18-style backbone, 3 decoder layers), random init
"$PY" -c "
import torch, transformers as t
backbone = t.RTDetrResNetConfig(layer_type='basic', depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], embedding_size=64, out_features=['stage2', 'stage3', 'stage4'])
config = t.RTDetrConfig(backbone_config=backbone, use_pretrained_backbone=False, encoder_in_channels=[128, 256, 512], decoder_layers=3, num_labels=80)
torch.manual_seed(0); t.AutoModelForObjectDetection.from_config(config).save_pretrained('runs/bench/rtdetr_r18')"
"${F[@]}" train configs/detection/coco128_cpu_faster_rcnn_teacher.yaml "$@" --set train.epochs="$TEACHER_EPOCHS" \
  --set train.eval_every="$TEACHER_EPOCHS" --set train.milestones="$(milestones "$TEACHER_EPOCHS")" \
  --set output.dir="$RUNS/teacher" --set output.progress=false --resume auto
"${F[@]}" compare configs/detection/coco128_cpu_models.yaml "$@" --set train.epochs="$STUDENT_EPOCHS" \
  --set train.eval_every="$STUDENT_EPOCHS" --set train.milestones="$(milestones "$STUDENT_EPOCHS")" \
  --set model.teacher_weights="$RUNS/teacher/last.pt" --set output.dir="$RUNS/compare" \
  --set output.progress=false --resume auto
"$PY" benchmarks/compare_report.py "$RUNS/compare" --teacher "Faster R-CNN R34-FPN=$RUNS/teacher" --metrics bbox/AP,bbox/AP50 \
  --scale 100 --title "coco128, CPU tier: a timm-backbone Faster R-CNN and an RT-DETR (hf:) student, plain and CWT" \
  --command "TEACHER_EPOCHS=$TEACHER_EPOCHS STUDENT_EPOCHS=$STUDENT_EPOCHS bash benchmarks/detection_models.sh $*" \
  --note "teacher Faster R-CNN R34-FPN, $TEACHER_EPOCHS epochs, seed 0 (configs/detection/coco128_cpu_faster_rcnn_teacher.yaml); students $STUDENT_EPOCHS epochs (configs/detection/coco128_cpu_models.yaml), every model RANDOM INIT" \
  --note "students: Faster R-CNN on timm:resnet18d (FPN over features_only), SGD 0.01; RT-DETR with rtdetr_r18vd's sizes (transformers RTDetrConfig), AdamW 2e-4, clip 0.1; CWT on the default pairs (by stride): α = 5e-6 for Faster R-CNN (CWT starts at ~4x its loss), alpha: auto at ratio 4 for RT-DETR" \
  --note "protocol: fitting test, the first 32 images of coco128 are both training and evaluation set (AP measures fitting, not generalisation); COCO AP over the categories present, in %" \
  --minutes "$(( (SECONDS - start) / 60 ))" --out "$OUT"
