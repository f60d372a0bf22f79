"""A generated image classification set, so the demo and tests run with no files and no network."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def make_synthetic(
    n: int, num_classes: int = 10, size: int = 32, seed: int = 0, noise: float = 0.35
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 RGB images of ``num_classes`` classes, fully determined by ``seed``.

    Each class is a smooth random colour pattern (a 6x6 prototype upsampled to ``size``); a sample is its
    class pattern, randomly shifted, blended with a random other class's pattern (weight up to 0.6) and
    with pixel noise. The class-set prototypes are fixed by ``seed // 1000`` so that train (seed s) and test
    (seed s + 1) splits share classes but not samples.
    """
    proto_gen = torch.Generator().manual_seed(1000 + seed // 1000)
    protos = F.interpolate(torch.rand(num_classes, 3, 6, 6, generator=proto_gen), size=size, mode="bicubic")
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (n,), generator=gen)
    other = (labels + torch.randint(1, num_classes, (n,), generator=gen)) % num_classes
    mix = torch.rand(n, 1, 1, 1, generator=gen) * 0.6
    images = (1 - mix) * protos[labels] + mix * protos[other]
    shifts = torch.randint(-4, 5, (n, 2), generator=gen)
    images = torch.stack([torch.roll(img, tuple(s.tolist()), dims=(1, 2)) for img, s in zip(images, shifts)])
    images = images + noise * torch.randn(images.shape, generator=gen)
    images = images.clamp(0.0, 1.0)
    return (images * 255).round().to(torch.uint8), labels
