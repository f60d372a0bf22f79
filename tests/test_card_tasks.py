"""Segmentation and detection checkpoints carry their card, and ``eval --checkpoint`` alone works without
the training split (tiny generated CamVid / COCO-format data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from featdistill.card import load_student, preprocess, read_card
from featdistill.cli.main import main


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _train(tmp_path: Path, tree: dict) -> tuple[Path, dict]:
    """Train ``tree`` through the CLI; return (checkpoint, the metrics of metrics.json)."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tree))
    assert main(["train", str(cfg)]) == 0
    checkpoint = tmp_path / "run" / "last.pt"
    return checkpoint, json.loads((tmp_path / "run" / "metrics.json").read_text())


def _eval_alone(capsys, checkpoint: Path) -> dict:
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(checkpoint)]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_segmentation_card_and_eval_without_the_training_split(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "camvid"
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            _png(root / split / f"{i}.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            labels = rng.integers(0, 12, (64, 64), dtype=np.uint8)  # 11 = void
            _png(root / f"{split}annot" / f"{i}.png", labels)
    (root / "classes.json").write_text(
        json.dumps({"classes": [f"c{i}" for i in range(11)], "void_label": 11})
    )
    tree = {
        "task": "segmentation",
        "device": "cpu",
        "data": {
            "name": "camvid",
            "root": str(root),
            "val_split": "val",
            "batch_size": 2,
            "in_memory": False,
            "options": {"crop_size": 64},
        },
        "model": {
            "student": "pspnet",
            "num_classes": 11,
            "options": {"channels": 32, "backbone": "resnet18"},
        },
        "train": {"epochs": 1, "lr": 0.01},
        "output": {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False},
    }
    checkpoint, metrics = _train(tmp_path, tree)
    card = read_card(checkpoint)
    assert card["task"] == "segmentation" and card["classes"] == [f"c{i}" for i in range(11)]
    assert card["ignore_index"] == 255 and card["preprocessing"]["input_size"] == [64, 64]
    assert card["metric"]["name"] == "miou" and card["metric"]["value"] == pytest.approx(metrics["miou"])
    shutil.rmtree(root / "train")
    shutil.rmtree(root / "trainannot")
    printed = _eval_alone(capsys, checkpoint)
    assert printed == pytest.approx(metrics)
    task, _, card = load_student(checkpoint)
    images, _ = next(iter(task.build_eval_loader()))
    pixels = torch.from_numpy(np.array(Image.open(root / "val" / "0.png"))).permute(2, 0, 1)
    torch.testing.assert_close(preprocess(pixels[None], card), images[:1])  # the eval transform's input


def _coco(root: Path, split: str, count: int, rng: np.random.Generator) -> None:
    images, annotations = [], []
    for i in range(count):
        name = f"{split}{i}.png"
        _png(root / split / name, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        images.append({"id": i + 1, "file_name": name, "height": 64, "width": 64})
        for k, category in enumerate((3, 7)):
            box = [4.0 + 20 * k, 6.0, 24.0, 30.0]
            annotations.append(
                {
                    "id": 10 * i + k + 1,
                    "image_id": i + 1,
                    "category_id": category,
                    "bbox": box,
                    "area": 720.0,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))


def test_detection_card_and_eval_without_the_training_split(tmp_path: Path, capsys) -> None:
    pytest.importorskip("pycocotools")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    root = tmp_path / "coco"
    _coco(root, "train", 2, rng)
    _coco(root, "val", 2, rng)
    small = {
        "backbone": "resnet18",
        "min_size": 64,
        "max_size": 64,
        "rpn_pre_nms_top_n_train": 50,
        "rpn_post_nms_top_n_train": 20,
        "rpn_pre_nms_top_n_test": 20,
        "rpn_post_nms_top_n_test": 10,
        "box_batch_size_per_image": 16,
        "box_score_thresh": 0.0,
    }
    tree = {
        "task": "detection",
        "device": "cpu",
        "data": {"name": "coco", "root": str(root), "val_split": "val", "batch_size": 1},
        "model": {"student": "fasterrcnn", "options": small},
        "train": {"epochs": 1, "lr": 0.001},
        "output": {"dir": str(tmp_path / "run"), "tensorboard": False, "progress": False},
    }
    checkpoint, metrics = _train(tmp_path, tree)
    card = read_card(checkpoint)
    assert card["task"] == "detection" and card["model"]["num_classes"] == 3
    assert card["classes"] == ["__background__", "cat", "dog"]
    assert card["categories"] == [
        {"label": 0, "id": 0, "name": "__background__"},
        {"label": 1, "id": 3, "name": "cat"},
        {"label": 2, "id": 7, "name": "dog"},
    ]
    p = card["preprocessing"]
    assert p["normalize_in_model"] is True and p["min_size"] == 64 and p["input_size"] is None
    shutil.rmtree(root / "train")
    (root / "annotations" / "instances_train.json").unlink()
    assert _eval_alone(capsys, checkpoint) == pytest.approx(metrics)
    pixels = torch.randint(0, 256, (2, 3, 20, 30), dtype=torch.uint8)
    scaled = preprocess(pixels, card)  # detectors normalise inside: images in [0, 1], each its own size
    assert isinstance(scaled, list) and torch.equal(scaled[1], pixels[1].float() / 255)
    scripted = tmp_path / "detector.ts"  # the default format for detectors
    export = ["export", "--checkpoint", str(checkpoint), "--include-preprocessing", "--output", str(scripted)]
    assert main(export) == 0
    _, student, card = load_student(checkpoint)
    with torch.no_grad():
        expected = student(scaled)
        _, detections = torch.jit.load(str(scripted))(
            list(pixels)
        )  # scripted detectors return (losses, dets)
    for got, want in zip(detections, expected):
        torch.testing.assert_close(got["boxes"], want["boxes"])
        torch.testing.assert_close(got["scores"], want["scores"])
