"""What the engine asks of the code above it: a resumable batch source, a task's training members, a card.

The task plug-ins (:class:`featdistill.tasks.base.Task`) satisfy :class:`TrainingTask`; the engine names no
task and no card format, so it imports nothing above it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

__all__ = ["CardWriter", "Loader", "NonFiniteLossError", "TrainingTask"]


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; training stops and the last good checkpoint is kept."""


class Loader(Protocol):
    """A resumable, epoch-seeded batch source (``TensorBatchLoader`` or ``ResumableLoader``)."""

    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...
    def iterate(self, start_batch: int = 0) -> Iterator[Any]: ...


class TrainingTask(Protocol):
    """The members of a task that the trainer uses: batches to model arguments, losses, evaluation.

    Attributes:
        name: the registry name (``task:`` in a config).
        metric: the evaluation metric a sweep selects on and ``compare`` reports (higher is better).
    """

    name: ClassVar[str]
    metric: ClassVar[str]

    def to_device(self, batch: Any, device: torch.device) -> Any: ...
    def forward_args(self, batch: Any) -> tuple[tuple, dict]: ...
    def loss_terms(self, output: Any, batch: Any) -> dict[str, torch.Tensor]: ...
    def batch_size(self, batch: Any) -> int: ...
    def evaluate(self, model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]: ...


#: Writes the student card a checkpoint carries: ``(student, last metrics, Distiller or None) -> card``
#: (:func:`featdistill.card.card_writer` makes one for a task and config).
CardWriter = Callable[[nn.Module, dict[str, float], Any], dict[str, Any]]
