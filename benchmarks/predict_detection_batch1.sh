#!/usr/bin/env bash
# predict vs eval on coco128 with one image per batch in both (benchmarks/results/predict.md, section 3c).
# torchvision detectors pad every batch to its largest image, so detections depend on which images share a
# batch; with batches of one, predict's COCO results JSON must score exactly as eval.
# Run from the repository root: bash benchmarks/predict_detection_batch1.sh [WORK_DIR]
set -euo pipefail
work=${1:-$(mktemp -d)}
mkdir -p "$work"
data=../shared/data/coco128
fd="python -m featdistill"
$fd train configs/detection/coco128_cpu_faster_rcnn_cwt.yaml --set data.root=$data --set model.teacher=null \
  --set model.teacher_weights=null --set data.limit=16 --set data.val_limit=null --set train.epochs=2 \
  --set train.eval_every=2 --set data.eval_batch_size=1 --set output.progress=false --set output.dir="$work/run" > "$work/train.log"
$fd eval --checkpoint "$work/run/last.pt" --set data.eval_batch_size=1 > "$work/eval.json" 2> "$work/eval.err"
$fd predict "$work/run/last.pt" $data/images --batch-size 1 --output "$work/predict.json" --no-progress > "$work/predict.log"
python - "$work" "$data" <<'PY'
import json, sys
from featdistill.predict.score import score_predictions
work, data = sys.argv[1], sys.argv[2]
evaluated = json.load(open(f"{work}/eval.json"))
predicted = score_predictions("detection", f"{work}/predict.json", f"{data}/annotations/instances.json")
for key in evaluated:
    print(f"{key:12s} eval {evaluated[key]:.6g}  predict {predicted[key]:.6g}  {'equal' if evaluated[key] == predicted[key] else 'DIFFERENT'}")
PY
