"""``featdistill sweep`` and ``featdistill compare``: grid variants trained in lockstep, chosen on the holdout
split (sweep) or trained once per seed and tested side by side (compare)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import add_command, add_config_args


def _add_grid_args(parser: argparse.ArgumentParser) -> None:
    """``CONFIG``, ``--set``, ``--grid``, ``--resume`` and ``--shard``: what both commands take."""
    add_config_args(parser)
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values of one config key to try (repeatable: the Cartesian product is run; compare: with the arms)",
    )
    parser.add_argument("--resume", choices=["auto"], help="continue a killed run in the same output.dir")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start anew where variant folders hold runs: each old one is moved to <folder>.old-<time>",
    )
    parser.add_argument(
        "--shard", default="0/1", metavar="I/N", help="run only variants I, I+N, ... (0-based)"
    )


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
    _add_grid_args(sweep)
    sweep.add_argument(
        "--refit", action="store_true", help="train the best variant on all training data, then test"
    )
    sweep.add_argument(
        "--refit-seeds",
        metavar="S1,S2,...",
        help="refit the best variant once per seed and report the test mean, std and 95%% interval",
    )


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``compare`` on the CLI's subparsers."""
    compare = add_command(
        sub,
        "compare",
        "Train every arm and grid variant with every seed on the whole training split and test each; no selection.",
        "my.yaml --grid distill.method=cwt,kd --grid model.teacher=null,resnet56 --seeds 0,1,2",
        "The arms are the config's compare.arms (named sets of keys, e.g. plain: {model.teacher: null}) crossed "
        "with --grid; the seeds --seeds, else compare.seeds. "
        "Variants that share data order and teacher train in lockstep, as in sweep. Writes compare.md (one row "
        "per variant: mean ± std over seeds, 95% interval, the difference and Welch's t against the first "
        "variant, seconds), compare.json and compare.png to output.dir, and one folder per variant and seed.",
    )
    _add_grid_args(compare)
    compare.add_argument(
        "--seeds", metavar="S1,S2,...", help="train.seed of each run (default: the config's train.seed)"
    )


def _locked(args: argparse.Namespace):
    """One process per output folder, or per shard of it (shards own disjoint variants, so they may share it)."""
    from ..config import load_config
    from ..engine.run_lock import run_lock
    from ..sweep import Shard

    shard = Shard.parse(args.shard)
    out_dir = Path(load_config(args.config, args.overrides).output.dir)
    return shard, run_lock(
        out_dir if shard.count == 1 else out_dir / f".shard-{shard.index}-of-{shard.count}"
    )


def run(args: argparse.Namespace) -> None:
    from ..sweep import run_sweep

    shard, lock = _locked(args)
    with lock:
        run_sweep(
            args.config,
            args.grid,
            args.overrides,
            refit=args.refit,
            refit_seeds=_seeds(args.refit_seeds, "--refit-seeds"),
            resume=args.resume == "auto",
            overwrite=args.overwrite,
            shard=shard,
        )


def run_compare(args: argparse.Namespace) -> None:
    from ..sweep import run_compare as compare

    shard, lock = _locked(args)
    with lock:
        compare(
            args.config,
            args.grid,
            args.overrides,
            seeds=_seeds(args.seeds, "--seeds"),
            resume=args.resume == "auto",
            overwrite=args.overwrite,
            shard=shard,
        )


def _seeds(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{option} expects integers separated by commas, e.g. 0,1,2, got {text!r}") from None
