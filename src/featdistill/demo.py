"""``featdistill demo``: teacher, plain student and CWT student, trained here, compared in a table and a plot.

The teacher trains alone; the two students are the arms of one ``featdistill compare`` run, so the demo's table
is what ``compare`` measures (its ``compare.md`` is written beside the demo's own files).

With no arguments the data is generated (deterministic, no files, no network) and the whole demo takes a
few minutes on two CPU cores; ``--data`` runs the same three trainings on a real dataset.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from .atomic import staged, write_text_atomic
from .config import parse_config
from .engine.run_folder import RunExistsError, holds_run, move_aside
from .run import build_trainer
from .sweep.compare import run_compare

TEACHER, STUDENT = "resnet20", "resnet8"
CWT_ALPHA = 1e-3  # CWT's α for the last stage of CIFAR-size ResNets (64x8x8 features)


def _base_config(out: Path, data: str | None, dataset: str | None, epochs: int) -> dict[str, Any]:
    if data is None:
        data_cfg = {"name": "synthetic", "root": "(generated)", "limit": 4000, "val_limit": 2000}
    else:
        data_cfg = {"name": dataset or "imagefolder", "root": data, "limit": 5000, "val_limit": 2000}
    return {
        "task": "classification",
        "device": "cpu",
        "data": {**data_cfg, "batch_size": 64, "eval_batch_size": 500},
        "model": {"num_classes": 10},
        "train": {"epochs": epochs, "lr": 0.05, "weight_decay": 5e-4, "schedule": "cosine", "log_every": 10},
        "output": {"dir": str(out), "tensorboard": False},
    }


def _teacher(tree: dict[str, Any], out: Path) -> dict[str, Any]:
    """The teacher, trained alone first (it is no arm of the comparison: another model)."""
    cfg = parse_config(
        {
            **tree,
            "model": {**tree["model"], "student": TEACHER},
            "output": {**tree["output"], "dir": str(out / "teacher")},
        }
    )
    print(f"\n== teacher: {TEACHER}")
    start = time.perf_counter()
    metrics = build_trainer(cfg).fit()
    return {
        "name": "teacher",
        "model": TEACHER,
        "top1": metrics["top1"],
        "seconds": time.perf_counter() - start,
        "dir": out / "teacher",
    }


def _students(tree: dict[str, Any], out: Path, teacher: Path) -> list[dict[str, Any]]:
    """The plain and the CWT student: the two arms of one ``featdistill compare`` run (seed 0)."""
    model = {**tree["model"], "student": STUDENT, "teacher": TEACHER, "teacher_weights": str(teacher)}
    arms = {"student": {"model.teacher": None, "model.teacher_weights": None}, "student+cwt": {}}
    cfg = parse_config(
        {
            **tree,
            "model": model,
            "distill": {"method": "cwt", "alpha": CWT_ALPHA},
            "compare": {"seeds": [0], "arms": arms},
        }
    )
    print(f"\n== students: {STUDENT} alone and {STUDENT} <- {TEACHER} (CWT), by featdistill compare")
    record = run_compare(cfg)
    return [
        {
            "name": arm["values"]["arm"],
            "model": STUDENT,
            "top1": run["metric"],
            "seconds": run["seconds"],
            "dir": Path(run["dir"]),
        }
        for arm in record["arms"]
        for run in arm["runs"]
    ]


def _curves(run_dir: Path) -> tuple[list[int], list[float]]:
    steps, acc = [], []
    with open(run_dir / "log.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val/top1"):
                steps.append(int(float(row["step"])))
                acc.append(float(row["val/top1"]))
    return steps, acc


def _plot(results: list[dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot; pip install 'featdistill[plot]')")
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot(*_curves(r["dir"]), marker="o", label=r["name"])
    ax.set_xlabel("training step")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("featdistill demo")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with staged(path) as target:  # a failed write leaves the previous plot
        fig.savefig(target, dpi=100)
    plt.close(fig)
    return path


def run_demo(
    out_dir: str | Path = "runs/demo",
    data: str | None = None,
    dataset: str | None = None,
    epochs: int | None = None,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Train teacher, plain student and CWT student; print the table; write ``curves.png`` and ``results.json``.

    An ``out_dir`` that holds an earlier demo is refused, or with ``overwrite`` moved to ``<out_dir>.old-<time>``.
    """
    out = Path(out_dir)
    if out.is_dir() and any(holds_run(p) for p in out.iterdir() if p.is_dir()):
        if not overwrite:
            raise RunExistsError(
                f"{out} holds an earlier demo; write this one elsewhere with --out, or run it again with "
                f"--overwrite (the earlier one is moved to {out.name}.old-<date-time> beside it)"
            )
        print(f"featdistill demo: moved the earlier demo in {out} to {move_aside(out)}")
    epochs = epochs or 3
    if data is None:
        print(
            "featdistill demo: data are GENERATED (deterministic synthetic 32x32 images, 10 classes); "
            "no files or network are used. Pass --data PATH to run on a real dataset."
        )
    tree = _base_config(out, data, dataset, epochs)
    teacher = _teacher(tree, out)
    results = [teacher, *_students(tree, out, teacher["dir"] / "last.pt")]
    rows = [
        f"| {r['name']:<12} | {r['model']:<9} | {r['top1']:6.2f} | {r['seconds']:6.1f} |" for r in results
    ]
    table = "\n".join(["| run          | model     | top-1  | time s |", "|---|---|---|---|", *rows])
    print("\n" + table)
    plot = _plot(results, out / "curves.png")
    write_text_atomic(
        json.dumps(
            [{k: str(v) if isinstance(v, Path) else v for k, v in r.items()} for r in results], indent=2
        ),
        out / "results.json",
    )
    write_text_atomic(table + "\n", out / "results.md")
    print(f"\nwrote {out / 'results.md'}" + (f" and {plot}" if plot else ""))
    return results
