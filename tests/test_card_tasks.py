"""Segmentation and detection checkpoints carry their card, and ``eval --checkpoint`` alone works without
the training split (tiny generated CamVid / COCO-format data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_tree, write_yaml
from featdistill.card import read_card
from featdistill.cli.main import main
from featdistill.predict.student import load_student
from featdistill.tasks.preprocess import preprocess
from tiny_data import camvid_tree, coco_split


def _train(tmp_path: Path, task: str, root: Path) -> tuple[Path, dict]:
    """Train the tiny ``task`` config on the tree at ``root`` through the CLI; return (checkpoint, the metrics
    of metrics.json)."""
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_tree(tmp_path / "run", task, data={"root": str(root)}))
    assert main(["train", str(cfg)]) == 0
    checkpoint = tmp_path / "run" / "last.pt"
    return checkpoint, json.loads((tmp_path / "run" / "metrics.json").read_text())


def _eval_alone(capsys, checkpoint: Path) -> dict:
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(checkpoint)]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_segmentation_card_and_eval_without_the_training_split(tmp_path: Path, capsys) -> None:
    root = camvid_tree(tmp_path / "camvid", {"train": 4, "val": 2}, np.random.default_rng(0))
    checkpoint, metrics = _train(tmp_path, "segmentation", root)
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


def test_detection_card_and_eval_without_the_training_split(tmp_path: Path, capsys) -> None:
    pytest.importorskip("pycocotools")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    root = tmp_path / "coco"
    coco_split(root, "train", 2, rng)
    coco_split(root, "val", 2, rng)
    checkpoint, metrics = _train(tmp_path, "detection", root)
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
