"""``featdistill data CONFIG.yaml``: what a config's data holds and what it leaves out, without training.

The same report is printed once at the start of ``train``, ``sweep`` and ``eval`` and written to the run
folder as ``data.json`` (:func:`featdistill.tasks.ingest.announce_data`).
"""

from __future__ import annotations

import argparse
import json

from .arguments import add_command, add_config_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``data`` subcommand's arguments."""
    data = add_command(
        sub,
        "data",
        "Print what the config's data holds and skips, without training.",
        "configs/classification/cifar10_cpu_cwt.yaml --json",
        "The same report is printed by train and sweep and written to data.json.",
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
