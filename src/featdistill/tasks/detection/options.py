"""The detection task's ``data.options`` and ``model.options`` schemas."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from ...config import ConfigError, RunConfig


@dataclass
class DataOptions:
    """Label files per split (COCO json, YOLO YAML, VOC names), augmentation and result files (see the task's
    module doc)."""

    ann_file: str | None = None  # annotation json of both splits, relative to data.root
    images: str | None = None  # image folder of both splits, relative to data.root
    train_ann: str | None = None  # annotation json of the training split (before ann_file)
    val_ann: str | None = None  # annotation json of the evaluation split (before ann_file)
    train_images: str | None = None  # image folder of the training split (before images)
    val_images: str | None = None  # image folder of the evaluation split (before images)
    yaml: str | None = None  # data.name yolo: the dataset YAML, relative to data.root (null: root/data.yaml)
    names: list[str] | None = (
        None  # data.name voc: the class names (null: every name in Annotations/, sorted)
    )
    skip_empty: bool = True  # training leaves out images without instances (evaluation keeps all)
    flip_prob: float = 0.5  # horizontal flip probability in training
    scale_range: list[float] | None = None  # [low, high], 1 <= low <= high: zoom-in jitter (null = off)
    save_results: bool = False  # write results_<bbox|segm>.json to output.dir at each evaluation

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ConfigError(f"data.options.flip_prob must be in [0, 1], got {self.flip_prob}")
        if self.scale_range is not None and len(self.scale_range) != 2:
            raise ConfigError(f"data.options.scale_range must be [low, high], got {self.scale_range}")


@dataclass
class Augment:
    """``data.augment`` per transform (``true``: all on, ``false``: all off; a mapping sets the keys it names)."""

    flip: bool = True  # random horizontal flip (data.options.flip_prob)
    scale: bool = True  # scale jitter (data.options.scale_range, when set)

    def __bool__(self) -> bool:
        """Whether any transform is on (``if train and augment``)."""
        return any(vars(self).values())


@dataclass
class ModelOptions:
    """``build_detector`` keyword arguments of both models; ``student`` / ``teacher`` set one side's."""

    backbone: str | None = None  # backbone network (null = build_detector's default)
    min_size: int | None = None  # shorter image side the detector resizes to
    max_size: int | None = None  # longest image side after resizing
    trainable_layers: int | None = None  # backbone stages trained when pretrained_backbone is set
    pretrained_backbone: str | None = None  # backbone weights: file, torchvision or torchvision:<ENUM>
    image_mean: list[float] | None = None  # the detector's normalisation mean
    image_std: list[float] | None = None  # the detector's normalisation std
    size_divisible: int | None = None  # batched images are padded to a multiple of this
    fixed_size: list[int] | None = None  # resize to this [h, w] instead of min_size / max_size
    distill_levels: int = 4  # finest student FPN levels the default pairs distill (5 adds the last)
    student: dict[str, Any] | None = None  # options for the student alone
    teacher: dict[str, Any] | None = None  # options for the teacher alone

    def __post_init__(self) -> None:
        if self.distill_levels < 1:
            raise ConfigError(f"model.options.distill_levels must be 1 or more, got {self.distill_levels}")


SIDE_ONLY = ("distill_levels", "student", "teacher")  # keys of model.options that are not builder arguments


def passthrough(cfg: RunConfig) -> set[str]:
    """torchvision's own detector arguments (e.g. ``box_detections_per_img``) of the configured families, and
    ``box_detections_per_img`` for ``hf:`` detectors."""
    from .models import DETECTORS

    names = (cfg.model.student, cfg.model.teacher)
    families = [name for name in names if name in DETECTORS]
    hf = {"box_detections_per_img"} if any(str(name).startswith("hf:") for name in names) else set()
    return hf | {
        name
        for family in families
        for name, p in inspect.signature(DETECTORS[family].__init__).parameters.items()
        if p.default is not p.empty and name != "num_classes"  # num_classes comes from model.num_classes
    }
