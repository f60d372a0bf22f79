"""The task contract: each member the core (run, engine, sweep, CLI, export) uses of a task, with types.

A task is built from one validated config (``TaskClass(cfg)``) and answers for that config only. The built-in
plug-ins (classification, detection, segmentation) and a user's own (``featdistill.register_task``) satisfy
:class:`Task`; :class:`TaskBase` gives the members that most tasks share a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import nn

from ..config import RunConfig
from ..engine.contract import Loader, TrainingTask
from .prediction import Prediction

__all__ = ["MEMBERS", "Loader", "Task", "TaskBase"]


@runtime_checkable
class Task(TrainingTask, Protocol):
    """What a task plug-in offers the core: the trainer's members (:class:`TrainingTask`: ``to_device``,
    ``forward_args``, ``loss_terms``, ``batch_size``, ``evaluate``) and those below.

    Attributes:
        name: the registry name (``task:`` in a config).
        metric: the evaluation metric a sweep selects on and ``compare`` reports (higher is better).
        lockstep_keys: config keys (dotted) that must also be equal for runs to share a lockstep group, beyond the
            data, schedule and teacher settings every task shares (detection: ``model.student``, which decides
            whether masks are read).
        starter: the starter config tree of ``featdistill config --task NAME`` (None: no starter).
        teacher_run: ``--set`` items that turn the starter into the run that trains its teacher.
        data_state: the attributes that ``build_loaders`` sets from the data (sizes, class names, report), which
            the other tasks of a lockstep group take over with ``share_data`` instead of reading the data again.
        cfg: the validated config the task was built from.
    """

    lockstep_keys: ClassVar[tuple[str, ...]]
    starter: ClassVar[dict[str, Any] | None]
    teacher_run: ClassVar[list[str]]
    data_state: ClassVar[tuple[str, ...]]
    cfg: RunConfig

    # -- models
    def build_student(self) -> nn.Module: ...
    def build_teacher(self, name: str | None = None) -> nn.Module: ...
    def default_pairs(self, student: nn.Module, teacher: nn.Module) -> list[tuple[str, str]]: ...
    def sample_input(self) -> Any: ...
    def export_example(self) -> Any: ...
    def teacher_forward(self, teacher: nn.Module, *args: Any, **kwargs: Any) -> Any: ...

    # -- data
    def build_loaders(
        self, rank: int = 0, world_size: int = 1, evaluate_on: str = "val"
    ) -> tuple[Loader, Any]: ...
    def data_report(self) -> dict[str, Any]: ...
    def share_data(self, source: Task) -> None: ...

    # -- the student card (featdistill.card): what a checkpoint says of its student
    def card_fields(self, student: nn.Module) -> dict[str, Any]: ...
    def apply_card(self, card: dict[str, Any]) -> None: ...
    def configured_preprocessing(self) -> dict[str, Any]: ...
    @classmethod
    def describe_outputs(cls, card: dict[str, Any]) -> str: ...

    # -- featdistill predict (from a student card alone: an export has no config to build the task from)
    @classmethod
    def prediction(cls, card: dict[str, Any]) -> Prediction: ...

    @classmethod
    def score_predictions(cls, predictions: str | Path, truth: Any, **options: Any) -> dict[str, float]: ...

    # -- the CLI
    @classmethod
    def catalogue(cls) -> list[tuple[str, list[tuple[str, str]]]]: ...


#: The members a task class must have (checked by ``register_task``), from the contract above and the trainer's.
MEMBERS: tuple[str, ...] = tuple(
    sorted(
        {name for protocol in (Task, TrainingTask) for name in protocol.__dict__ if not name.startswith("_")}
        | {name for protocol in (Task, TrainingTask) for name in protocol.__annotations__ if name != "cfg"}
    )
)


class TaskBase:
    """Defaults for the members that most tasks share; a plug-in inherits it and overrides what differs."""

    lockstep_keys: ClassVar[tuple[str, ...]] = ()
    starter: ClassVar[dict[str, Any] | None] = None
    teacher_run: ClassVar[list[str]] = ["model.teacher=null"]
    data_state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def share_data(self, source: Task) -> None:
        """Take over what ``source`` (a task of the same lockstep group, so of the same data) read from the data."""
        for name in self.data_state:
            if hasattr(source, name):
                setattr(self, name, getattr(source, name))

    def teacher_forward(self, teacher: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """Call the teacher with exactly the student's arguments."""
        return teacher(*args, **kwargs)

    def export_example(self) -> Any:
        """The input ``featdistill export`` traces the student with: the sample batch at the training size."""
        return self.sample_input()  # type: ignore[attr-defined]  # every task has a sample_input

    def card_fields(self, student: nn.Module) -> dict[str, Any]:
        """The data side of the student card: outputs, preprocessing (none described) and class names (none)."""
        return {"num_classes": self.cfg.model.num_classes, "preprocessing": {}, "classes": []}

    def apply_card(self, card: dict[str, Any]) -> None:
        """Take what the card says of the data (nothing to take by default) before the student is rebuilt."""

    def configured_preprocessing(self) -> dict[str, Any]:
        """The preprocessing the config fixes, checked against a card's (none by default)."""
        return {}

    @classmethod
    def describe_outputs(cls, card: dict[str, Any]) -> str:
        """What the exported student returns, in words for its model card (``card``: the student card)."""
        return "the student's output, as its forward returns it"

    def data_report(self) -> dict[str, Any]:
        """The ingest report (``featdistill data``, ``data.json``): no split described by default."""
        return {"task": self.name, "splits": []}  # type: ignore[attr-defined]  # every task has a name

    @classmethod
    def prediction(cls, card: dict[str, Any]) -> Prediction:
        """How ``featdistill predict`` runs this task's student: not offered by default. A task offers it by
        overriding this, or by naming a class built from the card (``prediction = MyPrediction``)."""
        raise ValueError(
            f"featdistill predict does not know how to run a {card['task']!r} student: its task class "
            f"{cls.__name__} offers no prediction() (see featdistill.tasks.prediction)"
        )

    @classmethod
    def score_predictions(cls, predictions: str | Path, truth: Any, **options: Any) -> dict[str, float]:
        """The metrics ``eval`` reports, of what ``featdistill predict`` wrote (``predictions``) against the ground
        truth (``truth``, in the task's own form): not offered by default (:mod:`featdistill.predict.score`)."""
        raise ValueError(f"the {cls.__name__} task offers no scoring of predict's output")

    @classmethod
    def catalogue(cls) -> list[tuple[str, list[tuple[str, str]]]]:
        """``featdistill models``: sections of ``(model name, where it comes from)`` rows (none by default)."""
        return []
