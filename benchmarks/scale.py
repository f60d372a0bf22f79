"""The data path at scale (issue 28): time to the first step and peak memory, streaming against torchvision.

Three measurements, each on generated ImageFolders (``benchmarks/make_folder.py``):

- ``runs``: ``featdistill train benchmarks/configs/scale.yaml --set train.max_steps=1`` (or with
  ``--command data``, ``featdistill data``: the ingest alone, no model) per folder and
  ``data.in_memory`` setting, in a fresh process under ``/usr/bin/time -v``: seconds until the ingest report is
  printed (data ready: the step follows), seconds until the progress bar shows the first step done, seconds to the end of the 1-step run (step, evaluation of the 1,000
  test images, checkpoint), peak RSS of the run, and the report's memory line or the one-line error.
- ``stream``: training img/s of the streaming loader (``streaming_loader``) against
  ``torchvision.datasets.ImageFolder`` + ``DataLoader`` with the same workers, batch, size and augmentation
  (pad crop by size // 8, flip, normalisation), interleaved in one process.
- ``listing``: seconds to list a tree (``scan_imagefolder``) and to inspect 1,000 images (``inspect_samples``).

Run: ``python benchmarks/scale.py runs /tmp/scale/f20k_128 --settings auto`` (see ``--help``); the commands
of the results table are in ``benchmarks/results/scale.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "benchmarks" / "configs" / "scale.yaml"


def _run(root: str, setting: str, extra: list[str], command_name: str) -> dict:
    """One 1-step training run (or ``featdistill data``: the data path alone) in a fresh process: timings,
    peak RSS, the memory line or the error."""
    steps = ["--set", "train.max_steps=1", "--overwrite"] if command_name == "train" else []
    command = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "featdistill",
        command_name,
        str(CONFIG),
        "--set",
        f"data.root={root}",
        "--set",
        f"data.in_memory={setting}",
        *steps,
        *extra,
    ]
    start = time.perf_counter()
    env = os.environ | {"PYTHONUNBUFFERED": "1"}  # the progress bar reaches us as it is drawn
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ready, memory_line = None, ""
    first_step: list[float] = []
    chunks: list[str] = []

    def read_stderr() -> None:  # the progress bar's "1/N" is the first step done (tqdm writes \r, not lines)
        assert process.stderr is not None
        while chunk := process.stderr.read(256):
            chunks.append(chunk)
            if not first_step and re.search(r"\b1/\d+ \[", "".join(chunks[-2:])):
                first_step.append(time.perf_counter() - start)

    reader = threading.Thread(target=read_stderr)
    reader.start()
    assert process.stdout is not None
    for line in process.stdout:
        if "(data.in_memory:" in line:
            ready, memory_line = time.perf_counter() - start, line.strip()
    process.wait()
    reader.join()
    end = time.perf_counter() - start
    err = "".join(chunks)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", err))
    errors = [line for line in err.splitlines() if line.startswith("featdistill: error")]
    return {
        "command": command_name,
        "root": root,
        "setting": setting,
        "code": process.returncode,
        "ready_s": ready,
        "first_step_s": first_step[0] if first_step else None,
        "end_s": end,
        "peak_rss_gb": int(rss.group(1)) * 1024 / 1e9 if rss else None,
        "cpu_s": cpu,  # user + system seconds of the run and its reaped children (less load-dependent)
        "memory_line": memory_line,
        "error": errors[0] if errors else "",
        "decode_bar": "decoding train:" in err and "img/s" in err,
    }


def runs(args: argparse.Namespace) -> None:
    for repeat in range(args.repeats):
        for setting in args.settings:
            result = _run(args.root, setting, args.set, args.command)
            print(json.dumps({"repeat": repeat, **result}), flush=True)


def stream(args: argparse.Namespace) -> None:
    import torch
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms

    from featdistill.tasks.classification.streaming import streaming_loader

    torch.set_num_threads(1)  # as in DataLoader workers; the main process decodes at workers=0

    def rate(loader: object) -> float:
        iterator = iter(loader)  # type: ignore[call-overload]
        next(iterator)  # workers started and warm
        start, images = time.perf_counter(), 0
        for _ in range(args.batches):
            images += len(next(iterator)[1])
        return images / (time.perf_counter() - start)

    for workers in args.workers:
        ours = streaming_loader(
            args.root, "train", train=True, batch_size=args.batch, image_size=args.size, workers=workers
        )
        mean, std = ours.dataset.mean, ours.dataset.std
        transform = transforms.Compose(
            [
                transforms.Resize((args.size, args.size)),
                transforms.RandomCrop(args.size, padding=args.size // 8),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ]
        )
        folder = torchvision.datasets.ImageFolder(f"{args.root}/train", transform=transform)
        theirs = DataLoader(folder, batch_size=args.batch, shuffle=True, num_workers=workers, drop_last=True)
        measured: dict[str, list[float]] = {"featdistill": [], "torchvision": []}
        for _ in range(args.repeats):  # interleaved: the machine's load affects both alike
            measured["featdistill"].append(rate(ours))
            measured["torchvision"].append(rate(theirs))
        ratios = [a / b for a, b in zip(measured["featdistill"], measured["torchvision"])]
        print(json.dumps({"workers": workers, **measured, "ratios": ratios}), flush=True)
        summary = {k: f"{statistics.mean(v):.0f} ± {statistics.stdev(v):.0f}" for k, v in measured.items()}
        print(f"workers {workers}: {summary}, ratio {statistics.mean(ratios):.2f}", file=sys.stderr)


def listing(args: argparse.Namespace) -> None:
    from featdistill.tasks.classification.data import scan_imagefolder, select_balanced
    from featdistill.tasks.classification.streaming import inspect_samples
    from featdistill.tasks.ingest import SplitStats

    for _ in range(args.repeats):
        start = time.perf_counter()
        _, files = scan_imagefolder(Path(args.root) / "train")
        listed = time.perf_counter() - start
        samples = select_balanced(files, None)
        start = time.perf_counter()
        inspect_samples(samples, 8, "raise", SplitStats("train", args.root))
        inspected = time.perf_counter() - start
        print(json.dumps({"files": len(samples), "list_s": listed, "inspect_s": inspected}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("runs")
    one.add_argument("root")
    one.add_argument("--settings", nargs="+", default=["auto", "true", "false"])
    one.add_argument("--repeats", type=int, default=1)
    one.add_argument("--command", choices=["train", "data"], default="train")
    one.add_argument("--set", nargs="*", default=[], help="more --set items for featdistill train")
    two = sub.add_parser("stream")
    two.add_argument("root")
    two.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    two.add_argument("--size", type=int, default=128)
    two.add_argument("--batch", type=int, default=64)
    two.add_argument("--batches", type=int, default=20)
    two.add_argument("--repeats", type=int, default=3)
    three = sub.add_parser("listing")
    three.add_argument("root")
    three.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.what == "runs" and args.set:
        args.set = [item for pair in (("--set", s) for s in args.set) for item in pair]
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    {"runs": runs, "stream": stream, "listing": listing}[args.what](args)


if __name__ == "__main__":
    main()
