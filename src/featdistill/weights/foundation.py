"""Foundation models as frozen teachers: ``hf:`` vision backbones that are not classifiers, and timm ViTs.

``hf:<repo or dir>`` builds transformers' ``AutoModel`` (Dinov2Model with or without registers, DINOv3,
ViTModel, ConvNextModel, ...; of a CLIP or SigLIP checkpoint its vision tower) wrapped as
:class:`HFBackbone`, which returns ``last_hidden_state``; its layers are tapped as ``hf.<module path>``
(``hf.encoder.layer.11``; the ``hf.`` may be left out). ``timm:<name>`` builds the timm model without its
classifier. Each carries what the teacher needs beyond the student's input (:class:`TeacherInput`: its own
mean, std and input size, rounded to its patch size) and ``num_prefix_tokens`` (CLS and register tokens,
dropped when its tokens become a grid: :mod:`featdistill.taps.grid`).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import WeightsError
from .huggingface import (
    HUB_EXTRA,
    build_timm_classifier,
    hf_source,
    hub_errors,
    hub_offline,
    not_available,
    quiet_transformers,
)

#: The normalisation of a teacher whose hub config gives none (the one most vision backbones are trained with).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TeacherInput:
    """How a foundation teacher wants its images: its own normalisation and size, whatever the student's.

    ``size`` (H, W) None: the student's size. Either way the size is rounded to a multiple of ``patch``.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: tuple[int, int] | None
    patch: int = 1

    def size_for(self, student_size: tuple[int, int]) -> tuple[int, int]:
        """The teacher's input size for student images of ``student_size``: rounded to the patch size."""
        height, width = self.size or student_size
        return (
            max(1, round(height / self.patch)) * self.patch,
            max(1, round(width / self.patch)) * self.patch,
        )


class HFBackbone(nn.Module):
    """A transformers vision backbone (``self.hf``) called on an image tensor, returning its last hidden state:
    tokens ``(N, tokens, C)`` of a ViT, the map ``(N, C, H, W)`` of a CNN."""

    def __init__(self, hf: nn.Module, num_prefix_tokens: int, teacher_input: TeacherInput) -> None:
        super().__init__()
        self.hf = hf
        self.num_prefix_tokens = num_prefix_tokens
        self.teacher_input = teacher_input

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The last hidden state of images ``(N, 3, H, W)``."""
        output = self.hf(pixel_values=images)
        hidden = getattr(output, "last_hidden_state", None)
        return hidden if hidden is not None else output.feature_maps[-1]


def _patch(config: Any) -> int:
    patch = getattr(config, "patch_size", None) or 1
    return int(patch[0] if isinstance(patch, (list, tuple)) else patch)


def _prefix_count(config: Any) -> int:
    """CLS and register tokens before the patch tokens: none for SigLIP, else the CLS token and the registers."""
    if str(getattr(config, "model_type", "")).startswith("siglip"):
        return 0
    return 1 + int(getattr(config, "num_register_tokens", 0) or 0)


def _processor_input(ref: str, patch: int) -> TeacherInput:
    """The teacher's mean, std and size from its image processor config (ImageNet's and the student's size when
    it has none)."""
    from transformers import AutoImageProcessor

    try:
        with quiet_transformers():
            processor = AutoImageProcessor.from_pretrained(ref)
    except (OSError, ValueError, KeyError, ImportError):
        return TeacherInput(IMAGENET_MEAN, IMAGENET_STD, None, patch)
    mean = tuple(float(v) for v in getattr(processor, "image_mean", None) or IMAGENET_MEAN)
    std = tuple(float(v) for v in getattr(processor, "image_std", None) or IMAGENET_STD)
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    return TeacherInput(mean, std, _side_pair(crop) or _side_pair(getattr(processor, "size", None)), patch)


def _side_pair(size: Any) -> tuple[int, int] | None:
    """``(H, W)`` of a processor's size (a dict or transformers' ``SizeDict``: height/width or shortest_edge)."""
    read = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    if size is None:
        return None
    if read("height") and read("width"):
        return int(read("height")), int(read("width"))
    side = read("shortest_edge")
    return (int(side), int(side)) if side else None


def build_hf_backbone(ref: str, trust_remote_code: bool = False) -> HFBackbone:
    """``AutoModel`` from a repo id or a ``save_pretrained`` directory, as a frozen-teacher backbone.

    A CLIP or SigLIP checkpoint gives its vision tower; a model type that ``AutoModel`` does not build is a
    one-line ``WeightsError``.
    """
    try:
        from transformers import AutoModel
    except ImportError:
        raise ImportError(f"model 'hf:{ref}' needs transformers: {HUB_EXTRA}") from None
    ref, local = hf_source(ref, trust_remote_code)
    offline = hub_offline() if local else contextlib.nullcontext()
    try:
        with quiet_transformers(), offline:
            model = AutoModel.from_pretrained(ref, trust_remote_code=trust_remote_code, weights_only=True)
            config = model.config
            if hasattr(model, "vision_model"):  # CLIP, SigLIP: the image tower alone
                model, config = model.vision_model, getattr(config, "vision_config", config)
            teacher_input = _processor_input(ref, _patch(config))
    except ValueError as err:
        first = str(err).strip().splitlines()[0]
        raise WeightsError(f"hf:{ref}: transformers' AutoModel cannot build it ({first})") from None
    except hub_errors() as err:
        raise not_available(f"hf:{ref}", ref, " ".join(str(err).split())[:200]) from None
    return HFBackbone(model, _prefix_count(config), teacher_input)


def build_timm_backbone(name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """A timm model without its classifier (``num_classes=0``), with ``teacher_input`` from its data config.

    A ViT built for a fixed size (``img_size``) is fed that size; one with ``dynamic_img_size`` the size of
    its pretrained config.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no classifier is left out: there is none to warn of
        model = build_timm_classifier(name, 0, pretrained, **kwargs)
    import timm.data

    config = timm.data.resolve_data_config({}, model=model)
    embed = getattr(model, "patch_embed", None)
    patch = int(embed.patch_size[0]) if embed is not None else 1
    size = tuple(int(v) for v in config["input_size"][1:])
    if embed is not None and not getattr(model, "dynamic_img_size", False) and embed.img_size is not None:
        size = tuple(int(v) for v in embed.img_size)
    model.teacher_input = TeacherInput(tuple(config["mean"]), tuple(config["std"]), size, patch)  # type: ignore[assignment]
    return model
