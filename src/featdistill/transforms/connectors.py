"""Transforms of the baseline methods: identity, FitNets regressor, MGD generator."""

from __future__ import annotations

import torch
from torch import nn

from .base import FeatureTransform, pointwise_layer


class Identity(FeatureTransform):
    """No parameters: the student feature is compared as it is (resized if only H, W differ)."""


class FitNetsRegressor(FeatureTransform):
    """FitNets' hint regressor (Romero et al. 2015), as commonly used: 1x1 conv + BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class MGDGenerator(FeatureTransform):
    """Masked Generative Distillation (Yang et al. 2022): mask random pixels, regenerate the teacher map.

    A 1x1 conv aligns channels when C_s ≠ C_t; a random ``mask_ratio`` fraction of spatial positions is
    zeroed (per sample, during training only); 3x3 conv → ReLU → 3x3 conv generates the teacher feature.
    """

    def __init__(self, in_channels: int, out_channels: int, mask_ratio: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mgd mask_ratio must be in [0, 1); got {mask_ratio}")
        self.mask_ratio = mask_ratio
        self.align = (
            pointwise_layer(in_channels, out_channels, 4) if in_channels != out_channels else nn.Identity()
        )
        self.generator = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
        )

    def project(self, x: torch.Tensor) -> torch.Tensor:
        x = self.align(x)
        if self.training and self.mask_ratio > 0:
            n, _, h, w = x.shape
            keep = torch.rand(n, 1, h, w, device=x.device) >= self.mask_ratio
            x = x * keep.to(x.dtype)
        return self.generator(x)
