"""COCO-format detection / instance segmentation dataset (annotation json + image folder)."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from ..decode import decode_or_fail
from ..ingest import FIRST_NAMES, SplitStats, evenly_spaced
from .augment import remove_small_boxes

__all__ = ["CocoDetection", "coco_from_dict", "coco_split_stats", "collate_fn", "load_coco"]

_REQUIRED_KEYS = ("images", "annotations", "categories")
_MAX_LISTED = 5


def load_coco(ann_file: str | os.PathLike) -> COCO:
    """Read a COCO annotation json into a pycocotools ``COCO``; ``ValueError`` naming the file if malformed."""
    path = Path(ann_file)
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    return coco_from_dict(data, path)


def coco_from_dict(data: Any, path: str | os.PathLike) -> COCO:
    """A pycocotools ``COCO`` of annotations already in memory (``path``: where they came from, for errors)."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{path} is not a COCO annotation file: top level is {type(data).__name__}, not an object"
        )
    missing = [k for k in _REQUIRED_KEYS if not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(
            f"{path} is not a COCO annotation file: missing or non-list key(s) {', '.join(missing)}"
        )
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """COCO json + image folder as ``(image, target)`` pairs for torchvision detectors.

    ``image`` is a float tensor [3,H,W] in 0..1. ``target`` holds ``boxes`` (xyxy float32 [N,4]),
    ``labels`` (int64, contiguous 1..K; 0 is the background), ``masks`` (uint8 [N,H,W], only with
    ``masks=True``; polygons and RLE alike), ``image_id`` (int), ``area`` and ``iscrowd``.

    Crowd annotations are left out of the targets (they are not instances to learn) but stay in
    ``self.coco``, the ground truth that ``CocoEvaluator`` scores against, where COCOeval ignores
    detections matching them. Boxes at most 1 px wide or high after clipping to the image are dropped.
    ``skip_empty=True`` leaves out images with no instance left (usual for training; keep them for
    evaluation). ``transforms(image, target)`` runs last, e.g. ``augment.Compose([...])``. ``coco``: the
    annotations already read (YOLO or VOC labels in COCO form, :mod:`.yolo`, :mod:`.voc`); ``ann_file`` then
    only names their source in messages.

    Category ids map to labels in increasing id order: ``cat_ids[label - 1]`` is the id of ``label``,
    also given by ``label_to_cat_id``; ``num_classes`` (K + 1) is what ``build_detector`` expects.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        ann_file: str | os.PathLike,
        *,
        masks: bool = False,
        skip_empty: bool = False,
        transforms: Callable[[Tensor, dict[str, Tensor]], tuple[Tensor, dict[str, Tensor]]] | None = None,
        coco: COCO | None = None,
    ) -> None:
        self.root = Path(root)
        self.ann_file = Path(ann_file)
        self.masks = masks
        self.transforms = transforms
        self.coco = coco if coco is not None else load_coco(self.ann_file)
        self.cat_ids: list[int] = sorted(self.coco.getCatIds())
        self.cat_id_to_label: dict[int, int] = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.label_to_cat_id: dict[int, int] = {i + 1: c for i, c in enumerate(self.cat_ids)}
        self.class_names: list[str] = [self.coco.cats[c].get("name", str(c)) for c in self.cat_ids]
        self._check_files()
        ids = sorted(self.coco.getImgIds())
        if skip_empty:
            ids = [i for i in ids if any(self._usable(a) for a in self.coco.imgToAnns[i])]
        self.ids: list[int] = ids

    @property
    def num_classes(self) -> int:
        """Number of categories plus one for the background."""
        return len(self.cat_ids) + 1

    def _check_files(self) -> None:
        missing = [
            img["file_name"]
            for img in self.coco.dataset["images"]
            if not (self.root / img["file_name"]).is_file()
        ]
        if missing:
            shown = ", ".join(missing[:_MAX_LISTED]) + (", ..." if len(missing) > _MAX_LISTED else "")
            raise FileNotFoundError(
                f"{len(missing)} image(s) listed in {self.ann_file} missing under {self.root}: {shown}"
            )

    def _usable(self, ann: dict[str, Any]) -> bool:
        """Non-crowd annotation of a known category whose box is more than 1 px on both sides."""
        if ann.get("iscrowd", 0) or ann["category_id"] not in self.cat_id_to_label:
            return False
        img = self.coco.imgs[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        width = min(x + w, img["width"]) - max(x, 0)
        height = min(y + h, img["height"]) - max(y, 0)
        return width > 1 and height > 1

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        pixels = decode_or_fail(self.root / info["file_name"]).pixels
        h, w = pixels.shape[1:]
        if (h, w) != (info["height"], info["width"]):
            raise ValueError(
                f"{info['file_name']} is {w}x{h} but {self.ann_file} says {info['width']}x{info['height']}"
            )
        image = pixels.float().div_(255)
        target = self._target(image_id, h, w)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _target(self, image_id: int, h: int, w: int) -> dict[str, Any]:
        anns = [a for a in self.coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        anns = [a for a in anns if a["category_id"] in self.cat_id_to_label]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        target = {
            "boxes": boxes,
            "labels": torch.tensor([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "image_id": image_id,
            "area": torch.tensor([a.get("area", 0.0) for a in anns], dtype=torch.float32),
            "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
        }
        if self.masks:
            masks = [self.coco.annToMask(a) for a in anns]
            target["masks"] = (
                torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, h, w), dtype=torch.uint8)
            )
        return remove_small_boxes(target)


def coco_split_stats(dataset: CocoDetection, split: str, inspect: int = 1000) -> SplitStats:
    """The ingest report of a COCO split: images used, images per category, sizes (from the json), pixel
    formats (file headers of up to ``inspect`` evenly spaced images), images without annotations of a
    known category and images whose only annotations are crowd regions."""
    stats = SplitStats(split, str(dataset.root))
    stats.images = len(dataset.ids)
    empty, crowd_only = [], []
    for image_id in dataset.ids:
        info = dataset.coco.imgs[image_id]
        stats.sizes[f"{info['width']}x{info['height']}"] += 1
        anns = [a for a in dataset.coco.imgToAnns[image_id] if a["category_id"] in dataset.cat_id_to_label]
        if not anns:
            empty.append(info["file_name"])
        elif all(a.get("iscrowd", 0) for a in anns):
            crowd_only.append(info["file_name"])
        for cat_id in {a["category_id"] for a in anns if not a.get("iscrowd", 0)}:
            stats.classes[dataset.class_names[dataset.cat_id_to_label[cat_id] - 1]] += 1
    picks = evenly_spaced(len(dataset.ids), inspect)
    for i in picks:
        with Image.open(dataset.root / dataset.coco.imgs[dataset.ids[i]]["file_name"]) as image:
            stats.formats[image.mode] += 1
    stats.inspected = len(picks)
    stats.classes = Counter(dict(stats.classes.most_common()))
    stats.extra["without_annotations"] = {"count": len(empty), "first": empty[:FIRST_NAMES]}
    stats.extra["crowd_only"] = {"count": len(crowd_only), "first": crowd_only[:FIRST_NAMES]}
    return stats


def collate_fn(
    batch: Sequence[tuple[Tensor, dict[str, Any]]],
) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """Batch detection samples as lists (images differ in size; the detector pads them itself)."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)
