"""Classification model zoo: CIFAR ResNets, Wide ResNets, MobileNetV1, torchvision and timm models by name."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from ....engine.checkpoint import load_safely
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

_CHECKPOINT_KEYS = ("model", "state_dict", "student")


def list_classifiers() -> list[str]:
    """Names accepted by :func:`build_classifier` (``timm:<name>`` models are accepted too but not listed)."""
    torchvision_names = torchvision.models.list_models(module=torchvision.models)
    return sorted(_LOCAL) + sorted(set(torchvision_names) - set(_LOCAL))


def build_classifier(
    name: str, num_classes: int = 10, pretrained: str | Path | None = None, **kwargs: Any
) -> nn.Module:
    """Build a classifier by name, randomly initialised or from a local checkpoint.

    Args:
        name: a name from :func:`list_classifiers` (local CIFAR/WRN/MobileNetV1 models first, then any
            torchvision classification model, built with ``weights=None``) or ``timm:<name>``.
        num_classes: size of the classifier output.
        pretrained: path of a local checkpoint (never downloaded): a raw state_dict, or a dict holding it
            under ``"model"``, ``"state_dict"`` or ``"student"``. A DDP ``module.`` prefix is removed.
        **kwargs: passed to the model constructor.

    Raises:
        ValueError: unknown name (the message suggests close names).
        ImportError: a ``timm:`` name without timm installed.
        FileNotFoundError: ``pretrained`` does not exist.
    """
    if name.startswith("timm:"):
        try:
            import timm
        except ImportError as err:
            raise ImportError(
                f"model {name!r} needs timm, which is not installed: pip install 'featdistill[timm]'"
            ) from err
        model = timm.create_model(name[len("timm:") :], pretrained=False, num_classes=num_classes, **kwargs)
    elif name in _LOCAL:
        model = _LOCAL[name](num_classes=num_classes, **kwargs)
    elif name in torchvision.models.list_models(module=torchvision.models):
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    else:
        close = difflib.get_close_matches(name, list_classifiers(), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see list_classifiers()"
        raise ValueError(f"unknown classifier {name!r}{hint}")
    if pretrained is not None:
        model.load_state_dict(load_state_dict_file(pretrained))
    return model


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a model state_dict from a local checkpoint file (safe ``weights_only`` loading)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
    checkpoint = load_safely(path)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a state_dict or a dict of them, got {type(checkpoint).__name__}")
    for key in _CHECKPOINT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(
            f"{path}: not a state_dict (no tensor mapping at the top level or under "
            f"{', '.join(repr(k) for k in _CHECKPOINT_KEYS)}); top-level keys: {list(checkpoint)[:10]}"
        )
    if checkpoint and all(k.startswith("module.") for k in checkpoint):
        return {k[len("module.") :]: v for k, v in checkpoint.items()}
    return dict(checkpoint)
