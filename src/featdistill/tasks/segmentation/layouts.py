"""The named dataset layouts: CamVid (SegNet folder layout), Cityscapes (official layout), Pascal VOC 2012 and
ADE20K (ADEChallengeData2016), with their class lists and label values.

Each says where a split's image and label files are and what the label values mean
(:meth:`.folder.SegmentationFolder.find`); reading them is :class:`.folder.SegmentationFolder`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from ...suggest import did_you_mean
from ..decode import IMAGE_EXTENSIONS, is_hidden_or_system
from ..ingest import HIDDEN, UNSUPPORTED, SplitStats
from .folder import Pairs, SegmentationFolder, require_dir, require_files
from .labels import IGNORE_INDEX
from .masks import MaskFolder

__all__ = [
    "ADE20K",
    "CAMVID_CLASSES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_ID_TO_TRAINID",
    "VOC",
    "VOC_CLASSES",
    "CamVid",
    "Cityscapes",
]

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
ADE20K_CLASSES = 150
ADE20K_SPLITS = {"train": "training", "val": "validation"}  # split -> ADE20K folder

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
    require_dir(root, f"{dataset} root", layout)
    image_dir, label_dir = dirs
    require_dir(image_dir, f"{dataset} image", layout)
    require_dir(label_dir, f"{dataset} label", layout)
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
    require_files(labels, f"{dataset} label", layout)
    return images, labels


class CamVid(SegmentationFolder):
    """CamVid in the SegNet layout: ``root/{split}/*.png`` with labels in ``root/{split}annot/*.png``.

    11 classes; raw label 11 (void) or 255 maps to 255, any other value is an error naming the file. Class
    names and the void value come from ``root/classes.json`` (``{"classes": [...], "void_label": 11}``)
    when present.
    """

    LAYOUT = "root/{train,val,test}/*.png with labels of the same name in root/{train,val,test}annot/"

    def find(self, root: Path, split: str, stats: SplitStats | None) -> Pairs:
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
        return Pairs(images, labels, {i: i for i in range(len(classes))}, classes, (void, IGNORE_INDEX))


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

    def find(self, root: Path, split: str, stats: SplitStats | None) -> Pairs:
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
        return Pairs(images, labels, CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_CLASSES, CITYSCAPES_VOID)


def _find(root: Path, name: str) -> Path:
    """``root`` itself, or its ``name`` subfolder (or ``VOCdevkit/<name>``) when it holds one."""
    for candidate in (root / name, root / "VOCdevkit" / name):
        if candidate.is_dir():
            return candidate
    return root


class VOC(SegmentationFolder):
    """Pascal VOC 2012 segmentation: ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg`` with
    ``SegmentationClass/<id>.png`` (palette PNGs), the ids of a split listed in
    ``ImageSets/Segmentation/<split>.txt``; 21 classes (background first), 255 (the object borders) ignored."""

    LAYOUT = "VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png, ImageSets/Segmentation/<split>.txt}"

    def find(self, root: Path, split: str, stats: SplitStats | None) -> Pairs:
        base = _find(root, "VOC2012")
        require_dir(base, "VOC root", self.LAYOUT)
        lists = base / "ImageSets" / "Segmentation"
        listing = lists / f"{split}.txt"
        if not listing.is_file():
            have = sorted(p.stem for p in lists.glob("*.txt")) if lists.is_dir() else []
            raise FileNotFoundError(
                f"VOC split list not found: {listing}{did_you_mean(split, have) if have else ''} "
                f"(expected layout: {self.LAYOUT})"
            )
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        images = [base / "JPEGImages" / f"{i}.jpg" for i in ids]
        labels = [base / "SegmentationClass" / f"{i}.png" for i in ids]
        require_files(images, "VOC image", self.LAYOUT)
        require_files(labels, "VOC mask", self.LAYOUT)
        if stats is not None:
            stats.root, stats.extra["label_root"] = str(base / "JPEGImages"), str(base / "SegmentationClass")
        return Pairs(images, labels, {i: i for i in range(len(VOC_CLASSES))}, VOC_CLASSES)


def _ade20k_classes(base: Path) -> list[str] | None:
    """The 150 class names of ``objectInfo150.txt`` / ``.csv`` (shipped with the dataset), if present."""
    for info in (base / "objectInfo150.txt", base / "objectInfo150.csv"):
        if info.is_file():
            sep, cut = ("\t", -1) if info.suffix == ".txt" else (",", 4)  # Idx, Ratio, Train, Val, Name
            rows = [line.split(sep, cut) for line in info.read_text().splitlines()[1:] if line.strip()]
            names = [row[-1].strip().strip('"').replace(";", ",").split(",")[0].strip() for row in rows]
            if len(names) == ADE20K_CLASSES:
                return names
    return None


class ADE20K(MaskFolder):
    """ADE20K (SceneParsing, ``ADEChallengeData2016``): ``images/{training,validation}/*.jpg`` with
    ``annotations/{training,validation}/*.png``; 150 classes (names from ``objectInfo150.txt`` when present),
    0 ignored (``reduce_zero_label``). Splits ``train``/``val`` read ``training``/``validation``."""

    def find(self, root: Path, split: str, stats: SplitStats | None) -> Pairs:
        base = _find(root, "ADEChallengeData2016")
        return super().find(
            base,
            ADE20K_SPLITS.get(split, split),
            stats,
            images_dir="images",
            masks_dir="annotations",
            order="folder_first",
            reduce_zero_label=True,
            classes=_ade20k_classes(base) or [str(i) for i in range(ADE20K_CLASSES)],
            dataset="ADE20K",
        )
