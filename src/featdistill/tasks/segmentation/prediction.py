"""``featdistill predict`` for segmenters: a folder with ``labels/<name>.png`` per image (the class index of
each pixel: 8-bit gray, 16-bit above 256 classes) and, with ``overlay``, ``overlays/<name>.png`` (the image
under the classes' colours, half transparent). A checkpoint's segmenter runs as ``eval`` runs it (``whole`` or
``slide`` inference, from its config); an exported one on whole images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import draw_segmentation_masks

from ..prediction import PredictOptions, StudentRunner, as_uint8, palette, png_path
from .folder import SegmentationFolder
from .inference import predict
from .metrics import SegmentationMeter

if TYPE_CHECKING:
    from ..prediction import InputImage

__all__ = ["SegmentationPrediction", "SegmentationWriter"]


class SegmentationWriter:
    """A label PNG per image (class indices), and optionally a colour overlay."""

    def __init__(self, output: Path, num_classes: int, overlay: bool) -> None:
        self.output, self.num_classes, self.overlay = output, num_classes, overlay
        self.colours = palette(num_classes)

    def write(self, images: list[InputImage], pixels: list[Tensor], logits: list[Tensor]) -> None:
        for image, source, scores in zip(images, pixels, logits):
            label = scores.argmax(dim=0).cpu()
            array = label.numpy().astype(np.uint8 if self.num_classes <= 256 else np.uint16)
            Image.fromarray(array).save(png_path(self.output / "labels", image))
            if self.overlay:
                masks = label[None] == torch.arange(self.num_classes)[:, None, None]
                drawn = draw_segmentation_masks(as_uint8(source), masks, alpha=0.5, colors=self.colours)
                Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(
                    png_path(self.output / "overlays", image)
                )

    def close(self) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        return {}


class SegmentationPrediction:
    """Logits ``[C, H, W]`` at each image's size, written as label PNGs."""

    default_output = "predictions"

    def __init__(self, card: dict[str, Any]) -> None:
        self.num_classes = len(card["classes"])

    def outputs(self, student: StudentRunner, pixels: list[Tensor]) -> list[Tensor]:
        task = student.task  # a checkpoint's: its eval settings; an export: whole images
        mode: dict[str, Any] = (
            {"mode": "whole"}
            if task is None
            else {"mode": task.eval_mode, "window": task.window, "stride": task.stride}  # type: ignore[attr-defined]
        )
        return student.dense(pixels, lambda model, batch: predict(model, batch, **mode))

    def writer(self, output: Path, options: PredictOptions) -> SegmentationWriter:
        return SegmentationWriter(output, self.num_classes, options.overlay)


def score_label_pngs(
    predictions: str | Path, dataset: SegmentationFolder, images_root: str | Path
) -> dict[str, float]:
    """Metrics of ``predictions/labels/<image path relative to images_root>.png`` over ``dataset``'s images."""
    meter = SegmentationMeter(dataset.num_classes, dataset.ignore_index)
    for index, image in enumerate(dataset.images):
        name = Path(image).relative_to(images_root).with_suffix(".png")
        path = Path(predictions) / "labels" / name
        if not path.is_file():
            raise FileNotFoundError(f"no predicted labels {path} for {image}")
        with Image.open(path) as predicted:
            labels = torch.from_numpy(np.asarray(predicted).astype(np.int64))
        meter.update(labels, dataset[index][1])
    result = meter.compute()
    return {key: 100 * float(result[key]) for key in ("miou", "pixel_acc", "mean_acc")}  # type: ignore[arg-type]
