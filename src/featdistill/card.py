"""The student card: what a trained student needs to run without its training data.

Every checkpoint the Trainer writes holds ``state["card"]`` (see :func:`student_card`), and every export
writes it beside the exported file as the sidecar ``<output>.json`` (:func:`sidecar_path`), so ``eval``,
``export`` and ``predict`` read the task, the model to rebuild, the input preprocessing (mean, std, size,
bits, colour mode), the class names and the last metric from the checkpoint alone, never from the training
split. The card is plain JSON data:

.. code-block:: text

    format          "featdistill-card-1"
    task            "classification" | "detection" | "segmentation"
    model           {"student": str, "num_classes": int, "options": dict}
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

import copy
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ConfigError, RunConfig, apply_overrides, import_plugins, parse_config, read_config
from .plugins import BUILD, TRAIN, roles
from .tasks.base import PREPROCESSING_DEFAULTS
from .tasks.options import augment_record

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
    """The card of ``student`` trained by ``cfg`` with ``task`` (whose ``card_fields`` give the data side).

    ``metrics``: the last evaluation (on ``evaluated_on``: ``val`` = ``data.val_split``, or ``holdout``);
    ``distiller``: the ``Distiller`` that trained it (None for a plain student).
    """
    from . import __version__

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


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def _plain(value: Any) -> Any:
    """``value`` as JSON data (tuples to lists, paths to strings)."""
    return json.loads(json.dumps(value, default=str))


def read_card(path: str | Path) -> dict[str, Any]:
    """The card of a checkpoint (``last.pt``), of an export (its sidecar ``<file>.json``) or a sidecar itself."""
    from .engine import CheckpointError, load_safely

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


def _student_config(tree: dict[str, Any], card: dict[str, Any] | None, overrides: Sequence[str]) -> RunConfig:
    """``tree`` (a config as a mapping) with ``overrides`` validated, importing only the plug-ins that build
    the student (:func:`import_student_plugins`)."""
    tree = apply_overrides(copy.deepcopy(tree), list(overrides))
    listed = tree.get("plugins", []) if isinstance(tree, dict) else []
    if isinstance(listed, list) and all(isinstance(m, str) for m in listed):
        tree["plugins"] = import_student_plugins(card, listed)
    return parse_config(tree)


def load_student(
    checkpoint: str | Path,
    config: RunConfig | str | Path | None = None,
    overrides: Sequence[str] = (),
) -> tuple[Any, nn.Module, dict[str, Any]]:
    """``(task, student in eval mode, card)`` from a checkpoint, without opening any training data.

    The task plug-in is built from the checkpoint's own config (with ``overrides``, ``--set`` style, e.g.
    ``data.root=...``), or from ``config`` when given (a ``RunConfig``, or a YAML file read with
    ``overrides``); either way a config whose model or preprocessing differs from the card's is refused (a
    :class:`CardMismatchError` names both values). Only the plug-ins that build the student are imported
    (:func:`import_student_plugins`).
    A checkpoint without a card (older featdistill, or a plain student state_dict) needs ``config``; its card
    is then rebuilt from the config (``source: config``, with one warning) and may lack the mean/std that
    only the training images would give.
    """
    from .engine import CheckpointError, load_safely
    from .run import get_task

    state = load_safely(checkpoint)
    trained = isinstance(state, dict) and state.get("format") == "featdistill-checkpoint-1"
    card = state.get("card") if trained else None
    if card is None and config is None:
        if not trained:
            raise CheckpointError(
                f"{checkpoint} is a plain state_dict, not a featdistill checkpoint: pass the config that "
                "trained it (featdistill eval CONFIG --checkpoint ...)"
            )
        raise CheckpointError(
            f"{checkpoint} has no student card (written by an older featdistill); pass the config that "
            "trained it (featdistill eval CONFIG --checkpoint ...)"
        )
    by_set = config is None and bool(overrides)  # --set alone adjusts the checkpoint's own config
    if config is None:
        config = _student_config(state["config"], card, overrides)
        given = by_set
    else:
        if not isinstance(config, RunConfig):
            config = _student_config(read_config(config), card, overrides)
        given = True
    cfg = _rebuild_config(config)
    task = get_task(cfg)
    if card is not None:
        if given:
            check_matches(card, task, checkpoint, by_set=by_set)
        task.apply_card(card)
    student = task.build_student()
    weights = state["student"] if isinstance(state, dict) and "student" in state else state
    try:
        student.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as err:
        detail = " ".join(str(err).split())[:300] or type(err).__name__
        raise CheckpointError(
            f"{checkpoint} does not fit model.student {cfg.model.student!r} ({detail}); "
            "use the config that trained it"
        ) from None
    if card is None:
        card = student_card(task, cfg, student, state.get("metrics") if trained else None)
        card["source"] = "config"
        estimated = (
            "; without data.options.mean/std, eval estimates its normalisation from the training split as "
            "before and an export's sidecar has none"
            if card["preprocessing"]["mean"] is None
            else ""
        )
        warnings.warn(
            f"{checkpoint} has no student card (an older checkpoint or a plain state_dict): its preprocessing "
            f"and class names are taken from the config{estimated}; retrain or resume with this featdistill "
            "to store them",
            stacklevel=2,
        )
    return task, student.eval(), card


def _rebuild_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` for rebuilding the student only: no teacher, no weight files (the checkpoint holds the weights)."""
    cfg = copy.deepcopy(cfg)
    cfg.model.student_weights = None
    cfg.model.teacher = None
    cfg.model.teacher_weights = None
    return cfg


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


def pixel_scale(dtype: torch.dtype) -> float:
    """The white level of decoded pixels of ``dtype`` (1.0 for float pixels already in [0, 1])."""
    return {torch.uint8: 255.0, torch.uint16: 65535.0}.get(dtype, 1.0)


def normalization_factors(
    card: dict[str, Any], white: float, channels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` of shape ``[C, 1, 1]``: model input = pixels * scale - shift.

    The same float32 arithmetic as training's ``normalize`` (``1 / (white * std)`` and ``mean / std``), so
    eval, predict and an export with ``--include-preprocessing`` give bit-identical inputs. Without a
    mean/std (an older card) pixels are only scaled to [0, 1].
    """
    p = card["preprocessing"]
    channels = channels or int(p.get("channels", 3))
    if p.get("mean") is None or p.get("std") is None:
        mean, std = torch.zeros(channels), torch.ones(channels)
    else:
        mean = torch.as_tensor(p["mean"], dtype=torch.float32)
        std = torch.as_tensor(p["std"], dtype=torch.float32)
    scale = 1.0 / (white * std)
    return scale.view(-1, 1, 1), (mean / std).view(-1, 1, 1)


def center_crop_resize(pixels: torch.Tensor, size: Sequence[int], fraction: float) -> torch.Tensor:
    """Resize the short side to ``min(size) / fraction``, then crop the centred ``size`` (evaluation crop)."""
    from .tasks.decode import resize_pixels

    height, width = pixels.shape[-2:]
    scale = round(min(size) / fraction) / min(height, width)
    pixels = resize_pixels(pixels, (max(1, round(height * scale)), max(1, round(width * scale))))
    top = (pixels.shape[-2] - size[0]) // 2
    left = (pixels.shape[-1] - size[1]) // 2
    return pixels[..., top : top + size[0], left : left + size[1]]


def preprocess(
    images: torch.Tensor | Sequence[torch.Tensor], card: dict[str, Any], resize: bool = True
) -> torch.Tensor | list[torch.Tensor]:
    """Decoded images to the student's input, as the card says (eval, predict, exported preprocessing).

    ``images``: a ``[B, C, H, W]`` batch or a list of ``[C, H, W]`` images, uint8 / uint16 pixels as decoded
    (or float pixels already in [0, 1]); one channel is expanded to the card's channels. ``resize``: apply
    the card's resize (``exact`` / ``center_crop``; a list of images of different sizes must be resized to
    be batched). Classifiers and segmenters get a float batch; detectors (``normalize_in_model``) a list of
    float images in [0, 1], each at its own size.
    """
    p = card["preprocessing"]
    if p.get("normalize_in_model"):
        return [_normalized(_resized(image[None], p, resize), card)[0] for image in images]
    if not isinstance(images, torch.Tensor):
        images = torch.stack([_resized(image[None], p, resize)[0] for image in images])
    return _normalized(_resized(images, p, resize), card)


def _resized(batch: torch.Tensor, p: dict[str, Any], resize: bool) -> torch.Tensor:
    from .tasks.decode import resize_pixels

    if not resize or p.get("input_size") is None:
        return batch
    if p.get("resize") == "exact":
        return resize_pixels(batch, tuple(p["input_size"]))
    if p.get("resize") == "center_crop":
        return center_crop_resize(batch, p["input_size"], float(p["crop_fraction"]))
    return batch


def _normalized(batch: torch.Tensor, card: dict[str, Any]) -> torch.Tensor:
    channels = int(card["preprocessing"].get("channels", 3))
    if batch.shape[-3] == 1 and channels != 1:
        batch = batch.expand(*batch.shape[:-3], channels, *batch.shape[-2:])
    if card["preprocessing"].get("normalize_in_model"):  # detectors: [0, 1], as their data loader gives
        return batch.float() / pixel_scale(batch.dtype)
    scale, shift = normalization_factors(card, pixel_scale(batch.dtype), channels)
    return batch.float() * scale.to(batch.device) - shift.to(batch.device)


class PixelInput(nn.Module):
    """``student`` behind the card's normalisation: takes uint8 (or uint16) NCHW pixels at the model's size.

    What ``export --include-preprocessing`` exports: ``preprocess`` without the resize (an exported graph
    has a fixed preprocessing; resize to ``input_size`` before calling it when the card says ``exact``).
    """

    def __init__(self, student: nn.Module, card: dict[str, Any], bits: int = 8) -> None:
        super().__init__()
        self.student = student
        scale, shift = normalization_factors(card, 65535.0 if bits == 16 else 255.0)
        self.register_buffer("scale", scale[None])
        self.register_buffer("shift", shift[None])

    def forward(self, pixels: torch.Tensor) -> Any:
        return self.student(pixels.float() * self.scale - self.shift)


class ImagesPixelInput(nn.Module):
    """A detector taking a list of uint8 ``[3, H, W]`` images: scaled to [0, 1] here, normalised inside it."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: list[torch.Tensor]) -> Any:
        return self.detector([image.float() / 255.0 for image in images])
