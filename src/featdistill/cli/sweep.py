"""``featdistill sweep``: the grid of variants, trained in lockstep and chosen on the holdout split."""

from __future__ import annotations

import argparse

from .arguments import add_command, add_config_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``sweep`` on the CLI's subparsers."""
    sweep = add_command(
        sub,
        "sweep",
        "Train a grid of variants and choose the best on a holdout split of the training data.",
        "my.yaml --grid distill.alpha=auto,1e-3,1e-2 --grid train.lr=0.05,0.1 --refit",
        "Variants that share data and teacher train in lockstep: one batch and one teacher forward per step "
        "for all of them. Each is scored on data.holdout (a share of the training images; 0.1 when unset), "
        "never on the test split. Writes sweep.md, sweep.json, sweep.png and best.yaml to output.dir.",
    )
    add_config_args(sweep)
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values of one config key to try (repeatable: the Cartesian product is swept)",
    )
    sweep.add_argument(
        "--refit", action="store_true", help="train the best variant on all training data, then test"
    )
    sweep.add_argument(
        "--refit-seeds",
        metavar="S1,S2,...",
        help="refit the best variant once per seed and report the test mean, std and 95%% interval",
    )
    sweep.add_argument("--resume", choices=["auto"], help="continue a killed sweep in the same output.dir")
    sweep.add_argument(
        "--shard", default="0/1", metavar="I/N", help="run only variants I, I+N, ... (0-based)"
    )


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ..config import parse_config
    from ..engine.run_lock import run_lock
    from ..sweep import Shard, run_sweep
    from ..sweep.runner import load_tree

    shard = Shard.parse(args.shard)
    out_dir = Path(parse_config(load_tree(args.config, args.overrides)).output.dir)
    # One process per sweep folder, or per shard of it: shards own disjoint variants, so they may share it.
    with run_lock(out_dir if shard.count == 1 else out_dir / f".shard-{shard.index}-of-{shard.count}"):
        run_sweep(
            args.config,
            args.grid,
            args.overrides,
            refit=args.refit,
            refit_seeds=_seeds(args.refit_seeds),
            resume=args.resume == "auto",
            shard=shard,
        )


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"--refit-seeds expects integers separated by commas, e.g. 0,1,2, got {text!r}"
        ) from None
