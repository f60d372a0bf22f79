"""Time the in-memory tensor data path against a CPU training step (issue target: data <= 5% of a step).

Measures, on synthetic 32x32 uint8 images (timings do not depend on pixel values):
  (a) augmentation of one batch: random crop (pad 4) + flip + normalisation of a uint8 batch, alone and as
      a full ``TensorBatchLoader`` step (gather of the batch's images from the dataset included);
  (b) one ResNet-20 training step (forward, cross-entropy, backward, SGD) on the same batch size.
Prints the medians and writes a Markdown report. Run: ``python benchmarks/data_path.py`` (< 1 minute).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
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


def main() -> None:
    """Run both measurements, print them and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--aug-per-step", type=int, default=10, help="augmentation timings per train step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "data_path.md")
    args = parser.parse_args()

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
    args.out.write_text(report)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
