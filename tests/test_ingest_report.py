"""The ingest report of detection and segmentation data, and the segmentation label-value check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featdistill.tasks.ingest import HIDDEN, format_report
from featdistill.tasks.segmentation.data import CamVid


def _camvid(root: Path, label_values: list[int]) -> Path:
    for split in ("train", "trainannot"):
        (root / split).mkdir(parents=True)
    for i, value in enumerate(label_values):
        Image.fromarray(np.full((4, 6, 3), 40 * i, np.uint8)).save(root / "train" / f"{i}.png")
        label = np.zeros((4, 6), np.uint8)
        label[1, 2] = value
        Image.fromarray(label).save(root / "trainannot" / f"{i}.png")
    return root


def test_segmentation_label_outside_the_classes_names_file_and_value(tmp_path: Path) -> None:
    root = _camvid(tmp_path / "ok", [3, 11, 255])  # a class, CamVid's void, the usual ignore value
    dataset = CamVid(root, "train", in_memory=True)
    assert dataset[1][1][1, 2] == 255 and dataset[0][1][1, 2] == 3
    bad = _camvid(tmp_path / "bad", [3, 12])
    with pytest.raises(ValueError, match=re.escape(f"label {bad / 'trainannot' / '1.png'} has value 12")):
        CamVid(bad, "train", in_memory=True)
    streaming = CamVid(bad, "train")  # decoded per item: the error comes when the file is read
    with pytest.raises(ValueError, match="neither a class id \\(11 classes\\) nor void \\(11, 255\\)"):
        streaming[1]


def test_segmentation_report_lists_left_out_files(tmp_path: Path) -> None:
    from featdistill.tasks.ingest import SplitStats

    root = _camvid(tmp_path / "data", [1, 2])
    (root / "train" / ".DS_Store").write_bytes(b"\0")
    (root / "train" / "._0.png").write_bytes(b"\0")  # AppleDouble: matches *.png, is no image
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(root / "train" / "extra.jpg")
    stats = SplitStats("train", str(root / "train"))
    dataset = CamVid(root, "train", stats=stats)
    report = stats.to_dict()
    assert len(dataset) == report["images"] == 2 and report["inspected"] == 2
    assert report["skipped"][HIDDEN]["count"] == 2 and report["skipped"]["not *.png"]["count"] == 1
    assert report["formats"] == {"RGB": 2} and report["sizes"] == {"6x4": 2}


def test_detection_report_counts_empty_and_crowd_only_images(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    from featdistill.tasks.detection.data import CocoDetection, coco_split_stats

    images = []
    for i in range(4):
        Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / f"{i}.jpg")
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 10, "height": 8})
    ann = {"area": 4.0, "segmentation": [[1, 1, 3, 1, 3, 3]]}
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 4, 4], "iscrowd": 0, **ann},
        {"id": 2, "image_id": 1, "category_id": 9, "bbox": [2, 2, 4, 4], "iscrowd": 0, **ann},
        {"id": 3, "image_id": 2, "category_id": 7, "bbox": [1, 1, 4, 4], "iscrowd": 1, **ann},
        {"id": 4, "image_id": 3, "category_id": 7, "bbox": [1, 1, 4, 4], "iscrowd": 0, **ann},
    ]
    categories = [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    report = coco_split_stats(CocoDetection(tmp_path, path), "val").to_dict()
    assert report["images"] == 4 and report["classes"] == {"cat": 2, "dog": 1}
    assert report["without_annotations"] == {"count": 1, "first": ["3.jpg"]}
    assert report["crowd_only"] == {"count": 1, "first": ["1.jpg"]}
    text = format_report({"task": "detection", "splits": [report]})
    assert "images without annotations: 1 (3.jpg)" in text
    assert "images with only crowd regions: 1 (1.jpg)" in text
