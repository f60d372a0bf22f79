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


def detection_formats(root: Path, rng: np.random.Generator, counts: dict[str, int]) -> dict[str, Path]:
    """One detection dataset written three ways: ``root/coco`` (COCO json, category ids 3 and 7), ``root/yolo``
    (Ultralytics layout with ``data.yaml``) and ``root/voc`` (VOC xml, ImageSets/Main), ``counts[split]``
    random 64 x 32 images a split (``train``, ``val``), one to three boxes an image at integer pixels (exact
    in every format), the last image of each split without any. Returns the three roots."""
    names, width, height = ("cat", "dog"), 64, 32
    roots = {fmt: root / fmt for fmt in ("coco", "yolo", "voc")}
    categories = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    voc_lists: dict[str, list[str]] = {}
    for split, count in counts.items():
        images, annotations = [], []
        for i in range(count):
            stem = f"{split}{i}"
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            for folder in (
                roots["coco"] / split,
                roots["yolo"] / "images" / split,
                roots["voc"] / "JPEGImages",
            ):
                write_png(folder / f"{stem}.png", pixels)
            images.append({"id": i + 1, "file_name": f"{stem}.png", "height": height, "width": width})
            boxes = []
            for _ in range(0 if i == count - 1 else int(rng.integers(1, 4))):
                x0, y0 = int(rng.integers(0, 40)), int(rng.integers(0, 16))
                x1, y1 = x0 + int(rng.integers(8, 24)), y0 + int(rng.integers(8, 16))
                boxes.append((int(rng.integers(0, 2)), x0, y0, x1, y1))
            yolo_lines, objects = [], []
            for label, x0, y0, x1, y1 in boxes:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": categories[label]["id"],
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": float((x1 - x0) * (y1 - y0)),
                        "iscrowd": 0,
                    }
                )
                cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
                yolo_lines.append(f"{label} {cx!r} {cy!r} {(x1 - x0) / width!r} {(y1 - y0) / height!r}")
                objects.append(
                    f"<object><name>{names[label]}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
                    f"<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                )
            labels = roots["yolo"] / "labels" / split / f"{stem}.txt"
            labels.parent.mkdir(parents=True, exist_ok=True)
            if boxes:
                labels.write_text("\n".join(yolo_lines) + "\n")
            xml = roots["voc"] / "Annotations" / f"{stem}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_text(
                f"<annotation>\n<filename>{stem}.png</filename>\n<size><width>{width}</width><height>{height}"
                "</height><depth>3</depth></size>\n" + "\n".join(objects) + "\n</annotation>\n"
            )
            voc_lists.setdefault(split, []).append(stem)
        data = {"images": images, "annotations": annotations, "categories": categories}
        (roots["coco"] / "annotations").mkdir(parents=True, exist_ok=True)
        (roots["coco"] / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    (roots["yolo"] / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n"
    )
    (roots["voc"] / "ImageSets" / "Main").mkdir(parents=True)
    for split, stems in voc_lists.items():
        (roots["voc"] / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return roots
