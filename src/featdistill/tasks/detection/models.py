"""Torchvision detectors (Faster/Mask R-CNN, RetinaNet, FCOS) on FPN backbones, built for distillation.

Every detector built here resizes its input to ONE fixed shorter side (``min_size``, an int). torchvision
picks a random ``min_size`` per image in train mode when given a tuple, but always the last one in eval
mode; a teacher in eval mode and a student in train mode fed the same images would then see different
resolutions and their FPN maps could not be compared. Keeping the detector's resize fixed makes train and
eval preprocessing identical; do scale augmentation in the dataset (see ``augment.py``) instead.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    _mobilenet_extractor,
    _resnet_fpn_extractor,
)
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import (
    FeaturePyramidNetwork,
    LastLevelMaxPool,
    LastLevelP6P7,
)

from ...suggest import did_you_mean
from ...weights import load_weights

__all__ = [
    "BACKBONES",
    "DETECTORS",
    "TimmBackboneWithFPN",
    "build_detector",
    "fpn_level_names",
    "match_transform",
]

DETECTORS: dict[str, type[nn.Module]] = {
    "fasterrcnn": FasterRCNN,
    "maskrcnn": MaskRCNN,
    "retinanet": RetinaNet,
    "fcos": FCOS,
}
_RESNETS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
BACKBONES: tuple[str, ...] = (*_RESNETS, "mobilenet_v3_large")
# RetinaNet and FCOS use P3-P7: the stride-8/16/32 stages plus P6/P7 computed from P5.
_ONE_STAGE = ("retinanet", "fcos")


def _unknown(kind: str, name: str, choices: tuple[str, ...] | list[str]) -> ValueError:
    return ValueError(f"unknown {kind} {name!r}{did_you_mean(name, choices, many=3)}")


class TimmBackboneWithFPN(nn.Module):
    """A timm model's ``features_only`` stages under torchvision's FPN: the same levels (``"0"``, ``"1"``, ...
    then ``"pool"`` or ``"p6"``/``"p7"``) at the same strides as torchvision's ``BackboneWithFPN``, so every
    torchvision detector head takes it."""

    def __init__(self, body: nn.Module, indices: list[int], extra_blocks: nn.Module) -> None:
        super().__init__()
        self.body, self.indices = body, indices
        channels = body.feature_info.channels()
        self.fpn = FeaturePyramidNetwork([channels[i] for i in indices], 256, extra_blocks=extra_blocks)
        self.out_channels = 256

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(x)
        return self.fpn(OrderedDict((str(k), features[i]) for k, i in enumerate(self.indices)))


def _timm_backbone(
    name: str, detector: str, pretrained_backbone: str | os.PathLike | None
) -> TimmBackboneWithFPN:
    """``timm:<name>`` -> the stride 4-32 stages (P2-P5, two-stage) or 8-32 (P3-P5 and P6/P7, one-stage)
    under an FPN. ``pretrained_backbone: timm`` takes timm's weights (Hugging Face cache), a file a state dict."""
    from ...weights.huggingface import build_timm_classifier

    one_stage = detector in _ONE_STAGE
    body = build_timm_classifier(name, 0, pretrained_backbone == "timm", features_only=True)
    if pretrained_backbone not in (None, "timm"):
        load_weights(body, pretrained_backbone, f"timm:{name}")
    strides = (8, 16, 32) if one_stage else (4, 8, 16, 32)
    reductions = list(body.feature_info.reduction())
    missing = [s for s in strides if s not in reductions]
    if missing:
        raise ValueError(
            f"backbone timm:{name} has no stage at stride {missing} (its strides: {reductions}); {detector} "
            f"needs strides {list(strides)}"
        )
    indices = [reductions.index(s) for s in strides]
    extra = LastLevelP6P7(256, 256) if one_stage else LastLevelMaxPool()
    return TimmBackboneWithFPN(body, indices, extra)


def _build_backbone(
    name: str, detector: str, trainable_layers: int, pretrained_backbone: str | os.PathLike | None
) -> nn.Module:
    """Classification network -> FPN feature extractor, laid out as torchvision's detection builders do."""
    if name.startswith("timm:"):
        return _timm_backbone(name[len("timm:") :], detector, pretrained_backbone)
    if name not in BACKBONES:
        raise _unknown("backbone", name, BACKBONES)
    pretrained = pretrained_backbone is not None
    # As in torchvision: frozen BN and partial freezing only make sense on top of pretrained weights.
    norm_layer: Callable[..., nn.Module] = misc_nn_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    net = getattr(torchvision.models, name)(weights=None, norm_layer=norm_layer)
    if pretrained:
        load_weights(net, pretrained_backbone, name)
    one_stage = detector in _ONE_STAGE
    all_layers = 6 if name == "mobilenet_v3_large" else 5
    if not 0 <= trainable_layers <= all_layers:
        raise ValueError(f"trainable_layers must be in [0, {all_layers}] for {name}, got {trainable_layers}")
    layers = trainable_layers if pretrained else all_layers
    if name == "mobilenet_v3_large":
        # Stages 2, 3, 5 output strides 8, 16, 32 (P3-P5); two-stage models keep torchvision's layout.
        returned, extra = ([2, 3, 5], LastLevelP6P7(256, 256)) if one_stage else (None, None)
        return _mobilenet_extractor(net, True, layers, returned_layers=returned, extra_blocks=extra)
    if one_stage:
        return _resnet_fpn_extractor(
            net, layers, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)
        )
    return _resnet_fpn_extractor(net, layers)


def build_detector(
    name: str,
    num_classes: int,
    *,
    backbone: str = "resnet50",
    min_size: int = 800,
    max_size: int = 1333,
    trainable_layers: int = 3,
    pretrained_backbone: str | os.PathLike | None = None,
    **kw: Any,
) -> nn.Module:
    """Build a randomly initialised torchvision detector (no download ever happens).

    ``name`` is one of ``fasterrcnn``, ``maskrcnn``, ``retinanet``, ``fcos``; ``backbone`` any name in
    ``BACKBONES`` or ``timm:<name>`` (a timm model's ``features_only`` stages; ``pretrained_backbone: timm``
    for timm's weights; BatchNorm stays trainable and ``trainable_layers`` is unused). ``num_classes`` counts the background (label 0), i.e. number of categories + 1.
    ``min_size`` must be a single int so that train and eval preprocessing are identical (module doc).
    ``pretrained_backbone`` names the classification network's weights: a local file (a state dict, also
    ``.safetensors``) or ``torchvision`` / ``torchvision:<ENUM>`` (:mod:`featdistill.weights`); with it the
    backbone uses frozen BatchNorm and only the last ``trainable_layers`` stages train. Without it the
    backbone is trained from scratch: BatchNorm2d, every stage trainable, ``trainable_layers`` unused.
    Extra keyword arguments go to the torchvision detector class (e.g. ``box_detections_per_img``).
    """
    if name not in DETECTORS:
        raise _unknown("detector", name, list(DETECTORS))
    if isinstance(min_size, bool) or not isinstance(min_size, int):
        raise TypeError(
            f"min_size must be one int, got {min_size!r}: a tuple makes torchvision pick a random size in "
            "train mode but the last one in eval mode; jitter scale in the dataset (augment.RandomResize + RandomCrop)"
        )
    body = _build_backbone(backbone, name, trainable_layers, pretrained_backbone)
    if backbone == "mobilenet_v3_large" and name not in _ONE_STAGE and "rpn_anchor_generator" not in kw:
        # Same anchors as torchvision's fasterrcnn_mobilenet_v3_large_fpn (three feature maps).
        sizes = ((32, 64, 128, 256, 512),) * 3
        kw["rpn_anchor_generator"] = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    return DETECTORS[name](body, num_classes, min_size=min_size, max_size=max_size, **kw)


def fpn_level_names(model: nn.Module) -> list[str]:
    """Keys of the FPN output dict of ``model.backbone``, in order (finest level first).

    Faster/Mask R-CNN: ``["0", "1", "2", "3", "pool"]`` (strides 4-64; MobileNet: ``["0", "1", "pool"]``);
    RetinaNet/FCOS: ``["0", "1", "2", "p6", "p7"]`` (P3-P7, strides 8-128). Use them to build distillation pairs such as ``("backbone[0]", "backbone[0]")``.
    """
    fpn_backbone = getattr(model, "backbone", None)
    if not isinstance(fpn_backbone, (BackboneWithFPN, TimmBackboneWithFPN)):
        raise TypeError(f"{type(model).__name__} has no torchvision FPN backbone (model.backbone)")
    names = (
        list(fpn_backbone.body.return_layers.values())
        if isinstance(fpn_backbone, BackboneWithFPN)
        else [str(k) for k in range(len(fpn_backbone.indices))]
    )
    extra = fpn_backbone.fpn.extra_blocks
    if isinstance(extra, LastLevelMaxPool):
        return [*names, "pool"]
    if isinstance(extra, LastLevelP6P7):
        return [*names, "p6", "p7"]
    # Unknown extra block: its names are only known by running it once.
    device = next(fpn_backbone.parameters()).device
    was_training = fpn_backbone.training
    fpn_backbone.eval()
    try:
        with torch.no_grad():
            return list(fpn_backbone(torch.zeros(1, 3, 64, 64, device=device)).keys())
    finally:
        fpn_backbone.train(was_training)


_TRANSFORM_SETTINGS = ("min_size", "max_size", "image_mean", "image_std", "size_divisible", "fixed_size")


def match_transform(teacher: nn.Module, student: nn.Module) -> nn.Module:
    """Give ``teacher.transform`` the student's preprocessing settings, in place; returns ``teacher``.

    Distillation compares feature maps position by position, so the teacher (eval mode) must resize,
    normalise and pad exactly like the student (train mode). Raises ``ValueError`` when the student's
    own transform differs between train and eval mode, which no teacher setting can match.
    """
    for role, model in (("teacher", teacher), ("student", student)):
        if not isinstance(getattr(model, "transform", None), GeneralizedRCNNTransform):
            raise TypeError(f"{role} {type(model).__name__} has no GeneralizedRCNNTransform at .transform")
    src: GeneralizedRCNNTransform = student.transform
    if len(src.min_size) != 1:
        raise ValueError(
            f"student transform has several min_size values {tuple(src.min_size)}: it resizes randomly in "
            "train mode, so no teacher in eval mode can match it; rebuild the student with one int min_size"
        )
    if src._skip_resize:
        raise ValueError("student transform skips resizing in train mode only; no teacher can match it")
    dst: GeneralizedRCNNTransform = teacher.transform
    for attr in _TRANSFORM_SETTINGS:
        value = getattr(src, attr)
        setattr(dst, attr, list(value) if isinstance(value, list) else value)
    return teacher
