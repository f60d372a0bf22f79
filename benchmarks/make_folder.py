"""Generate a large ImageFolder cheaply: a few distinct JPEGs, hard-linked many times.

``root/train/<class>/<n>.jpg`` (``--images`` files over ``--classes`` classes) and ``root/test`` (``--test``
files). Only ``--distinct`` files are encoded (smooth random colour fields, like photos rather than noise);
every other file is a hard link to one of them, so a 200,000-file tree takes seconds and little disk, and
decoding costs what it costs for real JPEGs of that size (the page cache holds the few distinct files).
Run: ``python benchmarks/make_folder.py /tmp/scale/f20k_128 --images 20000 --size 128``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image


def _distinct(folder: Path, count: int, size: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
        path = folder / f"{i}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def _split(folder: Path, images: int, classes: int, sources: list[Path]) -> None:
    for c in range(classes):
        (folder / f"c{c:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        os.link(sources[i % len(sources)], folder / f"c{i % classes:03d}" / f"{i:07d}.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--distinct", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sources = _distinct(args.root / ".sources", args.distinct, args.size, args.seed)
    _split(args.root / "train", args.images, args.classes, sources)
    _split(args.root / "test", args.test, args.classes, sources[::-1])
    print(f"{args.root}: {args.images} + {args.test} files at {args.size} px from {len(sources)} distinct")


if __name__ == "__main__":
    main()
