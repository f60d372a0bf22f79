"""The classification task's ``data.options`` schema (``model.options`` go to the model's constructor)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import ConfigError


@dataclass
class DataOptions:
    """Classification dataset options: crop padding, fixed normalisation, a decode cache, decoders."""

    pad: int | None = None  # zero padding of the random crop, pixels (null = image width // 8)
    mean: list[float] | None = (
        None  # per-channel normalisation mean, with std (null = from the training images)
    )
    std: list[float] | None = None  # per-channel normalisation std, with mean
    cache_dir: str | None = None  # folder caching decoded in-memory ImageFolder splits (null = no cache)
    decode_workers: int | None = None  # processes decoding an in-memory split (null = one per core)

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            given = "mean" if self.mean is not None else "std"
            raise ConfigError(f"data.options.{given} is set alone; set data.options.mean and std together")
        if self.decode_workers is not None and self.decode_workers < 1:
            raise ConfigError(f"data.options.decode_workers must be 1 or more, got {self.decode_workers}")
        if self.pad is not None and self.pad < 0:
            raise ConfigError(f"data.options.pad must be 0 or more pixels, got {self.pad}")


@dataclass
class Augment:
    """``data.augment`` per transform (``true``: all on, ``false``: all off; a mapping sets the keys it names)."""

    crop: bool = True  # random crop: zero-padded shift (data.crop: pad) or random resized crop (resized)
    flip: bool = True  # random horizontal flip (p = 0.5); off for digits, text, anything with a handedness

    def __bool__(self) -> bool:
        """Whether any transform is on (``if train and augment``)."""
        return any(vars(self).values())


# model.options are the keyword arguments of the model's own constructor (a torchvision, timm, transformers
# or local classifier): their names depend on the model, so its constructor checks them, not a schema here.
ModelOptions = None
