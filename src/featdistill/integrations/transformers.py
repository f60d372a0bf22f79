"""``DistillationTrainer``: a Hugging Face ``Trainer`` that distils a frozen teacher into ``model``.

Swap ``Trainer`` for it and name the teacher and the pairs; every other argument is the ``Trainer``'s own:

>>> trainer = DistillationTrainer(model=student, teacher=teacher, pairs=[("vit.layers.11", "vit.layers.23")],
...     args=TrainingArguments("out"), train_dataset=train, processing_class=processor)     # doctest: +SKIP
>>> trainer.train(); trainer.save_model()   # out/ holds the plain student: from_pretrained("out") loads it

What the ``Trainer`` sees of the model (the dataset columns it keeps, the label names, ``save_pretrained``,
the checkpoint weights) is the student's; what it trains and wraps in DDP is the :class:`featdistill.Distiller`
(student + transforms). Checkpoints also hold the transforms and the α state (``featdistill_transforms.safetensors``),
so ``train(resume_from_checkpoint=...)`` continues the distillation where it stopped.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from ..distiller import Distiller
from ..distiller.balancer import AlphaSpec
from ..distiller.pairs import PairSpec
from . import require

_hf = require("transformers", "hub", "featdistill.integrations.transformers")
_safetensors = require("safetensors.torch", "hub", "featdistill.integrations.transformers")
_trainer_utils = require("transformers.trainer_utils", "hub", "featdistill.integrations.transformers")

TRANSFORMS_FILE = "featdistill_transforms.safetensors"
CRITERIA_PREFIX = "criteria."  # the loss modules' tensors in TRANSFORMS_FILE (the transforms' keys are "0.…")


def teacher_on_main_input(name: str) -> Callable[..., Any]:
    """A ``teacher_forward`` that gives the teacher only the student's main input (e.g. ``pixel_values``).

    The Trainer calls the student with every column (``labels`` too); a teacher of another library (a timm
    model) takes only the images, and a Hugging Face teacher would compute a loss nobody needs.
    """

    def forward(teacher: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return teacher(kwargs[name]) if name in kwargs else teacher(*args[:1])

    return forward


class _StudentCall(nn.Module):
    """Stands for the model in ``Trainer.compute_loss``: runs the Distiller, returns the student's output.

    A module, because the Trainer's label smoother unwraps the model and asks its class name (the student's).
    """

    def __init__(self, distiller: Callable[..., Any], student: nn.Module) -> None:
        super().__init__()
        self._call, self._student_name, self.output = distiller, student._get_name(), None

    def forward(self, **inputs: Any) -> Any:
        self.output = self._call(**inputs)
        return self.output.student

    def _get_name(self) -> str:
        return self._student_name


class _SaveDistillState(_hf.TrainerCallback):
    """Adds the distillation state to each checkpoint the Trainer writes (``on_save``, the public hook after it)."""

    def __init__(self, trainer: DistillationTrainer) -> None:
        self.trainer = trainer

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if args.should_save:
            folder = os.path.join(
                args.output_dir, f"{_trainer_utils.PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            )
            self.trainer.save_distill_state(folder)


class DistillationTrainer(_hf.Trainer):
    """A ``transformers.Trainer`` that adds the distillation term of a frozen ``teacher`` to ``model``'s loss.

    Args:
        model: the student (a ``PreTrainedModel``, e.g. a ViT or a ``TimmWrapperForImageClassification``).
        teacher: the frozen teacher, any ``nn.Module`` (a Hugging Face or a timm model): eval mode, no grad,
            moved to the training device, never saved.
        pairs, method, alpha, options, teacher_dtype, auto_ratio: as for :class:`featdistill.Distiller`;
            ``alpha="auto"`` is calibrated on the first ``calibration_batches`` training batches when
            ``train()`` starts (averaged over processes) and saved in each checkpoint.
        sample_input: an input of the student for the dry run that builds the transforms (default: the main
            input, e.g. ``pixel_values``, of the first two training examples through the data collator).
        teacher_forward: ``f(teacher, *args, **batch)`` (default: the teacher gets the student's main input).
        *args, **kwargs: the ``Trainer``'s own arguments (``args``, ``train_dataset``, ``processing_class``,
            ``data_collator``, ``callbacks``, ...).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *args: Any,
        teacher: nn.Module,
        pairs: Sequence[PairSpec] | str,
        method: str = "cwt",
        alpha: AlphaSpec = None,
        sample_input: Any = None,
        options: dict[str, dict[str, Any]] | None = None,
        teacher_forward: Callable[..., Any] | None = None,
        teacher_dtype: torch.dtype | None = None,
        auto_ratio: float | None = None,
        calibration_batches: int = 4,
        **kwargs: Any,
    ) -> None:
        if model is None or kwargs.get("model_init") is not None:
            raise ValueError(
                "DistillationTrainer needs model=<the student>; model_init (a new model per trial) is not supported"
            )
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
        if calibration_batches < 1:
            raise ValueError(f"calibration_batches must be at least 1, got {calibration_batches}")
        # The Trainer inspects the model it is given (label names, loss kwargs, device placement): the student.
        super().__init__(model, *args, **kwargs)
        if self.args.activation_checkpointing:
            raise ValueError(
                "TrainingArguments activation_checkpointing (gradient_checkpointing) is not supported by "
                "DistillationTrainer: the Trainer would enable it on the Distiller, not the student; turn it off"
            )
        self.calibration_batches = calibration_batches
        self._distill_sum: torch.Tensor | float = 0.0  # summed on the device: no sync per step
        self._distill_count = 0
        main_input = getattr(model, "main_input_name", "pixel_values")
        if self.place_model_on_device:
            teacher.to(self.args.device)
        self.distiller = Distiller(
            model,
            teacher,
            pairs,
            method=method,
            alpha=alpha,
            sample_input=self._sample_input(main_input)
            if sample_input is None
            else self._on_device(sample_input),
            options=options,
            teacher_forward=teacher_forward or teacher_on_main_input(main_input),
            teacher_dtype=teacher_dtype,
            auto_ratio=auto_ratio,
        )
        # From here on the Trainer trains, wraps (DDP) and optimises student + transforms.
        self.model = self.model_wrapped = self.distiller
        self.add_callback(_SaveDistillState(self))

    def _on_device(self, sample: Any) -> Any:
        """A tensor sample input goes where the Trainer put the student."""
        return sample.to(self.args.device) if isinstance(sample, torch.Tensor) else sample

    def _sample_input(self, main_input: str) -> torch.Tensor:
        """The main input of the first two training examples, collated as in training, on the device."""
        data = self.train_dataset
        if data is None or not hasattr(data, "__getitem__") or len(data) == 0:
            raise ValueError(
                "sample_input is required when train_dataset is not given or cannot be indexed: pass a batch "
                "the student accepts, e.g. sample_input=torch.randn(2, 3, 224, 224)"
            )
        batch = self.data_collator([data[i] for i in range(min(2, len(data)))])
        if main_input not in batch:
            raise ValueError(
                f"the training examples have no {main_input!r} column (the student's main input; they have "
                f"{sorted(batch)}): pass sample_input=<a batch the student accepts>"
            )
        return self._on_device(batch[main_input])

    @property
    def student(self) -> nn.Module:
        """The model being trained, without hooks or transforms."""
        return self.distiller.export()

    @contextlib.contextmanager
    def _student_as_model(self) -> Iterator[None]:
        """Let a Trainer method that reads or writes ``self.model`` see the plain student."""
        model, wrapped = self.model, self.model_wrapped
        self.model = self.model_wrapped = self.student
        try:
            yield
        finally:
            self.model, self.model_wrapped = model, wrapped

    # The data loaders keep the dataset columns that ``self.model.forward`` takes: the student's, as for a
    # plain Trainer (the Distiller's forward takes ``*args, **kwargs``).
    def get_train_dataloader(self) -> Any:
        """The Trainer's training loader, its columns chosen by the student's ``forward``."""
        with self._student_as_model():
            return super().get_train_dataloader()

    def get_eval_dataloader(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's evaluation loader, its columns chosen by the student's ``forward``."""
        with self._student_as_model():
            return super().get_eval_dataloader(*args, **kwargs)

    def get_test_dataloader(self, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's test loader, its columns chosen by the student's ``forward``."""
        with self._student_as_model():
            return super().get_test_dataloader(*args, **kwargs)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The Trainer's task loss of the student's output + the distillation term (logged as ``distill_loss``)."""
        if self.accelerator.unwrap_model(model) is not self.distiller:  # evaluation: the student alone
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        call = _StudentCall(model, self.student)
        task, outputs = super().compute_loss(call, inputs, True, num_items_in_batch)
        term = call.output.loss
        self._distill_sum = self._distill_sum + term.detach()
        self._distill_count += 1
        if self._task_loss_spans_accumulation(num_items_in_batch):
            term = term / self.current_gradient_accumulation_steps  # the Trainer will not divide it
        loss = task + term
        return (loss, outputs) if return_outputs else loss

    def _task_loss_spans_accumulation(self, num_items_in_batch: Any) -> bool:
        """Whether the task loss is already normalised over the whole accumulated batch (Trainer's rule)."""
        if self.loss_is_scaled_for_ga is not None:
            return self.loss_is_scaled_for_ga
        scaled = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        return scaled or self.compute_loss_func is not None

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """Evaluate and predict with the student alone: no teacher, no distillation term."""
        return super().prediction_step(self.student, inputs, *args, **kwargs)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add ``distill_loss``, the mean distillation term since the last log (over all processes)."""
        if "loss" in logs and self._distill_count:
            mean = torch.as_tensor(self._distill_sum / self._distill_count, device=self.args.device)
            logs["distill_loss"] = round(float(self.accelerator.reduce(mean, reduction="mean")), 6)
            self._distill_sum, self._distill_count = 0.0, 0
        super().log(logs, *args, **kwargs)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """Calibrate ``alpha="auto"`` (unless resuming: α comes from the checkpoint), then train."""
        if self.distiller.balancer.uncalibrated and not resume_from_checkpoint:
            self.calibrate_alpha()
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def calibrate_alpha(self) -> dict[str, float]:
        """Set the ``"auto"`` α from the first training batches; the global RNG is left as it was."""
        with torch.random.fork_rng(devices=[]):
            loader = self.get_train_dataloader()
            batches = [self._prepare_inputs(b) for b in itertools.islice(loader, self.calibration_batches)]

        def task_loss(output: Any, batch: dict[str, Any]) -> torch.Tensor:
            precomputed = _StudentCall(lambda **_: SimpleNamespace(student=output), self.student)
            return super(DistillationTrainer, self).compute_loss(precomputed, dict(batch))

        return self.distiller.calibrate_alpha(
            batches,
            task_loss,
            call=lambda batch: ((), dict(batch)),
            reduce=lambda local: self.accelerator.reduce(local, reduction="mean"),
        )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Write the plain student (``save_pretrained``) and the processing class, as for a plain model; the
        Trainer's checkpoints call it too (:class:`_SaveDistillState` adds the distillation state to them).

        The ``state_dict`` that FSDP or DeepSpeed gather has the Distiller's keys; they are not supported.
        """
        with self._student_as_model():
            super().save_model(output_dir, _internal_call)

    def save_distill_state(self, folder: str) -> None:
        """Write ``folder/featdistill_transforms.safetensors``: ``Distiller.distill_state_dict()``, its tensors
        (the transforms', and the loss modules' under ``criteria.``) as tensors, its α state as metadata."""
        state = self.distiller.distill_state_dict()
        weights = {**state["transforms"], **{CRITERIA_PREFIX + k: v for k, v in state["criteria"].items()}}
        tensors = {k: v.detach().contiguous() for k, v in weights.items()}
        metadata = {"format": state["format"], "balancer": json.dumps(state["balancer"])}
        _safetensors.save_file(tensors, os.path.join(folder, TRANSFORMS_FILE), metadata=metadata)

    # The Trainer's private hooks overridden here, and why no public one serves: the Trainer puts a checkpoint's
    # weights into ``self.model`` (the Distiller, under other keys than the student's saved ones) only through
    # ``_load_from_checkpoint`` (``train(resume_from_checkpoint=...)``, before anything public runs) and
    # ``_load_best_model`` (``load_best_model_at_end``, inside ``train()`` before ``on_train_end``).
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Load the student's weights of the checkpoint, then its distillation state (transforms, loss modules,
        α: ``Distiller.load_distill_state_dict``).

        A ``PreTrainedModel`` student is read back with ``from_pretrained``: transformers 5 saves some models
        (ViT among them) under their legacy key names, which the ``Trainer``'s own loader leaves unmatched
        (a plain ``Trainer`` resumes such a model with its encoder layers at their initial values).
        """
        student = self.student if model is None else model
        if isinstance(student, _hf.PreTrainedModel):
            saved = type(student).from_pretrained(resume_from_checkpoint, config=student.config)
            student.load_state_dict(saved.state_dict())
        else:
            with self._student_as_model():
                super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, TRANSFORMS_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{resume_from_checkpoint} has no {TRANSFORMS_FILE}: it was not written by DistillationTrainer, "
                "so the distillation transforms cannot be restored; resume from a DistillationTrainer checkpoint"
            )
        with _safetensors.safe_open(path, framework="pt") as file:
            metadata = file.metadata()
        # "format" is absent before featdistill-distill-state-1, "balancer" before the balancer (α alone, "alpha")
        state: dict[str, Any] = {k: v for k, v in metadata.items() if k == "format"}
        state.update({k: json.loads(v) for k, v in metadata.items() if k in ("balancer", "alpha")})
        tensors = _safetensors.load_file(path, device=str(self.args.device))
        state["transforms"] = {k: v for k, v in tensors.items() if not k.startswith(CRITERIA_PREFIX)}
        state["criteria"] = {
            k.removeprefix(CRITERIA_PREFIX): v for k, v in tensors.items() if k.startswith(CRITERIA_PREFIX)
        }
        self.distiller.load_distill_state_dict(state)

    def _load_best_model(self) -> None:
        """``load_best_model_at_end``: the best checkpoint's weights go into the student."""
        with self._student_as_model():
            super()._load_best_model()
