"""Whole-image and sliding-window inference, plus a dataset evaluation loop.

Models may return a tensor of logits or a dict with the logits under ``"out"`` (torchvision style).
Inference functions return logits ``[N, C, H, W]`` at the input image size and run without autograd.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ...suggest import did_you_mean
from .metrics import SegmentationMeter

__all__ = ["evaluate", "predict", "slide_inference", "whole_inference"]


def _logits(model: nn.Module, image: Tensor) -> Tensor:
    out = model(image)
    if isinstance(out, dict):
        out = out["out"]
    if out.shape[-2:] != image.shape[-2:]:
        out = F.interpolate(out, image.shape[-2:], mode="bilinear", align_corners=False)
    return out


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    a, b = value
    return int(a), int(b)


@torch.no_grad()
def whole_inference(model: nn.Module, image: Tensor) -> Tensor:
    """Run the model once on the full ``[N, 3, H, W]`` batch; logits resized to ``H x W``."""
    return _logits(model, image)


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets covering ``size``; the last window is shifted back to end at the border."""
    steps = max(math.ceil((size - window) / stride), 0) + 1
    return [min(i * stride, size - window) for i in range(steps)]


@torch.no_grad()
def slide_inference(
    model: nn.Module, image: Tensor, window: int | Sequence[int], stride: int | Sequence[int]
) -> Tensor:
    """Sliding-window inference with logits averaged where windows overlap.

    Images smaller than the window are zero-padded at the bottom/right (zero is the mean after
    normalisation) and the padding is cropped from the result, so the output is ``[N, C, H, W]``.
    """
    wh, ww = _pair(window)
    sh, sw = _pair(stride)
    if min(wh, ww, sh, sw) <= 0:
        raise ValueError(f"window {window} and stride {stride} must be positive")
    _, _, h, w = image.shape
    padded = F.pad(image, (0, max(ww - w, 0), 0, max(wh - h, 0)))
    ph, pw = padded.shape[-2:]
    logits: Tensor | None = None
    count = torch.zeros(1, 1, ph, pw, device=image.device, dtype=image.dtype)
    for top in _starts(ph, wh, sh):
        for left in _starts(pw, ww, sw):
            crop = _logits(model, padded[..., top : top + wh, left : left + ww])
            if logits is None:
                logits = crop.new_zeros(crop.shape[0], crop.shape[1], ph, pw)
            logits[..., top : top + wh, left : left + ww] += crop
            count[..., top : top + wh, left : left + ww] += 1
    assert logits is not None
    return (logits / count)[..., :h, :w]


def predict(
    model: nn.Module,
    image: Tensor,
    *,
    mode: str = "whole",
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
) -> Tensor:
    """Dispatch to :func:`whole_inference` (``mode="whole"``) or :func:`slide_inference` (``"slide"``)."""
    if mode == "whole":
        return whole_inference(model, image)
    if mode == "slide":
        if window is None:
            raise ValueError("slide inference needs a window size")
        return slide_inference(model, image, window, stride if stride is not None else window)
    raise ValueError(f"unknown inference mode {mode!r}{did_you_mean(mode, ('whole', 'slide'))}")


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    *,
    ignore_index: int = 255,
    mode: str = "whole",
    window: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float | list[float]]:
    """Evaluate ``model`` (in eval mode, restored afterwards) over ``(image, label)`` batches."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    meter = SegmentationMeter(num_classes, ignore_index, device)
    was_training = model.training
    model.eval()
    try:
        for image, label in loader:
            logits = predict(model, image.to(device), mode=mode, window=window, stride=stride)
            meter.update(logits.argmax(1), label.to(device))
    finally:
        model.train(was_training)
    return meter.compute()
