"""Hugging Face object detectors (``hf:<repo or dir>``: DETR, Conditional / Deformable DETR, RT-DETR v1/v2,
YOLOS, D-FINE, ...) called as torchvision detectors are.

:class:`HFDetector` takes a list of ``[3, H, W]`` images in 0..1 and, in training mode, the task's targets
(``boxes`` xyxy in pixels, ``labels`` 1..K with 0 the background); it returns the model's own loss
(``{"loss": ...}``) in training mode and, in eval mode, per image ``boxes`` (xyxy in the image's pixels),
``labels`` (1..K) and ``scores``, so COCO AP, predict and export treat it as any torchvision detector.

The resize, normalisation and padding are torchvision's ``GeneralizedRCNNTransform`` at ``.transform``, so a
torchvision teacher and an HF student (or the reverse) see identical inputs (``match_transform``). The
transformers model is ``.hf``; HF labels count from 0 without a background, so label ``k`` is HF class
``k - 1``, and HF targets are ``class_labels`` with boxes as cxcywh normalised to the padded batch.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import box_convert

from ...weights.huggingface import hf_file, hf_model_from_config, load_hf_model

__all__ = ["HFDetector", "build_hf_detector", "hf_detector_from_config", "hf_levels"]

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class HFDetector(nn.Module):
    """A transformers object detector behind torchvision's detector interface (see the module doc)."""

    #: ``featdistill export`` formats: the weights. TorchScript cannot script transformers code, and the
    #: traced ONNX graph of RT-DETR did not reproduce the eager detections (docs/tasks/detection.md).
    export_formats = ("safetensors", "state_dict")
    export_note = (
        "transformers detectors cannot be scripted, and their traced ONNX graph does not reproduce the "
        "eager detections; load the weights into the student built from the same hf: model"
    )

    def __init__(
        self,
        hf: nn.Module,
        min_size: int = 800,
        max_size: int = 1333,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        size_divisible: int = 32,
        box_detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        self.hf = hf
        self.transform = GeneralizedRCNNTransform(
            min_size,
            max_size,
            image_mean or IMAGENET_MEAN,
            image_std or IMAGENET_STD,
            size_divisible=size_divisible,
        )
        self.detections_per_img = box_detections_per_img
        self.takes_mask = "pixel_mask" in inspect.signature(hf.forward).parameters

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError(
                "in training mode an HF detector needs the targets (its loss is computed inside)"
            )
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch, targets = self.transform(images, targets)
        pixels = batch.tensors
        height, width = pixels.shape[-2:]
        extra: dict[str, Tensor] = {}
        if self.takes_mask:
            mask = torch.zeros((len(images), height, width), dtype=torch.long, device=pixels.device)
            for m, (h, w) in zip(mask, batch.image_sizes):
                m[:h, :w] = 1
            extra["pixel_mask"] = mask
        scale = torch.tensor([width, height, width, height], dtype=pixels.dtype, device=pixels.device)
        if self.training:
            labels = [
                {"class_labels": t["labels"] - 1, "boxes": box_convert(t["boxes"], "xyxy", "cxcywh") / scale}
                for t in targets  # type: ignore[union-attr]  # checked above
            ]
            return {"loss": self.hf(pixel_values=pixels, labels=labels, **extra).loss}
        out = self.hf(pixel_values=pixels, **extra)
        detections = self._detections(out.logits, box_convert(out.pred_boxes, "cxcywh", "xyxy") * scale)
        for found, (h, w) in zip(detections, batch.image_sizes):
            found["boxes"][:, 0::2] = found["boxes"][:, 0::2].clamp(0, w)
            found["boxes"][:, 1::2] = found["boxes"][:, 1::2].clamp(0, h)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    def feature_levels(self) -> dict[str, dict[str, int]]:
        """Its backbone stages and encoder maps with their strides (:func:`hf_levels`): ``pairs: auto`` pairs
        these by stride with another model's (a trace cannot see maps returned inside a ``ModelOutput``)."""
        return hf_levels(self)

    def _detections(self, logits: Tensor, boxes: Tensor) -> list[dict[str, Tensor]]:
        """The best ``detections_per_img`` (query, class) scores of each image. A model with a "no object"
        logit (DETR, YOLOS) scores by softmax, the others (focal-loss models: RT-DETR, Deformable DETR,
        D-FINE, ...) by sigmoid, as their own post-processing does."""
        classes = int(self.hf.config.num_labels)
        probs = logits.softmax(-1)[..., :-1] if logits.shape[-1] == classes + 1 else logits.sigmoid()
        flat = probs.flatten(1)
        scores, index = flat.topk(min(self.detections_per_img, flat.shape[1]), dim=1)
        queries, labels = index // classes, index % classes
        return [
            {"boxes": b[q], "scores": s, "labels": c + 1}
            for b, q, s, c in zip(boxes, queries, scores, labels)
        ]


def _processor_stats(ref: str) -> dict[str, Any]:
    """``image_mean`` / ``image_std`` of the model's image processor: its own, none (0 and 1) where it does not
    normalise (RT-DETR), or nothing to say (no ``preprocessor_config.json``: ImageNet's are used)."""
    path = hf_file(ref, "preprocessor_config.json")
    if path is None:
        return {}
    spec = json.loads(path.read_text(encoding="utf-8"))
    if spec.get("do_normalize") is False:
        return {"image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0]}
    if spec.get("image_mean") and spec.get("image_std"):
        return {"image_mean": list(spec["image_mean"]), "image_std": list(spec["image_std"])}
    return {}


#: The options an HF detector takes (the others in model.options are torchvision detector arguments).
HF_OPTIONS = ("min_size", "max_size", "image_mean", "image_std", "size_divisible", "box_detections_per_img")


def build_hf_detector(ref: str, num_classes: int, **options: Any) -> HFDetector:
    """``AutoModelForObjectDetection`` of ``ref`` with ``num_classes - 1`` labels (``num_classes`` counts the
    background, as for torchvision's detectors) behind :class:`HFDetector`. Its backbone is never fetched on
    its own (``use_pretrained_backbone=False``): the checkpoint holds it. ``options``: :data:`HF_OPTIONS`;
    torchvision's own detector arguments are ignored."""
    hf = load_hf_model(ref, "detection", num_classes - 1, use_pretrained_backbone=False)
    given = {k: v for k, v in options.items() if k in HF_OPTIONS and v is not None}
    return HFDetector(hf, **{**_processor_stats(ref), **given})


def hf_detector_from_config(config: dict[str, Any], **options: Any) -> HFDetector:
    """The detector that ``config`` (:func:`featdistill.weights.huggingface.hf_model_config`, from the student
    card) describes, randomly initialised, for a checkpoint's weights: neither the ``hf:`` folder nor the hub is
    read. ``options``: :data:`HF_OPTIONS`."""
    hf = hf_model_from_config(config, "detection")
    return HFDetector(hf, **{k: v for k, v in options.items() if k in HF_OPTIONS and v is not None})


def hf_levels(model: HFDetector, size: int = 256) -> dict[str, dict[str, int]]:
    """Tap addresses of the backbone and encoder feature maps of an HF detector, each with its stride:
    ``{"backbone": {"hf.model.backbone[0][0]": 8, ...}, "encoder": {...}}`` (encoder maps only where the
    encoder returns maps, as RT-DETR's and D-FINE's hybrid encoders do)."""
    inner = getattr(model.hf, "model", None)
    found: dict[str, Any] = {}
    hooks = []
    for part in ("backbone", "encoder"):
        module = getattr(inner, part, None)
        if isinstance(module, nn.Module):
            hooks.append(
                module.register_forward_hook(lambda _m, _i, out, part=part: found.__setitem__(part, out))
            )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            extra = (
                {"pixel_mask": torch.ones(1, size, size, dtype=torch.long, device=device)}
                if model.takes_mask
                else {}
            )
            model.hf(pixel_values=torch.zeros(1, 3, size, size, device=device), **extra)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    levels: dict[str, dict[str, int]] = {"backbone": {}, "encoder": {}}
    backbone = found.get("backbone")
    if isinstance(backbone, (list, tuple)):
        for i, level in enumerate(backbone):
            fmap = level[0] if isinstance(level, (list, tuple)) else level
            if isinstance(fmap, Tensor) and fmap.dim() == 4:
                address = (
                    f"hf.model.backbone[{i}][0]"
                    if isinstance(level, (list, tuple))
                    else f"hf.model.backbone[{i}]"
                )
                levels["backbone"][address] = size // fmap.shape[-1]
    encoded = getattr(found.get("encoder"), "last_hidden_state", None)
    if isinstance(encoded, (list, tuple)):
        for i, fmap in enumerate(encoded):
            if isinstance(fmap, Tensor) and fmap.dim() == 4:
                levels["encoder"][f"hf.model.encoder[last_hidden_state][{i}]"] = size // fmap.shape[-1]
    return levels
