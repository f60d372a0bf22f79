"""``featdistill predict``: run a student (a checkpoint or an export with its sidecar) on image files.

The student card (:mod:`featdistill.card`) says everything needed: the task, the class names and the
preprocessing, applied by :func:`featdistill.tasks.preprocess.preprocess` exactly as ``eval`` applies it. Images are
decoded as training decodes them, in batches; a batch of images of several sizes runs once per size,
unless the card resizes them (``resize: exact`` or ``center_crop``). Dense maps (segmentation logits) are
brought back to each image's size, so label PNGs match the image they describe. What runs and what is
written is the task's (its ``prediction``, :mod:`featdistill.tasks.prediction`); this module names no task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ..card import read_card
from ..run import select_device
from ..tasks.prediction import PredictOptions
from ..tasks.preprocess import preprocess, resized
from ..tasks.registry import task_class
from .inputs import BadFiles, collect_images, decoded_batches
from .runners import load_exported
from .student import load_student

if TYPE_CHECKING:
    from ..tasks.base import Task

__all__ = ["predict"]


class _Student:
    """The model and how to feed it: the card's preprocessing, or raw pixels for an export that bakes it in
    (a :class:`featdistill.tasks.prediction.StudentRunner`)."""

    def __init__(self, source: str | Path, device: str) -> None:
        self.card = read_card(source)
        export = self.card.get("export")
        self.task: Task | None = None
        if export is None:
            self.task, student, self.card = load_student(source)
            self.device = select_device(device)
            self.model = student.to(self.device)
            self.raw_pixels = False
        else:
            self.device = torch.device("cpu")
            self.model = load_exported(Path(source), export["format"])
            self.raw_pixels = bool(export.get("include_preprocessing"))

    def inputs(self, pixels: list[Tensor]) -> Tensor:
        """Model input of decoded ``[3, H, W]`` images: the card's preprocessing, or for an export that bakes
        the normalisation in, the card's resize alone."""
        if not self.raw_pixels:
            return preprocess(pixels, self.card).to(self.device)
        steps = self.card["preprocessing"]
        return torch.stack([resized(image[None], steps)[0] for image in pixels]).to(self.device)

    @torch.no_grad()
    def dense(
        self, pixels: list[Tensor], forward: Callable[[Any, Tensor], Tensor] | None = None
    ) -> list[Tensor]:
        """Per image, the outputs of ``forward(model, batch)`` (default: the model's call), ``[C]`` or
        ``[C, H, W]`` brought to the image's size, in their order: one call for the batch, or one per image
        size where the card does not resize."""
        steps = self.card["preprocessing"]
        groups: dict[Any, list[int]] = {}
        resized = steps.get("input_size") is not None and steps.get("resize") in ("exact", "center_crop")
        for i, image in enumerate(pixels):
            groups.setdefault(None if resized else tuple(image.shape), []).append(i)
        results: list[Tensor] = list(pixels)
        for positions in groups.values():
            batch = self.inputs([pixels[i] for i in positions])
            out = self.model(batch) if forward is None else forward(self.model, batch)
            for i, row in zip(positions, out.float().cpu()):
                size = pixels[i].shape[-2:]
                if (
                    row.dim() == 3 and row.shape[-2:] != size
                ):  # resized for the model: maps at the image's size
                    row = F.interpolate(row[None], size, mode="bilinear", align_corners=False)[0]
                results[i] = row
        return results

    @torch.no_grad()
    def detect(self, pixels: list[Tensor]) -> list[dict[str, Tensor]]:
        """Detections of each image, in the image's own pixel coordinates."""
        images = pixels if self.raw_pixels else preprocess(pixels, self.card)  # detectors resize inside
        return self.model([image.to(self.device) for image in images])


def predict(
    model: str | Path,
    inputs: Sequence[str | Path],
    output: str | Path | None = None,
    *,
    batch_size: int = 32,
    top_k: int = 5,
    on_bad_file: str = "raise",
    overlay: bool = False,
    draw: bool = False,
    draw_threshold: float = 0.5,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Predict on the images of ``inputs`` with ``model`` (``last.pt``, a ``.pt2`` / TorchScript / ONNX export
    with its sidecar ``<file>.json``) and write the results to ``output`` (the task's writer: ``tasks/<task>/prediction.py``).

    Returns the report: images predicted, bad files skipped, where the results are, time and throughput, and
    what the task's writer adds (classification of images in folders named after the classes: their ``top1``
    accuracy, %; detection: the number of ``detections``).
    """
    student = _Student(model, device)
    card = student.card
    how = task_class(card["task"]).prediction(card)
    output = Path(output if output is not None else how.default_output)
    images = collect_images(inputs)
    writer = how.writer(output, PredictOptions(top_k, overlay, draw, draw_threshold))
    bad = BadFiles()
    predicted = 0
    bar = tqdm(total=len(images), unit="img", desc="predict", disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for batch in decoded_batches(images, batch_size, card["preprocessing"]["bits"], on_bad_file, bad):
            files, pixels = [b[0] for b in batch], [b[1] for b in batch]
            writer.write(files, pixels, how.outputs(student, pixels))
            predicted += len(batch)
            bar.update(predicted + bad.count - bar.n)
    finally:
        bar.close()
        writer.close()
    seconds = time.perf_counter() - start
    report: dict[str, Any] = {
        "task": card["task"],
        "images": predicted,
        "bad_files": bad.count,
        "bad_files_first": bad.first,
        "output": str(output),
        "seconds": round(seconds, 3),
        "images_per_s": round(predicted / seconds, 1) if seconds > 0 else math.nan,
    }
    return {**report, **writer.summary()}
