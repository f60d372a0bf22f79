"""Wide ResNets WRN-d-w (Zagoruyko & Komodakis 2016) for 32x32 inputs, pre-activation as in RepDistiller.

Modules: ``conv1`` (16-channel stem), ``layer1..layer3`` (stages of width 16w/32w/64w), then ``bn``,
``relu``, ``avgpool``, ``fc``. Because blocks are pre-activation, ``layer3`` outputs the un-normalised
residual sum; tap ``relu`` for the final activated 64w x 8 x 8 feature. No operation modifies a stage or
block output in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cifar_resnet import init_weights

__all__ = ["WideResNet", "wide_resnet", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"]


class PreActBlock(nn.Module):
    """BN-ReLU-conv x2 with a residual; the shortcut is a 1x1 conv of the activated input on shape change."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        identity = x if self.shortcut is None else self.shortcut(act)
        return out + identity


class WideResNet(nn.Module):
    """WRN-``depth``-``width``: three stages of ``(depth - 4) / 6`` pre-activation blocks."""

    def __init__(self, depth: int, width: int, num_classes: int = 10) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        if width < 1:
            raise ValueError(f"WRN width must be a positive integer, got {width}")
        blocks = (depth - 4) // 6
        widths = (16, 16 * width, 32 * width, 64 * width)
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.layer1 = _make_stage(widths[0], widths[1], blocks, stride=1)
        self.layer2 = _make_stage(widths[1], widths[2], blocks, stride=2)
        self.layer3 = _make_stage(widths[2], widths[3], blocks, stride=2)
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.relu(self.bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [PreActBlock(in_channels, out_channels, stride)]
    layers += [PreActBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def wide_resnet(depth: int, width: int, num_classes: int = 10) -> WideResNet:
    """Generic WRN-depth-width."""
    return WideResNet(depth, width, num_classes)


def wrn_16_1(num_classes: int = 10) -> WideResNet:
    """WRN-16-1."""
    return WideResNet(16, 1, num_classes)


def wrn_16_2(num_classes: int = 10) -> WideResNet:
    """WRN-16-2, about 0.70 M parameters."""
    return WideResNet(16, 2, num_classes)


def wrn_40_1(num_classes: int = 10) -> WideResNet:
    """WRN-40-1."""
    return WideResNet(40, 1, num_classes)


def wrn_40_2(num_classes: int = 10) -> WideResNet:
    """WRN-40-2, about 2.2 M parameters."""
    return WideResNet(40, 2, num_classes)
