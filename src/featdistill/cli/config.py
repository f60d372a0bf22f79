"""The ``config`` command: the complete, validated config as YAML, each key with what it does.

Without a config file it prints the starter config of a task (``starters.py``). The comments come from the
schema (``config_docs.py``), and the output is itself a valid config.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import yaml

from ..config import ConfigError, RunConfig, apply_overrides, load_config, parse_config
from ..config_docs import field_docs
from ..tasks.options import data_options
from ..tasks.registry import task_class, task_names
from .arguments import add_config_args
from .starters import starter, teacher_overrides

_COMMENT_COLUMN_MAX = 40  # longer keys/values push their comment further right instead


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``config`` command's arguments."""
    add_config_args(parser, optional_config="default: the task's starter config")
    parser.add_argument("--task", help="the task of the starter config (default: classification)")


class _Dumper(yaml.SafeDumper):
    """Safe YAML with lists on one line (``[11, 15]``, ``[[layer3, layer3]]``) and mappings as blocks."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def _entry(name: str, value: Any) -> list[str]:
    """``name: value`` as YAML lines."""
    text = yaml.dump({name: value}, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 30)
    return text.rstrip("\n").splitlines()


def _with_comments(entries: list[tuple[list[str], str]], indent: str) -> list[str]:
    """Indent entries and put each one's comment on its first line, aligned in one column when possible."""
    column = min(max(len(lines[0]) for lines, _ in entries) + 2, _COMMENT_COLUMN_MAX)
    out = []
    for lines, doc in entries:
        first = lines[0].ljust(column - 2) + "  # " + doc if doc else lines[0]
        out += [indent + first, *(indent + line for line in lines[1:])]
    return out


def _render(section: Any, indent: str = "") -> list[str]:
    docs = field_docs(type(section))
    entries: list[tuple[list[str], str]] = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            entries.append(([f"{f.name}:", *_render(value, "  ")], docs[f.name]))
        else:
            entries.append((_entry(f.name, value), docs[f.name]))
    return _with_comments(entries, indent)


def render_config(cfg: RunConfig, header: list[str] | None = None) -> str:
    """Every key of ``cfg`` as YAML with its documentation as a comment; ``header`` lines go on top.

    ``data.options`` is shown as the task's schema: every option, its value (defaults filled in) and doc.
    """
    lines = [f"# {line}" for line in header or []]
    typed = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, options=data_options(cfg)))
    return "\n".join([*lines, *_render(typed)]) + "\n"


def _starter_header(task: str) -> list[str]:
    if not task_class(task).teacher_run:  # a foundation teacher comes trained
        return [
            f"Starter config for {task}: every key, its value and what it does. Save it as CONFIG.yaml, then",
            "distil the teacher into the student: featdistill train CONFIG.yaml",
        ]
    teacher = " ".join(f"--set {item}" for item in teacher_overrides(task))
    return [
        f"Starter config for {task}: every key, its value and what it does. Save it as CONFIG.yaml, then",
        f"1. train the teacher: featdistill train CONFIG.yaml {teacher}",
        "2. distil it into the student: featdistill train CONFIG.yaml",
    ]


def resolve(path: str | None, overrides: list[str], task: str | None) -> tuple[RunConfig, list[str]]:
    """The validated config of ``path`` (or of the task's starter) with ``overrides``, and its header."""
    if path is None:
        task = task or task_names()[0]  # the schema default, classification
        return parse_config(apply_overrides(starter(task), overrides)), _starter_header(task)
    cfg = load_config(path, overrides)
    if task is not None and task != cfg.task:
        raise ConfigError(
            f"{path} is a {cfg.task} config but --task says {task}; "
            "--task only picks the starter config when no CONFIG is given, so drop it"
        )
    return cfg, [
        f"{path}{' with --set overrides' if overrides else ''}: every key, its value and what it does"
    ]


def run(args: argparse.Namespace) -> None:
    """Print the resolved config."""
    cfg, header = resolve(args.config, args.overrides, args.task)
    print(render_config(cfg, header), end="")
