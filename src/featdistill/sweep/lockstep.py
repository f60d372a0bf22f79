"""Lockstep training: trainers that share data and teacher take each batch together, one teacher forward each.

Every step makes one batch and, when any of the trainers distills, one teacher forward (the union of the
tapped layers, :class:`featdistill.distiller.SharedTeacher`); each trainer then takes its own optimisation
step on it. A trainer whose loss or weights become non-finite, whose ``alpha: auto`` cannot be calibrated or
whose checkpoint does not fit is stopped and marked failed; the others go on.
A resumed group may find its trainers at different steps (a kill between two checkpoint writes): the group
then replays the batches from the earliest one, and each trainer steps only on the batches it has not seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from ..distiller import Distiller, SharedTeacher
from ..engine import CheckpointError, NonFiniteLossError, Trainer


@dataclass
class Outcome:
    """How one trainer of the group ended."""

    status: str = "running"  # "done" or "failed"
    error: str = ""
    seconds: float = 0.0
    steps: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


def train_lockstep(
    trainers: list[Trainer], labels: list[str], resume: list[Any], progress: bool = True
) -> list[Outcome]:
    """Train ``trainers`` (which share one train loader and one teacher) together to the end.

    Args:
        trainers: built by ``featdistill.run.build_trainers`` from configs of one lockstep group.
        labels: a short name of each, shown in the progress bar.
        resume: each trainer's checkpoint to resume from, or None.
        progress: show one bar with every trainer's loss.
    """
    outcomes = [Outcome() for _ in trainers]
    start = time.perf_counter()
    for i, (trainer, path) in enumerate(zip(trainers, resume)):
        try:  # a variant whose alpha cannot be calibrated or whose checkpoint does not fit fails alone
            trainer.begin(path)
        except (ValueError, CheckpointError, NonFiniteLossError) as err:
            _fail(outcomes[i], err, [], i)
    distillers = [t.core for t in trainers if isinstance(t.core, Distiller)]
    teacher = SharedTeacher(distillers) if distillers else None
    loader = trainers[0].train_loader
    first = trainers[0]
    active = [i for i, t in enumerate(trainers) if outcomes[i].status == "running" and not t.finished]
    losses: dict[str, str] = {}
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
                batch = first.task.to_device(batch, first.device)
                features = None
                if teacher is not None and any(isinstance(trainers[i].core, Distiller) for i in stepping):
                    args, kwargs = first.prepare(batch)
                    features = teacher.features(*args, **kwargs)
                for i in stepping:
                    trainer = trainers[i]
                    try:
                        own = features if isinstance(trainer.core, Distiller) else None
                        values = trainer.record_step(trainer.train_step(batch, own), batch)
                    except NonFiniteLossError as err:
                        _fail(outcomes[i], err, group, i)
                        continue
                    if values is not None:
                        losses[labels[i]] = f"{values['loss']:.3g}"
                bar.set_postfix(losses, refresh=False)
                bar.update(1)
                if all(trainers[i].done for i in group if outcomes[i].status == "running"):
                    break
            bar.close()
            for i in list(group):
                if outcomes[i].status != "running":
                    continue
                try:
                    trainers[i].end_epoch()
                except NonFiniteLossError as err:
                    _fail(outcomes[i], err, group, i)
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


def _fail(outcome: Outcome, err: Exception, group: list[int], index: int) -> None:
    outcome.status, outcome.error = "failed", str(err).splitlines()[0]
    if index in group:
        group.remove(index)
