"""The paper's channel-wise transformation (CWT) and its linear ablation."""

from __future__ import annotations

import torch
from torch import nn

from .base import FeatureTransform, pointwise_layer


class ChannelWiseTransform(FeatureTransform):
    """Per-position MLP C_s → C_h → C_t (ReLU between), applied to every pixel or token independently.

    This is the learnable nonlinear transformation of Liu et al., "A Simple and Generic Framework for
    Feature Distillation via Channel-wise Transformation" (ICCVW 2023): no spatial mixing, default PyTorch
    initialisation, hidden width ``C_h`` defaulting to the teacher's ``C_t``. With ``nonlinear=False`` it is a
    single linear map C_s → C_t (the paper's linear ablation).

    Args:
        in_channels: student channels C_s.
        out_channels: teacher channels C_t.
        hidden_channels: C_h (default C_t); ignored when ``nonlinear=False``.
        nonlinear: use the two-layer MLP with ReLU (True) or one linear layer (False).
        feature_dim: 4 for (B, C, H, W) maps (1x1 convolutions), 3 for (B, N, C) tokens, 2 for (B, C).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int | None = None,
        nonlinear: bool = True,
        feature_dim: int = 4,
    ) -> None:
        super().__init__()
        if nonlinear:
            hidden = hidden_channels or out_channels
            self.layers = nn.Sequential(
                pointwise_layer(in_channels, hidden, feature_dim),
                nn.ReLU(),
                pointwise_layer(hidden, out_channels, feature_dim),
            )
        else:
            self.layers = nn.Sequential(pointwise_layer(in_channels, out_channels, feature_dim))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
