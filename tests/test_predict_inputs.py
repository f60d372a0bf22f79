"""What ``featdistill predict`` reads and writes, without a model: input collection (files, folders, globs),
bad files, and the per-task writers (CSV, label PNGs / overlays, COCO results / drawn boxes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featdistill.predict.inputs import BadFiles, InputImage, collect_images, decoded_batches
from featdistill.tasks.classification.prediction import ClassificationWriter
from featdistill.tasks.detection.prediction import DetectionWriter
from featdistill.tasks.prediction import palette
from featdistill.tasks.segmentation.prediction import SegmentationWriter


def _png(path: Path, value: int = 100, size: tuple[int, int] = (6, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)
    return path


def test_folders_are_read_recursively_without_hidden_or_other_files(tmp_path: Path) -> None:
    _png(tmp_path / "in" / "b.png")
    _png(tmp_path / "in" / "sub" / "a.png")
    _png(tmp_path / "in" / ".hidden" / "c.png")
    _png(tmp_path / "in" / "._d.png")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    found = collect_images([tmp_path / "in"])
    assert [image.name for image in found] == ["b.png", "sub/a.png"]


def test_globs_files_and_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("x/1.png", "x/deep/2.png", "y/3.jpg"):
        _png(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    found = collect_images(["x/**/*.png", "y/3.jpg", "x/1.png"])  # x/1.png listed twice: read once
    assert [(str(i.path), i.name) for i in found] == [
        ("x/1.png", "1.png"),
        ("x/deep/2.png", "deep/2.png"),
        ("y/3.jpg", "3.jpg"),
    ]
    with pytest.raises(FileNotFoundError, match=r"input missing\.png: no such file or folder, and no glob"):
        collect_images(["missing.png"])
    with pytest.raises(ValueError, match=r"no image files match z/\*\.png"):
        collect_images(["z/*.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files in folder empty"):
        collect_images(["empty"])


def test_bad_files_are_skipped_and_counted_or_stop_the_run(tmp_path: Path) -> None:
    good = [_png(tmp_path / f"{k}.png", size=(4 + k, 5)) for k in range(3)]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    images = [InputImage(p, p.name) for p in (good[0], bad, good[1], good[2])]
    counted = BadFiles()
    with pytest.warns(UserWarning, match="skipping undecodable image .*broken.jpg"):
        batches = list(decoded_batches(images, 2, 8, "skip", counted))
    assert [[item.name for item, _ in batch] for batch in batches] == [["0.png", "1.png"], ["2.png"]]
    assert batches[0][1][1].shape == (3, 5, 5) and batches[0][1][1].dtype == torch.uint8
    assert counted.count == 1 and counted.first == [str(bad)]
    sixteen = list(decoded_batches(images[:1], 2, 16, "skip", BadFiles()))
    assert sixteen[0][0][1].dtype == torch.uint16 and int(sixteen[0][0][1].int().max()) == 100 * 257
    with pytest.raises(ValueError, match=r"cannot decode image .*broken.jpg.*or pass --on-bad-file skip"):
        list(decoded_batches(images, 2, 8, "raise", BadFiles()))
    with pytest.raises(ValueError, match="--on-bad-file must be one of skip, raise"):
        list(decoded_batches(images, 2, 8, "ignore", BadFiles()))


def test_classification_csv_has_the_top_k_names_and_probabilities(tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    writer = ClassificationWriter(out, ["cat", "dog", "eel"], top_k=2)
    images = [InputImage(Path("a/1.png"), "1.png"), InputImage(Path("a/2.png"), "2.png")]
    writer.write(images, [], [torch.tensor([0.0, 2.0, 1.0]), torch.tensor([3.0, 0.0, 0.0])])
    writer.close()
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["file", "class_1", "prob_1", "class_2", "prob_2"]
    assert rows[1][:2] == ["a/1.png", "dog"] and rows[1][3] == "eel"
    assert float(rows[1][2]) == pytest.approx(torch.tensor([0.0, 2.0, 1.0]).softmax(0)[1].item(), rel=1e-5)
    assert rows[2][1] == "cat"
    with pytest.raises(ValueError, match="--top-k must be at least 1"):
        ClassificationWriter(tmp_path / "q.csv", ["a"], top_k=0)


def test_segmentation_labels_and_overlays(tmp_path: Path) -> None:
    writer = SegmentationWriter(tmp_path / "out", num_classes=3, overlay=True)
    logits = torch.zeros(3, 4, 5)
    logits[2, :, 3:] = 1.0  # class 2 on the right, class 0 elsewhere
    pixels = torch.full((3, 4, 5), 200 * 257, dtype=torch.uint16)  # a 16-bit image is drawn too
    writer.write([InputImage(Path("x/sub/im.jpg"), "sub/im.jpg")], [pixels], [logits])
    labels = np.asarray(Image.open(tmp_path / "out" / "labels" / "sub" / "im.png"))
    assert labels.dtype == np.uint8 and labels.shape == (4, 5)
    assert (labels[:, 3:] == 2).all() and (labels[:, :3] == 0).all()
    overlay = np.asarray(Image.open(tmp_path / "out" / "overlays" / "sub" / "im.png"))
    colours = palette(3)
    assert overlay.shape == (4, 5, 3)
    assert tuple(overlay[0, 4]) == tuple(round(0.5 * 200 + 0.5 * c) for c in colours[2])
    assert len(set(palette(256))) == 256


def test_detection_results_are_coco_format_with_names(tmp_path: Path) -> None:
    categories = [{"id": 0, "name": "__background__"}, {"id": 7, "name": "box"}, {"id": 9, "name": "ball"}]
    writer = DetectionWriter(tmp_path / "det.json", categories, draw=True, draw_threshold=0.5)
    found = {
        "boxes": torch.tensor([[1.0, 2.0, 11.0, 22.0], [0.0, 0.0, 4.0, 4.0], [3.0, 3.0, 9.0, 9.0]]),
        "labels": torch.tensor([1, 0, 2]),  # label 0 (background, RetinaNet/FCOS) is left out
        "scores": torch.tensor([0.9, 0.8, 0.3]),
    }
    pixels = torch.zeros(3, 30, 30, dtype=torch.uint8)
    writer.write([InputImage(Path("imgs/a.jpg"), "a.jpg")], [pixels], [found])
    writer.close()
    results = json.loads((tmp_path / "det.json").read_text())
    assert results == [
        {
            "file_name": "a.jpg",
            "bbox": [1.0, 2.0, 10.0, 20.0],
            "category_id": 7,
            "category_name": "box",
            "score": pytest.approx(0.9),
        },
        {
            "file_name": "a.jpg",
            "bbox": [3.0, 3.0, 6.0, 6.0],
            "category_id": 9,
            "category_name": "ball",
            "score": pytest.approx(0.3),
        },
    ]
    drawn = np.asarray(Image.open(tmp_path / "det_drawn" / "a.png")).any(axis=2)  # where something is drawn
    assert drawn[2:4, 1:12].all() and drawn[2:22, 1:3].all()  # the box scored 0.9: top and left edges
    assert not drawn[4:9, 3].any()  # the box scored 0.3 (left edge x = 3, y = 3..9) is not drawn
