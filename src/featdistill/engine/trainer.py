"""Training: one trainer for every task — forward, task loss + distillation loss, step, log, checkpoint, eval.

The loop that drives it, alone or in a lockstep group, is :mod:`featdistill.engine.loop`.

The trainer knows nothing about images, boxes or masks: a task plug-in (see ``featdistill.tasks``) says how
a batch becomes model arguments, which task losses an output gives, and how to evaluate. The model is a
``Distiller`` (student + transforms, frozen teacher outside) or a plain student for baseline runs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ..config import RunConfig
from ..distiller import Distiller, DistillOutput, LossBalancer
from ..taps import unwrap_model
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_safely,
    rng_state,
    save_atomic,
    set_rng_state,
    write_text_atomic,
)
from .contract import CardWriter, Loader, NonFiniteLossError, TrainingTask
from .distributed import broadcast_buffers, is_main, mean_across_ranks, world_size
from .logger import RunLogger
from .loop import train_together
from .schedule import build_optimizer, build_scheduler

# ``train.*`` settings that live in the optimizer / scheduler state, so a resume takes them from the checkpoint.
RESTORED_ON_RESUME = (
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "schedule",
    "milestones",
    "gamma",
    "poly_power",
    "warmup_epochs",
)


class Trainer:
    """Trains ``model`` with ``task`` on ``train_loader``; evaluates the student on ``val_loader``.

    Args:
        model: a ``Distiller`` or a plain student (optionally wrapped in DistributedDataParallel).
        task: the task plug-in.
        train_loader, val_loader: resumable loaders (``val_loader`` may be None).
        cfg: the validated run configuration (``train`` and ``output`` sections are used here).
        device: where to train.
        fingerprint: identifies the config/model; a resume from a checkpoint with another one is refused.
        evaluate_on: what ``val_loader`` holds, ``val`` (``data.val_split``) or ``holdout`` (for the card).
        card: writes the student card each checkpoint carries (``featdistill.card.card_writer``); None: no card.
    """

    def __init__(
        self,
        model: nn.Module,
        task: TrainingTask,
        train_loader: Loader,
        val_loader: Any,
        cfg: RunConfig,
        device: torch.device,
        fingerprint: str = "",
        evaluate_on: str = "val",
        card: CardWriter | None = None,
    ) -> None:
        self.model, self.task, self.cfg, self.device = model, task, cfg, device
        self.card = card
        self.train_loader, self.val_loader = train_loader, val_loader
        if len(train_loader) == 0:
            raise ValueError(
                f"no full training batch: data.batch_size {cfg.data.batch_size} (per process) is more than the "
                "training images left after data.limit and data.holdout; lower data.batch_size"
            )
        self.fingerprint, self.evaluate_on = fingerprint, evaluate_on
        self.out_dir = Path(cfg.output.dir)
        self.is_main = is_main()
        self.optimizer = build_optimizer(model.parameters(), cfg.train)
        self.scheduler = build_scheduler(self.optimizer, len(train_loader), cfg.train)
        amp = cfg.train.amp
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16" and device.type == "cuda")
        self.logger = RunLogger(self.out_dir, cfg.output.csv, cfg.output.tensorboard, enabled=self.is_main)
        self.epoch, self.batch, self.step = 0, 0, 0
        self.metrics: dict[str, float] = {}
        self.pending_eval = False  # the epoch's checkpoint is written, its evaluation not yet done
        self._seen, self._start = 0, time.perf_counter()
        # This run's own RNG stream (dropout, a detector's sampling), from where a run of its own would start:
        # trainers of a lockstep group each draw from their own, so each equals its run alone.
        self.rng = rng_state()

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """Make this run's RNG stream the global one for the block (what a resume restores goes in it too)."""
        set_rng_state(self.rng)
        try:
            yield
        finally:
            self.rng = rng_state()

    # -- model access -----------------------------------------------------------------------------
    @property
    def core(self) -> nn.Module:
        """The Distiller or student without a DDP wrapper."""
        return unwrap_model(self.model)

    @property
    def balancer(self) -> LossBalancer | None:
        """The distiller's α (None for a plain student)."""
        core = self.core
        return core.balancer if isinstance(core, Distiller) else None

    @property
    def student(self) -> nn.Module:
        core = self.core
        return core.export() if isinstance(core, Distiller) else core

    # -- checkpoints --------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a resume needs, and the student card (``card``) that lets the student run on its own."""
        core = self.core
        student = self.student
        distiller = core if isinstance(core, Distiller) else None
        card = self.card(student, self.metrics, distiller) if self.card is not None else None
        distill = distiller.distill_state_dict() if distiller is not None else {}
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "config": self.cfg.to_dict(),
            "student": student.state_dict(),
            "transforms": distill.get("transforms", {}),  # the Distiller's own state: transforms,
            "criteria": distill.get("criteria", {}),  # loss modules and α (balancer), at the top level
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "rng": rng_state(),
            "metrics": self.metrics,
            "balancer": distill.get("balancer", {}),
            "pending_eval": self.pending_eval,
            "card": card,
        }

    def save_checkpoint(self) -> Path | None:
        """Atomically write ``last.pt`` (main process only); the previous file survives any crash.

        Weights that became NaN/inf are never written: the last good checkpoint is kept and training stops.
        """
        self._check_finite_weights()
        if not self.is_main:
            return None
        return save_atomic(self.state(), self.out_dir / "last.pt")

    def _last_good(self) -> str:
        last = self.out_dir / "last.pt"
        return f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"

    def _check_finite_weights(self) -> None:
        tensors = {k: v for k, v in self.core.state_dict().items() if v.is_floating_point()}
        if not tensors or bool(torch.stack([v.isfinite().all() for v in tensors.values()]).all()):
            return
        bad = next(k for k, v in tensors.items() if not bool(v.isfinite().all()))
        raise NonFiniteLossError(
            f"weights became non-finite at step {self.step} (epoch {self.epoch + 1}, e.g. {bad!r}); stopped "
            f"without saving, {self._last_good()}; lower train.lr or alpha, or set train.clip_grad"
        )

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything needed to continue exactly where ``path`` was written."""
        state = load_safely(path, map_location=self.device)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{path} is not a featdistill training checkpoint (a plain state_dict?); --resume needs the "
                "last.pt of a run, weights alone go in model.student_weights"
            )
        if self.fingerprint and state.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"{path} was written by another config or model (fingerprint {state.get('fingerprint')!r} "
                f"!= {self.fingerprint!r}); resume with the config that wrote it or start a new output dir"
            )
        try:
            self.student.load_state_dict(state["student"])
            core = self.core
            if isinstance(core, Distiller):  # a calibrated alpha: auto is reused, never re-calibrated
                core.load_distill_state_dict({k: v for k, v in state.items() if k != "format"})
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
            self.metrics = dict(state.get("metrics", {}))
            self.pending_eval = bool(state.get("pending_eval", False))
            set_rng_state(state["rng"])
        except (KeyError, ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"{path} does not fit this run ({first}); resume with the config that wrote it"
            ) from None
        self._warn_ignored_changes(path, state.get("config", {}).get("train", {}))

    def _warn_ignored_changes(self, path: str | Path, saved: dict[str, Any]) -> None:
        """Say which ``train.*`` settings a resume ignores: the optimizer and schedule come from the checkpoint."""
        changed = [
            f"train.{key} {saved[key]!r} -> {getattr(self.cfg.train, key)!r}"
            for key in RESTORED_ON_RESUME
            if key in saved and saved[key] != getattr(self.cfg.train, key)
        ]
        if changed:
            warnings.warn(
                f"resuming {path}: {', '.join(changed)} ignored, the optimizer and schedule continue as saved; "
                "start a new output.dir to train with other settings",
                stacklevel=3,
            )

    # -- training -----------------------------------------------------------------------------------
    def prepare(self, batch: Any) -> tuple[tuple, dict]:
        """The model call's ``(args, kwargs)`` for ``batch``, on the device (channels-last if configured)."""
        args, kwargs = self.task.forward_args(self.task.to_device(batch, self.device))
        if self.cfg.train.channels_last:
            args = tuple(
                a.contiguous(memory_format=torch.channels_last)
                if isinstance(a, torch.Tensor) and a.dim() == 4
                else a
                for a in args
            )
        return args, kwargs

    def _check_finite(self, terms: dict[str, torch.Tensor]) -> None:
        values = {k: float(v.detach()) for k, v in terms.items()}
        bad = [k for k, v in values.items() if k != "loss" and not math.isfinite(v)]
        if not bad and math.isfinite(values.get("loss", 0.0)):
            return
        named = ", ".join(f"{k}={values[k]}" for k in bad or ["loss"])
        raise NonFiniteLossError(
            f"loss became non-finite at step {self.step} (epoch {self.epoch + 1}): {named}; stopped, "
            f"{self._last_good()}; lower train.lr or alpha, or set train.clip_grad"
        )

    def train_step(
        self, batch: Any, teacher_features: Mapping[str, Any] | None = None
    ) -> dict[str, torch.Tensor]:
        """One optimisation step; returns the (detached) loss terms.

        ``teacher_features`` (a Distiller's ``teacher_features`` of this batch) lets several trainers share one
        teacher forward, as ``featdistill sweep`` does.
        """
        args, kwargs = self.prepare(batch)
        if teacher_features is not None:
            kwargs = {**kwargs, "teacher_features": teacher_features}
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            output = self.model(*args, **kwargs)
            if isinstance(output, DistillOutput):
                terms = {**self.task.loss_terms(output.student, batch), **output.losses}
            else:
                terms = self.task.loss_terms(output, batch)
            loss = torch.stack([t.float() for t in terms.values()]).sum()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}

    def fit(self, resume: str | Path | None = None) -> dict[str, float]:
        """Train to ``train.epochs`` (or ``train.max_steps``), checkpointing, then evaluating, each epoch.

        The loop is :func:`featdistill.engine.loop.train_together` with this trainer alone, the one that
        ``featdistill sweep`` runs for a lockstep group; an error stops the run and is raised.
        """
        (outcome,) = train_together([self], resume=[resume], progress=self.cfg.output.progress, isolate=False)
        return outcome.metrics

    def begin(self, resume: str | Path | None = None) -> None:
        """Resume (or calibrate ``alpha: auto``), write ``config.yaml``, finish an evaluation a kill cut short."""
        if resume is not None:
            self.load_checkpoint(resume)
        else:
            self._calibrate_alpha()
        if self.is_main:
            # Only now, once a resume checkpoint was accepted, is anything in the output folder changed.
            text = yaml.safe_dump(self.cfg.to_dict(), sort_keys=False)
            chosen = self.balancer.chosen() if self.balancer is not None else {}
            if chosen:
                listed = ", ".join(f"{k}: {v:.6g}" for k, v in chosen.items())
                text = f"# distill.alpha auto chose {{{listed}}}\n{text}"
            write_text_atomic(text, self.out_dir / "config.yaml")
            self.logger.truncate(self.step)  # rows after the checkpoint are logged again
        if self.pending_eval:
            self._evaluate_epoch()

    def _calibrate_alpha(self) -> None:
        """``distill.alpha: auto``: set each such method's α from the first training batches (once per run)."""
        core = self.core
        if not isinstance(core, Distiller) or not core.balancer.uncalibrated:
            return
        self.train_loader.set_epoch(0)
        batches = itertools.islice(self.train_loader.iterate(0), max(1, self.cfg.distill.auto_batches))
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            core.calibrate_alpha(
                batches,
                task_loss=lambda output, batch: torch.stack(
                    [t.float() for t in self.task.loss_terms(output, batch).values()]
                ).sum(),
                call=self.prepare,
                reduce=mean_across_ranks,
            )
        if self.is_main:
            print(f"featdistill: {self.out_dir.name}: alpha auto chose {core.balancer.describe()}")

    @property
    def finished(self) -> bool:
        """Every epoch trained, or ``train.max_steps`` reached."""
        return self.epoch >= self.cfg.train.epochs or self.done

    @property
    def done(self) -> bool:
        """``train.max_steps`` reached."""
        return self.cfg.train.max_steps is not None and self.step >= self.cfg.train.max_steps

    def start_epoch(self) -> None:
        """Training mode, the loader on this epoch, the throughput counters reset."""
        self.model.train()
        self.train_loader.set_epoch(self.epoch)
        self._seen, self._start = 0, time.perf_counter()

    def end_epoch(self) -> None:
        """After the epoch's last step (or a ``max_steps`` stop): checkpoint first, then evaluate.

        The last epoch and a ``max_steps`` stop are always evaluated, so every run ends with metrics.

        The checkpoint is written before evaluation, so an evaluation that fails (a bad file, out of memory)
        never costs the trained epoch: ``--resume auto`` evaluates it again and goes on.
        """
        tcfg = self.cfg.train
        if self.batch < len(self.train_loader):  # stopped inside the epoch by max_steps: the run's end
            self.pending_eval = self.val_loader is not None
        else:
            self.epoch, self.batch = self.epoch + 1, 0
            self.pending_eval = self.val_loader is not None and (
                self.epoch % tcfg.eval_every == 0 or self.epoch == tcfg.epochs or self.done
            )
        self.save_checkpoint()
        if self.pending_eval:
            self._evaluate_epoch()

    def _evaluate_epoch(self) -> None:
        """Evaluate, log, and add the metrics to the checkpoint."""
        self.metrics = self.evaluate()
        self.logger.log(self.step, {f"val/{k}": v for k, v in self.metrics.items()})
        self.pending_eval = False
        self.save_checkpoint()

    def finish(self) -> dict[str, float]:
        """Write ``metrics.json`` (with the α that ``alpha: auto`` chose) and return the last metrics."""
        if self.is_main:
            record: dict[str, Any] = dict(self.metrics)
            chosen = self.balancer.chosen() if self.balancer is not None else {}
            if chosen:
                record["alpha"] = chosen
            write_text_atomic(json.dumps(record, indent=2), self.out_dir / "metrics.json")
        return self.metrics

    def record_step(self, terms: dict[str, torch.Tensor], batch: Any) -> dict[str, float] | None:
        """Bookkeeping after ``train_step``: counters, non-finite check, log row, mid-epoch checkpoint.

        Returns the logged values when this step was logged.
        """
        tcfg = self.cfg.train
        steps_per_epoch = len(self.train_loader)
        self.step += 1
        self.batch += 1
        self._seen += self.task.batch_size(batch)
        # the epoch's and the run's last steps are logged too, so every run has a training row
        log_now = self.step % tcfg.log_every == 0 or self.batch == steps_per_epoch or self.done
        checkpoint_now = (
            tcfg.checkpoint_every and self.step % tcfg.checkpoint_every == 0 and self.batch < steps_per_epoch
        )
        if self.device.type == "cpu" or log_now or checkpoint_now or self.done:
            self._check_finite(terms)  # on GPU only when a value is needed anyway (no extra syncs)
        if self.step == 1 and isinstance(self.core, Distiller):  # a term far from the task loss ruins the run
            self.core.warn_loss_scale({k: float(v) for k, v in terms.items() if k != "loss"})
        values = None
        if log_now:
            # the mean over processes: the loss of the global batch, as one process would log it
            reduced = mean_across_ranks(torch.stack([v.float() for v in terms.values()])).tolist()
            values = dict(zip(terms, reduced))
            rate = self._seen * world_size() / max(time.perf_counter() - self._start, 1e-9)
            self.logger.log(
                self.step,
                {
                    **{f"train/{k}": v for k, v in values.items()},
                    "train/lr": self.optimizer.param_groups[0]["lr"],
                    "train/img_per_s": rate,
                },
            )
            values["img/s"] = rate
        if checkpoint_now:
            self.save_checkpoint()
        return values

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Evaluate the plain student (never the teacher) on ``val_loader``."""
        student = self.student
        broadcast_buffers(student)  # every process evaluates rank 0's BatchNorm statistics (as saved)
        was_training = student.training
        student.eval()
        try:
            return self.task.evaluate(student, self.val_loader, self.device)
        finally:
            student.train(was_training)
