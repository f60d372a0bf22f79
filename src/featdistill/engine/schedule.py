"""Optimizer and per-iteration learning-rate schedule (linear warm-up, then cosine / step / poly)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ..config import TrainConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (optionally Nesterov) or AdamW, weight decay on all parameters."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """The multiplier of the base learning rate at iteration ``step`` (0-based)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if cfg.schedule == "poly":
        return max(0.0, 1.0 - min(1.0, step / total)) ** cfg.poly_power
    if cfg.schedule == "step":
        epoch = step / steps_per_epoch
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, steps_per_epoch: int, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per iteration."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps_per_epoch, cfg))
