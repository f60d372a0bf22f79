"""The pretrain task's ``data.options`` (the views both models see) and ``model.options`` (each side's own)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import ConfigError
from ..classification.options import DataOptions as ClassificationDataOptions

#: Keys that would give the run labels or a task loss: refused in one line (pretrain distils only).
LABEL_KEYS = ("labels", "classes", "loss", "task_loss", "label_smoothing", "ignore_index", "annotations")


@dataclass
class DataOptions(ClassificationDataOptions):
    """The classification options (``mean``/``std``, ``cache_dir``) and the augmentation of the shared view.

    Teacher and student see the same view; each switch turns one augmentation off.
    """

    resized_crop: bool = True  # random resized crop of each image, back to its size
    crop_scale: list[float] = field(default_factory=lambda: [0.25, 1.0])  # area fraction of the crop
    flip: bool = True  # horizontal flip with p = 0.5
    color_jitter: float = 0.4  # brightness, contrast and saturation factors in [1 - j, 1 + j] (0 = off)

    def __post_init__(self) -> None:
        super().__post_init__()
        low, high = [*self.crop_scale, 0.0, 0.0][:2]
        if len(self.crop_scale) != 2 or not 0 < low <= high <= 1:
            raise ConfigError(
                f"data.options.crop_scale must be [low, high] with 0 < low <= high <= 1, got {self.crop_scale}"
            )
        if not 0 <= self.color_jitter < 1:
            raise ConfigError(f"data.options.color_jitter must be in [0, 1), got {self.color_jitter}")


# model.options go to the models' own constructors; model.options.student / .teacher to one side only.
ModelOptions = None
SIDE_ONLY = ("student", "teacher")
