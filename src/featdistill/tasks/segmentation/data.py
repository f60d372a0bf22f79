"""Segmentation datasets: CamVid (SegNet folder layout) and Cityscapes (official layout).

Items are ``(image, label)``: ``image`` float ``[3, H, W]`` in [0, 1] (before the optional joint
transform from :mod:`.augment`), ``label`` int64 ``[H, W]`` with train ids and 255 for ignored pixels.
``in_memory=True`` decodes every PNG once at construction, in worker processes behind a progress bar, so
that CPU training is not bound by PNG decoding (CamVid's 367 training images take about 50 MB); ``auto``
does so when the split fits in memory (:mod:`featdistill.tasks.memory`) and reads the files otherwise.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ...suggest import did_you_mean
from ..decode import IMAGE_EXTENSIONS, decode_or_fail, is_hidden_or_system
from ..ingest import HIDDEN, UNSUPPORTED, SplitStats, evenly_spaced
from ..memory import plan_memory
from ..parallel import map_in_workers

__all__ = [
    "CAMVID_CLASSES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_ID_TO_TRAINID",
    "IGNORE_INDEX",
    "CamVid",
    "Cityscapes",
    "SegmentationFolder",
    "build_dataset",
]

IGNORE_INDEX = 255
#: Streaming (not in-memory) datasets decode this many evenly spaced pairs up front for the report.
INSPECT = 200

CAMVID_CLASSES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)

CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# Cityscapes labelIds of the 19 evaluated classes -> trainIds; every other id (unlabeled, ego vehicle,
# rectification border, out of roi, static, dynamic, ground, parking, rail track, guard rail, bridge,
# tunnel, polegroup, caravan, trailer, license plate) is ignored.
CITYSCAPES_ID_TO_TRAINID = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}

#: Raw CamVid label of the void (unlabelled) pixels, unless ``classes.json`` gives ``void_label``.
CAMVID_VOID = 11
#: Cityscapes labelIds that are not evaluated (ignored), and 255.
CITYSCAPES_VOID = (*(i for i in range(34) if i not in CITYSCAPES_ID_TO_TRAINID), IGNORE_INDEX)

Transform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _lookup_table(mapping: dict[int, int]) -> Tensor:
    """256-entry uint8 table mapping raw label values to train ids (unlisted values -> ignore)."""
    lut = torch.full((256,), IGNORE_INDEX, dtype=torch.uint8)
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


def _decode_numpy(dataset: SegmentationFolder, index: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """:meth:`SegmentationFolder.read` as NumPy arrays (cheap to send back from a worker process)."""
    image, label, info = dataset.read(index)
    return image.numpy(), label.numpy(), info


def _read_ids(path: Path) -> Tensor:
    """Decode a single-channel (``L``) or palette (``P``) label PNG to its raw uint8 ids ``[H, W]``."""
    with Image.open(path) as im:
        if im.mode not in ("L", "P"):
            raise ValueError(
                f"label {path} must be an 8-bit single-channel PNG of class ids, got mode {im.mode}"
            )
        return torch.from_numpy(np.asarray(im).copy())


class SegmentationFolder(Dataset):
    """Image/label file pairs with a raw-label lookup table; the base of the concrete datasets."""

    def __init__(
        self,
        images: Sequence[Path],
        labels: Sequence[Path],
        label_map: dict[int, int],
        classes: Sequence[str],
        transform: Transform | None = None,
        *,
        in_memory: bool | str = False,
        void: Sequence[int] = (IGNORE_INDEX,),
        stats: SplitStats | None = None,
        workers: int | None = None,
        progress: bool = False,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label files")
        self.images = list(images)
        self.labels = list(labels)
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.ignore_index = IGNORE_INDEX
        self.transform = transform
        self._lut = _lookup_table(label_map)
        self._known = torch.zeros(256, dtype=torch.bool)  # raw values that are a class or void
        self._known[list(label_map) + list(void)] = True
        self._void = sorted(void)
        self.stats = stats
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

    def _record(self, stats: SplitStats | None, label: Tensor | np.ndarray, info: tuple) -> None:
        """Add one decoded pair's stored size, pixel format and label pixels to the report."""
        if stats is not None:
            stats.saw(*info)
            self._count_pixels(torch.as_tensor(label), stats)

    def read(self, index: int) -> tuple[Tensor, Tensor, tuple]:
        """Pair ``index`` decoded: ``(image uint8 [3, H, W], train ids uint8 [H, W], (width, height, mode,
        alpha) of the image as stored)``; a label of another size or an unknown value names its file."""
        decoded = decode_or_fail(self.images[index])
        image = decoded.pixels
        raw = _read_ids(self.labels[index])
        if raw.shape != image.shape[1:]:
            raise ValueError(
                f"label {self.labels[index]} is {tuple(raw.shape)} but image is {tuple(image.shape[1:])}"
            )
        unknown = raw[~self._known[raw.long()]]
        if unknown.numel():
            raise ValueError(
                f"label {self.labels[index]} has value {int(unknown[0])}, which is neither a class id "
                f"({self.num_classes} classes) nor void ({', '.join(map(str, self._void))}); fix the label "
                "file or the dataset's class list"
            )
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


def _require_dir(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {path} (expected layout: {layout})")


def _require_files(paths: Sequence[Path], what: str, layout: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} {what} files missing, e.g. {missing[0]} (expected layout: {layout})"
        )


def _image_label_pairs(
    dataset: str,
    root: Path,
    split: str,
    dirs: tuple[Path, Path],
    pattern: str,
    label_of: Callable[[Path], Path],
    layout: str,
    stats: SplitStats | None = None,
) -> tuple[list[Path], list[Path]]:
    """The checked ``(images, labels)`` paths of one split; a wrong split, folder or file names itself.

    Hidden or system files, and files of the image folder that do not match ``pattern``, are left out
    and recorded in ``stats``, which also gets the image and label folders.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"{dataset} split must be train, val or test, got {split!r}")
    _require_dir(root, f"{dataset} root", layout)
    image_dir, label_dir = dirs
    _require_dir(image_dir, f"{dataset} image", layout)
    _require_dir(label_dir, f"{dataset} label", layout)
    matching = set(image_dir.glob(pattern))
    images = sorted(p for p in matching if not is_hidden_or_system(p))
    if stats is not None:
        stats.root, stats.extra["label_root"] = str(image_dir), str(label_dir)  # the folders read
        for path in sorted(image_dir.rglob("*")):
            if path.is_file() and (path not in matching or is_hidden_or_system(path)):
                hidden = any(is_hidden_or_system(Path(part)) for part in path.relative_to(image_dir).parts)
                unreadable = path.suffix.lower() not in IMAGE_EXTENSIONS
                stats.skip(HIDDEN if hidden else UNSUPPORTED if unreadable else f"not {pattern}", path)
    if not images:
        raise ValueError(f"no {pattern} images in {image_dir} (expected layout: {layout})")
    labels = [label_of(p) for p in images]
    _require_files(labels, f"{dataset} label", layout)
    return images, labels


class CamVid(SegmentationFolder):
    """CamVid in the SegNet layout: ``root/{split}/*.png`` with labels in ``root/{split}annot/*.png``.

    11 classes; raw label 11 (void) or 255 maps to 255, any other value is an error naming the file. Class
    names and the void value come from ``root/classes.json`` (``{"classes": [...], "void_label": 11}``)
    when present.
    """

    LAYOUT = "root/{train,val,test}/*.png with labels of the same name in root/{train,val,test}annot/"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        *,
        in_memory: bool | str = False,
        stats: SplitStats | None = None,
        workers: int | None = None,
        progress: bool = False,
    ) -> None:
        root = Path(root)
        label_dir = root / f"{split}annot"
        images, labels = _image_label_pairs(
            "CamVid",
            root,
            split,
            (root / split, label_dir),
            "*.png",
            lambda p: label_dir / p.name,
            self.LAYOUT,
            stats,
        )
        classes: Sequence[str] = CAMVID_CLASSES
        void = CAMVID_VOID
        meta = root / "classes.json"
        if meta.is_file():
            info = json.loads(meta.read_text())
            classes, void = info["classes"], int(info.get("void_label", CAMVID_VOID))
        super().__init__(
            images,
            labels,
            {i: i for i in range(len(classes))},
            classes,
            transform,
            in_memory=in_memory,
            workers=workers,
            progress=progress,
            void=(void, IGNORE_INDEX),
            stats=stats,
        )


class Cityscapes(SegmentationFolder):
    """Cityscapes fine annotations: ``root/leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with
    ``root/gtFine/{split}/{city}/*_gtFine_labelIds.png``; labelIds are mapped to the 19 trainIds
    (:data:`CITYSCAPES_ID_TO_TRAINID`), the other official labelIds (0..33) and 255 to 255; any other value
    is an error naming the file.
    """

    LAYOUT = (
        "root/leftImg8bit/{split}/{city}/*_leftImg8bit.png and "
        "root/gtFine/{split}/{city}/*_gtFine_labelIds.png"
    )

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        *,
        in_memory: bool | str = False,
        stats: SplitStats | None = None,
        workers: int | None = None,
        progress: bool = False,
    ) -> None:
        root = Path(root)
        label_dir = root / "gtFine" / split
        suffix = "_leftImg8bit.png"
        images, labels = _image_label_pairs(
            "Cityscapes",
            root,
            split,
            (root / "leftImg8bit" / split, label_dir),
            f"*/*{suffix}",
            lambda p: label_dir / p.parent.name / (p.name[: -len(suffix)] + "_gtFine_labelIds.png"),
            self.LAYOUT,
            stats,
        )
        super().__init__(
            images,
            labels,
            CITYSCAPES_ID_TO_TRAINID,
            CITYSCAPES_CLASSES,
            transform,
            in_memory=in_memory,
            workers=workers,
            progress=progress,
            void=CITYSCAPES_VOID,
            stats=stats,
        )


_DATASETS: dict[str, type[SegmentationFolder]] = {"camvid": CamVid, "cityscapes": Cityscapes}


def build_dataset(
    name: str,
    root: str | Path,
    split: str = "train",
    transform: Transform | None = None,
    *,
    in_memory: bool | str = False,
    stats: SplitStats | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> SegmentationFolder:
    """Build a segmentation dataset by name (``camvid`` or ``cityscapes``); ``stats`` gets the report.

    ``in_memory``: True, False or ``"auto"`` (in memory when the split fits, see
    :mod:`featdistill.tasks.memory`); ``workers`` decoding processes (None: one per core).
    """
    key = name.lower()
    if key not in _DATASETS:
        raise ValueError(f"unknown segmentation dataset {name!r}{did_you_mean(key, _DATASETS)}")
    return _DATASETS[key](
        root, split, transform, in_memory=in_memory, stats=stats, workers=workers, progress=progress
    )
