"""Vectorised batch augmentation of uint8 / uint16 image tensors: random crop with zero padding, flip, normalisation.

Everything works on a whole ``[B, C, H, W]`` batch at once (one gather, no per-sample Python loop), so
augmenting a CIFAR batch costs a fraction of a millisecond instead of a PIL pipeline per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["crop_flip", "crop_flip_params", "normalize", "random_crop_flip"]


def crop_flip_params(
    n: int, pad: int, flip: bool = True, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw per-sample crop offsets ``dy, dx`` in ``[0, 2 * pad]`` and flip flags for ``n`` samples.

    Offsets are in padded coordinates: ``dy == dx == pad`` is the un-shifted crop. The draw order is fixed
    (dy, dx, flips) so a seeded generator gives reproducible parameters.
    """
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    return dy, dx, flips


def crop_flip(
    batch: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor
) -> torch.Tensor:
    """Zero-pad ``batch`` by ``pad`` on each side, crop back to ``H x W`` at ``(dy, dx)``, mirror flagged rows.

    Sample ``b`` of the result is ``padded[b, :, dy[b] : dy[b] + H, dx[b] : dx[b] + W]``, flipped left-right
    where ``flips[b]``. Implemented as one ``gather`` with per-sample source indices (the flip just reverses
    the column indices), so it keeps the input dtype and costs O(B * C * H * W).
    """
    if batch.dim() != 4:
        raise ValueError(f"expected a [B, C, H, W] batch, got shape {tuple(batch.shape)}")
    b, c, h, w = batch.shape
    padded = F.pad(batch, (pad, pad, pad, pad)) if pad > 0 else batch
    width = w + 2 * pad
    rows = dy.view(b, 1) + torch.arange(h).view(1, h)
    cols = dx.view(b, 1) + torch.arange(w).view(1, w)
    cols = torch.where(flips.view(b, 1), cols.flip(1), cols)
    index = (rows.view(b, h, 1) * width + cols.view(b, 1, w)).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).view(b, c, h, w)


def random_crop_flip(
    batch: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None, flip: bool = True
) -> torch.Tensor:
    """Random crop with zero padding plus random horizontal flip (p = 0.5) of every sample in ``batch``."""
    dy, dx, flips = crop_flip_params(batch.shape[0], pad, flip, generator)
    return crop_flip(batch, pad, dy, dx, flips)


def normalize(
    batch: torch.Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Convert a uint8 / uint16 batch to float32 ``(x / white - mean) / std`` (white = 255 / 65535).

    mean/std are per channel, in 0..1 units. Without mean/std the result is just scaled to ``[0, 1]``. The scale and shift are fused into one
    multiply-subtract on the fresh float tensor.
    """
    channels = batch.shape[1]
    mean_t = torch.zeros(channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.ones(channels) if std is None else torch.as_tensor(std, dtype=torch.float32)
    if mean_t.numel() != channels or std_t.numel() != channels:
        raise ValueError(
            f"mean/std need one value per channel ({channels}), got {mean_t.numel()} and {std_t.numel()}"
        )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    out = batch.to(dtype=torch.float32, memory_format=memory_format, copy=True)
    white = 65535.0 if batch.dtype == torch.uint16 else 255.0
    scale = (1.0 / (white * std_t)).view(1, channels, 1, 1)
    shift = (mean_t / std_t).view(1, channels, 1, 1)
    return out.mul_(scale).sub_(shift)
