"""Pretrain models: the student is a classification backbone without its head; a teacher is a foundation
backbone (``hf:``, ``timm:``) or any classifier by name (a CNN teacher)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ...weights import load_weights
from ...weights.foundation import build_hf_backbone, build_timm_backbone
from ..classification.models import build_classifier


def drop_head(model: nn.Module) -> nn.Module:
    """``model`` with its classifier (its last ``nn.Linear``) replaced by ``nn.Identity``: it returns pooled
    features, and its weights hold no untrained head for a fine-tuning run to load (one with no Linear is
    returned as it is)."""
    reset = getattr(model, "reset_classifier", None)
    if callable(reset):  # timm
        reset(0)
        return model
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        return model
    parent_name, _, child = linears[-1].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return model


def build_backbone_student(name: str, weights: str | None, num_classes: int, **options: Any) -> nn.Module:
    """A classification model by name (torchvision, featdistill, ``timm:``, ``hf:``) without its head."""
    return drop_head(build_classifier(name, num_classes, weights, **options))


def build_foundation_teacher(name: str, weights: str | None, num_classes: int, **options: Any) -> nn.Module:
    """``hf:`` (AutoModel backbone, with its own weights), ``timm:`` (``weights: timm`` for timm's, or a file)
    or any classifier name (a CNN teacher trained by featdistill, ``weights`` its checkpoint)."""
    if name.startswith("hf:"):
        if set(options) - {"trust_remote_code"}:
            raise TypeError(f"{name} takes no model options but trust_remote_code, got: {', '.join(options)}")
        return build_hf_backbone(name[len("hf:") :], bool(options.get("trust_remote_code", False)))
    if name.startswith("timm:"):
        model = build_timm_backbone(name[len("timm:") :], weights == "timm", **options)
        if weights not in (None, "timm"):
            load_weights(model, weights, name)
        return model
    return build_classifier(name, num_classes, weights, **options)
