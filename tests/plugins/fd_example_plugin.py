"""A user's plug-in, as a config's ``plugins: [fd_example_plugin]`` loads it: a summed cosine method ("cosine_sum") on
CWT-transformed features and a regression task on synthetic data (tests/test_plugins.py)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import featdistill as fd
from featdistill.engine import ResumableLoader
from featdistill.tasks.base import TaskBase
from featdistill.tasks.holdout import split_holdout


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
    """Σ over positions of (1 − cosine similarity of the channel vectors) / N."""
    return (1 - F.cosine_similarity(student, teacher, dim=1)).flatten(1).sum(1).mean()


fd.register_method("cosine_sum", transform="cwt", loss=cosine_loss, default_ratio=2.0)


def _regressor(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 1),
    )


class Regression(TaskBase):
    """Predict the mean brightness of a random 8x8 image (a regression task on synthetic data)."""

    name = "regression"
    metric = "neg_mse"  # higher is better

    def build_student(self) -> nn.Module:
        return _regressor(4)

    def build_teacher(self) -> nn.Module:
        return _regressor(8)

    def default_pairs(self, student: nn.Module, teacher: nn.Module) -> list[tuple[str, str]]:
        return [("3", "3")]  # the second conv's ReLU

    def sample_input(self) -> torch.Tensor:
        return torch.randn(2, 3, 8, 8)

    def build_loaders(self, rank: int = 0, world_size: int = 1, evaluate_on: str = "val") -> tuple[Any, Any]:
        d = self.cfg.data
        images = torch.rand(d.limit or 64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        targets = images.mean(dim=(1, 2, 3))[:, None] * 10
        train = evaluation = torch.utils.data.TensorDataset(images, targets)
        if d.holdout is not None:  # a sweep scores on held-out training images
            keep, held = split_holdout(len(images), d.holdout)
            train = torch.utils.data.TensorDataset(images[keep], targets[keep])
            if evaluate_on == "holdout":
                evaluation = torch.utils.data.TensorDataset(images[held], targets[held])
        common = {"seed": self.cfg.train.seed, "rank": rank, "world_size": world_size}
        return (
            ResumableLoader(train, d.batch_size, shuffle=True, drop_last=True, **common),
            ResumableLoader(evaluation, d.batch_size, shuffle=False, **common),
        )

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return [t.to(device) for t in batch]

    def forward_args(self, batch: Any) -> tuple[tuple, dict]:
        return (batch[0],), {}

    def loss_terms(self, output: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        return {"mse": F.mse_loss(output, batch[1].to(output.device))}

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        errors = [F.mse_loss(model(x.to(device)), y.to(device), reduction="sum") for x, y in loader]
        return {"neg_mse": -float(sum(errors)) / len(loader.dataset)}


fd.register_task("regression", Regression)
