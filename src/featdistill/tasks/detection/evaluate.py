"""COCO box / mask AP of torchvision detector outputs, computed by pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from ...atomic import write_text_atomic

if TYPE_CHECKING:
    from .data import CocoDetection

__all__ = ["BACKGROUND", "IOU_TYPES", "METRIC_NAMES", "CocoEvaluator"]

IOU_TYPES = ("bbox", "segm")
# The label torchvision detectors reserve for the background; it has no COCO category.
BACKGROUND = 0
# Order of COCOeval.stats; -1 means "no ground truth in that range" (COCO's convention).
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


class CocoEvaluator:
    """Collect detector outputs as COCO results and score them against the ground truth ``coco_gt``.

    ``coco_gt`` keeps every annotation, crowd ones included, so COCOeval ignores detections on crowd
    regions as the COCO protocol wants. ``label_to_cat_id`` maps model labels back to category ids
    (``None``: labels already are category ids). Only images passed to ``update`` / ``merge`` are
    scored, so evaluating part of a data set gives that part's AP.

    With a mapping, label 0 is the background and its detections are dropped: torchvision's RetinaNet
    and FCOS keep a sigmoid output for label 0 (``num_classes`` counts the background for every family),
    trained only as a negative, and a weak model can still score it above the threshold. Faster/Mask
    R-CNN never output it. Any other label missing from the mapping is an error.

    Multi-process evaluation: gather ``results`` and ``image_ids`` from every rank (e.g. with
    ``torch.distributed.all_gather_object``) and ``merge`` them into one evaluator before ``summarize``.
    """

    def __init__(
        self,
        coco_gt: COCO,
        iou_types: Sequence[str] = ("bbox",),
        label_to_cat_id: Mapping[int, int] | None = None,
        *,
        mask_threshold: float = 0.5,
        verbose: bool = False,
    ) -> None:
        unknown = [t for t in iou_types if t not in IOU_TYPES]
        if unknown or not iou_types:
            raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {tuple(iou_types)}")
        self.coco_gt = coco_gt
        self.iou_types = tuple(iou_types)
        self.label_to_cat_id = dict(label_to_cat_id) if label_to_cat_id is not None else None
        self.mask_threshold = mask_threshold
        self.verbose = verbose
        self.results: list[dict[str, Any]] = []
        self._image_ids: set[int] = set()

    @classmethod
    def from_dataset(
        cls, dataset: CocoDetection, iou_types: Sequence[str] = ("bbox",), **kw: Any
    ) -> CocoEvaluator:
        """Evaluator on a ``CocoDetection``'s ground truth and label mapping."""
        return cls(dataset.coco, iou_types, dataset.label_to_cat_id, **kw)

    @property
    def image_ids(self) -> list[int]:
        """Ids of the images evaluated so far, sorted."""
        return sorted(self._image_ids)

    def reset(self) -> None:
        """Forget all collected results."""
        self.results = []
        self._image_ids = set()

    def update(
        self,
        outputs: Sequence[Mapping[str, Tensor]],
        image_ids: Sequence[int | Tensor],
        image_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        """Add one batch of torchvision detection outputs (``boxes`` xyxy, ``scores``, ``labels``, ``masks``).

        torchvision detectors return boxes and masks at the size of the image they were given. If that
        image was resized from the original, pass its ``(height, width)`` in ``image_sizes`` and the
        predictions are scaled back to the size recorded in the annotation file.
        """
        if len(outputs) != len(image_ids) or (image_sizes is not None and len(image_sizes) != len(outputs)):
            raise ValueError("outputs, image_ids and image_sizes must have the same length")
        results: list[dict[str, Any]] = []
        ids = [int(i) for i in image_ids]
        for k, (out, image_id) in enumerate(zip(outputs, ids)):
            size = tuple(image_sizes[k]) if image_sizes is not None else None
            results += self._convert(out, image_id, size)
        self._add(results, ids)

    def merge(self, results: Iterable[Mapping[str, Any]], image_ids: Iterable[int] | None = None) -> None:
        """Add COCO result dicts gathered from other processes (their ``results``).

        Pass their ``image_ids`` as well: without them, images where a process detected nothing are left
        out of the evaluation and their missed objects are not counted. Images already evaluated here are
        skipped, so duplicates from a padded distributed sampler count once.
        """
        results = [dict(r) for r in results]
        ids = {int(r["image_id"]) for r in results} if image_ids is None else {int(i) for i in image_ids}
        self._add(results, ids)

    def _add(self, results: list[dict[str, Any]], image_ids: Iterable[int]) -> None:
        new = set(image_ids) - self._image_ids
        unknown = new - set(self.coco_gt.getImgIds())
        if unknown:
            raise ValueError(f"image ids not in the ground truth: {sorted(unknown)[:5]}")
        self.results += [r for r in results if r["image_id"] in new]
        self._image_ids |= new

    def _convert(self, out: Mapping[str, Tensor], image_id: int, size: tuple[int, int] | None) -> list[dict]:
        info = self.coco_gt.imgs.get(image_id)
        if info is None:
            raise ValueError(f"image id {image_id} is not in the ground truth")
        height, width = info["height"], info["width"]
        labels = out["labels"].detach().cpu()
        keep = labels != BACKGROUND if self.label_to_cat_id is not None else slice(None)
        boxes = out["boxes"].detach().float().cpu()[keep]
        if size is not None and size != (height, width):
            boxes = boxes * torch.tensor([width / size[1], height / size[0]] * 2)
        scores = out["scores"].detach().cpu()[keep].tolist()
        cat_ids = [self._cat_id(int(label)) for label in labels[keep]]
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        results: list[dict] = []
        if "bbox" in self.iou_types:
            results += [
                {"image_id": image_id, "category_id": c, "bbox": b, "score": s}
                for c, b, s in zip(cat_ids, xywh, scores)
            ]
        if "segm" in self.iou_types:
            if "masks" not in out:
                raise ValueError("segm evaluation needs 'masks' in the model outputs")
            results += [
                {"image_id": image_id, "category_id": c, "segmentation": rle, "score": s}
                for c, rle, s in zip(
                    cat_ids,
                    self._encode_masks(out["masks"].detach().cpu()[keep], height, width),
                    scores,
                )
            ]
        return results

    def _cat_id(self, label: int) -> int:
        if self.label_to_cat_id is None:
            return label
        if label not in self.label_to_cat_id:
            raise ValueError(f"model label {label} has no category id in label_to_cat_id")
        return self.label_to_cat_id[label]

    def _encode_masks(self, masks: Tensor, height: int, width: int) -> list[dict[str, Any]]:
        """Soft masks [N,1,H,W] or [N,H,W] -> compressed RLE (json-ready) at the annotated image size."""
        masks = masks.detach().float().cpu()
        if masks.ndim == 3:
            masks = masks[:, None]
        if len(masks) == 0:
            return []
        if masks.shape[-2:] != (height, width):
            masks = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)
        binary = (masks[:, 0] > self.mask_threshold).numpy().astype(np.uint8)
        rles = mask_util.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
        return [{"size": rle["size"], "counts": rle["counts"].decode("ascii")} for rle in rles]

    def _results_of(self, iou_type: str) -> list[dict[str, Any]]:
        key = "bbox" if iou_type == "bbox" else "segmentation"
        return [r for r in self.results if key in r]

    def summarize(self) -> dict[str, float]:
        """COCO metrics as ``{"bbox/AP": ..., "bbox/AP50": ..., "segm/AP": ...}`` (see ``METRIC_NAMES``)."""
        if not self._image_ids:
            raise RuntimeError("nothing to evaluate: call update() or merge() first")
        metrics: dict[str, float] = {}
        for iou_type in self.iou_types:
            quiet = contextlib.nullcontext() if self.verbose else contextlib.redirect_stdout(io.StringIO())
            with quiet:
                coco_dt = self._load_results(self._results_of(iou_type))
                coco_eval = COCOeval(self.coco_gt, coco_dt, iouType=iou_type)
                coco_eval.params.imgIds = self.image_ids
                coco_eval.evaluate()
                coco_eval.accumulate()
                coco_eval.summarize()
            metrics.update({f"{iou_type}/{n}": float(v) for n, v in zip(METRIC_NAMES, coco_eval.stats)})
        return metrics

    def _load_results(self, results: list[dict[str, Any]]) -> COCO:
        if results:
            return self.coco_gt.loadRes(copy.deepcopy(results))  # loadRes adds fields in place
        empty = COCO()  # loadRes cannot take an empty list
        empty.dataset = {
            "images": list(self.coco_gt.dataset["images"]),
            "categories": copy.deepcopy(self.coco_gt.dataset["categories"]),
            "annotations": [],
        }
        empty.createIndex()
        return empty

    def save_json(self, path: str | os.PathLike, iou_type: str | None = None) -> None:
        """Write the results of ``iou_type`` (default: the first) as a COCO results file (``COCO.loadRes``)."""
        iou_type = iou_type or self.iou_types[0]
        if iou_type not in self.iou_types:
            raise ValueError(f"iou_type {iou_type!r} not collected; have {self.iou_types}")
        write_text_atomic(json.dumps(self._results_of(iou_type)), path)
