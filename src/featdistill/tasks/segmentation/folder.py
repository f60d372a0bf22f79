"""The segmentation dataset every layout shares: image/label file pairs read as ``(image, label)`` items.

A layout (:mod:`.layouts`, :mod:`.masks`) says only where a split's pairs are and what their label values mean
(:meth:`SegmentationFolder.find`, returning :class:`Pairs`); how the split is read is the same for all, and
its options are declared once, here: the joint transform, ``in_memory``, the ingest report ``stats``,
``on_bad_file``, decoding ``workers`` and ``progress``.

Items are ``(image, label)``: ``image`` float ``[3, H, W]`` in [0, 1] (before the optional joint
transform from :mod:`.augment`), ``label`` int64 ``[H, W]`` with train ids and 255 for ignored pixels.
``in_memory=True`` decodes every PNG once at construction, in worker processes behind a progress bar, so
that CPU training is not bound by PNG decoding (CamVid's 367 training images take about 50 MB); ``auto``
does so when the split fits in memory (:mod:`featdistill.tasks.memory`) and reads the files otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..decode import decode_or_fail
from ..ingest import SplitStats, evenly_spaced
from ..memory import plan_memory
from ..parallel import map_in_workers
from .labels import IGNORE_INDEX, SKIP_HINT, BadMask, lookup_table, read_ids

__all__ = ["BAD_MASK", "INSPECT", "Pairs", "SegmentationFolder", "Transform", "require_dir", "require_files"]

#: Streaming (not in-memory) datasets decode this many evenly spaced pairs up front for the report.
INSPECT = 200
#: The ingest report's reason for leaving a pair out.
BAD_MASK = "bad mask (on_bad_file: skip)"

Transform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


@dataclass
class Pairs:
    """What a layout finds for a split: its image and label files, in order, and what the label values mean
    (raw value -> train id; ``void``: raw values ignored; ``colours``: an RGB mask's colour -> raw value)."""

    images: list[Path]
    labels: list[Path]
    label_map: dict[int, int]
    classes: Sequence[str]
    void: Sequence[int] = (IGNORE_INDEX,)
    colours: dict[tuple[int, int, int], int] | None = None


def require_dir(path: Path, what: str, layout: str) -> None:
    """Refuse a missing folder in one line naming it and the layout expected."""
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {path} (expected layout: {layout})")


def require_files(paths: Sequence[Path], what: str, layout: str) -> None:
    """Refuse missing files in one line counting them, naming the first and the layout expected."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} {what} files missing, e.g. {missing[0]} (expected layout: {layout})"
        )


def _decode_numpy(dataset: SegmentationFolder, index: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """:meth:`SegmentationFolder.read` as NumPy arrays (cheap to send back from a worker process)."""
    image, label, info = dataset.read(index)
    return image.numpy(), label.numpy(), info


class SegmentationFolder(Dataset):
    """Image/label file pairs with a raw-label lookup table; the base of the concrete layouts.

    ``root`` and ``split`` (and ``layout``, a layout's own options) go to :meth:`find`; the other arguments
    say how the split is read (see the module doc).
    """

    LABEL = "label"  # what the dataset calls its label files, in messages

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        *,
        in_memory: bool | str = False,
        stats: SplitStats | None = None,
        on_bad_file: str = "raise",
        workers: int | None = None,
        progress: bool = False,
        **layout: Any,
    ) -> None:
        pairs = self.find(Path(root), split, stats, **layout)
        if len(pairs.images) != len(pairs.labels):
            raise ValueError(f"{len(pairs.images)} images but {len(pairs.labels)} label files")
        self.images = list(pairs.images)
        self.labels = list(pairs.labels)
        self._colours = pairs.colours
        self.classes = tuple(pairs.classes)
        self.num_classes = len(self.classes)
        self.ignore_index = IGNORE_INDEX
        self.transform = transform
        self._lut = lookup_table(pairs.label_map)
        self._known = torch.zeros(256, dtype=torch.bool)  # raw values that are a class or void
        self._known[list(pairs.label_map) + list(pairs.void)] = True
        self._void = sorted(pairs.void)
        self.stats = stats
        if on_bad_file == "skip":
            self._leave_out_bad_masks(stats)
        if stats is not None:
            stats.images = len(self.images)
        if in_memory is not False:
            with Image.open(self.images[0]) as first:
                width, height = first.size
            plan = plan_memory(in_memory, 4 * width * height * len(self.images))  # RGB + label bytes
            if stats is not None:
                stats.extra["memory"] = plan.to_dict()
            in_memory = plan.in_memory
        self._cache: list[tuple[Tensor, Tensor]] | None = None
        if in_memory:
            decode = functools.partial(_decode_numpy, self)
            self._cache = []
            for image, label, info in map_in_workers(
                decode, range(len(self.images)), workers=workers, desc="decoding", progress=progress
            ):
                self._cache.append((torch.from_numpy(image), torch.from_numpy(label)))
                self._record(stats, label, info)
            if stats is not None:
                stats.inspected = len(self.images)
        elif stats is not None:  # decode an evenly spaced sample for the report and the label check
            picks = evenly_spaced(len(self.images), INSPECT)
            for i in picks:
                image, label, info = self.read(i)
                self._record(stats, label, info)
            stats.inspected = len(picks)

    def find(self, root: Path, split: str, stats: SplitStats | None, **layout: Any) -> Pairs:
        """The pairs of ``split`` under ``root``; a layout records the folders it read and the files it left
        out in ``stats``."""
        raise NotImplementedError(f"{type(self).__name__} names no layout: define find()")

    def _leave_out_bad_masks(self, stats: SplitStats | None) -> None:
        """Check every pair (its mask decoded, its image's size read) and leave out those with a bad mask."""
        keep = []
        for image, label in zip(self.images, self.labels):
            try:
                with Image.open(image) as im:
                    self._check(label, self._ids(label), (im.height, im.width))
                keep.append((image, label))
            except BadMask:
                if stats is not None:
                    stats.skip(BAD_MASK, label)
        self.images = [image for image, _ in keep]
        self.labels = [label for _, label in keep]

    def _ids(self, label: Path) -> Tensor:
        return read_ids(label, self._colours)

    def _check(self, label: Path, raw: Tensor, size: tuple[int, int]) -> None:
        """Raise :class:`BadMask` when ``raw`` is not ``size`` or holds a value that is neither class nor void."""
        if tuple(raw.shape) != tuple(size):
            (h, w), (ih, iw) = raw.shape, size
            raise BadMask(
                f"{self.LABEL} {label} is {w}x{h} but its image is {iw}x{ih}; resize the mask with nearest-neighbour "
                f"interpolation (or pair it with its own image), {SKIP_HINT}"
            )
        unknown = raw[~self._known[raw.long()]]
        if unknown.numel():
            raise BadMask(
                f"{self.LABEL} {label} has value {int(unknown[0])}, which is neither a class id ({self.num_classes} "
                f"classes) nor void ({', '.join(map(str, self._void))}); fix the mask or the dataset's class "
                f"list (classes.json, model.num_classes, data.options.ignore_index), {SKIP_HINT}"
            )

    def _record(self, stats: SplitStats | None, label: Tensor | np.ndarray, info: tuple) -> None:
        """Add one decoded pair's stored size, pixel format and label pixels to the report."""
        if stats is not None:
            stats.saw(*info)
            self._count_pixels(torch.as_tensor(label), stats)

    def read(self, index: int) -> tuple[Tensor, Tensor, tuple]:
        """Pair ``index`` decoded: ``(image uint8 [3, H, W], train ids uint8 [H, W], (width, height, mode,
        alpha) of the image as stored)``; a bad mask names its file (:class:`BadMask`)."""
        decoded = decode_or_fail(self.images[index])
        image = decoded.pixels
        raw = self._ids(self.labels[index])
        self._check(self.labels[index], raw, tuple(image.shape[1:]))
        info = (image.shape[2], image.shape[1], decoded.mode, decoded.alpha)
        return image, self._lut[raw.long()], info

    def _count_pixels(self, label: Tensor, stats: SplitStats) -> None:
        """Add one label map's pixels per class (and ignored pixels) to the report."""
        counts = torch.bincount(label.flatten().long(), minlength=IGNORE_INDEX + 1).tolist()
        pixels = stats.extra.setdefault("class_pixels", dict.fromkeys(self.classes, 0))
        for train_id, name in enumerate(self.classes):
            pixels[name] += counts[train_id]
        stats.extra["ignored_pixels"] = stats.extra.get("ignored_pixels", 0) + counts[IGNORE_INDEX]
        stats.extra["pixel_images"] = stats.extra.get("pixel_images", 0) + 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self._cache[index] if self._cache is not None else self.read(index)[:2]
        image_f, label_l = image.float().div_(255), label.long()
        if self.transform is not None:
            image_f, label_l = self.transform(image_f, label_l)
        return image_f, label_l
