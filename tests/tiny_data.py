"""Generated datasets on disk for the tests: tiny ImageFolder, CamVid and COCO trees (the configs that read
them: conftest's TINY, tiny_tree and image_folder_data)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, array: np.ndarray) -> None:
    """``array`` (H x W x 3 pixels or H x W labels, uint8) saved as a PNG, its folder created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def image_folder(
    root: Path, counts: dict[str, int], classes: Sequence[str], pixels: Callable[[int, int], np.ndarray]
) -> Path:
    """An ImageFolder: ``root/<split>/<class>/<i>.png``, ``counts[split]`` images a class, image ``i`` of class
    ``label`` being ``pixels(label, i)`` (uint8 H x W x 3), made split by split, class by class, in order."""
    for split, count in counts.items():
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                write_png(root / split / name / f"{i}.png", pixels(label, i))
    return root


def camvid_tree(root: Path, counts: dict[str, int], rng: np.random.Generator, size: int = 64) -> Path:
    """A CamVid layout (``<split>/`` images, ``<split>annot/`` labels, ``classes.json``): 11 classes and the
    void label 11, random ``size`` x ``size`` images and labels, ``counts[split]`` of each split."""
    for split, count in counts.items():
        for i in range(count):
            write_png(root / split / f"{i}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            labels = rng.integers(0, 12, (size, size), dtype=np.uint8)  # 11 = void
            write_png(root / f"{split}annot" / f"{i}.png", labels)
    (root / "classes.json").write_text(
        json.dumps({"classes": [f"c{i}" for i in range(11)], "void_label": 11})
    )
    return root


def coco_split(root: Path, split: str, count: int, rng: np.random.Generator, size: int = 64) -> None:
    """``count`` random images in ``root/<split>/`` and ``root/annotations/instances_<split>.json``: two boxes
    an image, of the categories 3 (cat) and 7 (dog), so that labels and COCO ids differ."""
    images, annotations = [], []
    for i in range(count):
        name = f"{split}{i}.png"
        write_png(root / split / name, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
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
