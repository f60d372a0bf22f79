"""Semantic segmentation networks used as distillation students and teachers.

All models return a dict ``{"out": logits, "aux": aux_logits}`` with logits upsampled to the input
size, like torchvision's segmentation models, and keep their feature extractor in a submodule named
``backbone`` whose stages are ``backbone.layer1`` .. ``backbone.layer4`` (ResNets). The usual
distillation tap is ``backbone.layer4`` (512 channels for ResNet18/34, 2048 for ResNet50/101). A timm
encoder (``backbone: timm:<name>``) is ``backbone.body``, its stages named as in timm.

The heads never modify a backbone stage output in place, so those tensors can be tapped safely.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision import models as tvm
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    deeplabv3_resnet101,
    fcn_resnet50,
    fcn_resnet101,
)
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead

from ...suggest import did_you_mean
from ...weights import fit_state_dict, read_weights
from ...weights.huggingface import build_hf_segmenter

__all__ = [
    "SEGMENTERS",
    "DilatedResNet",
    "PSPHead",
    "PSPNet",
    "SegmentationModel",
    "TimmBackbone",
    "build_model",
    "build_segmenter",
    "load_backbone_weights",
]

_RESNETS: dict[str, Callable[..., tvm.ResNet]] = {
    "resnet18": tvm.resnet18,
    "resnet34": tvm.resnet34,
    "resnet50": tvm.resnet50,
    "resnet101": tvm.resnet101,
}
_BASIC_BLOCK_RESNETS = ("resnet18", "resnet34")

# Valid backbones per architecture name accepted by :func:`build_segmenter`.
SEGMENTERS: dict[str, tuple[str, ...]] = {
    "pspnet": ("resnet18", "resnet34", "resnet50", "resnet101"),
    "deeplabv3": ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large"),
    "fcn": ("resnet18", "resnet34", "resnet50", "resnet101"),
}


TIMM = "timm:"  # model.options.backbone: timm:<name> puts a timm encoder under the built-in heads
HF = "hf:"  # model.student / teacher: hf:<repo or dir>, a transformers semantic segmenter
SMP = "smp:"  # model.student / teacher: smp:<Architecture>/<encoder>, a segmentation_models_pytorch model


def _dilate_basic_stage(stage: nn.Sequential, dilation: int) -> None:
    """Turn a BasicBlock stage into a stride-1 stage with dilated 3x3 convs (BasicBlock refuses dilation)."""
    for block in stage:
        for conv in (block.conv1, block.conv2):
            conv.stride = (1, 1)
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation, dilation)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
        block.stride = 1


class DilatedResNet(nn.Module):
    """Torchvision ResNet trunk (no pooling/fc) at output stride 8, stages ``layer1`` .. ``layer4``.

    Bottleneck nets use torchvision's ``replace_stride_with_dilation=[False, True, True]``; BasicBlock
    nets (ResNet18/34) get stride 1 with dilation 2 in ``layer3`` and 4 in ``layer4``. Parameter names
    match torchvision's classification ResNet, so ImageNet checkpoints load directly.
    """

    def __init__(self, name: str = "resnet18") -> None:
        super().__init__()
        if name not in _RESNETS:
            raise ValueError(f"unknown ResNet {name!r}{did_you_mean(name, _RESNETS)}")
        if name in _BASIC_BLOCK_RESNETS:
            net = _RESNETS[name](weights=None)
            _dilate_basic_stage(net.layer3, 2)
            _dilate_basic_stage(net.layer4, 4)
        else:
            net = _RESNETS[name](weights=None, replace_stride_with_dilation=[False, True, True])
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        expansion = 1 if name in _BASIC_BLOCK_RESNETS else 4
        self.aux_channels = 256 * expansion
        self.out_channels = 512 * expansion

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Return ``{"aux": layer3 output, "out": layer4 output}``, both at 1/8 of the input size."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer3(self.layer2(self.layer1(x)))
        return {"aux": c3, "out": self.layer4(c3)}


class TimmBackbone(nn.Module):
    """A timm encoder (``features_only``) as a segmenter backbone: its last two feature maps as ``aux``/``out``.

    Output stride 8 where the encoder allows it (ResNets, ConvNeXts, EfficientNets, ...), else its own (a
    warning says which). The encoder is ``body``: its layers are tapped as ``backbone.body.<timm name>``.
    """

    def __init__(self, name: str, pretrained: bool = False) -> None:
        super().__init__()
        from ...weights.huggingface import build_timm_classifier

        try:
            self.body = build_timm_classifier(name, 0, pretrained, features_only=True, output_stride=8)
            self.output_stride = 8
        except (TypeError, ValueError, AssertionError, NotImplementedError, RuntimeError):
            self.body = build_timm_classifier(name, 0, pretrained, features_only=True)
            self.output_stride = self.body.feature_info.reduction()[-1]
            warnings.warn(
                f"timm encoder {name} cannot run at output stride 8; it runs at its own, "
                f"{self.output_stride}",
                stacklevel=2,
            )
        channels = self.body.feature_info.channels()
        self.aux_channels, self.out_channels = channels[-2], channels[-1]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Return ``{"aux": the second-last feature map, "out": the last}``."""
        *_, aux, out = self.body(x)
        return {"aux": aux, "out": out}


def _timm_trunk(backbone: str, pretrained: str | Path | None) -> TimmBackbone:
    """The ``timm:<name>`` backbone; ``pretrained_backbone: timm`` loads timm's weights."""
    try:
        import timm
    except ImportError:
        raise ImportError(f"backbone {backbone!r} needs timm: pip install 'featdistill[hub]'") from None
    name = backbone[len(TIMM) :]
    if name.partition(".")[0] not in timm.list_models():
        hint = did_you_mean(name, timm.list_models(), many=3, otherwise="see timm.list_models()")
        raise ValueError(f"unknown timm encoder {name!r}{hint}")
    trunk = TimmBackbone(name, pretrained == "timm")
    if pretrained is not None and pretrained != "timm":
        load_backbone_weights(trunk.body, pretrained, backbone)
    return trunk


class SegmentationModel(nn.Module):
    """Backbone + decode head (+ optional auxiliary head), outputs upsampled to the input size.

    The auxiliary logits are computed only in training mode unless ``aux_in_eval`` is set, so that
    evaluation does not pay for a head it does not use.
    """

    def __init__(
        self,
        backbone: nn.Module,
        classifier: nn.Module,
        aux_classifier: nn.Module | None = None,
        *,
        aux_in_eval: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier
        self.aux_in_eval = aux_in_eval

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Return ``{"out": logits}`` plus ``"aux"`` when the auxiliary head runs, at the input size."""
        size = x.shape[-2:]
        feats = self.backbone(x)
        result = {"out": F.interpolate(self.classifier(feats["out"]), size, mode="bilinear")}
        if self.aux_classifier is not None and (self.training or self.aux_in_eval):
            result["aux"] = F.interpolate(self.aux_classifier(feats["aux"]), size, mode="bilinear")
        return result


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class PSPHead(nn.Module):
    """Pyramid pooling module + 3x3 fusion conv + dropout + 1x1 classifier (Zhao et al., 2017).

    Each bin branch pools to ``bin x bin``, projects to ``channels`` and is upsampled back; the branches
    are concatenated with the input features. The bin-1 branch has BatchNorm on a 1x1 map, so training
    needs a batch of at least 2.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), _conv_bn_relu(in_channels, channels, 1)) for b in bins
        )
        self.bottleneck = _conv_bn_relu(in_channels + len(bins) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.cls = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Return class logits at the resolution of ``x``."""
        size = x.shape[-2:]
        pooled = [F.interpolate(stage(x), size, mode="bilinear") for stage in self.stages]
        return self.cls(self.dropout(self.bottleneck(torch.cat([x, *pooled], dim=1))))


class PSPNet(SegmentationModel):
    """PSPNet on a dilated ResNet (output stride 8) with an FCN auxiliary head on ``backbone.layer3``.

    ``channels`` is the decode width (default 128 for ResNet18/34, 512 for ResNet50/101).
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet18",
        *,
        aux: bool = True,
        channels: int | None = None,
        bins: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        aux_in_eval: bool = False,
    ) -> None:
        trunk = DilatedResNet(backbone)
        if channels is None:
            channels = 128 if backbone in _BASIC_BLOCK_RESNETS else 512
        super().__init__(
            trunk,
            PSPHead(trunk.out_channels, num_classes, channels, bins, dropout),
            FCNHead(trunk.aux_channels, num_classes) if aux else None,
            aux_in_eval=aux_in_eval,
        )


def _strip_prefixes(key: str, prefixes: Sequence[str]) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def load_backbone_weights(backbone: nn.Module, weights: str | Path, arch: str = "resnet18") -> None:
    """Load backbone weights named as in :mod:`featdistill.weights` (a local file or ``torchvision[:ENUM]``).

    ``arch`` is the torchvision name of the backbone (for ``torchvision`` weights). Accepts a plain state
    dict or one nested under ``"state_dict"``/``"model"``. Leading ``module.``, ``backbone.`` and
    ``features.`` prefixes are stripped so that torchvision classification checkpoints and full segmenter
    checkpoints both fit; keys the backbone does not have (e.g. ``fc.*``) are ignored. Raises
    ``WeightsError`` when backbone tensors are missing from the file or have other shapes.
    """
    state, source = read_weights(weights, arch)
    own = backbone.state_dict()
    prefixes = ("module.", "backbone.", "features.")
    remapped = {}
    for key, value in state.items():
        name = key if key in own else _strip_prefixes(key, prefixes)
        if name in own:
            remapped[name] = value
    fit_state_dict(backbone, remapped, source, f"{arch} backbone")


def _torchvision_segmenter(name: str, backbone: str, num_classes: int, aux: bool) -> nn.Module:
    builders: dict[tuple[str, str], Callable[..., nn.Module]] = {
        ("deeplabv3", "resnet50"): deeplabv3_resnet50,
        ("deeplabv3", "resnet101"): deeplabv3_resnet101,
        ("deeplabv3", "mobilenet_v3_large"): deeplabv3_mobilenet_v3_large,
        ("fcn", "resnet50"): fcn_resnet50,
        ("fcn", "resnet101"): fcn_resnet101,
    }
    return builders[(name, backbone)](
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux
    )


def build_segmenter(
    name: str,
    num_classes: int,
    *,
    backbone: str = "resnet18",
    aux: bool = True,
    pretrained_backbone: str | Path | None = None,
    **kw: object,
) -> nn.Module:
    """Build a segmentation model by name (``pspnet``, ``deeplabv3`` or ``fcn``) and backbone.

    - ``pspnet``: :class:`PSPNet` on ResNet18/34/50/101; ``kw``: ``channels``, ``bins``, ``dropout``,
      ``aux_in_eval``.
    - ``deeplabv3``: torchvision's DeepLabV3 for ResNet50/101 and MobileNetV3-Large; for ResNet18/34,
      torchvision's ``DeepLabHead`` on :class:`DilatedResNet` (the "DeepLabV3 R18" student);
      ``kw`` for the latter: ``atrous_rates`` (default 12/24/36), ``aux_in_eval``.
    - ``fcn``: torchvision's FCN for ResNet50/101; for ResNet18/34 an ``FCNHead`` on
      :class:`DilatedResNet`; ``kw``: ``aux_in_eval``.

    Torchvision models are built with ``weights=None, weights_backbone=None`` and return ``"aux"`` in
    eval mode too when ``aux`` is set. ``pretrained_backbone`` names weights of the backbone network: a
    local file, or ``torchvision`` / ``torchvision:<ENUM>`` (see :mod:`featdistill.weights`).
    ``backbone: timm:<name>`` puts any timm encoder under the head (:class:`TimmBackbone`, output stride 8
    where it allows; ``pretrained_backbone: timm`` for timm's weights).
    Unknown names or backbones raise ValueError naming the closest valid ones.
    """
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmentation model {name!r}{did_you_mean(name, SEGMENTERS)}")
    if backbone not in SEGMENTERS[name] and not backbone.startswith(TIMM):
        raise ValueError(
            f"unknown backbone {backbone!r} for {name}{did_you_mean(backbone, SEGMENTERS[name])}"
        )
    if backbone.startswith(TIMM):
        trunk = _timm_trunk(backbone, pretrained_backbone)
        return _with_heads(name, trunk, num_classes, aux, kw)
    if name == "pspnet":
        model: nn.Module = PSPNet(num_classes, backbone, aux=aux, **kw)  # type: ignore[arg-type]
    elif backbone in _BASIC_BLOCK_RESNETS:
        model = _with_heads(name, DilatedResNet(backbone), num_classes, aux, kw)
    else:
        if kw:
            raise TypeError(f"torchvision {name} {backbone} takes no extra options, got: {', '.join(kw)}")
        model = _torchvision_segmenter(name, backbone, num_classes, aux)
    if pretrained_backbone is not None:
        load_backbone_weights(model.backbone, pretrained_backbone, backbone)
    return model


def _with_heads(
    name: str, trunk: DilatedResNet | TimmBackbone, num_classes: int, aux: bool, kw: dict[str, object]
) -> nn.Module:
    """The ``name`` head (PSPNet, DeepLabV3 or FCN) and an FCN auxiliary head on ``trunk``'s two outputs."""
    aux_in_eval = bool(kw.pop("aux_in_eval", False))
    if name == "pspnet":
        channels = int(kw.pop("channels", None) or 128)  # type: ignore[call-overload]
        bins = tuple(kw.pop("bins", (1, 2, 3, 6)))  # type: ignore[call-overload]
        dropout = float(kw.pop("dropout", 0.1))  # type: ignore[arg-type]
        head: nn.Module = PSPHead(trunk.out_channels, num_classes, channels, bins, dropout)
    elif name == "deeplabv3":
        rates = tuple(kw.pop("atrous_rates", (12, 24, 36)))  # type: ignore[call-overload]
        head = DeepLabHead(trunk.out_channels, num_classes, rates)
    else:
        head = FCNHead(trunk.out_channels, num_classes)
    if kw:
        raise TypeError(f"unexpected options for {name}: {', '.join(kw)}")
    aux_head = FCNHead(trunk.aux_channels, num_classes) if aux else None
    return SegmentationModel(trunk, head, aux_head, aux_in_eval=aux_in_eval)


def build_model(name: str, num_classes: int, **options: Any) -> nn.Module:
    """Any segmenter by its config name: ``hf:<repo or dir>`` (transformers), ``smp:<Architecture>/<encoder>``
    (segmentation_models_pytorch) or a built-in one (:func:`build_segmenter`), with its ``model.options``."""
    if name.startswith(HF):
        trust = bool(options.pop("trust_remote_code", False))
        if options:
            raise TypeError(f"{name} takes no model.options but trust_remote_code, got: {', '.join(options)}")
        return build_hf_segmenter(name[len(HF) :], num_classes, trust)
    if name.startswith(SMP):
        from .smp_models import build_smp

        return build_smp(name, num_classes, **options)
    return build_segmenter(name, num_classes, **options)  # type: ignore[arg-type]
