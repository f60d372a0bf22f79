"""YOLO polygon labels (``class x1 y1 x2 y2 ...``) are instance masks: the mask of a polygon is the one its
COCO json twin gives, and a Mask R-CNN student trains on them and is scored on ``segm/AP`` by ``eval``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from conftest import tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.config import parse_config
from featdistill.tasks.detection import DetectionTask
from tiny_data import write_png

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTH, HEIGHT = 64, 32
#: Two polygons an image at integer pixels (exact as a fraction of 64 and 32): a triangle and a pentagon.
POLYGONS = [
    (0, [4, 4, 28, 6, 12, 26]),
    (1, [36, 8, 56, 4, 60, 20, 48, 28, 34, 22]),
]


def polygon_data(root: Path, counts: dict[str, int]) -> tuple[Path, Path]:
    """The same polygons as a YOLO folder (``root/yolo``, normalised) and as COCO json (``root/coco``, pixels):
    bright shapes on noise, ``counts[split]`` images a split. Returns the two roots."""
    rng = np.random.default_rng(0)
    yolo, coco = root / "yolo", root / "coco"
    categories = [{"id": 0, "name": "triangle"}, {"id": 1, "name": "pentagon"}]
    for split, count in counts.items():
        images, annotations = [], []
        for i in range(count):
            stem = f"{split}{i}"
            pixels = rng.integers(0, 80, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            lines = []
            for label, points in POLYGONS:
                shifted = [v + (i if k % 2 == 0 else 0) for k, v in enumerate(points)]
                xs, ys = shifted[0::2], shifted[1::2]
                pixels[min(ys) : max(ys), min(xs) : max(xs)] = 200 + 40 * label
                lines.append(
                    f"{label} "
                    + " ".join(repr(v / (WIDTH if k % 2 == 0 else HEIGHT)) for k, v in enumerate(shifted))
                )
                x0, y0 = min(xs), min(ys)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": label,
                        "bbox": [x0, y0, max(xs) - x0, max(ys) - y0],
                        "area": 1.0,  # pycocotools' masks do not read it
                        "iscrowd": 0,
                        "segmentation": [shifted],
                    }
                )
            write_png(yolo / "images" / split / f"{stem}.png", pixels)
            write_png(coco / split / f"{stem}.png", pixels)
            (yolo / "labels" / split).mkdir(parents=True, exist_ok=True)
            (yolo / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
            images.append({"id": i + 1, "file_name": f"{stem}.png", "width": WIDTH, "height": HEIGHT})
        (coco / "annotations").mkdir(parents=True, exist_ok=True)
        data = {"images": images, "annotations": annotations, "categories": categories}
        (coco / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    (yolo / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames: [triangle, pentagon]\n"
    )
    return yolo, coco


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return polygon_data(tmp_path_factory.mktemp("polygons"), {"train": 2, "val": 2})


def _tree(out: Path | None, root: Path, name: str) -> dict:
    return tiny_tree(
        out,
        task="detection",
        alone=True,
        data={"name": name, "root": str(root), "val_split": "val", "batch_size": 2, "augment": False},
        model={"student": "maskrcnn"},
    )


def test_a_yolo_polygon_gives_the_mask_of_the_same_polygon_in_coco_json(roots) -> None:
    """The training targets read from YOLO polygons hold the masks pycocotools rasterises from the json."""
    yolo, coco = roots
    task = DetectionTask(parse_config(_tree(None, yolo, "yolo")))
    train, _ = task.build_loaders()
    truth = COCO(str(coco / "annotations" / "instances_train.json"))
    for index, image_id in enumerate(train.dataset.ids):
        _, target = train.dataset[index]
        expected = np.stack([truth.annToMask(a) for a in truth.loadAnns(truth.getAnnIds(imgIds=image_id))])
        assert target["masks"].shape == (len(POLYGONS), HEIGHT, WIDTH)
        assert torch.equal(target["masks"], torch.from_numpy(expected))
        assert target["labels"].tolist() == [1, 2]


def test_mask_rcnn_trains_on_yolo_polygons_and_eval_reports_segm_ap(roots, tmp_path, capsys) -> None:
    yolo, _ = roots
    out = tmp_path / "run"
    config = write_yaml(tmp_path / "run.yaml", _tree(out, yolo, "yolo"))
    assert main(["train", str(config)]) == 0
    trained = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= trained["segm/AP"] <= 1.0
    capsys.readouterr()
    assert main(["eval", str(config), "--checkpoint", str(out / "last.pt")]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["segm/AP"] == pytest.approx(trained["segm/AP"])
    assert evaluated["bbox/AP"] == pytest.approx(trained["bbox/AP"])
