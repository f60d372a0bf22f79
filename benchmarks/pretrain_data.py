"""Symlink trees of the pretrain benchmark (benchmarks/pretrain.sh) from the CIFAR-10 ImageFolder, nothing copied.

- ``seen/{train,test}/<class>``: classes 0-4 whole (the teacher's; configs limit them);
- ``unseen_probe/{train,test}/<class>``: classes 5-9, the first PROBE images of each class of each split;
- ``unseen_few/{train,test}/<class>``: classes 5-9, FEW training images per class (after the probe's), and the
  probe's test images: the fine-tuning with few labels.

Usage: python benchmarks/pretrain_data.py CIFAR10_ROOT OUT [PROBE] [FEW]
"""

from __future__ import annotations

import sys
from pathlib import Path

SEEN = ("airplane", "automobile", "bird", "cat", "deer")
UNSEEN = ("dog", "frog", "horse", "ship", "truck")


def link_files(source: Path, target: Path, start: int, count: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir())[start : start + count]:
        if not (target / path.name).exists():
            (target / path.name).symlink_to(path.resolve())


def main(root: str, out: str, probe: int = 200, few: int = 50) -> None:
    root_path, out_path = Path(root), Path(out)
    for split in ("train", "test"):
        for name in SEEN:
            link = out_path / "seen" / split / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to((root_path / split / name).resolve())
        for name in UNSEEN:
            link_files(root_path / split / name, out_path / "unseen_probe" / split / name, 0, probe)
    for name in UNSEEN:
        link_files(root_path / "train" / name, out_path / "unseen_few" / "train" / name, probe, few)
        link_files(root_path / "test" / name, out_path / "unseen_few" / "test" / name, 0, probe)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(v) for v in sys.argv[3:5]))
