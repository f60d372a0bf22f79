"""Scoring what ``predict`` wrote against the ground truth, with the metrics ``eval`` reports.

So that an export can be checked where it is deployed, from its output files alone: label PNGs against a
segmentation dataset's labels (mIoU, pixel and mean class accuracy, %), a COCO results JSON against a COCO
annotation file (COCO AP, 0-1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..tasks.detection.data import load_coco
from ..tasks.detection.evaluate import CocoEvaluator
from ..tasks.segmentation.data import SegmentationFolder
from ..tasks.segmentation.metrics import SegmentationMeter

__all__ = ["score_detections", "score_label_pngs"]


def score_label_pngs(
    predictions: str | Path, dataset: SegmentationFolder, images_root: str | Path
) -> dict[str, float]:
    """Metrics of ``predictions/labels/<image path relative to images_root>.png`` over ``dataset``'s images."""
    meter = SegmentationMeter(dataset.num_classes, dataset.ignore_index)
    for index, image in enumerate(dataset.images):
        name = Path(image).relative_to(images_root).with_suffix(".png")
        path = Path(predictions) / "labels" / name
        if not path.is_file():
            raise FileNotFoundError(f"no predicted labels {path} for {image}")
        with Image.open(path) as predicted:
            labels = torch.from_numpy(np.asarray(predicted).astype(np.int64))
        meter.update(labels, dataset[index][1])
    result = meter.compute()
    return {key: 100 * float(result[key]) for key in ("miou", "pixel_acc", "mean_acc")}  # type: ignore[arg-type]


def score_detections(
    results: str | Path, ann_file: str | Path, image_ids: list[int] | None = None
) -> dict[str, float]:
    """COCO AP of a ``predict`` results JSON (entries named by ``file_name``) on ``ann_file``'s images
    (``image_ids``: only those, e.g. the ones ``eval`` scored)."""
    coco = load_coco(ann_file)
    by_name = {info["file_name"]: image_id for image_id, info in coco.imgs.items()}
    entries: list[dict[str, Any]] = json.loads(Path(results).read_text())
    unknown = sorted({e["file_name"] for e in entries} - set(by_name))
    if unknown:
        raise ValueError(f"{results} names images that {ann_file} does not list: {unknown[:3]}")
    ids = set(coco.getImgIds() if image_ids is None else image_ids)
    detections = [
        {
            "image_id": by_name[e["file_name"]],
            "category_id": e["category_id"],
            "bbox": e["bbox"],
            "score": e["score"],
        }
        for e in entries
        if by_name[e["file_name"]] in ids
    ]
    evaluator = CocoEvaluator(coco, ("bbox",))
    evaluator.merge(detections, ids)
    return evaluator.summarize()
