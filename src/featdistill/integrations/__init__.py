"""Distillation inside other training frameworks: Lightning (``.lightning``) and the Hugging Face ``Trainer``
(``.transformers``). Each module imports its framework only when it is imported itself."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise a one-line ImportError naming the featdistill extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{feature} needs the {module.split('.')[0]} package: pip install 'featdistill[{extra}]'"
        ) from err
