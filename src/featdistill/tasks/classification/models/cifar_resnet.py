"""CIFAR ResNets (He et al. 2016, CIFAR variant) with the layout used by the CRD/RepDistiller benchmarks.

Three stages of BasicBlocks on 32x32 inputs; a 1x1 convolution + BN shortcut wherever the shape changes.
Top-level modules are ``conv1, bn1, relu, layer1, layer2, layer3, avgpool, fc`` so ``layer3`` (or a block
such as ``layer3.4``) can be tapped. No operation modifies a stage or block output in place, so any of
those outputs stays valid after it is returned.

Widths: ``resnetN`` uses 16/16/32/64 (stem, stages); the ``x4`` variants use 32/64/128/256.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CifarResNet",
    "resnet8",
    "resnet8x4",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet32x4",
    "resnet44",
    "resnet56",
    "resnet110",
]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (post-activation)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class CifarResNet(nn.Module):
    """ResNet of depth ``6n + 2`` for small (32x32) images.

    Args:
        depth: total depth; must satisfy ``(depth - 2) % 6 == 0``.
        widths: channels of the stem and of the three stages.
        num_classes: size of the classifier output.
    """

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int = 10) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, ...), got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.layer1 = _make_stage(widths[0], widths[1], blocks, stride=1)
        self.layer2 = _make_stage(widths[1], widths[2], blocks, stride=2)
        self.layer3 = _make_stage(widths[2], widths[3], blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_channels, out_channels, stride)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def init_weights(model: nn.Module) -> None:
    """He initialisation for convolutions, unit/zero BN, as in the reference CIFAR training recipes."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


_NARROW = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)


def resnet8(num_classes: int = 10) -> CifarResNet:
    """ResNet-8 (widths 16/32/64)."""
    return CifarResNet(8, _NARROW, num_classes)


def resnet14(num_classes: int = 10) -> CifarResNet:
    """ResNet-14 (widths 16/32/64)."""
    return CifarResNet(14, _NARROW, num_classes)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """ResNet-20 (widths 16/32/64), about 0.28 M parameters."""
    return CifarResNet(20, _NARROW, num_classes)


def resnet32(num_classes: int = 10) -> CifarResNet:
    """ResNet-32 (widths 16/32/64)."""
    return CifarResNet(32, _NARROW, num_classes)


def resnet44(num_classes: int = 10) -> CifarResNet:
    """ResNet-44 (widths 16/32/64)."""
    return CifarResNet(44, _NARROW, num_classes)


def resnet56(num_classes: int = 10) -> CifarResNet:
    """ResNet-56 (widths 16/32/64), about 0.86 M parameters."""
    return CifarResNet(56, _NARROW, num_classes)


def resnet110(num_classes: int = 10) -> CifarResNet:
    """ResNet-110 (widths 16/32/64), about 1.7 M parameters."""
    return CifarResNet(110, _NARROW, num_classes)


def resnet8x4(num_classes: int = 10) -> CifarResNet:
    """ResNet-8x4 (32-channel stem, widths 64/128/256), about 1.2 M parameters."""
    return CifarResNet(8, _WIDE, num_classes)


def resnet32x4(num_classes: int = 10) -> CifarResNet:
    """ResNet-32x4 (32-channel stem, widths 64/128/256), about 7.4 M parameters."""
    return CifarResNet(32, _WIDE, num_classes)
