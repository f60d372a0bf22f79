"""The arguments every config-reading command shares: the YAML file and its ``--set`` overrides."""

from __future__ import annotations

import argparse


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
