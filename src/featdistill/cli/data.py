"""``featdistill data CONFIG.yaml``: what a config's data holds and what it leaves out, without training.

:func:`announce_data` is the same report printed once at the start of ``train`` / ``eval`` (and any
command that builds a task's loaders) and written to the run folder as ``data.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

from .arguments import add_config_args

DATA_JSON = "data.json"


def announce_data(
    task: Any, out_dir: str | Path | None = None, *, resuming: bool = False, stream: TextIO | None = None
) -> dict[str, Any]:
    """Print ``task.data_report()`` once (rank 0) and write it to ``out_dir/data.json``.

    A resumed run keeps the ``data.json`` it started with (the run folder is not changed before the
    resume is accepted) and warns when the data now read differ from it.
    """
    from ..engine.checkpoint import write_text_atomic
    from ..engine.distributed import is_main
    from ..tasks.ingest import format_report

    report = task.data_report()
    if not is_main():
        return report
    print(format_report(report), file=stream or sys.stdout, flush=True)
    if out_dir is not None:
        path = Path(out_dir) / DATA_JSON
        text = json.dumps(report, indent=1) + "\n"
        if resuming and path.is_file():
            if path.read_text() != text:
                warnings.warn(
                    f"the data read now differ from {path}, written when this run started (files added, "
                    "removed or changed?); the resumed run trains on the data read now",
                    stacklevel=2,
                )
        else:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            write_text_atomic(text, path)
    return report


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``data`` subcommand's arguments."""
    about = "Print what the config's data holds and skips, without training."
    data = sub.add_parser(
        "data",
        help=about,
        description=about + " The same report is printed by train and sweep and written to data.json.",
        epilog="example:\n  featdistill data configs/classification/cifar10_cpu_cwt.yaml --json",
    )
    add_config_args(data)
    data.add_argument("--json", action="store_true", help="print the report as JSON instead of text")


def run(args: argparse.Namespace) -> None:
    """Build the task's loaders (reads, decodes and checks the data as training would) and print the report."""
    from ..config import load_config
    from ..run import get_task
    from ..tasks.ingest import format_report

    task = get_task(load_config(args.config, args.overrides))
    report = task.data_report()
    print(json.dumps(report, indent=1) if args.json else format_report(report))
