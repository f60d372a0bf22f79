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


def _cityscapes(root: Path) -> Path:
    """Two cities' worth of tiny Cityscapes files per split: road (7), car (26) and unlabeled (0) pixels."""
    for split in ("train", "val"):
        for city in ("aachen", "bonn"):
            images, labels = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
            images.mkdir(parents=True)
            labels.mkdir(parents=True)
            Image.fromarray(np.full((4, 6, 3), 90 if city == "bonn" else 30, np.uint8)).save(
                images / f"{city}_000000_000019_leftImg8bit.png"
            )
            ids = np.full((4, 6), 7, np.uint8)
            ids[0, :3], ids[3, 5] = 26, 0
            Image.fromarray(ids).save(labels / f"{city}_000000_000019_gtFine_labelIds.png")
    return root


def test_segmentation_report_names_the_real_folders_and_counts_pixels(tmp_path: Path) -> None:
    from featdistill.tasks.ingest import SplitStats
    from featdistill.tasks.segmentation.data import Cityscapes

    root = _cityscapes(tmp_path / "cityscapes")
    stats = SplitStats("train", str(root / "train"))  # what a caller guesses; the dataset corrects it
    Cityscapes(root, "train", in_memory=True, stats=stats)
    report = stats.to_dict()
    assert report["root"] == str(root / "leftImg8bit" / "train")
    assert report["label_root"] == str(root / "gtFine" / "train")
    assert report["class_pixels"]["road"] == 2 * 20 and report["class_pixels"]["car"] == 2 * 3
    assert report["class_pixels"]["sky"] == 0 and report["ignored_pixels"] == 2
    lines = format_report({"task": "segmentation", "splits": [report]}).splitlines()
    assert lines[1] == f"  train: 2 images from {root / 'leftImg8bit' / 'train'}"
    assert lines[2] == f"    labels from {root / 'gtFine' / 'train'}"
    assert lines[3].startswith(
        "    pixels per class (labels of 2 decoded images): road 40 (83.3%), sidewalk 0"
    )
    assert "car 6 (12.5%)" in lines[3] and lines[3].endswith("; ignored 2 (4.2%)")

    camvid = _camvid(tmp_path / "camvid", [3, 11])  # a Road pixel, a void pixel; the rest Sky (0)
    stats = SplitStats("train", "guessed")
    CamVid(camvid, "train", stats=stats)  # streaming: the report's sample is decoded up front
    report = stats.to_dict()
    assert (report["root"], report["label_root"]) == (str(camvid / "train"), str(camvid / "trainannot"))
    assert report["class_pixels"]["Sky"] == 2 * 23 and report["class_pixels"]["Road"] == 1
    assert report["ignored_pixels"] == 1 and report["pixel_images"] == 2


def test_data_command_on_a_cityscapes_tree(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from featdistill.cli.main import main

    root = _cityscapes(tmp_path / "cityscapes")
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "task: segmentation\n"
        f"data: {{name: cityscapes, root: {root}, val_split: val, batch_size: 2, options: {{crop_size: 4}}}}\n"
        "model: {student: pspnet, num_classes: 19}\n"
    )
    assert main(["data", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"train: 2 images from {root / 'leftImg8bit' / 'train'}" in out
    assert f"val: 2 images from {root / 'leftImg8bit' / 'val'}" in out
    assert f"labels from {root / 'gtFine' / 'val'}" in out
    assert out.count("pixels per class (labels of 2 decoded images): road 40 (83.3%)") == 2
    assert f"{root}/train" not in out
