"""Segmentation datasets: CamVid (SegNet folder layout), Cityscapes (official layout), Pascal VOC 2012,
ADE20K (ADEChallengeData2016) and ``masks``: image and mask files in parallel folders, as most tools export.

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
from typing import Any

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
    "ADE20K",
    "CAMVID_CLASSES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_ID_TO_TRAINID",
    "IGNORE_INDEX",
    "VOC",
    "VOC_CLASSES",
    "BadMask",
    "CamVid",
    "Cityscapes",
    "MaskFolder",
    "SegmentationFolder",
    "build_dataset",
]

IGNORE_INDEX = 255
#: Streaming (not in-memory) datasets decode this many evenly spaced pairs up front for the report.
INSPECT = 200
#: The ingest report's reasons for leaving a file out.
BAD_MASK = "bad mask (on_bad_file: skip)"
NO_MASK = "image without mask"
NO_IMAGE = "mask without image"

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


class BadMask(ValueError):
    """A mask that does not fit its image or the class list; the message names the file, the value and the fix."""


SKIP_HINT = "or set data.on_bad_file: skip to leave such pairs out"


def _read_ids(path: Path, colours: dict[tuple[int, int, int], int] | None = None) -> Tensor:
    """Decode a label PNG to its raw uint8 ids ``[H, W]``: single-channel (``L``), palette (``P``: its
    indices), or RGB through the colour table ``colours`` (colour -> id)."""
    with Image.open(path) as im:
        if im.mode in ("L", "P"):
            return torch.from_numpy(np.asarray(im).copy())
        if im.mode not in ("RGB", "RGBA") or colours is None:
            need = (
                "; an RGB colour mask needs its colour table: 'colors' ([[r, g, b], ...] in class order) in the "
                "dataset's classes.json"
                if im.mode in ("RGB", "RGBA")
                else ""
            )
            raise BadMask(
                f"mask {path} has mode {im.mode}, not an 8-bit single-channel or palette PNG of class ids{need}, "
                f"{SKIP_HINT}"
            )
        rgb = np.asarray(im.convert("RGB")).astype(np.int64)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    ids = np.full(code.shape, -1, dtype=np.int64)
    for (r, g, b), raw in colours.items():
        ids[code == (r << 16) | (g << 8) | b] = raw
    if (ids < 0).any():
        y, x = np.argwhere(ids < 0)[0]
        colour = tuple(int(v) for v in rgb[y, x])
        raise BadMask(
            f"mask {path} has colour {colour} (at x={x}, y={y}), which is not in the colour table; add it to "
            f"'colors' (a class) or 'ignore_colors' in classes.json, {SKIP_HINT}"
        )
    return torch.from_numpy(ids.astype(np.uint8))


class SegmentationFolder(Dataset):
    """Image/label file pairs with a raw-label lookup table; the base of the concrete datasets."""

    LABEL = "label"  # what the dataset calls its label files, in messages

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
        colours: dict[tuple[int, int, int], int] | None = None,
        on_bad_file: str = "raise",
        workers: int | None = None,
        progress: bool = False,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label files")
        self.images = list(images)
        self.labels = list(labels)
        self._colours = colours
        self.classes = tuple(classes)
        self.num_classes = len(self.classes)
        self.ignore_index = IGNORE_INDEX
        self.transform = transform
        self._lut = _lookup_table(label_map)
        self._known = torch.zeros(256, dtype=torch.bool)  # raw values that are a class or void
        self._known[list(label_map) + list(void)] = True
        self._void = sorted(void)
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
        return _read_ids(label, self._colours)

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
        on_bad_file: str = "raise",
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
            void=(void, IGNORE_INDEX),
            stats=stats,
            on_bad_file=on_bad_file,
            workers=workers,
            progress=progress,
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
        on_bad_file: str = "raise",
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
            void=CITYSCAPES_VOID,
            stats=stats,
            on_bad_file=on_bad_file,
            workers=workers,
            progress=progress,
        )


def _files(folder: Path, stats: SplitStats | None) -> dict[Path, Path]:
    """The image files under ``folder`` by relative path without extension; the others recorded in ``stats``."""
    found: dict[Path, Path] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(folder)
        if any(is_hidden_or_system(Path(part)) for part in relative.parts):
            if stats is not None:
                stats.skip(HIDDEN, path)
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            if stats is not None:
                stats.skip(UNSUPPORTED, path)
        else:
            found[relative.with_suffix("")] = path
    return found


def _class_table(root: Path, num_classes: int | None, default: Sequence[str] | None = None) -> dict:
    """``root/classes.json`` (``classes``, optional ``colors`` and ``ignore_colors``), else ``default`` names,
    else ``num_classes`` numbered classes."""
    meta = root / "classes.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if not isinstance(info, dict) or not isinstance(info.get("classes"), list):
            raise ValueError(
                f"{meta} must be a JSON object with a 'classes' list (and optionally 'colors', 'ignore_colors')"
            )
        colours = info.get("colors")
        if colours is not None and len(colours) != len(info["classes"]):
            raise ValueError(
                f"{meta} has {len(info['classes'])} classes but {len(colours)} colors; give one [r, g, b] a class"
            )
        return info
    if default is not None:
        return {"classes": list(default)}
    if num_classes is None:
        raise ValueError(f"no {meta}: give the class names there, or set model.num_classes")
    return {"classes": [str(i) for i in range(num_classes)]}


class MaskFolder(SegmentationFolder):
    """Images and masks in parallel trees, matched by relative path without extension.

    ``root/<split>/<images_dir>/**`` with ``root/<split>/<masks_dir>/**`` (``order="split_first"``), or mmseg's
    ``root/<images_dir>/<split>/**`` with ``root/<masks_dir>/<split>/**`` (``order="folder_first"``, e.g.
    ``img_dir``/``ann_dir``). A mask is a single-channel PNG of class ids, a palette PNG (its indices), or an
    RGB colour mask read through the colour table of ``root/classes.json`` (``{"classes": [...], "colors":
    [[r, g, b], ...], "ignore_colors": [[r, g, b]]}``). Class names come from ``classes.json``, else
    ``num_classes`` numbered ones. ``ignore_index`` is the mask value ignored (255); ``reduce_zero_label``
    ignores 0 and shifts the other values down by one (ADE20K's convention). Images without a mask and masks
    without an image are counted in the ingest report.
    """

    LAYOUT = "root/<split>/images/** with root/<split>/masks/** of the same relative path (any extension)"
    LABEL = "mask"

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
        num_classes: int | None = None,
        images_dir: str = "images",
        masks_dir: str = "masks",
        order: str = "split_first",
        ignore_index: int = IGNORE_INDEX,
        reduce_zero_label: bool = False,
        classes: Sequence[str] | None = None,
        dataset: str = "masks",
    ) -> None:
        root = Path(root)
        layout = self.LAYOUT
        if order == "folder_first":
            layout = (
                f"root/{images_dir}/<split>/** with root/{masks_dir}/<split>/** of the same relative path"
            )
            image_dir, mask_dir = root / images_dir / split, root / masks_dir / split
        else:
            layout = layout.replace("/images/", f"/{images_dir}/").replace("/masks/", f"/{masks_dir}/")
            image_dir, mask_dir = root / split / images_dir, root / split / masks_dir
        _require_dir(root, f"{dataset} root", layout)
        _require_dir(image_dir, f"{dataset} {split!r} image", layout)
        _require_dir(mask_dir, f"{dataset} {split!r} mask", layout)
        images, masks = _files(image_dir, stats), _files(mask_dir, stats)
        paired = sorted(set(images) & set(masks))
        if stats is not None:
            stats.root, stats.extra["label_root"] = str(image_dir), str(mask_dir)
            for key in sorted(set(images) - set(masks)):
                stats.skip(NO_MASK, images[key])
            for key in sorted(set(masks) - set(images)):
                stats.skip(NO_IMAGE, masks[key])
        if not paired:
            raise ValueError(
                f"no image in {image_dir} has a mask of the same relative path in {mask_dir} "
                f"({len(images)} images, {len(masks)} masks; expected layout: {layout})"
            )
        table = _class_table(root, num_classes, classes)
        names = table["classes"]
        if reduce_zero_label:
            label_map = {raw + 1: raw for raw in range(len(names))}
            void: tuple[int, ...] = (0, ignore_index)
        else:
            label_map = {raw: raw for raw in range(len(names))}
            void = (ignore_index,)
        if ignore_index in label_map:
            raise ValueError(
                f"data.options.ignore_index {ignore_index} is also a class id ({len(names)} classes); "
                "choose a value outside the classes (255 by default)"
            )
        colours = None
        if table.get("colors") is not None:
            colours = {tuple(int(v) for v in c): raw for raw, c in enumerate(table["colors"])}
            colours.update({tuple(int(v) for v in c): ignore_index for c in table.get("ignore_colors", [])})
            if reduce_zero_label:
                colours = {c: raw + 1 if raw != ignore_index else raw for c, raw in colours.items()}
        super().__init__(
            [images[key] for key in paired],
            [masks[key] for key in paired],
            label_map,
            names,
            transform,
            in_memory=in_memory,
            void=void,
            stats=stats,
            colours=colours,
            on_bad_file=on_bad_file,
            workers=workers,
            progress=progress,
        )


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
    ) -> None:
        base = _find(Path(root), "VOC2012")
        _require_dir(base, "VOC root", self.LAYOUT)
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
        _require_files(images, "VOC image", self.LAYOUT)
        _require_files(labels, "VOC mask", self.LAYOUT)
        if stats is not None:
            stats.root, stats.extra["label_root"] = str(base / "JPEGImages"), str(base / "SegmentationClass")
        super().__init__(
            images,
            labels,
            {i: i for i in range(len(VOC_CLASSES))},
            VOC_CLASSES,
            transform,
            in_memory=in_memory,
            stats=stats,
            on_bad_file=on_bad_file,
            workers=workers,
            progress=progress,
        )


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
    ) -> None:
        base = _find(Path(root), "ADEChallengeData2016")
        super().__init__(
            base,
            ADE20K_SPLITS.get(split, split),
            transform,
            in_memory=in_memory,
            stats=stats,
            on_bad_file=on_bad_file,
            workers=workers,
            progress=progress,
            images_dir="images",
            masks_dir="annotations",
            order="folder_first",
            reduce_zero_label=True,
            classes=_ade20k_classes(base) or [str(i) for i in range(ADE20K_CLASSES)],
            dataset="ADE20K",
        )


_DATASETS: dict[str, type[SegmentationFolder]] = {
    "camvid": CamVid,
    "cityscapes": Cityscapes,
    "voc": VOC,
    "ade20k": ADE20K,
    "masks": MaskFolder,
}


def build_dataset(
    name: str,
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
) -> SegmentationFolder:
    """Build a segmentation dataset by name (``camvid``, ``cityscapes``, ``voc``, ``ade20k`` or ``masks``);
    ``stats`` gets the report. ``in_memory``: True, False or ``"auto"`` (in memory when the split fits, see
    :mod:`featdistill.tasks.memory`); ``workers`` decoding processes (None: one per core). ``layout``
    (``masks`` only): :class:`MaskFolder`'s folder names, order, class count, ignore index and
    ``reduce_zero_label``."""
    key = name.lower()
    if key not in _DATASETS:
        raise ValueError(f"unknown segmentation dataset {name!r}{did_you_mean(key, _DATASETS)}")
    extra = layout if key == "masks" else {}
    return _DATASETS[key](  # type: ignore[call-arg]
        root,
        split,
        transform,
        in_memory=in_memory,
        stats=stats,
        on_bad_file=on_bad_file,
        workers=workers,
        progress=progress,
        **extra,
    )
