"""What a K=5 alpha sweep in lockstep costs against the same 5 runs one after another, with the product's commands.

For each setting (CIFAR-10 CPU tier, CamVid CPU tier), in one invocation:
  - lockstep: ``featdistill sweep CONFIG --grid distill.alpha=a1,...,a5`` (one process, one teacher forward a step);
  - separate: five ``featdistill sweep CONFIG --grid distill.alpha=ai`` one after another (one variant each);
  - one run: the first of those five;
  - A (the student's distillation step given the teacher features) and B (the teacher forward, stopped after
    its tapped layer), timed in this process on batches of the same loader, alternating, median of rounds.
Goal: lockstep / separate <= 1.1 x (B + 5A) / (5 (A + B)), the ratio if only the teacher forward were saved.

Run: ``python benchmarks/sweep_cost.py`` (writes ``benchmarks/results/sweep_cost.md``; the raw log is what it
prints). CIFAR-10 uses the CPU-tier teacher; CamVid a randomly initialised one (the weights change no step time).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from featdistill.config import load_config
from featdistill.run import build_trainer
from machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
ALPHAS = ["1e-4", "3e-4", "1e-3", "3e-3", "1e-2"]


def settings(data: str) -> dict[str, tuple[str, list[str]]]:
    return {
        "CIFAR-10 (resnet20 -> resnet8, layer3)": (
            "configs/classification/cifar10_cpu_cwt.yaml",
            [f"data.root={data}/cifar10", "train.epochs=1", "train.eval_every=1", "data.holdout=500"],
        ),
        "CamVid (PSPNet-R18 -> PSPNet-R18, layer4)": (
            "configs/segmentation/camvid_cpu_cwt.yaml",
            [
                f"data.root={data}/camvid",
                "model.teacher_weights=null",  # a timing: the teacher's weights change no step time
                "train.epochs=1",
                "train.eval_every=1",
                "data.holdout=37",
            ],
        ),
    }


def timed(command: list[str]) -> float:
    print("$ " + shlex.join(["python", *command[1:]]), flush=True)  # no path of this machine in the log
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def step_times(config: str, overrides: list[str], rounds: int) -> tuple[float, float]:
    """Median seconds of A (student step on given teacher features) and B (teacher forward)."""
    trainer = build_trainer(
        load_config(REPO / config, [*overrides, "output.dir=/tmp/featdistill-sweep-cost/ab"])
    )
    trainer.start_epoch()
    core = trainer.core
    batches = list(itertools.islice(trainer.train_loader.iterate(0), 3))
    a, b = [], []
    for batch in itertools.islice(itertools.cycle(batches), rounds):
        args, kwargs = trainer.prepare(batch)
        start = time.perf_counter()
        features = core.teacher_features(*args, **kwargs)
        b.append(time.perf_counter() - start)
        start = time.perf_counter()
        trainer.train_step(batch, features)
        a.append(time.perf_counter() - start)
    return statistics.median(a[2:]), statistics.median(b[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="/tmp/featdistill-sweep-cost")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "sweep_cost.md"))
    args = parser.parse_args()
    cli = [sys.executable, "-m", "featdistill", "sweep"]
    rows = []
    start_all = time.perf_counter()
    for name, (config, overrides) in settings(args.data).items():
        out = Path(args.out) / config.split("/")[-1].removesuffix(".yaml")
        common = [config, *(x for o in [*overrides, "output.progress=false"] for x in ("--set", o))]
        a, b = step_times(config, overrides, args.rounds)
        print(f"{name}: A {a:.4f} s, B {b:.4f} s", flush=True)
        lockstep = timed(
            [
                *cli,
                *common,
                "--set",
                f"output.dir={out}/lockstep",
                "--grid",
                f"distill.alpha={','.join(ALPHAS)}",
            ]
        )
        separate = [
            timed(
                [*cli, *common, "--set", f"output.dir={out}/separate{i}", "--grid", f"distill.alpha={alpha}"]
            )
            for i, alpha in enumerate(ALPHAS)
        ]
        bound = (b + 5 * a) / (5 * (a + b))
        ratio = lockstep / sum(separate)
        rows.append((name, lockstep, sum(separate), separate[0], a, b, ratio, bound))
        print(
            f"{name}: lockstep {lockstep:.1f} s, separate {sum(separate):.1f} s, ratio {ratio:.3f}, goal <= {1.1 * bound:.3f}",
            flush=True,
        )
    minutes = (time.perf_counter() - start_all) / 60
    lines = [
        "# Cost of a K=5 alpha sweep: lockstep against separate runs (CPU tier)",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}; 1-min load average at the end: "
        f"{os.getloadavg()[0]:.1f}",
        f"- command: `python benchmarks/sweep_cost.py --data {args.data}` (one invocation, {minutes:.1f} min; "
        "raw log: `sweep_cost.log`)",
        f"- alphas: {', '.join(ALPHAS)}; one epoch each, scored on the holdout split; seed 0; each wall time is a "
        "whole `featdistill sweep` process (start-up, data decoding, training, holdout evaluation)",
        f"- A, B: median of {args.rounds - 2} alternating rounds after 2 warm-up rounds, on the runs' own batches",
        "",
        "| setting | lockstep (s) | 5 separate (s) | one run (s) | A (s) | B (s) | lockstep / separate | goal ≤ 1.1·(B+5A)/(5(A+B)) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, lockstep, separate, one, a, b, ratio, bound in rows:
        verdict = "met" if ratio <= 1.1 * bound else "NOT met"
        lines.append(
            f"| {name} | {lockstep:.1f} | {separate:.1f} | {one:.1f} | {a:.4f} | {b:.4f} | {ratio:.3f} | "
            f"{1.1 * bound:.3f} ({verdict}) |"
        )
    Path(args.results).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
