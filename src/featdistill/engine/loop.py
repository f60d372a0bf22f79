"""The training loop, for one trainer (``Trainer.fit``) or a lockstep group of them (``featdistill sweep`` and
``compare``): trainers that share a train loader take each batch together.

Every step makes one batch and, when several of the trainers distill, one teacher forward (the union of the
tapped layers, :class:`featdistill.distiller.SharedTeacher`); each trainer then takes its own optimisation
step on it, drawing from its own RNG stream (dropout, a detector's sampling), so that each trainer of a group
equals its run alone. In a group, a trainer whose loss or weights become non-finite, whose ``alpha: auto`` cannot be
calibrated or whose checkpoint does not fit is stopped and marked failed, and the others go on; alone, its
error is raised. A resumed group may find its trainers at different steps (a kill between two checkpoint
writes): the group then replays the batches from the earliest one, and each trainer steps only on the
batches it has not seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from ..config import RunConfig
from ..distiller import Distiller, SharedTeacher
from .checkpoint import CheckpointError
from .contract import Loader, NonFiniteLossError, TrainingTask
from .logger import RunLogger, rate_text

#: What stops one trainer of a group without stopping the others: at its start (a checkpoint that does not
#: fit, an ``alpha: auto`` that cannot be calibrated) and while it trains (a non-finite loss or weights).
FAILS_AT_START = (ValueError, CheckpointError, NonFiniteLossError)
FAILS_IN_TRAINING = (NonFiniteLossError,)


class Trainee(Protocol):
    """What the loop asks of each trainer it drives (:class:`featdistill.engine.trainer.Trainer`)."""

    cfg: RunConfig
    task: TrainingTask
    device: torch.device
    is_main: bool
    train_loader: Loader
    logger: RunLogger
    epoch: int
    batch: int
    step: int

    @property
    def core(self) -> nn.Module: ...
    @property
    def finished(self) -> bool: ...
    @property
    def done(self) -> bool: ...
    def own_rng(self) -> AbstractContextManager[None]: ...
    def begin(self, resume: Any = None) -> None: ...
    def start_epoch(self) -> None: ...
    def prepare(self, batch: Any) -> tuple[tuple, dict]: ...
    def train_step(
        self, batch: Any, teacher_features: Mapping[str, Any] | None = None
    ) -> dict[str, torch.Tensor]: ...
    def record_step(self, terms: dict[str, torch.Tensor], batch: Any) -> dict[str, float] | None: ...
    def end_epoch(self) -> None: ...
    def finish(self) -> dict[str, float]: ...


@dataclass
class Outcome:
    """How one trainer of the group ended."""

    status: str = "running"  # "done" or "failed"
    error: str = ""
    seconds: float = 0.0
    steps: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


def train_together(
    trainers: Sequence[Trainee],
    labels: list[str] | None = None,
    resume: list[Any] | None = None,
    progress: bool = True,
    isolate: bool = True,
) -> list[Outcome]:
    """Train ``trainers`` (which share one train loader and, if they distill, one teacher) to the end.

    Args:
        trainers: one trainer, or a lockstep group built by ``featdistill.run.build_trainers``.
        labels: a short name of each, shown with its loss in the progress bar of a group.
        resume: each trainer's checkpoint to resume from, or None.
        progress: show one progress bar (on the main process).
        isolate: a trainer's failure (``FAILS_AT_START``, ``FAILS_IN_TRAINING``) stops it alone; False raises it.
    """
    labels = labels or [f"t{i}" for i in range(len(trainers))]
    outcomes = [Outcome() for _ in trainers]
    start = time.perf_counter()

    def attempt(i: int, action: Callable[[], Any], group: list[int], fails: tuple = FAILS_IN_TRAINING) -> Any:
        """``action`` of trainer ``i``, with its own RNG stream; a failure in ``fails`` stops it alone."""
        try:
            with trainers[i].own_rng():
                return action()
        except fails as err:
            if not isolate:
                raise
            outcomes[i].status, outcomes[i].error = "failed", str(err).splitlines()[0]
            if i in group:
                group.remove(i)
            return None

    for i, (trainer, path) in enumerate(zip(trainers, resume or [None] * len(trainers))):
        attempt(i, lambda trainer=trainer, path=path: trainer.begin(path), [], FAILS_AT_START)
    distillers = [t.core for t in trainers if isinstance(t.core, Distiller)]
    # One distiller runs its own teacher; several share one forward of the union of their taps.
    teacher = SharedTeacher(distillers) if len(distillers) > 1 else None
    first = trainers[0]
    loader = first.train_loader
    active = [i for i, t in enumerate(trainers) if outcomes[i].status == "running" and not t.finished]
    shown: dict[str, str] = {}
    try:
        while active:
            epoch = min(trainers[i].epoch for i in active)
            group = [i for i in active if trainers[i].epoch == epoch]
            for i in group:
                trainers[i].start_epoch()
            begin = min(trainers[i].batch for i in group)
            bar = tqdm(
                total=len(loader),
                initial=begin,
                desc=f"epoch {epoch + 1}/{first.cfg.train.epochs}",
                disable=not (first.is_main and progress),
                dynamic_ncols=True,
                mininterval=1.0,
                leave=False,
            )
            for position, batch in enumerate(loader.iterate(begin), begin):
                stepping = [i for i in group if trainers[i].batch == position and not trainers[i].done]
                if not stepping:  # a resumed trainer catching up: the others saw this batch already
                    if all(trainers[i].done for i in group):
                        break
                    bar.update(1)
                    continue
                features = None
                if teacher is not None and any(isinstance(trainers[i].core, Distiller) for i in stepping):
                    batch = first.task.to_device(batch, first.device)
                    args, kwargs = first.prepare(batch)
                    features = teacher.features(*args, **kwargs)
                for i in list(stepping):
                    trainer = trainers[i]
                    own = features if isinstance(trainer.core, Distiller) else None
                    values = attempt(
                        i, lambda t=trainer, b=batch, own=own: t.record_step(t.train_step(b, own), b), group
                    )
                    if values is not None:
                        shown.update(_postfix(values, labels[i], alone=len(trainers) == 1))
                bar.set_postfix(shown, refresh=False)
                bar.update(1)
                if all(trainers[i].done for i in group):
                    break
            bar.close()
            for i in list(group):
                attempt(i, trainers[i].end_epoch, group)
            active = [i for i in active if outcomes[i].status == "running" and not trainers[i].finished]
    finally:
        for trainer in trainers:
            trainer.logger.close()
    seconds = time.perf_counter() - start
    for trainer, outcome in zip(trainers, outcomes):
        outcome.seconds, outcome.steps = seconds, trainer.step
        if outcome.status == "running":
            outcome.status = "done"
            outcome.metrics = trainer.finish()
    return outcomes


def _postfix(values: dict[str, float], label: str, alone: bool) -> dict[str, str]:
    """What the bar shows of a logged step: every term of a lone trainer, the loss of each in a group."""
    if not alone:
        return {label: f"{values['loss']:.3g}"}
    return {k: f"{v:.4g}" if k != "img/s" else rate_text(v) for k, v in values.items()}
