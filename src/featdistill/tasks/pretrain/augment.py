"""The one view per image that teacher and student share: random resized crop, flip and colour jitter, drawn
per sample and applied to a whole uint8/uint16 batch at once (one ``roi_align``, a few tensor ops)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align


@dataclass(frozen=True)
class Views:
    """What the view of a batch does; each part switchable (``data.options``)."""

    resized_crop: bool = True
    crop_scale: tuple[float, float] = (0.25, 1.0)
    flip: bool = True
    color_jitter: float = 0.4

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``batch`` (uint8 or uint16 ``[B, C, H, W]``) augmented, in its own dtype, from ``generator`` only."""
        dtype, white = batch.dtype, 65535.0 if batch.dtype == torch.uint16 else 255.0
        n, _, height, width = batch.shape
        x = batch.float()
        if self.resized_crop:
            x = roi_align(
                x, crop_boxes(n, height, width, self.crop_scale, generator), (height, width), 1.0, 2, True
            )
        if self.flip:
            flips = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flips.view(n, 1, 1, 1), x.flip(-1), x)
        if self.color_jitter > 0:
            x = jitter(x / white, self.color_jitter, generator) * white
        return x.round_().clamp_(0, white).to(dtype)


def crop_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """``[n, 5]`` boxes ``(index, x1, y1, x2, y2)`` covering ``scale`` of the area at aspects in [3/4, 4/3]
    (log-uniform), clipped to the image: RandomResizedCrop's draw, one per sample."""
    area = height * width * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=generator))
    aspect = torch.exp(
        math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * torch.rand(n, generator=generator)
    )
    w = (area * aspect).sqrt().clamp(1, width)
    h = (area / aspect).sqrt().clamp(1, height)
    x1 = (width - w) * torch.rand(n, generator=generator)
    y1 = (height - h) * torch.rand(n, generator=generator)
    return torch.stack([torch.arange(n, dtype=torch.float32), x1, y1, x1 + w, y1 + h], dim=1)


def jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation of ``[0, 1]`` images, each by a factor in [1 − s, 1 + s] per sample."""
    n = x.shape[0]
    brightness, contrast, saturation = (
        1 + strength * (2 * torch.rand(3, n, 1, 1, 1, generator=generator) - 1)
    ).unbind(0)
    x = (x * brightness).clamp(0, 1)
    gray = (
        (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        if x.shape[1] == 3
        else x.mean(1, keepdim=True)
    )
    x = (contrast * x + (1 - contrast) * gray.mean(dim=(2, 3), keepdim=True)).clamp(0, 1)
    gray = (
        (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        if x.shape[1] == 3
        else x.mean(1, keepdim=True)
    )
    return (saturation * x + (1 - saturation) * gray).clamp(0, 1)
