"""The prediction contract: what ``featdistill predict`` asks of a task to run its student on image files.

A task's :meth:`~featdistill.tasks.base.Task.prediction` returns a :class:`Prediction` for a student card: where
results go by default, how the student's outputs of a batch of decoded images are computed, and the
:class:`Writer` that stores them. The predict command (:mod:`featdistill.predict`) decodes the images, batches
them and reports; it names no task. The drawing helpers here are shared by the built-in tasks' writers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ..engine.contract import TrainingTask

__all__ = [
    "InputImage",
    "PredictOptions",
    "Prediction",
    "StudentRunner",
    "Writer",
    "as_uint8",
    "palette",
    "png_path",
]


@dataclass(frozen=True)
class InputImage:
    """One input file and its name relative to the argument that listed it (``a/b.jpg``)."""

    path: Path
    name: str


@dataclass(frozen=True)
class PredictOptions:
    """The writer options of ``featdistill predict``; a task uses those that apply to it."""

    top_k: int = 5  # classes per image (classification)
    overlay: bool = False  # colour overlays beside the label PNGs (segmentation)
    draw: bool = False  # images with their boxes drawn (detection)
    draw_threshold: float = 0.5  # the least score of a drawn box (detection)


class StudentRunner(Protocol):
    """The loaded student, as the predict command hands it to a task's :class:`Prediction`.

    Attributes:
        card: the student card (:mod:`featdistill.card`).
        task: the task built from a checkpoint's config (its evaluation settings); None for an export.
    """

    card: dict[str, Any]
    task: TrainingTask | None  # a featdistill.tasks.base.Task

    def dense(
        self, pixels: list[Tensor], forward: Callable[[Any, Tensor], Tensor] | None = None
    ) -> list[Tensor]: ...
    def detect(self, pixels: list[Tensor]) -> list[dict[str, Tensor]]: ...


class Writer(Protocol):
    """Stores the outputs of each batch; ``summary`` adds to the predict report once all are written."""

    def write(self, images: list[InputImage], pixels: list[Tensor], outputs: list[Any]) -> None: ...
    def close(self) -> None: ...
    def summary(self) -> dict[str, Any]: ...


class Prediction(Protocol):
    """How ``featdistill predict`` runs one task's student and stores what it returns."""

    default_output: str  # where results go when --output is not given

    def outputs(self, student: StudentRunner, pixels: list[Tensor]) -> list[Any]: ...
    def writer(self, output: Path, options: PredictOptions) -> Writer: ...


def as_uint8(pixels: Tensor) -> Tensor:
    """Decoded 8- or 16-bit pixels as uint8 for drawing."""
    if pixels.dtype == torch.uint8:
        return pixels
    return pixels.to(torch.float32).div_(257).round_().to(torch.uint8)


def png_path(folder: Path, image: InputImage) -> Path:
    """``folder/<image name>.png``, its parent folders made."""
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
