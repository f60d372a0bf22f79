"""``featdistill predict`` for detectors: one JSON list in COCO results format, an entry per detection:
``file_name`` (relative to the folder or glob it came from), ``bbox`` (x, y, width, height in pixels of the
original image), ``category_id``, ``category_name``, ``score``; with ``draw``, ``<output stem>_drawn/<name>.png``
with the boxes scored at least ``draw_threshold``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from ..prediction import PredictOptions, StudentRunner, as_uint8, palette, png_path
from .data import load_coco
from .evaluate import CocoEvaluator

if TYPE_CHECKING:
    from ..prediction import InputImage

__all__ = ["DetectionPrediction", "DetectionWriter"]

BACKGROUND = 0  # the label torchvision detectors reserve for the background


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
                drawn = as_uint8(source)
                if names:  # torchvision warns on an empty box list
                    drawn = draw_bounding_boxes(drawn, boxes[shown], names, colours, width=2)
                Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(png_path(self.drawn, image))

    def close(self) -> None:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.output.with_name(f"{self.output.name}.tmp")
        tmp.write_text(json.dumps(self.results))
        tmp.replace(self.output)

    def summary(self) -> dict[str, Any]:
        return {"detections": len(self.results)}


def card_categories(card: dict[str, Any]) -> list[dict[str, Any]]:
    """Label index -> ``{"id", "name"}`` of a detector's card (label 0, the background, has none)."""
    categories = card.get("categories")
    if not categories:
        raise ValueError(
            "the student card has no categories (label -> COCO category id) to name detections by"
        )
    background = {"id": 0, "name": card["classes"][0]}
    return categories if len(categories) == len(card["classes"]) else [background, *categories]


class DetectionPrediction:
    """Detections of each image in its own pixel coordinates, written as COCO results."""

    default_output = "predictions.json"

    def __init__(self, card: dict[str, Any]) -> None:
        self.categories = card_categories(card)

    def outputs(self, student: StudentRunner, pixels: list[Tensor]) -> list[dict[str, Tensor]]:
        return student.detect(pixels)

    def writer(self, output: Path, options: PredictOptions) -> DetectionWriter:
        return DetectionWriter(output, self.categories, options.draw, options.draw_threshold)


def score_detections(
    results: str | Path, ann_file: str | Path, image_ids: list[int] | None = None
) -> dict[str, float]:
    """COCO AP of a ``predict`` results JSON (entries named by ``file_name``) on ``ann_file``'s images
    (``image_ids``: only those, e.g. the ones ``eval`` scored)."""
    coco = load_coco(ann_file)
    by_name = {info["file_name"]: image_id for image_id, info in coco.imgs.items()}
    entries: list[dict[str, Any]] = json.loads(Path(results).read_text())
    unknown = sorted({e["file_name"] for e in entries} - set(by_name))
    if unknown:
        raise ValueError(f"{results} names images that {ann_file} does not list: {unknown[:3]}")
    ids = set(coco.getImgIds() if image_ids is None else image_ids)
    detections = [
        {
            "image_id": by_name[e["file_name"]],
            "category_id": e["category_id"],
            "bbox": e["bbox"],
            "score": e["score"],
        }
        for e in entries
        if by_name[e["file_name"]] in ids
    ]
    evaluator = CocoEvaluator(coco, ("bbox",))
    evaluator.merge(detections, ids)
    return evaluator.summarize()
