"""What YOLO and VOC readers share: the COCO form they build, and what happens to a bad label.

Both formats are read into a pycocotools ``COCO`` in memory (images, pixel boxes, categories), so one
dataset class (:class:`~.data.CocoDetection`), one evaluator and one ingest report serve COCO json, YOLO txt
and VOC xml alike: the same boxes in any of them train and score the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = ["TOLERANCE", "BadLabels", "LabelError", "image_size"]

#: How far (as a fraction of the image side) a coordinate may lie outside the image before it is a bad label.
TOLERANCE = 0.01
BAD_LABEL_SKIPPED = "bad label (on_bad_file: skip)"


class LabelError(ValueError):
    """A label line that cannot be read as a box; its message starts with ``file:line``."""


@dataclass
class BadLabels:
    """Bad label lines: ``raise`` stops at the first, naming ``file:line``; ``skip`` leaves each out and keeps
    ``file:line: why`` for the ingest report."""

    on_bad_file: str = "raise"
    found: list[str] = field(default_factory=list)

    def __call__(self, path: Path, line: int, why: str) -> None:
        where = f"{path}:{line}: {why}"
        if self.on_bad_file != "skip":
            raise LabelError(f"{where}; fix the label or set data.on_bad_file: skip")
        self.found.append(where)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header (the pixels are not decoded)."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as err:
        raise ValueError(f"cannot read the size of image {path}: {err}") from None


def coco_annotation(
    ann_id: int, image_id: int, category_id: int, box: list[float], **extra: Any
) -> dict[str, Any]:
    """One COCO annotation of an xyxy pixel box (``extra``: ``segmentation``, ``area``, ``iscrowd``)."""
    x0, y0, x1, y1 = box
    entry = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": (x1 - x0) * (y1 - y0),
        "iscrowd": 0,
    }
    return {**entry, **extra}
