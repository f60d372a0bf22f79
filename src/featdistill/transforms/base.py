"""The common shape contract of every transform: student feature in, teacher-shaped tensor out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeatureTransform(nn.Module):
    """Base class: ``project`` changes channels; ``forward`` also resizes to the teacher's spatial size.

    When student and teacher maps differ in height/width, the *transformed* student map is resized
    bilinearly to the teacher's size (``size``), so the loss always compares tensors of equal shape.
    """

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Map the student feature to the teacher's channels (identity in the base class)."""
        return x

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        y = self.project(x)
        if size is not None and y.dim() == 4 and tuple(y.shape[-2:]) != tuple(size):
            y = F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=False)
        return y


def pointwise_layer(in_features: int, out_features: int, feature_dim: int) -> nn.Module:
    """A per-position linear map: 1x1 conv for (B, C, H, W) maps, Linear for (B, C) / (B, N, C) tokens."""
    if feature_dim == 4:
        return nn.Conv2d(in_features, out_features, kernel_size=1)
    if feature_dim in (2, 3):
        return nn.Linear(in_features, out_features)
    raise ValueError(f"features must be (B, C), (B, N, C) or (B, C, H, W); got {feature_dim} dimensions")


def channels_of(shape: tuple[int, ...]) -> int:
    """Channel count: dim 1 for conv maps and vectors, the last dim for (B, N, C) tokens."""
    return shape[1] if len(shape) in (2, 4) else shape[-1]
