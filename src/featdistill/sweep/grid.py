"""The variants of a sweep: ``--grid KEY=V1,V2`` parsed, their Cartesian product, and the lockstep groups."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import CompareConfig, ConfigError, RunConfig, check_key, safe_yaml
from ..tasks.registry import task_class

#: Keys in which the variants of one lockstep group may differ: all else (data, batch order, teacher,
#: schedule length, device) is shared, so each step makes one batch and one teacher forward for all.
LOCKSTEP_FREE = (
    "model.student",
    "model.student_weights",
    "distill.",
    "train.optimizer",
    "train.lr",
    "train.momentum",
    "train.nesterov",
    "train.weight_decay",
    "train.schedule",
    "train.milestones",
    "train.gamma",
    "train.poly_power",
    "train.warmup_epochs",
    "train.clip_grad",
    "output.",
)
#: Teacher settings: shared in a group, but separate from the data key (a plain student has no teacher).
TEACHER_KEYS = ("model.teacher", "model.teacher_weights", "distill.teacher_dtype")


@dataclass
class Variant:
    """One point of the grid: its index, its grid values and its validated config."""

    index: int
    values: dict[str, Any]
    cfg: RunConfig

    @property
    def name(self) -> str:
        """A folder name that says the values, e.g. ``v03_alpha=0.001_lr=0.05``."""
        parts = [f"{key.rsplit('.', 1)[-1]}={_short(value)}" for key, value in self.values.items()]
        return re.sub(r"[^A-Za-z0-9.=_+-]", "", "_".join([f"v{self.index:02d}", *parts]))[:120]


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` at the commas outside brackets and quotes, so lists stay whole."""
    items, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items]


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["distill.alpha=1e-3,3e-3", ...]`` → ``{"distill.alpha": [0.001, 0.003], ...}`` (keys checked)."""
    if not specs:
        raise ConfigError("give at least one --grid KEY=V1,V2,... (e.g. --grid distill.alpha=1e-3,3e-3,1e-2)")
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        if "=" not in spec:
            raise ConfigError(f"--grid expects KEY=V1,V2,..., got {spec!r}")
        key, raw = (part.strip() for part in spec.split("=", 1))
        check_key(key)
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one --grid")
        texts = [text for text in split_values(raw) if text]
        if not texts:
            raise ConfigError(f"--grid {key} has no values; give at least one, e.g. --grid {key}=V1,V2")
        grid[key] = [safe_yaml(text, f"--grid {key}") for text in texts]
    return grid


def expand(
    base: RunConfig,
    grid: dict[str, list[Any]],
    out_dir: Path,
    arms: dict[str, dict[str, Any]] | None = None,
) -> list[Variant]:
    """Every combination of the grid values applied to ``base``, each validated once, in ``out_dir/<name>``.

    With ``arms`` (``compare.arms``: name → dotted keys), every arm is crossed with the grid; a variant's
    values then start with ``{"arm": name}``, and the grid's values win over an arm's for the same key.
    """
    variants = []
    keys = list(grid)
    if base.compare != CompareConfig():  # the runs carry no compare plan: each is a plain config
        base = base.with_overrides({"compare.arms": {}, "compare.seeds": []})
    for name, settings in (arms or {"": {}}).items():
        for combo in itertools.product(*(grid[k] for k in keys)):
            chosen = dict(zip(keys, combo))
            values = ({"arm": name} if arms else {}) | chosen
            index = len(variants)
            folder = Variant(index, values, base).name
            # the sweep shows one bar for all variants
            cfg = base.with_overrides(
                {**settings, **chosen, "output.dir": str(out_dir / folder), "output.progress": False}
            )
            variants.append(Variant(index, values, cfg))
    return variants


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "options":
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def lockstep_key(cfg: RunConfig) -> str:
    """Variants with equal keys share data, batch order, schedule length and teacher: one lockstep group."""
    flat = _flat(cfg.to_dict())
    shared = {
        k: v
        for k, v in flat.items()
        if not any(k == free or (free.endswith(".") and k.startswith(free)) for free in LOCKSTEP_FREE)
        or k in TEACHER_KEYS
    }
    for key in task_class(cfg.task).lockstep_keys:  # what else the task needs equal (detection: the family)
        shared[key] = flat[key]
    if not cfg.model.distilled:
        shared = {k: v for k, v in shared.items() if k not in TEACHER_KEYS}
    return json.dumps(shared, sort_keys=True, default=str)


def lockstep_groups(variants: list[Variant]) -> list[list[Variant]]:
    """The variants grouped by ``lockstep_key``, in order of first appearance."""
    groups: dict[str, list[Variant]] = {}
    for variant in variants:
        groups.setdefault(lockstep_key(variant.cfg), []).append(variant)
    return list(groups.values())
