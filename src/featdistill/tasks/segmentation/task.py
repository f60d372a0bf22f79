"""The segmentation plug-in: PSPNet / DeepLabV3 / FCN students and teachers on CamVid or Cityscapes.

Configuration (``task: segmentation``):

- ``model.student`` / ``model.teacher``: ``pspnet``, ``deeplabv3`` or ``fcn`` (see :func:`build_segmenter`);
  ``model.num_classes`` must match the data (11 for CamVid, 19 for Cityscapes).
- ``model.options``: keyword arguments of :func:`build_segmenter` given to both models (``backbone``,
  ``aux``, ``channels``, ``pretrained_backbone``, ...). The nested mappings ``student`` and ``teacher`` add
  or override keys for one side only, e.g.
  ``options: {aux: true, student: {backbone: resnet18}, teacher: {backbone: resnet101}}``.
- ``model.student_weights`` / ``model.teacher_weights``: local whole-model checkpoints (``.pt``/``.pth``/
  ``.bin``/``.safetensors``: a state_dict, or a featdistill checkpoint, whose ``student`` entry is loaded: a
  teacher trained by featdistill loads directly). Heads of another class count are left out (a warning says
  so). ImageNet weights by name (``torchvision``) go in ``model.options.pretrained_backbone``.
- ``data.name`` (``camvid`` or ``cityscapes``), ``root``, ``train_split``, ``val_split``, ``limit`` and
  ``val_limit`` (that many evenly spaced images of the split), ``batch_size``, ``eval_batch_size``,
  ``workers``, ``in_memory`` (decode the whole split once; right for CamVid, not for Cityscapes),
  ``augment`` (false: normalisation only, full images), ``holdout`` (a seeded random subset of the
  training images, after ``limit``, left out of training and evaluated like the validation split).
- ``data.options``: ``crop_size`` (int or [h, w]; default ``data.image_size``, else 512), ``scale_range``
  ([0.5, 2.0]), ``flip_prob`` (0.5), ``photometric`` (true), ``eval_mode`` (``whole`` or ``slide``),
  ``window`` (slide window, default the crop size) and ``stride`` (default 2/3 of the window).

Default pairs: ``backbone.layer4 -> backbone.layer4`` (CWT on the last backbone stage, the paper's setting).
CWD on the logits is an opt-in extra pair, ``output`` being the model's own output:
``distill.pairs: [[backbone.layer4, backbone.layer4, cwt], ["output[out]", "output[out]", cwd]]``.

Loss terms: ``ce`` (cross-entropy on ``out``, 255 ignored) and ``aux_ce`` (0.4 x cross-entropy on ``aux``
when the model returns it). Metrics, in percent (0-100): ``miou``, ``pixel_acc``, ``mean_acc`` and
``iou/<class>`` for every class with a defined IoU (present in the ground truth or the predictions).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ...config import RunConfig
from ...distiller.auto_pairs import auto_pairs
from ...distiller.distiller import default_teacher_forward
from ...engine import ResumableLoader
from ...engine.distributed import sum_across_ranks
from ...weights import load_weights
from ..holdout import check_evaluate_on, split_holdout
from ..image_batches import ImageLabelBatches
from ..ingest import ReportsData, SplitStats
from .augment import build_eval_transform, build_train_transform
from .data import IGNORE_INDEX, build_dataset
from .inference import predict
from .metrics import SegmentationMeter
from .models import build_segmenter

AUX_WEIGHT = 0.4
DEFAULT_CROP = 512
DATA_OPTIONS = ("crop_size", "scale_range", "flip_prob", "photometric", "eval_mode", "window", "stride")
DEFAULT_PAIR = "backbone.layer4"


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)


def _evenly_spaced(dataset: Dataset, limit: int | None) -> Dataset:
    """The first, last and evenly spaced images in between (all of them without a limit)."""
    n = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= n:
        return dataset
    if limit < 1:
        raise ValueError(f"data.limit must be at least 1, got {limit}")
    return Subset(dataset, torch.linspace(0, n - 1, limit).round().long().unique().tolist())


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over non-ignored pixels; 0 (not NaN) when a batch has none."""
    labels = labels.to(logits.device)
    total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp(min=1)


class SegmentationTask(ImageLabelBatches, ReportsData):
    """Semantic segmentation: ``(images, labels)`` batches, ``{"out", "aux"}`` logit dicts out."""

    name = "segmentation"
    metric = "miou"  # what a sweep selects on (higher is better)

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        options = cfg.data.options
        unknown = sorted(set(options) - set(DATA_OPTIONS))
        if unknown:
            raise ValueError(f"unknown data.options {unknown} for segmentation; valid: {list(DATA_OPTIONS)}")
        self.crop = _pair(options.get("crop_size", cfg.data.image_size or DEFAULT_CROP))
        self.eval_mode = str(options.get("eval_mode", "whole"))
        if self.eval_mode not in ("whole", "slide"):
            raise ValueError(f"data.options.eval_mode must be 'whole' or 'slide', got {self.eval_mode!r}")
        self.window = _pair(options.get("window", self.crop))
        self.stride = _pair(options.get("stride", tuple(max(1, 2 * w // 3) for w in self.window)))
        self.num_classes = cfg.model.num_classes
        self.class_names: list[str] = [str(i) for i in range(self.num_classes)]
        self.data_stats: dict[str, SplitStats] = {}  # split -> what was read (the ingest report)

    # -- models -------------------------------------------------------------------------------------
    def _model_options(self, role: str) -> dict[str, Any]:
        """``model.options`` without the per-side mappings, updated with the ``role`` mapping."""
        shared = dict(self.cfg.model.options)
        sides = {side: shared.pop(side, None) or {} for side in ("student", "teacher")}
        for side, value in sides.items():
            if not isinstance(value, dict):
                raise ValueError(f"model.options.{side} must be a mapping of options, got {value!r}")
        return {**shared, **sides[role]}

    def _build(
        self, name: str, role: str, weights: str | None, options: dict[str, Any] | None = None
    ) -> nn.Module:
        model = build_segmenter(name, self.num_classes, **{**self._model_options(role), **(options or {})})
        if weights is not None:
            load_weights(model, weights, name, self.num_classes)
        return model

    def build_student(self) -> nn.Module:
        m = self.cfg.model
        return self._build(m.student, "student", m.student_weights)

    def build_teacher(self, name: str | None = None) -> nn.Module:
        """``model.teacher``, or the ``model.teachers`` entry ``name`` (its options over the teacher's)."""
        spec = self.cfg.model.teacher_spec(name)
        return self._build(spec.model, "teacher", spec.weights, spec.options)

    def default_pairs(self, student: nn.Module, teacher: nn.Module) -> list[tuple[str, str]]:
        """``backbone.layer4`` of both; the last shared-resolution stage for backbones without one."""
        names = [dict(model.named_modules()) for model in (student, teacher)]
        if all(DEFAULT_PAIR in n for n in names):
            return [(DEFAULT_PAIR, DEFAULT_PAIR)]
        student_layer, teacher_layer, _ = auto_pairs(
            student, teacher, self.sample_input(), default_teacher_forward
        )[-1]
        return [(student_layer, teacher_layer)]

    def sample_input(self) -> torch.Tensor:
        return torch.randn(2, 3, *self.crop)

    # -- data ---------------------------------------------------------------------------------------
    def _dataset(self, split: str, train: bool, limit: int | None) -> Dataset:
        d, options = self.cfg.data, self.cfg.data.options
        if train and d.augment:
            transform = build_train_transform(
                self.crop,
                scale_range=tuple(options.get("scale_range", (0.5, 2.0))),
                flip_prob=float(options.get("flip_prob", 0.5)),
                photometric=bool(options.get("photometric", True)),
                ignore_index=IGNORE_INDEX,
            )
        else:
            transform = build_eval_transform()
        stats = self.data_stats[split] = SplitStats(split, f"{d.root}/{split}")
        dataset = build_dataset(d.name, d.root, split, transform, in_memory=d.in_memory, stats=stats)
        if dataset.num_classes != self.num_classes:
            raise ValueError(
                f"{d.name} has {dataset.num_classes} classes but model.num_classes is {self.num_classes}; "
                f"set model.num_classes: {dataset.num_classes}"
            )
        self.class_names = list(dataset.classes)
        chosen = _evenly_spaced(dataset, limit)
        stats.images = len(chosen)  # type: ignore[arg-type]
        return chosen

    def build_loaders(
        self, rank: int = 0, world_size: int = 1, evaluate_on: str = "val"
    ) -> tuple[ResumableLoader, DataLoader]:
        """A resumable, shuffled training loader (incomplete batches dropped) and an evaluation loader.

        With several processes each rank trains on its share of every epoch and evaluates on a disjoint
        share of the evaluation images (``evaluate`` sums the confusion matrices of all ranks). With
        ``data.holdout`` the training loader never holds the held-out images. ``evaluate_on`` picks the
        evaluation images: ``val`` (``data.val_split``) or ``holdout`` (then ``data.val_split`` is never
        read): the held-out training images under the evaluation transform.
        """
        d = self.cfg.data
        check_evaluate_on(evaluate_on, d.holdout)
        self.data_stats = {}
        train_set = self._dataset(d.train_split, True, d.limit)
        if d.holdout is not None:
            train_set, held_set = self._hold_out(train_set)
            self.data_stats[d.train_split].held_out = len(held_set)
        val_set = held_set if evaluate_on == "holdout" else self._dataset(d.val_split, False, d.val_limit)
        train = ResumableLoader(
            train_set,
            d.batch_size,
            True,
            seed=self.cfg.train.seed,
            rank=rank,
            world_size=world_size,
            workers=d.workers,
            drop_last=True,  # BatchNorm after PSPNet's 1x1 pooling needs batches of at least 2
        )
        if len(train) == 0:
            raise ValueError(
                f"data.batch_size {d.batch_size} exceeds the {train.sampler.per_rank} training images per "
                f"process of {d.name} {d.train_split!r}; lower data.batch_size or raise data.limit"
            )
        if world_size > 1:
            val_set = Subset(val_set, list(range(rank, len(val_set), world_size)))  # type: ignore[arg-type]
        val = DataLoader(val_set, batch_size=d.eval_batch_size or d.batch_size, num_workers=d.workers)
        return train, val

    def _hold_out(self, train_set: Dataset) -> tuple[Dataset, Dataset]:
        """``(training images without the holdout, held-out images under the evaluation transform)``."""
        if isinstance(train_set, Subset):  # data.limit
            base, positions = train_set.dataset, list(train_set.indices)
        else:
            base, positions = train_set, list(range(len(train_set)))  # type: ignore[arg-type]
        keep, held = split_holdout(len(positions), self.cfg.data.holdout)  # type: ignore[arg-type]
        unaugmented = copy.copy(base)  # shares the images decoded by data.in_memory
        unaugmented.transform = build_eval_transform()
        return Subset(base, [positions[i] for i in keep]), Subset(unaugmented, [positions[i] for i in held])

    # -- training and evaluation ---------------------------------------------------------------------
    def loss_terms(self, output: Any, batch: Any) -> dict[str, torch.Tensor]:
        """``ce`` on the main logits plus ``aux_ce`` = 0.4 x CE on the auxiliary logits when present."""
        labels = batch[1]
        if not isinstance(output, dict):
            return {"ce": cross_entropy(output, labels)}
        terms = {"ce": cross_entropy(output["out"], labels)}
        if output.get("aux") is not None:
            terms["aux_ce"] = AUX_WEIGHT * cross_entropy(output["aux"], labels)
        return terms

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        """mIoU, pixel accuracy, mean class accuracy and per-class IoU (%), over all ranks."""
        meter = SegmentationMeter(self.num_classes, IGNORE_INDEX, device)
        for batch in loader:
            images, labels = self.to_device(batch, device)
            logits = predict(model, images, mode=self.eval_mode, window=self.window, stride=self.stride)
            meter.update(logits.argmax(1), labels)
        sum_across_ranks(meter.confusion)
        result = meter.compute()
        metrics = {key: 100 * float(result[key]) for key in ("miou", "pixel_acc", "mean_acc")}
        for name, iou in zip(self.class_names, result["iou"]):  # type: ignore[arg-type]
            if not math.isnan(iou):  # NaN: the class is neither in the ground truth nor predicted
                metrics[f"iou/{name.replace(' ', '_')}"] = 100 * iou
        return metrics
