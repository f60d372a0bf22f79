"""A trained student rebuilt from a checkpoint: its task from the checkpoint's config, its weights, its card.

What ``eval``, ``export`` and ``predict`` start from; no training data is opened.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..card import check_matches, import_student_plugins, student_card
from ..config import RunConfig, apply_overrides, parse_config, read_config
from ..engine.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_safely
from ..tasks.options import checkpoint_options
from ..tasks.registry import get_task

__all__ = ["load_student"]


def _student_config(tree: dict[str, Any], card: dict[str, Any] | None, overrides: Sequence[str]) -> RunConfig:
    """``tree`` (a config as a mapping) with ``overrides`` validated, importing only the plug-ins that build
    the student (:func:`featdistill.card.import_student_plugins`)."""
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
    (:func:`featdistill.card.import_student_plugins`).
    A checkpoint without a card (older featdistill, or a plain student state_dict) needs ``config``; its card
    is then rebuilt from the config (``source: config``, with one warning) and may lack the mean/std that
    only the training images would give.
    """
    state = load_safely(checkpoint)
    trained = isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT
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
    """``cfg`` for rebuilding the student only: no teacher, no weight files, no pretrained weights to fetch
    (the checkpoint holds the weights)."""
    cfg = copy.deepcopy(cfg)
    cfg.model.options = checkpoint_options(cfg)
    cfg.model.student_weights = None
    cfg.model.teacher = None
    cfg.model.teacher_weights = None
    return cfg
