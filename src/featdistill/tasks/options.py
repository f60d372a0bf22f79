"""Each task's typed ``data.options`` / ``model.options``, found through the task registry.

A task's schemas live next to its plug-in, in an ``options`` module beside its class (``tasks/<task>/options.py``): a ``DataOptions`` and a
``ModelOptions`` dataclass (``None`` where a model's own constructor checks its options), a ``SIDE_ONLY``
tuple of model keys that are not builder arguments, optionally ``passthrough(cfg)``: more builder
arguments accepted untyped (torchvision's own detector arguments), and optionally ``WEIGHTS_ONLY``: the model
keys that only name pretrained weights to fetch, the architecture the same without them.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import Any

from ..config import ConfigError, RunConfig, check_options
from .registry import task_class

SIDES = ("student", "teacher")  # model.options mappings that set one model's options


def schemas(task: str) -> ModuleType | None:
    """The module holding ``task``'s option schemas: ``options`` beside its plug-in's class (found through the
    task registry), or None for a task without one (a user's task reads its options as plain mappings)."""
    package = task_class(task).__module__.rpartition(".")[0]
    if not package:
        return None
    try:
        return importlib.import_module(f"{package}.options")
    except ModuleNotFoundError as err:
        if err.name != f"{package}.options":
            raise  # the schema module exists but something it imports is missing
        return None


def data_options(cfg: RunConfig) -> Any:
    """``cfg.data.options`` validated into the task's ``DataOptions`` (every default filled in); the plain
    mapping for a task without schemas."""
    module = schemas(cfg.task)
    if module is None:
        return cfg.data.options
    return check_options(module.DataOptions, cfg.data.options, "data.options.")


def augment_options(cfg: RunConfig) -> Any:
    """``cfg.data.augment`` as the task's ``Augment`` schema (one flag per training transform): ``true`` turns
    every transform on, ``false`` every one off, a mapping sets the keys it names (the others stay on; an
    unknown key names the closest). A task without an ``Augment`` schema gets the value as given."""
    module = schemas(cfg.task)
    schema = getattr(module, "Augment", None)
    value = cfg.data.augment
    if schema is None:
        return value
    if isinstance(value, bool):
        return schema(**{f.name: value for f in dataclasses.fields(schema)})
    return check_options(schema, value, "data.augment.")


def augment_record(cfg: RunConfig) -> Any:
    """What the student card records of the training augmentation: every flag of :func:`augment_options`."""
    options = augment_options(cfg)
    return dataclasses.asdict(options) if dataclasses.is_dataclass(options) else options


def model_options(cfg: RunConfig) -> Any:
    """``cfg.model.options`` validated into the task's ``ModelOptions``, each side's mapping too.

    None for a task whose models' own constructors check their options (classification).
    """
    module = schemas(cfg.task)
    if module is None or module.ModelOptions is None:
        return None
    extra = module.passthrough(cfg) if hasattr(module, "passthrough") else set()
    shared = check_options(module.ModelOptions, cfg.model.options, "model.options.", extra)
    for side in SIDES:
        given = cfg.model.options.get(side) or {}
        misplaced = sorted(set(given) & set(module.SIDE_ONLY)) if isinstance(given, dict) else []
        if misplaced:
            raise ConfigError(
                f"model.options.{side} sets {misplaced}, which apply to both models: set them in model.options"
            )
        check_options(module.ModelOptions, given, f"model.options.{side}.", extra)
    return shared


def builder_options(cfg: RunConfig, role: str) -> dict[str, Any]:
    """The builder keyword arguments of ``role`` (``student`` or ``teacher``): ``model.options`` less its
    ``SIDE_ONLY`` keys, updated with the ``model.options.<role>`` mapping."""
    module = schemas(cfg.task)
    side_only = module.SIDE_ONLY if module is not None else ()
    shared = {k: v for k, v in cfg.model.options.items() if k not in side_only}
    return {**shared, **(cfg.model.options.get(role) or {})}


def checkpoint_options(cfg: RunConfig) -> dict[str, Any]:
    """``cfg.model.options`` for a student rebuilt to take a checkpoint's weights: without the task's
    ``WEIGHTS_ONLY`` keys (shared or per side), since the checkpoint overwrites every weight they would fetch;
    so a checkpoint predicts offline, or after a weights file is gone."""
    module = schemas(cfg.task)
    drop = set(getattr(module, "WEIGHTS_ONLY", ()))
    options = {k: v for k, v in cfg.model.options.items() if k not in drop}
    for side in SIDES:
        if isinstance(options.get(side), dict):
            options[side] = {k: v for k, v in options[side].items() if k not in drop}
    return options
