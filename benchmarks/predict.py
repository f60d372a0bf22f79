"""Issue 18, point 5: ``eval`` reads nothing of the training split, and ``predict`` throughput on CPU.

Runs the product's own commands (``python -m featdistill ...``, a fresh process each, as a user would):

1. Trains a CIFAR-10 student for one short epoch (``data.limit``), then times ``featdistill eval --checkpoint
   last.pt`` with the full 50,000-image training split beside the test split and with a 5,000-image one (a
   folder of symlinks, 500 per class, in the scratch folder), alternated, ``--repeats`` times each. Eval
   should take the same time (and give the same metric as training reported) whatever the training split.
2. Exports the student to ``.pt2`` and ONNX and times ``featdistill predict`` on the CIFAR-10 test split
   for the eager student (``last.pt``), the ``.pt2`` program and the ONNX file (onnxruntime), ``--repeats``
   times each; the img/s are predict's own (decode + preprocessing + model + CSV, start-up excluded), and
   each run's top-1 (the images sit in class folders) must equal eval's.
3. Once on real data for the other tasks: a PSPNet-R18 student on CamVid and a Faster R-CNN R18 student on
   coco128, each trained a few steps, then ``eval`` and ``predict`` on the same split, and predict's files
   (label PNGs; COCO results JSON) scored against the ground truth (:mod:`featdistill.predict.score`).

    python benchmarks/predict.py --repeats 3 > benchmarks/results/predict.log

writes ``benchmarks/results/predict.md``. Nothing is read from the network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import onnxruntime
import torch

from featdistill.predict.score import score_predictions
from featdistill.tasks.segmentation.data import build_dataset
from machine import cpu_name
from runlog import mean_std

REPO = Path(__file__).resolve().parents[1]
SCRATCH = {"$WORK": "/tmp/featdistill_predict_bench"}  # the scratch folder (--work), logged as $WORK


def featdistill(*args: str | Path) -> tuple[float, dict]:
    """Run ``python -m featdistill ARGS`` from the repository root; (wall seconds, its last line as JSON, or {})."""
    command = [sys.executable, "-m", "featdistill", *map(str, args)]
    print("$ featdistill " + " ".join(map(str, args)).replace(SCRATCH["$WORK"], "$WORK"), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"featdistill {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    last = (done.stdout.strip().splitlines() or [""])[-1]
    print(f"  {seconds:.2f} s: {last}".replace(SCRATCH["$WORK"], "$WORK"), flush=True)
    return seconds, json.loads(last) if last.startswith("{") else {}


def sets(*overrides: str) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def small_cifar(source: Path, target: Path, per_class: int) -> Path:
    """``target/train/<class>/`` = symlinks to the first ``per_class`` images of each class; ``test`` linked."""
    if target.exists():
        shutil.rmtree(target)
    for folder in sorted((source / "train").iterdir()):
        (target / "train" / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:per_class]:
            (target / "train" / folder.name / image.name).symlink_to(image.resolve())
    (target / "test").symlink_to((source / "test").resolve())
    return target


def classification(args: argparse.Namespace, work: Path, lines: list[str]) -> None:
    run = work / "cifar"
    config = "configs/classification/cifar10_cpu_teacher.yaml"
    common = [f"data.root={args.cifar}", "data.eval_batch_size=500", "output.progress=false"]
    train = sets(*common, "data.limit=1000", "train.epochs=1", "train.eval_every=1", f"output.dir={run}")
    featdistill("train", config, *train)
    trained = json.loads((run / "metrics.json").read_text())
    roots = {"50,000": Path(args.cifar), "5,000": small_cifar(Path(args.cifar), work / "cifar10_5k", 500)}
    times: dict[str, list[float]] = {name: [] for name in roots}
    metrics: dict[str, set[float]] = {name: set() for name in roots}
    for _ in range(args.repeats):
        for name, root in roots.items():
            seconds, result = featdistill("eval", "--checkpoint", run / "last.pt", *sets(f"data.root={root}"))
            times[name].append(seconds)
            metrics[name].add(round(result["top1"], 4))
    lines += [
        "## 1. `eval` does not read the training split",
        "",
        f"Student: `{config}` (resnet20) trained one epoch on 1,000 images (`data.limit=1000`), seed 0; its "
        f"training run reported top-1 {trained['top1']:.2f}% on the 10,000 test images.",
        "Then `featdistill eval --checkpoint last.pt --set data.root=ROOT`, alternating the two roots, "
        f"{args.repeats} times each (wall time of the whole command, a fresh process each):",
        "",
        "| training split beside the test split | eval seconds (mean ± std) | each run, in order | top-1 % (every run) |",
        "|---|---:|---:|---:|",
    ]
    for name in roots:
        values = ", ".join(f"{v:.2f}" for v in sorted(metrics[name]))
        each = ", ".join(f"{v:.1f}" for v in times[name])
        lines.append(f"| {name} images | {mean_std(times[name])} | {each} | {values} |")
    lines += [
        "",
        "The 5,000-image root is a scratch folder of symlinks to the first 500 images of each class.",
        "",
    ]

    onnx, pt2 = work / "student.onnx", work / "student.pt2"
    featdistill("export", "--checkpoint", run / "last.pt", "--output", pt2)
    featdistill("export", "--checkpoint", run / "last.pt", "--format", "onnx", "--output", onnx)
    test = Path(args.cifar) / "test"
    models = {"eager (`last.pt`)": run / "last.pt", "torch.export (`.pt2`)": pt2, "ONNX (onnxruntime)": onnx}
    lines += [
        "## 2. `predict` throughput on CPU, CIFAR-10 test split (10,000 images)",
        "",
        f"`featdistill predict MODEL {args.cifar}/test --batch-size {args.batch_size} --device cpu "
        f"--no-progress --output predictions.csv`, {args.repeats} runs per model, interleaved. img/s as "
        "predict reports it (decode + preprocessing + model + CSV; process start-up and model loading excluded).",
        "",
        "| model | img/s (mean ± std) | top-1 % of the CSV vs folder names (every run) |",
        "|---|---:|---:|",
    ]
    rates: dict[str, list[float]] = {name: [] for name in models}
    top1: dict[str, set[float]] = {name: set() for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            out = work / "predictions.csv"
            predict = ["--batch-size", args.batch_size, "--device", "cpu", "--no-progress", "--output", out]
            _, report = featdistill("predict", model, test, *predict)
            rates[name].append(report["images_per_s"])
            top1[name].add(round(report["top1"], 4))
    for name in models:
        lines.append(
            f"| {name} | {mean_std(rates[name])} | {', '.join(f'{v:.2f}' for v in sorted(top1[name]))} |"
        )
    lines.append("")


def train_eval_predict(config: str, run: Path, images: Path, out: Path, *overrides: str) -> dict:
    """Train ``config`` briefly into ``run``, ``eval`` its ``last.pt`` alone, ``predict`` on ``images``; eval's metrics."""
    featdistill("train", config, *sets(*overrides, "output.progress=false", f"output.dir={run}"))
    _, evaluated = featdistill("eval", "--checkpoint", run / "last.pt")
    featdistill("predict", run / "last.pt", images, "--output", out, "--device", "cpu", "--no-progress")
    return evaluated


def comparison(evaluated: dict, scored: dict, keys: tuple[str, ...], what: str) -> list[str]:
    """A table of eval's metrics beside those of predict's files."""
    rows = [f"| {key} | {evaluated[key]:.4f} | {scored[key]:.4f} |" for key in keys]
    return ["", f"| metric | eval | {what} |", "|---|---:|---:|", *rows, ""]


def segmentation(args: argparse.Namespace, work: Path, lines: list[str]) -> None:
    config, out, images = (
        "configs/segmentation/camvid_cpu_student.yaml",
        work / "camvid_out",
        Path(args.camvid) / "val",
    )
    settings = (f"data.root={args.camvid}", "data.val_split=val", "data.limit=16", "train.epochs=1")
    evaluated = train_eval_predict(config, work / "camvid", images, out, *settings, "train.eval_every=1")
    scored = score_predictions(
        "segmentation", out, build_dataset("camvid", args.camvid, "val"), images_root=images
    )
    lines += [
        "## 3a. Segmentation on CamVid: predict's label PNGs scored against the ground truth",
        "",
        f"`{config}` (PSPNet-R18) trained one epoch on 16 images (`{' '.join(settings[1:])}`), then `eval "
        f"--checkpoint last.pt` and `predict last.pt {args.camvid}/val`, whose label PNGs are scored against "
        "`valannot/` (`featdistill.predict.score.score_predictions`), 101 images:",
        *comparison(evaluated, scored, ("miou", "pixel_acc", "mean_acc"), "predict's PNGs"),
    ]


def detection(args: argparse.Namespace, work: Path, lines: list[str]) -> None:
    config, out, images = (
        "configs/detection/coco128_cpu_faster_rcnn_cwt.yaml",
        work / "coco128.json",
        Path(args.coco128) / "images",
    )
    settings = (f"data.root={args.coco128}", "model.teacher=null", "model.teacher_weights=null")
    settings += ("data.limit=16", "data.val_limit=null", "train.epochs=2", "train.eval_every=2")
    evaluated = train_eval_predict(config, work / "coco128", images, out, *settings)
    scored = score_predictions("detection", out, Path(args.coco128) / "annotations" / "instances.json")
    lines += [
        "## 3b. Detection on coco128: predict's COCO results JSON scored against the annotations",
        "",
        f"`{config}` without its teacher (Faster R-CNN R18 at 128 px) trained two epochs on 16 images "
        f"(`{' '.join(settings[1:])}`), then `eval --checkpoint last.pt` and `predict last.pt "
        f"{args.coco128}/images` on all 128 images, whose JSON is scored by pycocotools "
        "(`featdistill.predict.score.score_predictions`):",
        *comparison(evaluated, scored, ("bbox/AP", "bbox/AP50", "bbox/AP75", "bbox/AR100"), "predict's JSON"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar", default="../shared/data/cifar10")
    parser.add_argument("--camvid", default="../shared/data/camvid")
    parser.add_argument("--coco128", default="../shared/data/coco128")
    parser.add_argument(
        "--work", default=SCRATCH["$WORK"], help="scratch folder (deleted first; logged as $WORK)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads of every command (OMP_NUM_THREADS)"
    )
    parser.add_argument("--only", choices=["classification", "segmentation", "detection"], action="append")
    parser.add_argument("--report", default="benchmarks/results/predict.md")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    SCRATCH["$WORK"] = args.work
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load = os.getloadavg()
    lines = [
        "# `eval` without the training split, and `predict` throughput (issue 18)",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs visible, OMP_NUM_THREADS={args.threads}; "
        f"shared machine, 1/5/15-min load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} before the run",
        f"- python {platform.python_version()}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}",
        f"- command: `python benchmarks/predict.py {' '.join(sys.argv[1:])}`; raw log: `benchmarks/results/predict.log`",
        "- seeds: train.seed 0 (the configs' default); data by repository-relative paths; scratch files in `--work`",
        "",
    ]
    for part in args.only or ["classification", "segmentation", "detection"]:
        {"classification": classification, "segmentation": segmentation, "detection": detection}[part](
            args, work, lines
        )
    lines.append(f"1-min load average after the run: {os.getloadavg()[0]:.2f}.")
    Path(REPO / args.report).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
