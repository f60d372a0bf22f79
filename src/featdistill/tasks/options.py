"""Each task's typed ``data.options`` / ``model.options``, looked up by task name in one place.

A task's schemas live next to its plug-in, in ``tasks/<task>/options.py``: a ``DataOptions`` and a
``ModelOptions`` dataclass (``None`` where a model's own constructor checks its options), a ``SIDE_ONLY``
tuple of model keys that are not builder arguments, and optionally ``passthrough(cfg)``: more builder
arguments accepted untyped (torchvision's own detector arguments).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ..config import ConfigError, RunConfig, check_options

SIDES = ("student", "teacher")  # model.options mappings that set one model's options


def schemas(task: str) -> ModuleType:
    """The module holding ``task``'s option schemas."""
    return importlib.import_module(f"{__package__}.{task}.options")


def data_options(cfg: RunConfig) -> Any:
    """``cfg.data.options`` validated into the task's ``DataOptions`` (every default filled in)."""
    return check_options(schemas(cfg.task).DataOptions, cfg.data.options, "data.options.")


def model_options(cfg: RunConfig) -> Any:
    """``cfg.model.options`` validated into the task's ``ModelOptions``, each side's mapping too.

    None for a task whose models' own constructors check their options (classification).
    """
    module = schemas(cfg.task)
    if module.ModelOptions is None:
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
    side_only = schemas(cfg.task).SIDE_ONLY
    shared = {k: v for k, v in cfg.model.options.items() if k not in side_only}
    return {**shared, **(cfg.model.options.get(role) or {})}
