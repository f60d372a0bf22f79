"""A benchmark's results file from a ``featdistill compare`` folder: machine, versions, commands, and one row per
arm (mean ± std of each chosen metric over seeds, Δ and Welch's t against the first arm, minutes per run), with
the teacher's own scores first.

    python benchmarks/compare_report.py runs/bench/camvid_cpu/compare --teacher runs/bench/camvid_cpu/teacher \
        --metrics miou,pixel_acc --title "CamVid, CPU tier" --command "bash benchmarks/camvid_cpu.sh" \
        --out benchmarks/results/camvid_cpu.md

Everything after a ``## Reading`` heading of an existing ``--out`` file is kept (the text written by hand after a
run), so re-running the report never loses it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

import torch
import yaml

from machine import cpu_name

READING = "## Reading"


def mean_std(values: list[float], scale: float) -> str:
    """``mean ± std`` times ``scale`` (std 0 for one value); empty for no value."""
    if not values:
        return ""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.2f} ± {scale * std:.2f}"


def arm_label(arm: dict[str, Any]) -> str:
    """The arm's name (or its grid values), and the keys a named arm sets."""
    values = arm["values"]
    name = ", ".join(str(v) if k == "arm" else f"{k}={v}" for k, v in values.items()) or "config"
    settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in arm.get("set", {}).items())
    return f"{name} ({settings})" if settings else name


def table(
    record: dict[str, Any], metrics: list[str], scale: float, teachers: dict[str, dict[str, Any]]
) -> list[str]:
    header = [
        "model",
        *(f"{m} mean ± std" for m in metrics),
        f"Δ {metrics[0]} vs first",
        "Welch t",
        "seeds",
        "min/run",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, teacher in teachers.items():
        scores = [f"{scale * teacher[m]:.2f}" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(scores) + " |  |  | 1 |  |")
    first: float | None = None
    for number, arm in enumerate(record["arms"]):
        done = [r for r in arm["runs"] if r["status"] == "done"]
        columns = [[r["metrics"][m] for r in done if m in r["metrics"]] for m in metrics]
        mean = statistics.mean(columns[0]) if columns[0] else None
        first = mean if number == 0 else first
        delta = "" if number == 0 or mean is None or first is None else f"{scale * (mean - first):+.2f}"
        welch = arm.get("welch_t")
        seconds = [r["seconds"] for r in done if r.get("seconds") is not None]
        cells = [
            arm_label(arm),
            *(mean_std(column, scale) for column in columns),
            delta,
            "" if number == 0 or welch is None or welch != welch else f"{welch:+.1f}",
            ",".join(str(r["seed"]) for r in done),
            f"{statistics.mean(seconds) / 60:.1f}" if seconds else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare", type=Path, help="the output.dir of a featdistill compare run")
    parser.add_argument(
        "--teacher",
        action="append",
        default=[],
        help="a teacher's run folder (its metrics.json is reported), as NAME=FOLDER to name its row; repeat it "
        "for several teachers",
    )
    parser.add_argument(
        "--metrics", required=True, help="metric keys, the first as compare's (e.g. miou,pixel_acc)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="factor to percent (100 for COCO AP)")
    parser.add_argument("--title", required=True)
    parser.add_argument(
        "--command", action="append", default=[], help="the command(s) that produced the runs"
    )
    parser.add_argument("--note", action="append", default=[], help="a protocol line for the header")
    parser.add_argument("--minutes", type=float, help="wall time of the whole benchmark")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    record = json.loads((args.compare / "compare.json").read_text())
    metrics = args.metrics.split(",")
    teachers = {}
    for given in args.teacher:
        name, _, folder = given.rpartition("=")
        teachers[f"teacher {name}".strip()] = json.loads((Path(folder) / "metrics.json").read_text())
    first_run = Path(record["arms"][0]["runs"][0]["dir"])
    cfg = yaml.safe_load((first_run / "config.yaml").read_text())
    versions = f"Python {platform.python_version()}, torch {torch.__version__}"
    try:
        import torchvision

        versions += f", torchvision {torchvision.__version__}"
    except ImportError:
        pass
    lines = [
        f"# {args.title}",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}; {versions}",
        *(f"- command: `{command}`" for command in args.command),
        f"- data: `{cfg['data']['root']}` (train split `{cfg['data']['train_split']}`, tested on "
        f"`{cfg['data']['val_split']}`); {cfg['train']['epochs']} epochs per student, batch {cfg['data']['batch_size']}",
        *(f"- {note}" for note in args.note),
        f"- compare: {record['metric']}, every arm trained on the whole training split once per seed, no selection"
        + (f"; wall time of the benchmark {args.minutes:.1f} min" if args.minutes else ""),
        "",
        *table(record, metrics, args.scale, teachers),
        "",
    ]
    kept = ""
    if args.out.is_file() and READING in args.out.read_text():
        kept = args.out.read_text()[args.out.read_text().index(READING) :]
    args.out.write_text("\n".join(lines) + ("\n" + kept if kept else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
