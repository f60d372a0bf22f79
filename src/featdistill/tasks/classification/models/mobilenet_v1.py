"""MobileNetV1 (Howard et al. 2017) for 224x224 ImageNet inputs, the usual ImageNet distillation student.

``features`` is an ``nn.Sequential`` of 14 stages: ``features.0`` is the stride-2 3x3 stem, ``features.1``
to ``features.13`` are depthwise-separable blocks. Useful taps for a 224x224 input:

- ``features.3``  -> 128 x 56 x 56 (stride 4)
- ``features.5``  -> 256 x 28 x 28 (stride 8)
- ``features.11`` -> 512 x 14 x 14 (stride 16)
- ``features.13`` -> 1024 x 7 x 7 (stride 32, the last feature map)

followed by ``avgpool`` and ``fc``. ReLUs are not in-place, so tapped outputs are never overwritten.
"""

from __future__ import annotations

import torch
from torch import nn

from .cifar_resnet import init_weights

__all__ = ["MobileNetV1", "mobilenet_v1"]

# (output channels, stride) of the 13 depthwise-separable blocks.
_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)


def _conv_bn_relu(
    in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]


class MobileNetV1(nn.Module):
    """MobileNetV1 with width multiplier 1.0 (about 4.2 M parameters for 1000 classes)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        stages = [nn.Sequential(*_conv_bn_relu(3, 32, 3, 2))]
        channels = 32
        for out_channels, stride in _BLOCKS:
            stages.append(
                nn.Sequential(
                    *_conv_bn_relu(channels, channels, 3, stride, groups=channels),
                    *_conv_bn_relu(channels, out_channels, 1, 1),
                )
            )
            channels = out_channels
        self.features = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v1(num_classes: int = 1000) -> MobileNetV1:
    """MobileNetV1 for 224x224 inputs."""
    return MobileNetV1(num_classes)
