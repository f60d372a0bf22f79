"""Joint image/box/mask augmentation for detection samples ``(image [3,H,W] float, target dict)``.

Each transform keeps ``boxes`` (xyxy), ``masks`` (uint8 [N,H,W]) and ``area`` consistent with the image.
Randomness comes from torch's global RNG, so ``torch.manual_seed`` makes a run reproducible.

Scale jitter and the detector's own resize: torchvision detectors resize every image so that its shorter
side equals ``min_size``, which undoes a whole-image ``RandomResize``. To change the scale of objects
as the model sees them, follow ``RandomResize`` by ``RandomCrop``: the crop has a fixed size whatever
the scale drawn, so the detector's resize no longer cancels it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torchvision.transforms.functional as TF
from torch import Tensor
from torchvision.transforms import InterpolationMode

__all__ = ["Compose", "RandomCrop", "RandomHorizontalFlip", "RandomResize", "remove_small_boxes"]

Sample = tuple[Tensor, dict[str, Tensor]]
# Target fields holding one entry per instance, filtered together when instances are dropped.
INSTANCE_KEYS = ("boxes", "labels", "masks", "area", "iscrowd")


def remove_small_boxes(target: dict[str, Tensor], min_side: float = 1.0) -> dict[str, Tensor]:
    """Drop instances whose box width or height is ``<= min_side`` px, from every per-instance field."""
    boxes = target["boxes"]
    keep = ((boxes[:, 2] - boxes[:, 0]) > min_side) & ((boxes[:, 3] - boxes[:, 1]) > min_side)
    if bool(keep.all()):
        return target
    return {k: v[keep] if k in INSTANCE_KEYS else v for k, v in target.items()}


class Compose:
    """Apply sample transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Tensor, dict[str, Tensor]], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: dict[str, Tensor]) -> Sample:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


class RandomHorizontalFlip:
    """Mirror the image, its boxes and masks with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, target: dict[str, Tensor]) -> Sample:
        if torch.rand(()) >= self.p:
            return image, target
        width = image.shape[-1]
        target = dict(target)
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
        target["boxes"] = boxes
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
        return image.flip(-1), target


class RandomResize:
    """Resize so the shorter side is drawn from ``min_sizes``, the longer side capped at ``max_size``.

    Boxes and ``area`` are scaled, masks resized with nearest-neighbour interpolation. See the module
    doc: on its own this does not change object scale for a torchvision detector; add ``RandomCrop``.
    """

    def __init__(self, min_sizes: Sequence[int], max_size: int | None = None) -> None:
        if not min_sizes:
            raise ValueError("min_sizes must not be empty")
        self.min_sizes = list(min_sizes)
        self.max_size = max_size

    def __call__(self, image: Tensor, target: dict[str, Tensor]) -> Sample:
        short = self.min_sizes[int(torch.randint(len(self.min_sizes), ()))]
        h, w = image.shape[-2:]
        scale = short / min(h, w)
        if self.max_size is not None:
            scale = min(scale, self.max_size / max(h, w))
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        if (new_h, new_w) == (h, w):
            return image, target
        image = TF.resize(image, [new_h, new_w], antialias=True)
        sx, sy = new_w / w, new_h / h
        target = dict(target)
        target["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=target["boxes"].dtype)
        if "area" in target:
            target["area"] = target["area"] * (sx * sy)
        if "masks" in target:
            masks = target["masks"]
            if len(masks):
                masks = TF.resize(masks, [new_h, new_w], interpolation=InterpolationMode.NEAREST)
            else:
                masks = masks.new_zeros((0, new_h, new_w))
            target["masks"] = masks
        return image, remove_small_boxes(target)


class RandomCrop:
    """Crop a random window of at most ``size = (height, width)``; smaller images are left whole.

    Boxes are shifted and clipped to the window; with masks, the box and ``area`` of an instance the
    window cuts are recomputed from its cropped mask (clipping alone can leave a loose box), else the
    area is scaled by the fraction of its box left inside. Instances left at most 1 px wide or high
    are dropped.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, image: Tensor, target: dict[str, Tensor]) -> Sample:
        h, w = image.shape[-2:]
        ch, cw = min(self.size[0], h), min(self.size[1], w)
        if (ch, cw) == (h, w):
            return image, target
        top = int(torch.randint(h - ch + 1, ()))
        left = int(torch.randint(w - cw + 1, ()))
        target = dict(target)
        boxes = target["boxes"]
        shifted = boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)
        clipped = torch.minimum(shifted.clamp(min=0), torch.tensor([cw, ch, cw, ch], dtype=boxes.dtype))
        if "masks" in target:
            masks = target["masks"][:, top : top + ch, left : left + cw]
            cut = (clipped != shifted).any(dim=1)
            clipped[cut] = _mask_boxes(masks[cut]).to(clipped.dtype)
            target["masks"] = masks
            if "area" in target:
                area = target["area"].clone()
                area[cut] = masks[cut].flatten(1).sum(1).to(area.dtype)
                target["area"] = area
        elif "area" in target:
            before = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-6)
            after = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
            target["area"] = target["area"] * (after / before)
        target["boxes"] = clipped
        return image[:, top : top + ch, left : left + cw], remove_small_boxes(target)


def _mask_boxes(masks: Tensor) -> Tensor:
    """Pixel-edge xyxy boxes of uint8 masks [N,H,W]; all zeros for an empty mask."""
    boxes = torch.zeros((len(masks), 4))
    for i, mask in enumerate(masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(xs):
            boxes[i] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    return boxes
