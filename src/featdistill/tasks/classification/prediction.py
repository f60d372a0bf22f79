"""``featdistill predict`` for classifiers: one CSV, a row per image: ``file``, then ``class_1, prob_1, ...,
class_k, prob_k`` (softmax probabilities, most likely first); images in folders named after the classes
(ImageFolder) are also scored (``top1`` in the report)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..prediction import PredictOptions, StudentRunner

if TYPE_CHECKING:
    from ..prediction import InputImage

__all__ = ["ClassificationPrediction", "ClassificationWriter"]


class ClassificationWriter:
    """The CSV of the ``top_k`` classes and probabilities of every image, and the top-1 accuracy of the images
    whose folder names their class."""

    def __init__(self, output: Path, classes: list[str], top_k: int) -> None:
        if top_k < 1:
            raise ValueError(f"--top-k must be at least 1, got {top_k}")
        self.output, self.classes, self.top_k = output, classes, min(top_k, len(classes))
        self.images = self.labelled = self.correct = 0
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
            self.images += 1
            folder = image.path.parent.name  # ImageFolder layout: the folder names the class
            if folder in self.classes:
                self.labelled += 1
                self.correct += int(indices[0] == self.classes.index(folder))

    def close(self) -> None:
        self._file.close()

    def summary(self) -> dict[str, Any]:
        """``top1`` (%) when every image sat in a folder named after its class, else nothing."""
        if self.labelled and self.labelled == self.images:
            return {"top1": 100 * self.correct / self.labelled}
        return {}


class ClassificationPrediction:
    """Logits ``[C]`` per image, written as the top-k CSV."""

    default_output = "predictions.csv"

    def __init__(self, card: dict[str, Any]) -> None:
        self.classes = list(card["classes"])

    def outputs(self, student: StudentRunner, pixels: list[Tensor]) -> list[Tensor]:
        return student.dense(pixels)

    def writer(self, output: Path, options: PredictOptions) -> ClassificationWriter:
        return ClassificationWriter(output, self.classes, options.top_k)
