#!/usr/bin/env bash
# The format table of benchmarks/results/detection_models.md: coco128 written again as YOLO txt and VOC xml
# (benchmarks/coco_to_formats.py, in a temporary folder, never committed), then one checkpoint evaluated on
# each copy by `featdistill eval`, and each copy's ingest report (`featdistill data`). The checkpoint: the
# coco128 CPU-tier Faster R-CNN R34-FPN (configs/detection/coco128_cpu_faster_rcnn_teacher.yaml) trained for
# EPOCHS epochs (default 4; the figures need a detector that finds something, not a good one).
#   bash benchmarks/detection_formats.sh 2>&1 | tee benchmarks/results/detection_formats.log
set -euo pipefail
cd "$(dirname "$0")/.."
F=(${FEATDISTILL:-featdistill})
TMP="${TMP_FORMATS:-/tmp/coco128_formats}"
RUNS="${RUNS:-runs/bench/detection_formats}"
CONFIG=configs/detection/coco128_cpu_faster_rcnn_teacher.yaml
COCO128="${COCO128:-../shared/data/coco128}"
rm -rf "$TMP" && python benchmarks/coco_to_formats.py "$COCO128" "$TMP"
"${F[@]}" train "$CONFIG" --set data.root="$COCO128" --set train.epochs="${EPOCHS:-4}" --set train.eval_every=1000 \
  --set output.dir="$RUNS/checkpoint" --set output.progress=false --resume auto
for fmt in coco coco_no_crowd yolo voc; do
  name=$fmt; split=(); [[ $fmt == coco_no_crowd ]] && name=coco
  # VOC names its classes: in COCO's id order, so that labels (and the checkpoint's categories) match; the
  # default (sorted names) would be another label order, which eval refuses for this checkpoint.
  names=$(python -c "import json, sys; d = json.load(open(sys.argv[1])); print(json.dumps([c['name'] for c in sorted(d['categories'], key=lambda c: c['id'])], separators=(',', ':')))" "$COCO128/annotations/instances.json")
  [[ $fmt == voc ]] && split=(--set data.train_split=all --set data.val_split=all --set "data.options.names=$names")  # YOLO: train, val
  common=(--set data.name=$name --set data.root="$TMP/$fmt" --set data.val_limit=null "${split[@]}")
  echo "== $fmt: featdistill data"
  "${F[@]}" data "$CONFIG" "${common[@]}" | grep -E "images|skipped|without|crowd" | head -8
  echo "== $fmt: featdistill eval"
  "${F[@]}" eval "$CONFIG" --checkpoint "$RUNS/checkpoint/last.pt" "${common[@]}" --set output.progress=false \
    --set output.dir="$RUNS/eval_$fmt" | tail -1
done
