"""What every subcommand's parser shares: its help texts and example, the YAML file and ``--set`` overrides."""

from __future__ import annotations

import argparse
import textwrap


def add_config_args(parser: argparse.ArgumentParser, *, optional_config: str | None = None) -> None:
    """``CONFIG`` (optional when ``optional_config`` says what its absence means) and repeatable ``--set``."""
    if optional_config is None:
        parser.add_argument("config", help="YAML run configuration")
    else:
        parser.add_argument(
            "config", nargs="?", metavar="CONFIG", help=f"YAML run configuration ({optional_config})"
        )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=0.05 (repeatable; values parsed as YAML)",
    )


def add_command(
    sub: argparse._SubParsersAction, name: str, about: str, example: str, details: str = ""
) -> argparse.ArgumentParser:
    """A subcommand: ``about`` (one sentence) is its help, ``about`` + ``details`` its description, and its
    ``--help`` ends with ``example`` (the arguments after ``featdistill NAME``)."""
    return sub.add_parser(
        name,
        help=about,
        description=textwrap.fill(f"{about} {details}".strip(), width=100),  # printed as is (raw formatter)
        epilog=f"example:\n  featdistill {name} {example}",
    )
