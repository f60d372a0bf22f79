"""What ``featdistill predict`` writes, per task.

- classification: one CSV, a row per image: ``file``, then ``class_1, prob_1, ..., class_k, prob_k``
  (softmax probabilities, most likely first);
- segmentation: a folder with ``labels/<name>.png`` per image (the class index of each pixel: 8-bit gray,
  16-bit above 256 classes) and, with ``overlay``, ``overlays/<name>.png`` (the image under the classes'
  colours, half transparent);
- detection: one JSON list in COCO results format, an entry per detection: ``file_name`` (relative to the
  folder or glob it came from), ``bbox`` (x, y, width, height in pixels of the original image),
  ``category_id``, ``category_name``, ``score``; with ``draw``, ``<output stem>_drawn/<name>.png`` with the
  boxes scored at least ``draw_threshold``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from .inputs import InputImage

__all__ = ["ClassificationWriter", "DetectionWriter", "SegmentationWriter", "palette"]

BACKGROUND = 0  # the label torchvision detectors reserve for the background


def _as_uint8(pixels: Tensor) -> Tensor:
    """Decoded 8- or 16-bit pixels as uint8 for drawing."""
    if pixels.dtype == torch.uint8:
        return pixels
    return pixels.to(torch.float32).div_(257).round_().to(torch.uint8)


def _png_path(folder: Path, image: InputImage) -> Path:
    path = folder / Path(image.name).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct colours, one per class: the PASCAL VOC colour map (bits of the index spread over RGB)."""
    colours = []
    for index in range(num_classes):
        rgb, value = [0, 0, 0], index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        colours.append((rgb[0], rgb[1], rgb[2]))
    return colours


class ClassificationWriter:
    """The CSV of the ``top_k`` classes and probabilities of every image."""

    def __init__(self, output: Path, classes: list[str], top_k: int) -> None:
        if top_k < 1:
            raise ValueError(f"--top-k must be at least 1, got {top_k}")
        self.output, self.classes, self.top_k = output, classes, min(top_k, len(classes))
        output.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(output, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._csv = csv.writer(self._file)
        ranks = range(1, self.top_k + 1)
        self._csv.writerow(["file", *[f"{key}_{k}" for k in ranks for key in ("class", "prob")]])

    def write(self, images: list[InputImage], pixels: list[Tensor], logits: list[Tensor]) -> None:
        probs = torch.stack(logits).float().softmax(dim=1)
        top = probs.topk(self.top_k, dim=1)
        for image, values, indices in zip(images, top.values.tolist(), top.indices.tolist()):
            row: list[Any] = [str(image.path)]
            for value, index in zip(values, indices):
                row += [self.classes[index], f"{value:.6g}"]
            self._csv.writerow(row)

    def close(self) -> None:
        self._file.close()


class SegmentationWriter:
    """A label PNG per image (class indices), and optionally a colour overlay."""

    def __init__(self, output: Path, num_classes: int, overlay: bool) -> None:
        self.output, self.num_classes, self.overlay = output, num_classes, overlay
        self.colours = palette(num_classes)

    def write(self, images: list[InputImage], pixels: list[Tensor], logits: list[Tensor]) -> None:
        for image, source, scores in zip(images, pixels, logits):
            label = scores.argmax(dim=0).cpu()
            array = label.numpy().astype(np.uint8 if self.num_classes <= 256 else np.uint16)
            Image.fromarray(array).save(_png_path(self.output / "labels", image))
            if self.overlay:
                masks = label[None] == torch.arange(self.num_classes)[:, None, None]
                drawn = draw_segmentation_masks(_as_uint8(source), masks, alpha=0.5, colors=self.colours)
                Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(
                    _png_path(self.output / "overlays", image)
                )

    def close(self) -> None:
        pass


class DetectionWriter:
    """The COCO results JSON of all images, and optionally each image with its boxes drawn."""

    def __init__(
        self, output: Path, categories: list[dict[str, Any]], draw: bool, draw_threshold: float = 0.5
    ) -> None:
        self.output, self.categories = output, categories  # label -> {"id", "name"}
        self.drawn = output.with_name(f"{output.stem}_drawn") if draw else None
        self.draw_threshold = draw_threshold
        self.colours = palette(len(categories))
        self.results: list[dict[str, Any]] = []

    def write(
        self, images: list[InputImage], pixels: list[Tensor], detections: list[dict[str, Tensor]]
    ) -> None:
        for image, source, found in zip(images, pixels, detections):
            labels = found["labels"].cpu()
            keep = labels != BACKGROUND  # RetinaNet / FCOS may score the background slot
            boxes, scores, labels = (
                found["boxes"].cpu().float()[keep],
                found["scores"].cpu()[keep],
                labels[keep],
            )
            for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                category = self.categories[label]
                x0, y0, x1, y1 = box
                self.results.append(
                    {
                        "file_name": image.name,
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "category_id": category["id"],
                        "category_name": category["name"],
                        "score": score,
                    }
                )
            if self.drawn is not None:
                shown = scores >= self.draw_threshold
                names = [
                    f"{self.categories[int(n)]['name']} {s:.2f}" for n, s in zip(labels[shown], scores[shown])
                ]
                colours = [self.colours[int(n)] for n in labels[shown]]  # one colour per category
                drawn = _as_uint8(source)
                if names:  # torchvision warns on an empty box list
                    drawn = draw_bounding_boxes(drawn, boxes[shown], names, colours, width=2)
                Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(_png_path(self.drawn, image))

    def close(self) -> None:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.output.with_name(f"{self.output.name}.tmp")
        tmp.write_text(json.dumps(self.results))
        tmp.replace(self.output)
