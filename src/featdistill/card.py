"""The student card: what a trained student needs to run without its training data (its data, read, write,
checks).

Every checkpoint the Trainer writes holds ``state["card"]`` (see :func:`student_card`), and every export
writes it beside the exported file as the sidecar ``<output>.json`` (:func:`sidecar_path`), so ``eval``,
``export`` and ``predict`` read the task, the model to rebuild, the input preprocessing (mean, std, size,
bits, colour mode), the class names and the last metric from the checkpoint alone, never from the training
split. The student is rebuilt from it by :func:`featdistill.predict.student.load_student`; its pixels are
prepared by :mod:`featdistill.tasks.preprocess`. The card is plain JSON data:

.. code-block:: text

    format          "featdistill-card-1"
    task            "classification" | "detection" | "segmentation"
    model           {"student": str, "num_classes": int, "options": dict,
                     "config": dict                         (hf: students) the transformers config, from
                                                            which predict and eval rebuild the student}
    preprocessing   {"mean": [float], "std": [float]       per input channel, on pixels scaled to [0, 1]
                     "input_size": [H, W] | null            the size the student was trained on
                     "resize": "none" | "exact" | "center_crop"
                                                            exact: resized to input_size before the model;
                                                            center_crop: short side to input / crop_fraction,
                                                            then the centred input_size crop
                     "crop_fraction": float                 (center_crop only)
                     "bits": 8 | 16, "channels": 3, "color_mode": "RGB" | "L" (L is expanded to 3),
                     "normalize_in_model": bool             torchvision detectors normalise inside
                     "min_size", "max_size": int            (detection) the detector's own resize}
    classes         output index -> name (detection: label -> category name, 0 = "__background__")
    categories      detection: [{"label": i, "id": COCO category id, "name": str}] for every label i
                    (label 0 = background, id 0); null otherwise
    ignore_index    segmentation: the label ignored by loss and metrics; null otherwise
    metric          {"name", "value", "split", "all": {metric: value}} of the last evaluation | null
    distillation    {"teacher", "method", "pairs": [[student, teacher, method]], "alpha": {method: α}} | null
                    (a method given as an object in a pair is recorded by its name, as α keys it)
    augment         the training augmentation, one flag per transform (classification {"crop", "flip"},
                    segmentation {"scale", "crop", "flip"}, detection {"flip", "scale"}) | as configured
    plugins         {"build": [module], "train": [module]}: the config's plug-ins needed to build the student
                    (a task, a model) and those needed only to train it (methods); predict, eval, export
                    and probe import the build ones alone (featdistill.plugins). Absent in older cards.
    versions        {"featdistill": str, "torch": str}
    source          "checkpoint" (written at training) | "config" (rebuilt from a config, older checkpoint)
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ConfigError, RunConfig, import_plugins
from .engine.checkpoint import CheckpointError, load_safely
from .engine.contract import CardWriter
from .plugins import BUILD, TRAIN, roles
from .tasks.base import PREPROCESSING_DEFAULTS
from .tasks.options import augment_record
from .version import __version__

CARD_FORMAT = "featdistill-card-1"
#: Preprocessing values compared with a tolerance (floats written by JSON / YAML round trips).
_FLOAT_KEYS = ("mean", "std", "crop_fraction")


class CardMismatchError(ValueError):
    """A config given to eval/export/predict asks for other preprocessing (or another model) than the card."""


def sidecar_path(output: str | Path) -> Path:
    """The sidecar of an exported file: ``student.onnx`` -> ``student.onnx.json``."""
    output = Path(output)
    return output.with_name(f"{output.name}.json")


def student_card(
    task: Any,
    cfg: RunConfig,
    student: nn.Module,
    metrics: dict[str, float] | None = None,
    evaluated_on: str = "val",
    distiller: Any = None,
) -> dict[str, Any]:
    """The card of ``student`` trained by ``cfg`` with ``task`` (whose ``card_fields`` give the data side, and
    may give ``model_config``: the student's architecture, kept as ``model.config`` so that the checkpoint
    alone rebuilds it, e.g. an ``hf:`` student's transformers config).

    ``metrics``: the last evaluation (on ``evaluated_on``: ``val`` = ``data.val_split``, or ``holdout``);
    ``distiller``: the ``Distiller`` that trained it (None for a plain student).
    """
    fields = task.card_fields(student)
    metric = None
    if metrics:
        name = task.metric if task.metric in metrics else next(iter(metrics))
        split = cfg.data.val_split if evaluated_on == "val" else evaluated_on
        metric = {"name": name, "value": float(metrics[name]), "split": split, "all": _floats(metrics)}
    distillation = None
    if distiller is not None:
        distillation = {
            "teacher": cfg.model.teacher,
            "method": cfg.distill.method,
            "pairs": [[p.student, p.teacher, p.method] for p in distiller.pairs],
            "alpha": dict(distiller.balancer.alpha),
        }
    card = {
        "format": CARD_FORMAT,
        "task": cfg.task,
        "model": {
            "student": cfg.model.student,
            "num_classes": int(fields["num_classes"]),
            "options": cfg.model.options,
            **({"config": fields["model_config"]} if "model_config" in fields else {}),
        },
        "preprocessing": {**PREPROCESSING_DEFAULTS, **fields["preprocessing"]},
        "classes": [str(c) for c in fields["classes"]],
        "categories": fields.get("categories"),
        "ignore_index": fields.get("ignore_index"),
        "metric": metric,
        "distillation": distillation,
        "plugins": roles(cfg.plugins),
        "augment": augment_record(cfg),
        "versions": {"featdistill": __version__, "torch": str(torch.__version__)},
        "source": "checkpoint",
    }
    return _plain(card)  # JSON data only: the checkpoint stays loadable with weights_only=True


def card_writer(task: Any, cfg: RunConfig, evaluated_on: str = "val") -> CardWriter:
    """What the Trainer calls to write each checkpoint's card: :func:`student_card` for ``task`` and ``cfg``."""

    def write(student: nn.Module, metrics: dict[str, float], distiller: Any) -> dict[str, Any]:
        return student_card(task, cfg, student, metrics, evaluated_on, distiller)

    return write


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def _plain(value: Any) -> Any:
    """``value`` as JSON data (tuples to lists, paths to strings)."""
    return json.loads(json.dumps(value, default=str))


def read_card(path: str | Path) -> dict[str, Any]:
    """The card of a checkpoint (``last.pt``), of an export (its sidecar ``<file>.json``) or a sidecar itself."""
    path = Path(path)
    sidecar = path if path.suffix == ".json" else sidecar_path(path)
    if sidecar.is_file():
        card = json.loads(sidecar.read_text())
    else:
        state = load_safely(path, mmap=True)
        card = state.get("card") if isinstance(state, dict) else None
        if card is None:
            raise CheckpointError(
                f"{path} has no student card (no sidecar {sidecar.name} beside it, and not a checkpoint "
                "written by this featdistill version); re-export it, or pass the config that trained it"
            )
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CheckpointError(f"{path}: its card is not a {CARD_FORMAT} card; re-export it with this version")
    return card


def import_student_plugins(card: dict[str, Any] | None, listed: Sequence[str] | None = None) -> list[str]:
    """Import the plug-ins needed to build the student of ``card`` (never those that only trained it);
    returns them. What every student-only command (predict, eval, export, probe) calls before it builds a task.

    ``listed``: the ``plugins:`` of the config in use (default: the card's ``build`` list). A card that
    records its plug-ins (``card["plugins"]``) imports the listed ones that are not ``train``-only, and a
    failure is the usual one-line ``ConfigError``. An older card (or none) says nothing of them: each listed
    plug-in is tried, and those that cannot be imported are left out with one warning.
    """
    recorded = (card or {}).get("plugins")
    if recorded is not None:
        wanted = [m for m in (recorded[BUILD] if listed is None else listed) if m not in recorded[TRAIN]]
        import_plugins(wanted)
        return wanted
    imported, failed = [], []
    for module in listed or []:
        try:
            import_plugins([module])
            imported.append(module)
        except ConfigError as err:
            failed.append(str(err))
    if failed:
        warnings.warn(
            f"{'; '.join(failed)}; the student card does not say which plug-ins build the student (written "
            "by an older featdistill), so going on without it: a plug-in that only trained it (a loss) is not "
            "needed",
            stacklevel=2,
        )
    return imported


def check_matches(card: dict[str, Any], task: Any, checkpoint: str | Path, by_set: bool = False) -> None:
    """Refuse a config whose model or preprocessing differs from the card's (one line naming both values).

    ``by_set``: no config was given, only ``--set`` values applied to the checkpoint's own config.
    """
    if by_set:
        fix = (
            "without a config, --set applies to the checkpoint's own config and may change where the data are "
            "(e.g. data.root), not what the student was trained on: drop that --set"
        )
    else:
        fix = "use the config that trained it, or give no config"
    cfg = task.cfg
    if cfg.task != card["task"]:
        raise CardMismatchError(
            f"{checkpoint} holds a {card['task']} student but the config says task: {cfg.task}; {fix}"
        )
    if cfg.model.student != card["model"]["student"]:
        raise CardMismatchError(
            f"{checkpoint} does not fit model.student {cfg.model.student!r}: it holds a "
            f"{card['model']['student']!r} (its card); {fix}"
        )
    saved = card["preprocessing"]
    for key, value in task.configured_preprocessing().items():
        if key in saved and not _same(value, saved[key]):
            asked = (
                f"--set asks for preprocessing {key} {value!r}, but {checkpoint} was trained with"
                if by_set
                else f"the config's preprocessing {key} {value!r} differs from {checkpoint}'s"
            )
            raise CardMismatchError(f"{asked} {saved[key]!r} (its card); {fix}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-6)
        )
    return a == b
