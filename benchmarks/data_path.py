"""Time the in-memory tensor data path against a CPU training step (issue target: data <= 5% of a step).

Measures, on synthetic 32x32 uint8 images (timings do not depend on pixel values):
  (a) augmentation of one batch: random crop (pad 4) + flip + normalisation of a uint8 batch, alone and as
      a full ``TensorBatchLoader`` step (gather of the batch's images from the dataset included);
  (b) one ResNet-20 training step (forward, cross-entropy, backward, SGD) on the same batch size.
Prints the medians and writes a Markdown report. Run: ``python benchmarks/data_path.py`` (< 1 minute).

With ``--ingest ROOT`` (an ImageFolder such as ``../shared/data/cifar10``) it measures instead, and writes
below a marker in the same report (the section above is kept):
  (c) the cold in-memory decode of ``ROOT/train`` (``load_tensors``, no array cache, a fresh process each
      time), alternating the code of ``--before-src`` (an earlier ``src`` folder, e.g. from
      ``git archive <commit> src``) and this checkout's, and the pixel sum each returns;
  (d) the streaming path's (``data.in_memory: false``) training img/s at 32 and 224 px.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from featdistill.tasks.classification.augment import normalize, random_crop_flip
from featdistill.tasks.classification.data import NORMALIZATION, TensorBatchLoader
from featdistill.tasks.classification.models import build_classifier
from machine import cpu_name
from runlog import mean_std

INGEST_MARKER = "<!-- ingest section: written by data_path.py --ingest -->"
_DECODE_ONCE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[3]))
from featdistill.tasks.classification.data import load_tensors
start = time.perf_counter()
images, labels, classes = load_tensors("imagefolder", sys.argv[2], "train")
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "images": len(labels), "pixel_sum": int(images.sum())}))
"""


def _interleaved_ms(fns: list[Callable[[], object]], repeats: list[int], rounds: int) -> list[list[float]]:
    """Time ``fns[k]`` ``repeats[k]`` times per round, in ms, after one untimed warm-up round.

    Rounds interleave the functions so that load from other processes on a shared machine affects all
    measurements alike.
    """
    times: list[list[float]] = [[] for _ in fns]
    for round_index in range(rounds + 1):
        for fn, count, out in zip(fns, repeats, times):
            for _ in range(count):
                start = time.perf_counter()
                fn()
                if round_index > 0:
                    out.append((time.perf_counter() - start) * 1e3)
    return times


def _decode_run(src: Path, root: Path, threads: int) -> dict:
    """One cold decode of ``root/train`` by the featdistill code in ``src``, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", _DECODE_ONCE, str(src.resolve()), str(root), str(threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _streaming_rate(root: Path, size: int, batches: int, batch_size: int, workers: int, seed: int) -> dict:
    """Training img/s of the streaming loader after its first batch (worker start-up excluded)."""
    from featdistill.tasks.classification.streaming import streaming_loader

    start = time.perf_counter()
    loader = streaming_loader(
        root, "train", train=True, batch_size=batch_size, image_size=size, workers=workers, seed=seed
    )
    built = time.perf_counter() - start
    iterator = loader.iterate()
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    return {"size": size, "build_s": built, "img_per_s": batches * batch_size / seconds}


def ingest(args: argparse.Namespace) -> None:
    """(c) cold decode before/after and (d) streaming img/s; append the section to the report."""
    root = args.ingest
    load = os.getloadavg()
    log_lines: list[str] = []

    def log(row: dict) -> None:
        log_lines.append(json.dumps(row))
        print(log_lines[-1], flush=True)

    here = Path(__file__).resolve().parents[1] / "src"
    decode: dict[str, list[dict]] = {"before": [], "after": []}
    for repeat in range(args.repeats):
        for name, src in (("before", args.before_src), ("after", here)):
            row = _decode_run(src, root, args.threads)
            decode[name].append(row)
            log({"part": "decode", "code": name, "repeat": repeat, **row})
    torch.set_num_threads(args.threads)
    stream: dict[int, list[dict]] = {32: [], 224: []}
    for repeat in range(args.repeats):
        for size in stream:
            row = _streaming_rate(root, size, args.stream_batches, args.batch_size, args.workers, args.seed)
            stream[size].append(row)
            log({"part": "streaming", "repeat": repeat, **row})
    load_after = os.getloadavg()
    command = (
        f"python benchmarks/data_path.py --ingest {args.ingest} --before-src {args.before_src} "
        f"--before-label '{args.before_label}' "
        f"--repeats {args.repeats} --threads {args.threads} --workers {args.workers} "
        f"--batch-size {args.batch_size} --stream-batches {args.stream_batches} --seed {args.seed}"
    )
    before, after = ([r["seconds"] for r in decode[k]] for k in ("before", "after"))
    sums = {k: {r["pixel_sum"] for r in rows} for k, rows in decode.items()}
    lines = [
        INGEST_MARKER,
        "",
        "## Ingest: cold decode of an ImageFolder and the streaming path",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs visible, torch threads = {args.threads}; "
        f"shared machine, 1/5/15-min load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} before and "
        f"{load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} after the run",
        f"- python {platform.python_version()}, torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, Pillow {_pillow_version()}",
        f"- data: `{args.ingest}/train` ({decode['after'][0]['images']} files), read from the OS page cache "
        "(the first pass warmed it); no featdistill array cache (`cache_dir` unset)",
        f"- command: `{command}`; seed {args.seed}; raw log: `benchmarks/results/data_path_ingest.log`",
        "",
        f'(c) cold in-memory decode (`load_tensors("imagefolder", root, "train")`, a fresh process each '
        f"time, before/after alternated), {args.repeats} runs each:",
        "",
        "| code | seconds (mean ± std) | images/s | pixel sum |",
        "|---|---:|---:|---:|",
        f"| before ({args.before_label or args.before_src}) | {mean_std(before)} | {decode['before'][0]['images'] / statistics.mean(before):.0f} "
        f"| {', '.join(map(str, sorted(sums['before'])))} |",
        f"| after (this checkout) | {mean_std(after)} | {decode['after'][0]['images'] / statistics.mean(after):.0f} "
        f"| {', '.join(map(str, sorted(sums['after'])))} |",
        "",
        f"(d) streaming training loader (`streaming_loader(..., train=True)`, batch {args.batch_size}, "
        f"{args.workers} workers, crop: pad with pad = size // 8, flip, normalise), img/s over "
        f"{args.stream_batches} batches after the first, {args.repeats} runs each:",
        "",
        "| image_size | img/s (mean ± std) | loader construction s (listing + 1000-image inspection) |",
        "|---:|---:|---:|",
    ]
    for size, rows in stream.items():
        lines.append(
            f"| {size} | {mean_std([r['img_per_s'] for r in rows])} | {mean_std([r['build_s'] for r in rows])} |"
        )
    report = args.out.read_text() if args.out.exists() else ""
    report = report.split(INGEST_MARKER)[0].rstrip() + "\n\n" + "\n".join(lines) + "\n"
    args.out.write_text(report)
    args.out.with_name("data_path_ingest.log").write_text("\n".join(log_lines) + "\n")
    print("\n".join(lines))


def _pillow_version() -> str:
    import PIL

    return PIL.__version__


def main() -> None:
    """Run the measurements, print them and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--aug-per-step", type=int, default=10, help="augmentation timings per train step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "data_path.md")
    parser.add_argument("--ingest", type=Path, help="measure decoding and streaming on this ImageFolder")
    parser.add_argument("--before-src", type=Path, help="with --ingest: the src folder of the earlier code")
    parser.add_argument("--before-label", default="", help="with --ingest: what --before-src holds")
    parser.add_argument("--repeats", type=int, default=3, help="with --ingest: runs per measurement")
    parser.add_argument("--workers", type=int, default=2, help="with --ingest: streaming DataLoader workers")
    parser.add_argument("--stream-batches", type=int, default=30, help="with --ingest: batches timed")
    args = parser.parse_args()
    if args.ingest is not None:
        if args.before_src is None:
            parser.error("--ingest needs --before-src")
        ingest(args)
        return

    load = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    mean, std = NORMALIZATION["cifar10"]
    dataset = torch.randint(0, 256, (50 * args.batch_size, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (dataset.shape[0],))
    batch = dataset[: args.batch_size]
    generator = torch.Generator().manual_seed(args.seed)

    loader = TensorBatchLoader(
        dataset, labels, args.batch_size, shuffle=True, augment=True, mean=mean, std=std, seed=args.seed
    )
    batches = iter(())

    def augment_batch() -> object:
        return normalize(random_crop_flip(batch, 4, generator), mean, std)

    def next_batch() -> object:
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:
            batches = loader.iterate()
            return next(batches)

    model = build_classifier("resnet20", num_classes=10).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    images, targets = next(loader.iterate())

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(model(images), targets).backward()
        optimizer.step()

    augment, loader_step, train = _interleaved_ms(
        [augment_batch, next_batch, train_step], [args.aug_per_step, args.aug_per_step, 1], args.train_steps
    )

    rows = [
        ("(a) crop+flip+normalise of a batch", augment),
        ("(a') TensorBatchLoader step (gather + crop + flip + normalise)", loader_step),
        ("(b) resnet20 training step (fwd + bwd + SGD)", train),
    ]
    med = {name: statistics.median(t) for name, t in rows}
    ratio_aug = med[rows[0][0]] / med[rows[2][0]]
    ratio_loader = med[rows[1][0]] / med[rows[2][0]]
    lines = [
        "# Data path vs training step (CPU)",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs visible, torch threads = {args.threads} "
        f"(shared machine; 1-min load average before the run: {load:.2f})",
        f"- python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}",
        f"- command: `python benchmarks/data_path.py --batch-size {args.batch_size} --threads {args.threads} "
        f"--train-steps {args.train_steps} --aug-per-step {args.aug_per_step} --seed {args.seed}`",
        f"- data: synthetic uint8 3x32x32, batch {args.batch_size}, pad 4, flip p=0.5, CIFAR-10 mean/std; "
        f"seed {args.seed}",
        "- timings interleaved (each round: augmentation x n, loader x n, one train step) after a warm-up round",
        "",
        "| measurement | runs | median ms | std ms |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {len(t)} | {med[name]:.3f} | {statistics.stdev(t):.3f} |" for name, t in rows]
    lines += [
        "",
        f"- ratio augmentation / training step: {100 * ratio_aug:.2f}%",
        f"- ratio loader step / training step: {100 * ratio_loader:.2f}% (target <= 5%)",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept = args.out.read_text().split(INGEST_MARKER, 1) if args.out.exists() else []
    args.out.write_text(report + ("\n" + INGEST_MARKER + kept[1] if len(kept) == 2 else ""))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
