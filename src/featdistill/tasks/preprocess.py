"""Decoded pixels to a student's input, as its student card says: resize, scale, normalise.

The one home of the arithmetic that training's ``normalize``, ``eval``, ``predict`` and an export with
``--include-preprocessing`` share, so all of them give bit-identical inputs. ``card`` is the student card
(:mod:`featdistill.card`); only its ``preprocessing`` mapping is read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .decode import resize_pixels

__all__ = [
    "ImagesPixelInput",
    "PixelInput",
    "center_crop_resize",
    "normalization_factors",
    "normalized",
    "pixel_scale",
    "preprocess",
    "resized",
]


def pixel_scale(dtype: torch.dtype) -> float:
    """The white level of decoded pixels of ``dtype`` (1.0 for float pixels already in [0, 1])."""
    return {torch.uint8: 255.0, torch.uint16: 65535.0}.get(dtype, 1.0)


def normalization_factors(
    card: dict[str, Any], white: float, channels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` of shape ``[C, 1, 1]``: model input = pixels * scale - shift.

    The same float32 arithmetic as training's ``normalize`` (``1 / (white * std)`` and ``mean / std``), so
    eval, predict and an export with ``--include-preprocessing`` give bit-identical inputs. Without a
    mean/std (an older card) pixels are only scaled to [0, 1].
    """
    p = card["preprocessing"]
    channels = channels or int(p.get("channels", 3))
    if p.get("mean") is None or p.get("std") is None:
        mean, std = torch.zeros(channels), torch.ones(channels)
    else:
        mean = torch.as_tensor(p["mean"], dtype=torch.float32)
        std = torch.as_tensor(p["std"], dtype=torch.float32)
    scale = 1.0 / (white * std)
    return scale.view(-1, 1, 1), (mean / std).view(-1, 1, 1)


def center_crop_resize(pixels: torch.Tensor, size: Sequence[int], fraction: float) -> torch.Tensor:
    """Resize the short side to ``min(size) / fraction``, then crop the centred ``size`` (evaluation crop)."""
    height, width = pixels.shape[-2:]
    scale = round(min(size) / fraction) / min(height, width)
    pixels = resize_pixels(pixels, (max(1, round(height * scale)), max(1, round(width * scale))))
    top = (pixels.shape[-2] - size[0]) // 2
    left = (pixels.shape[-1] - size[1]) // 2
    return pixels[..., top : top + size[0], left : left + size[1]]


def preprocess(
    images: torch.Tensor | Sequence[torch.Tensor], card: dict[str, Any], resize: bool = True
) -> torch.Tensor | list[torch.Tensor]:
    """Decoded images to the student's input, as the card says (eval, predict, exported preprocessing).

    ``images``: a ``[B, C, H, W]`` batch or a list of ``[C, H, W]`` images, uint8 / uint16 pixels as decoded
    (or float pixels already in [0, 1]); one channel is expanded to the card's channels. ``resize``: apply
    the card's resize (``exact`` / ``center_crop``; a list of images of different sizes must be resized to
    be batched). Classifiers and segmenters get a float batch; detectors (``normalize_in_model``) a list of
    float images in [0, 1], each at its own size.
    """
    p = card["preprocessing"]
    if p.get("normalize_in_model"):
        return [normalized(resized(image[None], p, resize), card)[0] for image in images]
    if not isinstance(images, torch.Tensor):
        images = torch.stack([resized(image[None], p, resize)[0] for image in images])
    return normalized(resized(images, p, resize), card)


def resized(batch: torch.Tensor, p: dict[str, Any], resize: bool = True) -> torch.Tensor:
    """``batch`` resized as the card's ``preprocessing`` ``p`` says (``exact`` / ``center_crop``), else as it is;
    the resize alone, for an export that bakes the normalisation in."""
    if not resize or p.get("input_size") is None:
        return batch
    if p.get("resize") == "exact":
        return resize_pixels(batch, tuple(p["input_size"]))
    if p.get("resize") == "center_crop":
        return center_crop_resize(batch, p["input_size"], float(p["crop_fraction"]))
    return batch


def normalized(batch: torch.Tensor, card: dict[str, Any]) -> torch.Tensor:
    """Pixels to model input by the card: one channel expanded, then normalised (detectors: scaled to [0, 1])."""
    channels = int(card["preprocessing"].get("channels", 3))
    if batch.shape[-3] == 1 and channels != 1:
        batch = batch.expand(*batch.shape[:-3], channels, *batch.shape[-2:])
    if card["preprocessing"].get("normalize_in_model"):  # detectors: [0, 1], as their data loader gives
        return batch.float() / pixel_scale(batch.dtype)
    scale, shift = normalization_factors(card, pixel_scale(batch.dtype), channels)
    return batch.float() * scale.to(batch.device) - shift.to(batch.device)


class PixelInput(nn.Module):
    """``student`` behind the card's normalisation: takes uint8 (or uint16) NCHW pixels at the model's size.

    What ``export --include-preprocessing`` exports: ``preprocess`` without the resize (an exported graph
    has a fixed preprocessing; resize to ``input_size`` before calling it when the card says ``exact``).
    """

    def __init__(self, student: nn.Module, card: dict[str, Any], bits: int = 8) -> None:
        super().__init__()
        self.student = student
        scale, shift = normalization_factors(card, 65535.0 if bits == 16 else 255.0)
        self.register_buffer("scale", scale[None])
        self.register_buffer("shift", shift[None])

    def forward(self, pixels: torch.Tensor) -> Any:
        return self.student(pixels.float() * self.scale - self.shift)


class ImagesPixelInput(nn.Module):
    """A detector taking a list of uint8 ``[3, H, W]`` images: scaled to [0, 1] here, normalised inside it."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: list[torch.Tensor]) -> Any:
        return self.detector([image.float() / 255.0 for image in images])
