"""Segmentation datasets by name: ``build_dataset`` and the public names of the layouts it builds.

The layouts are CamVid, Cityscapes, VOC and ADE20K (:mod:`.layouts`) and ``masks`` (:mod:`.masks`); all are
read by :class:`.folder.SegmentationFolder`, their label PNGs decoded by :mod:`.labels`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...suggest import did_you_mean
from .folder import SegmentationFolder, Transform
from .labels import IGNORE_INDEX, BadMask
from .layouts import (
    ADE20K,
    CAMVID_CLASSES,
    CITYSCAPES_CLASSES,
    CITYSCAPES_ID_TO_TRAINID,
    VOC,
    VOC_CLASSES,
    CamVid,
    Cityscapes,
)
from .masks import MaskFolder

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

_DATASETS: dict[str, type[SegmentationFolder]] = {
    "camvid": CamVid,
    "cityscapes": Cityscapes,
    "voc": VOC,
    "ade20k": ADE20K,
    "masks": MaskFolder,
}


def build_dataset(
    name: str, root: str | Path, split: str = "train", transform: Transform | None = None, **options: Any
) -> SegmentationFolder:
    """Build a segmentation dataset by name (``camvid``, ``cityscapes``, ``voc``, ``ade20k`` or ``masks``).

    ``options``: how the split is read (:class:`SegmentationFolder`: ``in_memory``, ``stats`` for the
    report, ``on_bad_file``, ``workers``, ``progress``) and, for ``masks`` only, :class:`MaskFolder`'s folder
    names, order, class count, ignore index and ``reduce_zero_label``.
    """
    key = name.lower()
    if key not in _DATASETS:
        raise ValueError(f"unknown segmentation dataset {name!r}{did_you_mean(key, _DATASETS)}")
    return _DATASETS[key](root, split, transform, **options)
