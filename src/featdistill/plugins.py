"""What each ``plugins:`` module registered, so a student can be run without the plug-ins that only trained it.

A config's plug-ins are imported through :func:`importing`, and ``register_task`` / ``register_method`` tell
:func:`registered` what they added. A plug-in that registered only methods (losses) is needed to TRAIN a
student, not to build or run it: :func:`roles` splits a run's plug-ins into ``build`` (a task, a model, or
anything not measured, to be safe) and ``train`` (methods only), and the student card records the split, so
``predict``, ``eval``, ``export`` and ``probe`` import the ``build`` ones alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["BUILD", "TRAIN", "importing", "registered", "roles"]

BUILD, TRAIN = "build", "train"
_importing: list[str] = []  # the plug-in modules being imported now, outermost first
_kinds: dict[str, set[str]] = {}  # plug-in module -> the registries its import added to ("task", "method")


@contextmanager
def importing(module: str) -> Iterator[None]:
    """Attribute what registers while ``module`` is imported to ``module`` (to the outermost plug-in when
    one plug-in imports another). A module imported before (by the user, or a plug-in named earlier)
    registers nothing here and is not measured."""
    first = module not in _kinds and not _importing
    if first:
        _importing.append(module)
    try:
        yield
    finally:
        if first:
            _importing.pop()
            _kinds.setdefault(module, set())


def registered(kind: str) -> None:
    """Note that the plug-in being imported (if any) added to registry ``kind`` (``task`` or ``method``)."""
    if _importing:
        _kinds.setdefault(_importing[0], set()).add(kind)


def roles(modules: Sequence[str]) -> dict[str, list[str]]:
    """``{"build": [...], "train": [...]}``: the plug-ins needed to build the student, and those that only
    registered methods (needed to train it). A plug-in whose import was not measured counts as ``build``."""
    train = [m for m in modules if _kinds.get(m) == {"method"}]
    return {BUILD: [m for m in modules if m not in train], TRAIN: train}
