"""A number without labels to train on: kNN and linear-probe top-1 of a backbone's pooled features.

The probe data is a small labeled ImageFolder (``train`` and ``test`` splits) of the user's own: the
features of a layer, globally average-pooled, are compared by cosine similarity (kNN, k = 20, votes weighted
by ``exp(similarity / 0.07)`` as in DINO's evaluation) or fed to a logistic regression (linear probe,
full-batch L-BFGS on standardised features). Both are frozen-feature measures: the backbone never trains here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...taps import FeatureTaps
from ..classification.data import TensorBatchLoader, channel_stats, load_tensors

K = 20
TEMPERATURE = 0.07


@dataclass
class ProbeData:
    """The probe's two labeled splits, batched and normalised as the student's training images."""

    train: TensorBatchLoader
    test: TensorBatchLoader


def probe_data(
    root: str,
    size: tuple[int, int] | None,
    mean: Any,
    std: Any,
    batch_size: int,
    train_split: str = "train",
    test_split: str = "test",
) -> ProbeData:
    """Read ``root/<split>/<class>/<image>`` (both splits, resized to ``size``; None: as stored, which must be
    one size) as the probe's batches; ``mean``/``std`` None: the statistics of the probe's training images."""
    tensors = {}
    for split in (train_split, test_split):
        images, labels, _ = load_tensors("imagefolder", root, split, image_size=size)
        tensors[split] = (images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images, labels)
    if mean is None or std is None:
        mean, std = channel_stats(tensors[train_split][0])
    train, test = (
        TensorBatchLoader(*tensors[split], batch_size, shuffle=False, mean=mean, std=std)
        for split in (train_split, test_split)
    )
    return ProbeData(train, test)


def probe_scores(
    model: nn.Module, layer: str, data: ProbeData, device: torch.device, progress: bool = False
) -> dict[str, float]:
    """``knn_top1`` and ``linear_top1`` (%) of ``layer``'s pooled features, with a progress bar if asked."""
    from tqdm import tqdm

    total = len(data.train.images) + len(data.test.images)
    with tqdm(total=total, desc="probe features", unit="img", disable=not progress, leave=False) as bar:
        train = pooled_features(model, layer, data.train, device, bar)
        test = pooled_features(model, layer, data.test, device, bar)
    return {"knn_top1": knn_top1(*train, *test), "linear_top1": linear_top1(*train, *test)}


@torch.no_grad()
def pooled_features(
    model: nn.Module, layer: str, batches: Iterable[Any], device: torch.device, progress: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [N, C], labels [N])``: ``layer``'s output of every batch, averaged over space (maps) or over
    tokens, in eval mode."""
    taps = FeatureTaps(model, [layer], role="model")
    was_training = model.training
    model.eval()
    features, labels = [], []
    try:
        for images, targets in batches:
            with taps.capture(stop_early=True) as found:
                model(images.to(device))
            value = found[layer]
            value = value.float().flatten(2).mean(-1) if value.dim() == 4 else value.float()
            features.append(value.mean(1) if value.dim() == 3 else value)
            labels.append(targets)
            if progress is not None:
                progress.update(len(targets))
    finally:
        model.train(was_training)
    return torch.cat(features).cpu(), torch.cat(labels)


def knn_top1(
    train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor
) -> float:
    """Top-1 (%) of a weighted kNN (k = 20, cosine) of each test feature among the training features."""
    train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    k = min(K, len(train))
    correct = 0
    for chunk, truth in zip(test.split(1024), test_labels.split(1024)):
        similarity, index = (chunk @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(chunk), classes).scatter_add_(
            1, train_labels[index], (similarity / TEMPERATURE).exp()
        )
        correct += int((votes.argmax(1) == truth).sum())
    return 100.0 * correct / max(len(test), 1)


def linear_top1(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    steps: int = 100,
) -> float:
    """Top-1 (%) of a logistic regression on standardised features (L-BFGS, weight decay 1e-4, seeded)."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    train, test = (train - mean) / std, (test - mean) / std
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(train.shape[1], classes, generator=generator) * 0.01).requires_grad_()
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(train @ weight + bias, train_labels) + 1e-4 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = (test @ weight + bias).argmax(1)
    return 100.0 * float((predicted == test_labels).float().mean())
