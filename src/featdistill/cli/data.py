"""``featdistill data CONFIG.yaml``: what a config's data holds and what it leaves out, without training.

The same report is printed once at the start of ``train``, ``sweep`` and ``eval`` and written to the run
folder as ``data.json`` (:func:`featdistill.tasks.ingest.announce_data`).
"""

from __future__ import annotations

import argparse
import json
import warnings

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
    """Build the task's loaders (reads, decodes and checks the data as training would) and print the report.

    Every file is read, whatever ``data.on_bad_file`` says, so that the report lists all the bad files
    (undecodable images, and a task's own: bad masks, bad labels) and those left out, not the first one alone;
    when the config says ``raise``, the report ends with one error line saying that training would stop at the
    first of them.
    """
    from ..config import load_config
    from ..run import get_task
    from ..tasks.ingest import SKIPPED_BAD, format_report

    cfg = load_config(args.config, args.overrides)
    stops = cfg.data.on_bad_file == "raise"
    task = get_task(cfg.with_overrides({"data.on_bad_file": "skip"}))
    with warnings.catch_warnings():  # each one is listed in the report instead
        warnings.filterwarnings("ignore", message="skipping undecodable image")
        report = task.data_report()
    bad = 0
    for split in report["splits"]:
        for reason in [r for r in split["skipped"] if r.endswith(SKIPPED_BAD)]:
            entry = split["skipped"].pop(reason)
            bad += entry["count"]
            what = reason.removesuffix(SKIPPED_BAD)
            split["skipped"][
                f"{what} (train stops at the first: data.on_bad_file: raise)" if stops else reason
            ] = entry
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    if stops and bad:
        raise ValueError(
            f"{bad} bad file(s), listed above: training stops at the first (data.on_bad_file: raise); "
            "delete or replace them, or set data.on_bad_file: skip"
        )
