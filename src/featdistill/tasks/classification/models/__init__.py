"""Classification model zoo: CIFAR ResNets, Wide ResNets, MobileNetV1, torchvision, timm and Hugging Face models by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torchvision
from torch import nn

from ....suggest import did_you_mean
from ....weights import load_weights
from ....weights.files import load_state_dict_file
from ....weights.huggingface import build_hf_classifier, build_timm_classifier
from .cifar_resnet import (
    CifarResNet,
    resnet8,
    resnet8x4,
    resnet14,
    resnet20,
    resnet32,
    resnet32x4,
    resnet44,
    resnet56,
    resnet110,
)
from .mobilenet_v1 import MobileNetV1, mobilenet_v1
from .wrn import WideResNet, wide_resnet, wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2

__all__ = [
    "CifarResNet",
    "MobileNetV1",
    "WideResNet",
    "build_classifier",
    "list_classifiers",
    "load_state_dict_file",
    "mobilenet_v1",
    "wide_resnet",
]

_LOCAL: dict[str, Callable[..., nn.Module]] = {
    "resnet8": resnet8,
    "resnet14": resnet14,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "resnet8x4": resnet8x4,
    "resnet32x4": resnet32x4,
    "wrn_16_1": wrn_16_1,
    "wrn_16_2": wrn_16_2,
    "wrn_40_1": wrn_40_1,
    "wrn_40_2": wrn_40_2,
    "mobilenet_v1": mobilenet_v1,
}


def list_classifiers() -> list[str]:
    """Names accepted by :func:`build_classifier` (``timm:<name>`` and ``hf:<repo>`` are accepted too but not listed)."""
    torchvision_names = torchvision.models.list_models(module=torchvision.models)
    return sorted(_LOCAL) + sorted(set(torchvision_names) - set(_LOCAL))


def build_classifier(
    name: str, num_classes: int = 10, pretrained: str | Path | None = None, **kwargs: Any
) -> nn.Module:
    """Build a classifier by name, randomly initialised or with pretrained weights.

    Args:
        name: a name from :func:`list_classifiers` (local CIFAR/WRN/MobileNetV1 models first, then any
            torchvision classification model), ``timm:<name>[.<tag>]``, or ``hf:<repo id or directory>``
            (a transformers image classifier with its own weights, returning logits).
        num_classes: size of the classifier output. A pretrained head of another size is left out and
            newly initialised (one warning names it): the fine-tuning case.
        pretrained: weights by name (:mod:`featdistill.weights`): a local ``.pt``/``.pth``/``.bin``/
            ``.safetensors`` file (a raw state_dict, or a dict holding it under ``"model"``,
            ``"state_dict"`` or ``"student"``), ``torchvision`` / ``torchvision:<ENUM>``, or ``timm``.
        **kwargs: passed to the model constructor; ``trust_remote_code`` is for ``hf:`` models only.

    Raises:
        ValueError: unknown name (the message suggests close names).
        ImportError: a ``timm:`` or ``hf:`` name without its package installed.
        FileNotFoundError: ``pretrained`` names a file that does not exist.
        WeightsError: weights not available offline, or not fitting the model.
    """
    trust_remote_code = bool(kwargs.pop("trust_remote_code", False))
    if name.startswith("hf:"):
        if kwargs:
            raise TypeError(f"{name} takes no model.options but trust_remote_code, got: {', '.join(kwargs)}")
        model: nn.Module = build_hf_classifier(name[len("hf:") :], num_classes, trust_remote_code)
    elif name.startswith("timm:"):
        model = build_timm_classifier(name[len("timm:") :], num_classes, pretrained == "timm", **kwargs)
        pretrained = None if pretrained == "timm" else pretrained
    elif name in _LOCAL:
        model = _LOCAL[name](num_classes=num_classes, **kwargs)
    elif name in torchvision.models.list_models(module=torchvision.models):
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    else:
        hint = did_you_mean(name, list_classifiers(), many=5, otherwise="see list_classifiers()")
        raise ValueError(f"unknown classifier {name!r}{hint}")
    if pretrained is not None:
        load_weights(model, pretrained, name, num_classes)
    return model
