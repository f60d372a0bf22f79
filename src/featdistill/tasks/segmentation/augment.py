"""Joint image/label augmentation for semantic segmentation, on tensors.

Every transform is a callable ``(image, label) -> (image, label)`` with ``image`` a float tensor
``[3, H, W]`` (values in [0, 1] until :class:`Normalize`) and ``label`` an int64 tensor ``[H, W]``.
Geometric transforms move both together (labels always with nearest-neighbour sampling, padding with
the ignore index); photometric ones touch the image only. Randomness comes from torch's global RNG,
which DataLoader seeds per worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "JointCompose",
    "Normalize",
    "PhotometricDistortion",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "build_eval_transform",
    "build_train_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

JointTransform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class JointCompose:
    """Apply joint transforms in order."""

    def __init__(self, transforms: Sequence[JointTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        for t in self.transforms:
            image, label = t(image, label)
        return image, label


class RandomScale:
    """Resize both by one factor drawn uniformly from ``scale_range`` (label always nearest)."""

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0), image_mode: str = "bilinear") -> None:
        self.scale_range = scale_range
        self.image_mode = image_mode

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        s = _uniform(*self.scale_range)
        h, w = label.shape
        size = (max(1, round(h * s)), max(1, round(w * s)))
        align = {} if self.image_mode in ("nearest", "nearest-exact", "area") else {"align_corners": False}
        image = F.interpolate(image[None], size, mode=self.image_mode, **align)[0]
        label = F.interpolate(label[None, None].float(), size, mode="nearest")[0, 0].long()
        return image, label


class RandomCrop:
    """Random crop of ``size``; pads bottom/right first when the input is smaller.

    The image is padded with ``fill`` (per channel; use the dataset mean before normalisation, or 0
    after it) and the label with ``ignore_index``, so padding never counts in the loss.
    """

    def __init__(
        self, size: int | Sequence[int], fill: float | Sequence[float] = 0.0, ignore_index: int = 255
    ) -> None:
        self.size = _pair(size)
        self.fill = fill
        self.ignore_index = ignore_index

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        ch, cw = self.size
        h, w = label.shape
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        if ph or pw:
            fill = torch.as_tensor(self.fill, dtype=image.dtype).reshape(-1, 1, 1)
            padded = fill.expand(image.shape[0], h + ph, w + pw).clone()
            padded[:, :h, :w] = image
            image = padded
            label = F.pad(label, (0, pw, 0, ph), value=self.ignore_index)
            h, w = h + ph, w + pw
        top = int(torch.randint(h - ch + 1, ()).item())
        left = int(torch.randint(w - cw + 1, ()).item())
        return image[:, top : top + ch, left : left + cw], label[top : top + ch, left : left + cw]


class RandomHorizontalFlip:
    """Flip image and label left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        if torch.rand(()).item() < self.p:
            return image.flip(-1), label.flip(-1)
        return image, label


class PhotometricDistortion:
    """Random brightness shift, contrast and saturation jitter, each applied with probability ``p``.

    Works on [0, 1] images (apply before :class:`Normalize`); the label is returned untouched.
    """

    def __init__(
        self,
        brightness: float = 32 / 255,
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        p: float = 0.5,
    ) -> None:
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.p = p

    def _apply(self) -> bool:
        return torch.rand(()).item() < self.p

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        if self._apply():
            image = (image + _uniform(-self.brightness, self.brightness)).clamp(0, 1)
        gray_weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype).reshape(3, 1, 1)
        if self._apply():
            mean = (image * gray_weights).sum(0).mean()
            image = (mean + _uniform(*self.contrast) * (image - mean)).clamp(0, 1)
        if self._apply():
            gray = (image * gray_weights).sum(0, keepdim=True)
            image = (gray + _uniform(*self.saturation) * (image - gray)).clamp(0, 1)
        return image, label


class Normalize:
    """Subtract ``mean`` and divide by ``std`` per channel (image only)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean).reshape(-1, 1, 1)
        self.std = torch.tensor(std).reshape(-1, 1, 1)

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        return (image - self.mean.to(image)) / self.std.to(image), label


def build_train_transform(
    crop_size: int | Sequence[int],
    *,
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip_prob: float = 0.5,
    photometric: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = 255,
    scale: bool = True,
    crop: bool = True,
    flip: bool = True,
) -> JointCompose:
    """Standard training pipeline: scale, crop (pad with mean / ignore), flip, photometric, normalise;
    ``scale``, ``crop``, ``flip`` switch one step off (``data.augment``'s mapping)."""
    transforms: list[JointTransform] = []
    if scale:
        transforms.append(RandomScale(scale_range))
    if crop:
        transforms.append(RandomCrop(crop_size, fill=mean, ignore_index=ignore_index))
    if flip:
        transforms.append(RandomHorizontalFlip(flip_prob))
    if photometric:
        transforms.append(PhotometricDistortion())
    transforms.append(Normalize(mean, std))
    return JointCompose(transforms)


def build_eval_transform(
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> JointCompose:
    """Evaluation pipeline: normalisation only (full-size images, see ``inference``)."""
    return JointCompose([Normalize(mean, std)])
