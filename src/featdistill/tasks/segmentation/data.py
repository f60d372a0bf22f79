"""Segmentation datasets: CamVid (SegNet folder layout) and Cityscapes (official layout).

Items are ``(image, label)``: ``image`` float ``[3, H, W]`` in [0, 1] (before the optional joint
transform from :mod:`.augment`), ``label`` int64 ``[H, W]`` with train ids and 255 for ignored pixels.
``in_memory=True`` decodes every PNG once at construction so that CPU training is not bound by PNG
decoding (CamVid's 367 training images take about 50 MB).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

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

Transform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _lookup_table(mapping: dict[int, int]) -> Tensor:
    """256-entry uint8 table mapping raw label values to train ids (unlisted values -> ignore)."""
    lut = torch.full((256,), IGNORE_INDEX, dtype=torch.uint8)
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


def _read_rgb(path: Path) -> Tensor:
    """Decode an image to a uint8 ``[3, H, W]`` tensor."""
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)


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
        in_memory: bool = False,
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
        self._cache = [self._decode(i) for i in range(len(self.images))] if in_memory else None

    def _decode(self, index: int) -> tuple[Tensor, Tensor]:
        image = _read_rgb(self.images[index])
        raw = _read_ids(self.labels[index])
        if raw.shape != image.shape[1:]:
            raise ValueError(
                f"label {self.labels[index]} is {tuple(raw.shape)} but image is {tuple(image.shape[1:])}"
            )
        return image, self._lut[raw.long()]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self._cache[index] if self._cache is not None else self._decode(index)
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
) -> tuple[list[Path], list[Path]]:
    """The checked ``(images, labels)`` paths of one split; a wrong split, folder or file names itself."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"{dataset} split must be train, val or test, got {split!r}")
    _require_dir(root, f"{dataset} root", layout)
    image_dir, label_dir = dirs
    _require_dir(image_dir, f"{dataset} image", layout)
    _require_dir(label_dir, f"{dataset} label", layout)
    images = sorted(image_dir.glob(pattern))
    if not images:
        raise ValueError(f"no {pattern} images in {image_dir} (expected layout: {layout})")
    labels = [label_of(p) for p in images]
    _require_files(labels, f"{dataset} label", layout)
    return images, labels


class CamVid(SegmentationFolder):
    """CamVid in the SegNet layout: ``root/{split}/*.png`` with labels in ``root/{split}annot/*.png``.

    11 classes; raw label 11 (void) and anything above maps to 255. Class names come from
    ``root/classes.json`` (``{"classes": [...], "void_label": 11}``) when present.
    """

    LAYOUT = "root/{train,val,test}/*.png with labels of the same name in root/{train,val,test}annot/"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        *,
        in_memory: bool = False,
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
        )
        classes: Sequence[str] = CAMVID_CLASSES
        meta = root / "classes.json"
        if meta.is_file():
            classes = json.loads(meta.read_text())["classes"]
        super().__init__(
            images, labels, {i: i for i in range(len(classes))}, classes, transform, in_memory=in_memory
        )


class Cityscapes(SegmentationFolder):
    """Cityscapes fine annotations: ``root/leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with
    ``root/gtFine/{split}/{city}/*_gtFine_labelIds.png``; labelIds are mapped to the 19 trainIds
    (:data:`CITYSCAPES_ID_TO_TRAINID`), everything else to 255.
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
        in_memory: bool = False,
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
        )
        super().__init__(
            images, labels, CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_CLASSES, transform, in_memory=in_memory
        )


_DATASETS: dict[str, type[SegmentationFolder]] = {"camvid": CamVid, "cityscapes": Cityscapes}


def build_dataset(
    name: str,
    root: str | Path,
    split: str = "train",
    transform: Transform | None = None,
    *,
    in_memory: bool = False,
) -> SegmentationFolder:
    """Build a segmentation dataset by name (``camvid`` or ``cityscapes``)."""
    key = name.lower()
    if key not in _DATASETS:
        raise ValueError(f"unknown segmentation dataset {name!r}; valid: {', '.join(_DATASETS)}")
    return _DATASETS[key](root, split, transform, in_memory=in_memory)
