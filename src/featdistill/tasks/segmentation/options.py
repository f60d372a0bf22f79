"""The segmentation task's ``data.options`` and ``model.options`` schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ...config import ConfigError, RunConfig

Size = int | list[int]  # one side, or [h, w]


@dataclass
class DataOptions:
    """Training crops and augmentation, and how evaluation covers a full image."""

    crop_size: Size | None = None  # training crop (null = data.image_size, else 512)
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])  # random rescale range in training
    flip_prob: float = 0.5  # horizontal flip probability in training
    photometric: bool = True  # brightness / contrast / saturation / hue jitter in training
    eval_mode: Literal["whole", "slide"] = "whole"  # evaluate whole images, or by sliding windows
    window: Size | None = None  # sliding window (null = the crop size)
    stride: Size | None = None  # sliding window stride (null = 2/3 of the window)
    # data.name: masks (image and mask trees matched by relative path without extension)
    images_dir: str = "images"  # the image folder's name
    masks_dir: str = "masks"  # the mask folder's name
    order: Literal["split_first", "folder_first"] = (
        "split_first"  # root/<split>/images, or mmseg's root/images/<split>
    )
    ignore_index: int = 255  # the mask value that is ignored
    reduce_zero_label: bool = False  # ignore 0 and shift the other values down by one (ADE20K's convention)
    decode_workers: int | None = None  # processes decoding an in-memory split (null = one per core)

    def __post_init__(self) -> None:
        if self.decode_workers is not None and self.decode_workers < 1:
            raise ConfigError(f"data.options.decode_workers must be 1 or more, got {self.decode_workers}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ConfigError(f"data.options.flip_prob must be in [0, 1], got {self.flip_prob}")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ConfigError(
                f"data.options.scale_range must be [low, high], 0 < low <= high, got {self.scale_range}"
            )


@dataclass
class Augment:
    """``data.augment`` per transform (``true``: all on, ``false``: all off; a mapping sets the keys it names)."""

    scale: bool = True  # random rescale by data.options.scale_range
    crop: bool = True  # random crop_size crop (off: whole images, which must then share one size)
    flip: bool = True  # random horizontal flip (data.options.flip_prob)

    def __bool__(self) -> bool:
        """Whether any transform is on (``if train and augment``)."""
        return any(vars(self).values())


@dataclass
class ModelOptions:
    """``build_segmenter`` keyword arguments of both models; ``student`` / ``teacher`` set one side's."""

    backbone: str | None = None  # backbone network (null = build_segmenter's default)
    aux: bool | None = None  # auxiliary head on the third stage (trained with 0.4 x its cross-entropy)
    pretrained_backbone: str | None = None  # backbone weights: file, torchvision or torchvision:<ENUM>
    channels: int | None = None  # PSPNet: channels of the pyramid pooling module
    bins: list[int] | None = None  # PSPNet: pooled grid sizes
    dropout: float | None = None  # PSPNet: dropout before the classifier
    atrous_rates: list[int] | None = None  # DeepLabV3 on ResNet18/34: ASPP dilation rates
    aux_in_eval: bool | None = None  # also return the auxiliary logits in eval mode
    encoder_weights: str | bool | None = None  # smp: the encoder's pretrained weights by name (imagenet, ...)
    trust_remote_code: bool | None = None  # hf: run the model repository's own code (only repos you trust)
    student: dict[str, Any] | None = None  # options for the student alone
    teacher: dict[str, Any] | None = None  # options for the teacher alone


SIDE_ONLY = ("student", "teacher")  # keys of model.options that are not builder arguments
#: model.options that only fetch pretrained weights (the architecture is the same without them): a student
#: rebuilt for a checkpoint leaves them out (featdistill.tasks.options.checkpoint_options).
WEIGHTS_ONLY = ("pretrained_backbone", "encoder_weights")


def passthrough(cfg: RunConfig) -> set[str]:
    """The constructor arguments of the configured ``smp:`` architectures (``decoder_channels``, ...)."""
    models = [cfg.model.student, cfg.model.teacher]
    models += [entry.get("model") for entry in cfg.model.teachers.values() if isinstance(entry, dict)]
    names = [name for name in models if isinstance(name, str) and name.startswith("smp:")]
    if not names:
        return set()
    import inspect

    from .smp_models import smp_architecture

    return {
        arg
        for name in names
        for arg in inspect.signature(smp_architecture(name).__init__).parameters
        if arg not in ("self", "classes", "encoder_name", "encoder_weights")
    }
