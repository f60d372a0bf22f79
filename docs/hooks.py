"""MkDocs hooks (``hooks:`` in mkdocs.yml): the reference pages are generated from the code at build time.

- ``reference/cli.md``: ``featdistill --help`` and every ``featdistill COMMAND --help``, printed by the CLI's own
  argparse parser (``featdistill.cli.main.build_parser``);
- ``reference/config.md``: every config key with its type, default and meaning, read from the schema
  dataclasses (``featdistill.config``) and their line comments (``featdistill.config_docs.field_docs``, the
  same text ``featdistill config`` prints), the tasks' ``data.options`` / ``model.options`` schemas included;
- the benchmark tables (``benchmarks/results/*.md``, their plots and raw logs) are published under
  ``benchmarks/results/`` so that the pages link to them as they are, never copied into ``docs/``.

Nothing here is written into ``docs/``: the pages exist only in the built site.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import typing
from collections.abc import Iterator
from pathlib import Path

import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = (  # repository files served as they are: the tables, their plots and their raw logs
    "benchmarks/results/*.md",
    "benchmarks/results/*.png",
    "benchmarks/results/*.log",
)
HELP_COLUMNS = "100"  # argparse wraps --help to the terminal width: fixed, so the page is the same everywhere


@contextlib.contextmanager
def _columns(width: str) -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def cli_reference() -> str:
    """The CLI reference page: the top-level help, then each command's ``--help`` under its own heading."""
    from featdistill.cli.main import build_parser

    parser = build_parser()
    # argparse has no public way to list a parser's subcommands; these two attributes are stable since 3.2
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    about = {action.dest: action.help for action in commands._choices_actions}
    lines = [
        "# Command-line reference",
        "",
        "Generated at build time from the parser itself (`featdistill.cli.main.build_parser`): each block is",
        "exactly what `featdistill COMMAND --help` prints. The [command-line guide](../cli.md) shows the",
        "commands at work.",
        "",
        "```text",
    ]
    with _columns(HELP_COLUMNS):
        lines += [parser.format_help().rstrip(), "```", ""]
        for name, command in commands.choices.items():
            lines += [f"## featdistill {name}", "", f"{about[name]}", "", "```text"]
            lines += [command.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def _yaml(value: object) -> str:
    """A default as a config writes it: ``null``, ``true``, ``[]``, ``cwt``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text.removesuffix("...").strip()


def _default(f: dataclasses.Field) -> str:
    """The default of a schema field as YAML, or **required** (the schema's ``REQUIRED`` is no default)."""
    if f.default is not dataclasses.MISSING:
        return f"`{_yaml(f.default)}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{_yaml(f.default_factory())}`"
    return "**required**"


def _table(cls: type, prefix: str) -> list[str]:
    """One row per field of the schema dataclass ``cls``: the dotted key, its type, default and meaning."""
    from featdistill.config_docs import field_docs

    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default | what it does |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            continue  # a section: its own table
        doc = docs[f.name].replace("|", "\\|")  # a pipe in a code span (type, default) splits no cell
        rows.append(f"| `{prefix}{f.name}` | `{f.type}` | {_default(f)} | {doc} |")
    return rows


def config_reference() -> str:
    """The config reference page: the schema's sections as tables, then each task's option schemas."""
    from featdistill.config import RunConfig
    from featdistill.config_docs import field_docs
    from featdistill.tasks.options import schemas
    from featdistill.tasks.registry import task_names

    lines = [
        "# Config reference",
        "",
        "Generated at build time from the schema (`featdistill.config`): the dataclasses give each key, its",
        "type and default, and the comment on each field's line gives its meaning: the same words",
        "`featdistill config` prints beside each key. Defaults are written as in a YAML config. Every key is",
        "checked before any work starts (an unknown key is refused with the closest valid one).",
        "",
        "## Top level",
        "",
        *_table(RunConfig, ""),
        "",
    ]
    hints = typing.get_type_hints(RunConfig)
    sections = field_docs(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if dataclasses.is_dataclass(hints[f.name]):
            lines += [f"## `{f.name}`", "", sections[f.name].capitalize() + ".", ""]
            lines += [*_table(hints[f.name], f"{f.name}."), ""]
    lines += [
        "## Task options",
        "",
        "`data.options` and `model.options` are checked against the task's own schema",
        "(`featdistill.tasks.<task>.options`); a task without a schema (classification's models, a",
        "user's task) passes them on as they are.",
        "",
    ]
    for task in task_names():
        module = schemas(task)
        for section, name in (("data", "DataOptions"), ("model", "ModelOptions")):
            cls = getattr(module, name, None) if module is not None else None
            if cls is not None:
                lines += [f"### {task}: `{section}.options`", "", *_table(cls, f"{section}.options."), ""]
    return "\n".join(lines)


def methods_table() -> str:
    """The built-in (and registered) methods: default α, the ratio ``alpha: auto`` aims at, their options."""
    from featdistill.distiller.methods import METHODS

    rows = ["| method | default α | `alpha: auto` ratio | options (defaults) |", "|---|---|---|---|"]
    for name, method in METHODS.items():
        options = ", ".join(f"`{key}: {value!r}`" for key, value in method.defaults.items()) or "none"
        rows.append(f"| `{name}` | {method.default_alpha:g} | {method.auto_ratio:g} | {options} |")
    return "\n".join(rows)


GENERATED_IN_PAGES = {"<!-- featdistill:methods-table -->": methods_table}  # marker in a page -> its text


def on_page_markdown(markdown: str, **kwargs: object) -> str:
    """Replace each generated-content marker of a page by the text generated from the code."""
    for marker, generate in GENERATED_IN_PAGES.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated reference pages and the published benchmark results to the site's files."""
    for pattern in PUBLISHED:
        for path in sorted(REPO.glob(pattern)):
            files.append(
                File(
                    path.relative_to(REPO).as_posix(),
                    str(REPO),
                    config["site_dir"],
                    config["use_directory_urls"],
                )
            )
    files.append(File.generated(config, "reference/cli.md", content=cli_reference()))
    files.append(File.generated(config, "reference/config.md", content=config_reference()))
    return files
