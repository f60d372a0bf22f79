"""The streaming classification path (``data.in_memory: false``): one image at a time, in DataLoader workers.

It reads the same files as the in-memory path (:func:`.data.scan_imagefolder`, the same ``limit``
selection), decodes them the same way (:func:`featdistill.tasks.decode.decode_image`, same ``bits``),
resizes them the same way and, with ``crop: pad``, augments them the same way (zero-padded random crop
and flip, the same parameters), so a config trains on the same data in memory or streaming; only the
cost differs. ``crop: resized`` (streaming only) is the ImageNet recipe: RandomResizedCrop + flip for
training, resize to ``image_size / 0.875`` + centre crop for evaluation.

Randomness comes from a per-sample ``torch.Generator`` that :class:`~featdistill.engine.loader.SeededItems`
seeds from ``(seed, epoch, index)``: deterministic, resumable, and no global ``torch.manual_seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...engine import ResumableLoader
from ..decode import BadImageError, decode_image, resize_pixels
from ..holdout import split_holdout
from ..ingest import SplitStats, check_not_constant, evenly_spaced, warn_alpha
from ..preprocess import center_crop_resize
from .augment import crop_flip, crop_flip_params, normalize
from .data import bad_file, channel_stats, scan_imagefolder, select_balanced

__all__ = ["FolderSamples", "inspect_samples", "resized_crop_box", "streaming_loader"]

#: At most this many images per split are decoded up front for the report and the normalisation.
INSPECT = 1000
EVAL_CROP_FRACTION = 0.875


def resized_crop_box(
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random crop covering ``scale`` of the area at an aspect in ``ratio``.

    Up to 10 draws of (area, log-uniform aspect) from ``generator``; if none fits, the largest centred
    crop whose aspect is within ``ratio``.
    """
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u_area, u_ratio = torch.rand(2, generator=generator).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
        aspect = math.exp(log_low + (log_high - log_low) * u_ratio)
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class FolderSamples(Dataset):
    """``(path, label)`` samples decoded and transformed one at a time into normalised float images.

    Args:
        samples: the selected files and their labels.
        size: output ``(H, W)``; with ``crop="pad"`` and no ``image_size`` the common native size, which
            every image must have (an image of another size raises a ValueError naming it).
        train, augment: training augmentation on (``train and augment``) or the evaluation transform.
        crop: ``pad`` (resize to ``size``, zero-padded random crop by ``pad`` + flip) or ``resized``.
        resized: whether ``size`` was asked for (``image_size``) or is the native size.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        *,
        size: tuple[int, int],
        resized: bool,
        train: bool,
        augment: bool,
        crop: Literal["pad", "resized"],
        pad: int,
        mean: Sequence[float],
        std: Sequence[float],
        bits: int = 8,
        on_bad_file: Literal["raise", "skip"] = "raise",
    ) -> None:
        self.samples = list(samples)
        self.targets = [label for _, label in self.samples]
        self.size, self.resized, self.crop, self.pad = size, resized, crop, pad
        self.augment = train and augment
        self.mean, self.std, self.bits, self.on_bad_file = list(mean), list(std), bits, on_bad_file

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.seeded_item(index, torch.Generator().manual_seed(index))

    def seeded_item(self, index: int, generator: torch.Generator) -> tuple[Tensor, int]:
        """Sample ``index`` with its random augmentation drawn from ``generator`` only."""
        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            try:
                pixels = decode_image(path, self.bits).pixels
            except BadImageError as err:
                bad_file(err, self.on_bad_file, None, path)
                continue
            return self.transform(pixels, path, generator), label
        raise ValueError(f"no decodable images among the {len(self.samples)} files of this split")

    def transform(self, pixels: Tensor, path: Path, generator: torch.Generator) -> Tensor:
        """Decoded ``[3, H, W]`` pixels to a normalised float ``[3, *size]`` image."""
        if self.crop == "resized":
            pixels = self._resized_crop(pixels, generator)
        else:
            if self.resized:
                pixels = resize_pixels(pixels, self.size)
            elif tuple(pixels.shape[-2:]) != self.size:
                raise ValueError(
                    f"image {path} is {pixels.shape[2]}x{pixels.shape[1]} but earlier images are "
                    f"{self.size[1]}x{self.size[0]}; set data.image_size to resize them all"
                )
            if self.augment:
                dy, dx, flips = crop_flip_params(1, self.pad, True, generator)
                pixels = crop_flip(pixels[None], self.pad, dy, dx, flips)[0]
        return normalize(pixels[None], self.mean, self.std)[0]

    def _resized_crop(self, pixels: Tensor, generator: torch.Generator) -> Tensor:
        height, width = pixels.shape[-2:]
        if self.augment:
            top, left, h, w = resized_crop_box(height, width, generator)
            pixels = resize_pixels(pixels[:, top : top + h, left : left + w], self.size)
            return pixels.flip(-1) if bool(torch.rand((), generator=generator) < 0.5) else pixels
        return center_crop_resize(pixels, self.size, EVAL_CROP_FRACTION)


def inspect_samples(
    samples: Sequence[tuple[Path, int]], bits: int, on_bad_file: str, stats: SplitStats
) -> list[Tensor]:
    """Decode up to :data:`INSPECT` evenly spaced samples; record sizes and formats in ``stats``."""
    pixels = []
    for i in evenly_spaced(len(samples), INSPECT):
        path = samples[i][0]
        try:
            decoded = decode_image(path, bits)
        except BadImageError as err:
            bad_file(err, on_bad_file, stats, path)
            continue
        stats.saw(decoded.pixels.shape[2], decoded.pixels.shape[1], decoded.mode, decoded.alpha)
        pixels.append(decoded.pixels)
    stats.inspected = len(pixels)
    warn_alpha(stats)
    return pixels


def streaming_loader(
    root: str | Path,
    split: str,
    *,
    train: bool,
    batch_size: int,
    image_size: int | None,
    crop: Literal["pad", "resized"] = "pad",
    augment: bool = True,
    pad: int | None = None,
    limit: int | None = None,
    holdout: float | int | None = None,
    held_out: bool = False,
    bits: int = 8,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    on_bad_file: Literal["raise", "skip"] = "raise",
    workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    stats: SplitStats | None = None,
) -> ResumableLoader:
    """A resumable loader over ``root/<split>/<class>/<image>`` that reads what ``load_tensors`` reads.

    ``mean``/``std`` default to estimates from up to :data:`INSPECT` evenly spaced images of this split
    (the in-memory path uses all training images); pass the training split's to the validation loader.
    Training drops the last incomplete batch, like the in-memory path; evaluation keeps it. With ``holdout``
    (``data.holdout``, taken after ``limit``) the loader holds the images left for training, or with
    ``held_out`` the held-out ones.
    """
    stats = stats if stats is not None else SplitStats(split, str(Path(root) / split))
    classes, files = scan_imagefolder(Path(root) / split, stats)
    samples = select_balanced(files, limit)
    stats.images = len(samples)  # as in memory: the images read, the holdout included
    stats.classes.update(classes[label] for _, label in samples)
    if holdout is not None:
        keep, held = split_holdout(len(samples), holdout, [label for _, label in samples])
        stats.held_out = len(held)
        samples = [samples[i] for i in (held if held_out else keep)]
    inspected = inspect_samples(samples, bits, on_bad_file, stats)
    if not inspected:
        raise ValueError(f"no decodable images among the first inspected files of {Path(root) / split}")
    if len({tuple(p.shape) for p in inspected}) == 1:
        check_not_constant(torch.stack(inspected), split, stats.root)
    if crop == "resized" and image_size is None:
        raise ValueError("data.crop: resized needs data.image_size (the crop's output size)")
    size = (image_size, image_size) if image_size is not None else tuple(inspected[0].shape[-2:])
    if mean is None or std is None:
        resized = [resize_pixels(p, size) for p in inspected] if crop == "pad" else inspected
        mean, std = channel_stats(resized)
    dataset = FolderSamples(
        samples,
        size=size,  # type: ignore[arg-type]
        resized=image_size is not None,
        train=train,
        augment=augment,
        crop=crop,
        pad=pad if pad is not None else max(1, size[1] // 8),
        mean=mean,
        std=std,
        bits=bits,
        on_bad_file=on_bad_file,
    )
    return ResumableLoader(
        dataset,
        batch_size,
        train,
        seed=seed,
        rank=rank,
        world_size=world_size,
        workers=workers,
        drop_last=train,
    )
