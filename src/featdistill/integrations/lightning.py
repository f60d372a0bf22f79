"""``DistillationModule``: a LightningModule that distils a frozen teacher into a student.

>>> module = DistillationModule(student, teacher, lambda out, batch: F.cross_entropy(out, batch[1]),
...     pairs=[("layer4", "layer4")], alpha="auto", sample_input=torch.randn(2, 3, 224, 224),
...     optimizer=lambda params: torch.optim.SGD(params, lr=0.1))            # doctest: +SKIP
>>> lightning.Trainer(max_epochs=10).fit(module, loader)                    # doctest: +SKIP
>>> student = module.export()                                                 # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..distiller import Distiller
from ..distiller.balancer import AlphaSpec
from ..distiller.pairs import PairSpec
from . import require

L = require("lightning.pytorch", "lightning", "featdistill.integrations.lightning")

CHECKPOINT_KEY = "featdistill"


def first_item(batch: Any) -> tuple[tuple, dict]:
    """The model call of an ``(inputs, targets)`` batch: the student gets ``batch[0]``."""
    return (batch[0],), {}


class DistillationModule(L.LightningModule):
    """Trains ``student`` on ``task_loss`` + the distillation term against a frozen ``teacher``.

    Args:
        student: the model being trained (its weights, and the transforms', are the module's state).
        teacher: the frozen teacher: eval mode, no grad, never in ``state_dict()`` or a checkpoint.
        task_loss: ``f(student_output, batch)`` → the task's scalar loss.
        pairs, method, alpha, sample_input: as for :class:`featdistill.Distiller`; ``alpha="auto"`` is
            calibrated on the first ``calibration_batches`` training batches when training starts (averaged
            over all processes under DDP, so every rank uses the same α); the α (``distiller.balancer``) is
            saved in the checkpoint and restored on resume.
        optimizer: ``f(parameters)`` → an optimizer, or anything ``configure_optimizers`` may return
            (e.g. ``{"optimizer": ..., "lr_scheduler": ...}``); it gets the student's and transforms'
            parameters. Required unless a subclass overrides ``configure_optimizers``.
        call: ``f(batch)`` → ``(args, kwargs)`` of the student call (default: ``batch[0]`` alone).
        calibration_batches: how many training batches ``alpha="auto"`` measures.
        distiller_options: passed on to :class:`featdistill.Distiller` (``options``, ``teacher_forward``,
            ``teacher_dtype``, ``auto_ratio``, ``verbose``).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        task_loss: Callable[[Any, Any], torch.Tensor],
        *,
        pairs: Sequence[PairSpec] | str,
        method: str = "cwt",
        alpha: AlphaSpec = None,
        optimizer: Callable[[Iterable[nn.Parameter]], Any] | None = None,
        sample_input: Any = None,
        call: Callable[[Any], tuple[tuple, dict]] = first_item,
        calibration_batches: int = 4,
        **distiller_options: Any,
    ) -> None:
        super().__init__()
        if not callable(task_loss):
            raise TypeError(
                f"task_loss must be a function f(student_output, batch) -> loss; got {type(task_loss).__name__}"
            )
        overridden = type(self).configure_optimizers is not DistillationModule.configure_optimizers
        if optimizer is None and not overridden:
            raise ValueError(
                "optimizer is required: a function of the parameters, e.g. "
                "optimizer=lambda params: torch.optim.SGD(params, lr=0.1)"
            )
        if optimizer is not None and not callable(optimizer):
            raise TypeError(
                f"optimizer must be a function of the parameters (e.g. lambda params: torch.optim.SGD(params, "
                f"lr=0.1)), not a {type(optimizer).__name__}: the module builds it over student + transforms"
            )
        if calibration_batches < 1:
            raise ValueError(f"calibration_batches must be at least 1, got {calibration_batches}")
        self.distiller = Distiller(
            student,
            teacher,
            pairs,
            method=method,
            alpha=alpha,
            sample_input=sample_input,
            **distiller_options,
        )
        self.task_loss = task_loss
        self.optimizer_factory = optimizer
        self.call = call
        self.calibration_batches = calibration_batches

    @property
    def student(self) -> nn.Module:
        """The student being trained."""
        return self.distiller.student

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher."""
        return self.distiller.teacher

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The student's output alone (inference, validation, prediction)."""
        return self.distiller.student(*args, **kwargs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Task loss + distillation term; logs ``train/task_loss``, ``train/distill_loss``, ``train/loss``."""
        args, kwargs = self.call(batch)
        out = self.distiller(*args, **kwargs)
        task = self.task_loss(out.student, batch)
        loss = task + out.loss
        self.log_dict(
            {"train/task_loss": task, "train/distill_loss": out.loss, "train/loss": loss},
            prog_bar=True,
            sync_dist=True,
            batch_size=_batch_size(args),
        )
        return loss

    def configure_optimizers(self) -> Any:
        """``optimizer(parameters)`` over the student and the transforms; the teacher has none here."""
        return self.optimizer_factory(self.distiller.parameters())

    def on_train_start(self) -> None:
        """Calibrate ``alpha="auto"`` on the first training batches (not after a resume: α is restored)."""
        if self.distiller.balancer.uncalibrated:
            self.calibrate_alpha(self.trainer.train_dataloader)

    def calibrate_alpha(self, loader: Iterable[Any]) -> dict[str, float]:
        """Measure on ``loader``'s first batches, average over processes, set the ``"auto"`` α; returns it.

        The global RNG is restored afterwards, so calibrating does not change the data order or the training.
        """
        strategy = self.trainer.strategy
        with torch.random.fork_rng(devices=[]):
            batches = [
                strategy.batch_to_device(b) for b in itertools.islice(loader, self.calibration_batches)
            ]
        return self.distiller.calibrate_alpha(
            batches, self.task_loss, self.call, reduce=lambda local: strategy.reduce(local, reduce_op="mean")
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the distillation state (``Distiller.distill_state_dict``: transforms, loss modules, calibrated
        α) under ``checkpoint["featdistill"]``."""
        checkpoint[CHECKPOINT_KEY] = self.distiller.distill_state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore it, so a resumed run continues with the α it was calibrated with (also from an older
        checkpoint that kept the balancer alone, or α alone as ``{"alpha": ...}``)."""
        self.distiller.load_distill_state_dict(checkpoint.get(CHECKPOINT_KEY, {}))

    def export(self) -> nn.Module:
        """The plain student: no hooks, no transforms, the keys of the model you passed."""
        return self.distiller.export()


def _batch_size(args: tuple) -> int | None:
    """The batch size Lightning logs with: the first dimension of the first tensor argument."""
    return next((len(a) for a in args if isinstance(a, torch.Tensor) and a.dim() > 0), None)
