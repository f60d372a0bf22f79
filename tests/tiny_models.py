"""Tiny CNNs (BatchNorm included) and generated data for the tests and the integrations' DDP scripts."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def tiny_cnn(width: int, classes: int = 4) -> nn.Module:
    """conv → bn → relu → pool → fc: a feature map to tap at ``relu``."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, width, 3, padding=1),
            bn=nn.BatchNorm2d(width),
            relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(width, classes),
        )
    )


def small_cnn(width: int = 4) -> nn.Sequential:
    """Two conv-bn-relu stages (the second at stride 2) and a 5-class head: taps at ``2`` and ``5``."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 5),
    )


def loader(n: int = 24, batch_size: int = 4) -> DataLoader:
    """``n`` random 8×8 images with labels in 4 classes, in a fixed order."""
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g))
    return DataLoader(data, batch_size=batch_size)
