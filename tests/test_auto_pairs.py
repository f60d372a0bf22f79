"""``pairs="auto"`` on a ConvNeXt-like layout: stage outputs, not the norm/downsample that opens the next stage."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from featdistill.distiller.auto_pairs import auto_pairs
from featdistill.distiller.distiller import default_teacher_forward


class Block(nn.Module):
    """timm's ConvNeXt block in miniature: depthwise conv, then norm and MLP in channels-last layout."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(self.norm(self.conv_dw(x).permute(0, 2, 3, 1)))  # (N, H, W, C) outputs
        return x + y.permute(0, 3, 1, 2)


class Stage(nn.Module):
    """A stage that starts with its own downsample (norm, stride-2 conv), as timm's ``ConvNeXtStage``."""

    def __init__(self, cin: int, cout: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = (
            nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 2, stride=2))
            if downsample
            else nn.Identity()
        )
        self.blocks = nn.Sequential(Block(cout), Block(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class TinyConvNeXt(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 4, stride=4), nn.BatchNorm2d(width))
        self.stages = nn.Sequential(
            Stage(width, width, False), Stage(width, 2 * width, True), Stage(2 * width, 4 * width, True)
        )
        self.head = nn.Linear(4 * width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean(dim=(2, 3)))


def test_auto_pairs_prefers_stage_outputs_over_the_next_stage_downsample() -> None:
    found = auto_pairs(TinyConvNeXt(8), TinyConvNeXt(16), torch.randn(1, 3, 32, 48), default_teacher_forward)
    assert [(s, t) for s, t, _ in found] == [
        ("stages.0", "stages.0"),
        ("stages.1", "stages.1"),
        ("stages", "stages"),  # the container of all stages returns last, with the last stage's output
    ]
    assert [shapes[1] for _, _, shapes in found] == [(1, 16, 8, 12), (1, 32, 4, 6), (1, 64, 2, 3)]


class Downsample(nn.Module):
    """A module that is nothing but a downsample: its first layer is the only output at the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


def test_auto_pairs_falls_back_to_an_output_inside_the_next_stage() -> None:
    # ``down.conv`` is the only full-resolution map, so it is still paired.
    net = nn.Sequential()
    net.add_module("down", Downsample())
    net.add_module("head", nn.Conv2d(4, 2, 1))  # the model output is never paired, so it needs a head
    found = auto_pairs(net, net, torch.randn(1, 3, 8, 8), default_teacher_forward)
    assert [(s, t) for s, t, _ in found] == [("down.conv", "down.conv"), ("down", "down")]


def test_auto_pairs_on_timm_convnext() -> None:
    # The case reported in issue 13: a ResNet student paired ``layer1`` with ``stages.1.downsample.0``.
    timm = pytest.importorskip("timm")
    teacher = timm.create_model("convnext_atto", pretrained=False)
    found = auto_pairs(
        torchvision.models.resnet18(), teacher, torch.randn(1, 3, 64, 64), default_teacher_forward
    )
    pairs = [(s, t) for s, t, _ in found]
    assert pairs[:3] == [("layer1", "stages.0"), ("layer2", "stages.1"), ("layer3", "stages.2")]
    assert pairs[3][0] == "layer4" and "downsample" not in pairs[3][1]
