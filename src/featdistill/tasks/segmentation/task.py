"""The segmentation plug-in: students and teachers of any family on CamVid, Cityscapes, VOC, ADE20K or masks.

Configuration (``task: segmentation``):

- ``model.student`` / ``model.teacher``: ``pspnet``, ``deeplabv3`` or ``fcn`` (see :func:`build_segmenter`;
  ``model.options.backbone: timm:<name>`` puts a timm encoder under them), ``hf:<repo or dir>`` (a transformers
  semantic segmenter) or ``smp:<Architecture>/<encoder>`` (segmentation_models_pytorch), in any mix (see
  :func:`build_model`); ``model.num_classes`` must match the data (11 for CamVid, 19 for Cityscapes).
- ``model.options``: keyword arguments of :func:`build_segmenter` given to both models (``backbone``,
  ``aux``, ``channels``, ``pretrained_backbone``, ...). The nested mappings ``student`` and ``teacher`` add
  or override keys for one side only, e.g.
  ``options: {aux: true, student: {backbone: resnet18}, teacher: {backbone: resnet101}}``.
- ``model.student_weights`` / ``model.teacher_weights``: local whole-model checkpoints (``.pt``/``.pth``/
  ``.bin``/``.safetensors``: a state_dict, or a featdistill checkpoint, whose ``student`` entry is loaded: a
  teacher trained by featdistill loads directly). Heads of another class count are left out (a warning says
  so). ImageNet weights by name (``torchvision``) go in ``model.options.pretrained_backbone``.
- ``data.name`` (``camvid``, ``cityscapes``, ``voc``, ``ade20k`` or ``masks``: see :mod:`.data`), ``root``, ``train_split``, ``val_split``, ``limit`` and
  ``val_limit`` (that many evenly spaced images of the split), ``batch_size``, ``eval_batch_size``,
  ``workers``, ``in_memory`` (decode the whole split once; auto: when it fits in memory),
  ``augment`` (false: normalisation only, full images; ``{scale, crop, flip}``: one flag each), ``holdout`` (a seeded random subset of the
  training images, after ``limit``, left out of training and evaluated like the validation split).
- ``data.options``: ``crop_size`` (int or [h, w]; default ``data.image_size``, else 512), ``scale_range``
  ([0.5, 2.0]), ``flip_prob`` (0.5), ``photometric`` (true), ``eval_mode`` (``whole`` or ``slide``),
  ``window`` (slide window, default the crop size) and ``stride`` (default 2/3 of the window); for ``masks``:
  ``images_dir`` / ``masks_dir`` (``images`` / ``masks``), ``order`` (``split_first``: root/<split>/images;
  ``folder_first``: mmseg's root/img_dir/<split>), ``ignore_index`` (255) and ``reduce_zero_label`` (false).
- ``data.on_bad_file: skip`` leaves out pairs whose mask does not fit (counted in the ingest report).

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
from ...engine import ResumableLoader
from ...engine.distributed import is_main, sum_across_ranks
from ...weights import load_weights
from ...weights.huggingface import HFSemanticSegmenter, card_hf_config, hf_model_config, hf_model_from_config
from ..base import TaskBase
from ..holdout import check_evaluate_on, split_holdout
from ..image_batches import ImageLabelBatches
from ..ingest import ReportsData, SplitStats
from ..options import augment_options, builder_options, data_options, model_options
from .augment import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, build_train_transform
from .data import build_dataset
from .inference import predict
from .labels import IGNORE_INDEX
from .metrics import SegmentationMeter
from .models import SEGMENTERS, build_model
from .prediction import SegmentationPrediction, score_label_pngs

AUX_WEIGHT = 0.4
DEFAULT_CROP = 512
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


#: ``featdistill config --task segmentation``: configs/segmentation/camvid_cpu_cwt.yaml with a generic data folder. Its teacher
#: is read from ``runs/segmentation_teacher/last.pt``, which the starter trains first with ``TEACHER_RUN``.
STARTER: dict[str, Any] = {
    "task": "segmentation",
    "data": {
        "name": "camvid",
        "root": "data/camvid",
        "batch_size": 8,
        "options": {"crop_size": 96, "scale_range": [0.75, 1.5]},
    },
    "model": {
        "student": "pspnet",
        "teacher": "pspnet",
        "num_classes": 11,
        "teacher_weights": "runs/segmentation_teacher/last.pt",
        "options": {"student": {"backbone": "resnet18"}, "teacher": {"backbone": "resnet18"}},
    },
    "distill": {"method": "cwt", "alpha": 5.7e-4},
    "train": {"epochs": 8, "lr": 0.02, "schedule": "poly", "eval_every": 8},
    "output": {"dir": "runs/segmentation_cwt", "tensorboard": False},
}
TEACHER_RUN = ["model.teacher=null", "train.epochs=24"]  # --set items: the starter trains its teacher


class SegmentationTask(ImageLabelBatches, ReportsData, TaskBase):
    """Semantic segmentation: ``(images, labels)`` batches, ``{"out", "aux"}`` logit dicts out."""

    name = "segmentation"
    metric = "miou"  # what a sweep selects on (higher is better)
    starter = STARTER
    teacher_run = TEACHER_RUN
    data_state = ("class_names", "data_stats")  # read from the data: shared by a lockstep group

    # featdistill predict: prediction(card) builds the task's Prediction (see :mod:`.prediction`)
    prediction = SegmentationPrediction

    @classmethod
    def score_predictions(cls, predictions: Any, truth: Any, **options: Any) -> dict[str, float]:
        """predict's label PNGs against ``truth``, a segmentation dataset (``images_root=``: the folder predict
        read): mIoU, pixel and mean class accuracy, in %."""
        return score_label_pngs(predictions, truth, **options)

    @classmethod
    def catalogue(cls) -> list[tuple[str, list[tuple[str, str]]]]:
        """The segmenters and the backbones each takes."""
        rows = [
            (name, f"backbones (model.options.backbone): {', '.join(b)}, or timm:<any timm encoder>")
            for name, b in SEGMENTERS.items()
        ]
        rows.append(
            ("hf:<repo or dir>", "transformers AutoModelForSemanticSegmentation (SegFormer, UperNet, ...)")
        )
        try:
            from .smp_models import smp_architectures

            architectures = ", ".join(smp_architectures())
        except ImportError:
            architectures = "needs pip install 'featdistill[seg]'"
        rows.append(("smp:<Architecture>/<encoder>", f"segmentation_models_pytorch: {architectures}"))
        return [("segmentation: model.student, model.teacher", rows)]

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.options = options = data_options(cfg)
        model_options(cfg)
        self.crop = _pair(options.crop_size or cfg.data.image_size or DEFAULT_CROP)
        self.eval_mode = options.eval_mode
        self.window = _pair(options.window or self.crop)
        self.stride = _pair(options.stride or tuple(max(1, 2 * w // 3) for w in self.window))
        self.num_classes = cfg.model.num_classes
        self.class_names: list[str] = [str(i) for i in range(self.num_classes)]
        self.mean, self.std = list(IMAGENET_MEAN), list(IMAGENET_STD)  # the card's after apply_card
        self._card_config: dict[str, Any] | None = None  # an hf: student's transformers config, from its card
        self.data_stats: dict[str, SplitStats] = {}  # split -> what was read (the ingest report)

    # -- models -------------------------------------------------------------------------------------
    def _build(
        self, name: str, role: str, weights: str | None, options: dict[str, Any] | None = None
    ) -> nn.Module:
        model = build_model(name, self.num_classes, **{**builder_options(self.cfg, role), **(options or {})})
        if weights is not None:
            load_weights(model, weights, name, self.num_classes)
        return model

    def build_student(self) -> nn.Module:
        """``model.student``; an ``hf:`` one of a card (:meth:`apply_card`) from the transformers config it keeps,
        so that a checkpoint's student is rebuilt without its ``hf:`` folder or the hub."""
        m = self.cfg.model
        if self._card_config is not None:
            return HFSemanticSegmenter(hf_model_from_config(self._card_config, "segmentation"))
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
            student, teacher, self.sample_input(), self.teacher_forward
        )[-1]
        return [(student_layer, teacher_layer)]

    def sample_input(self) -> torch.Tensor:
        return torch.randn(2, 3, *self.crop)

    # -- data ---------------------------------------------------------------------------------------
    def _dataset(self, split: str, train: bool, limit: int | None) -> Dataset:
        d, options, augment = self.cfg.data, self.options, augment_options(self.cfg)
        if train and augment:
            transform = build_train_transform(
                self.crop,
                scale_range=tuple(options.scale_range),
                flip_prob=options.flip_prob,
                photometric=options.photometric,
                ignore_index=IGNORE_INDEX,
                mean=self.mean,
                std=self.std,
                scale=augment.scale,
                crop=augment.crop,
                flip=augment.flip,
            )
        else:
            transform = build_eval_transform(self.mean, self.std)
        stats = self.data_stats[split] = SplitStats(split, f"{d.root}/{split}")
        layout = {  # the masks layout's own options; the named layouts fix theirs
            "num_classes": self.num_classes,
            "images_dir": options.images_dir,
            "masks_dir": options.masks_dir,
            "order": options.order,
            "ignore_index": options.ignore_index,
            "reduce_zero_label": options.reduce_zero_label,
        }
        dataset = build_dataset(
            d.name,
            d.root,
            split,
            transform,
            in_memory=d.in_memory,
            stats=stats,
            on_bad_file=d.on_bad_file,
            **(layout if d.name.lower() == "masks" else {}),
            workers=options.decode_workers,
            progress=self.cfg.output.progress and is_main(),
        )
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
        unaugmented.transform = build_eval_transform(self.mean, self.std)
        return Subset(base, [positions[i] for i in keep]), Subset(unaugmented, [positions[i] for i in held])

    def build_eval_loader(self) -> DataLoader:
        """``data.val_split`` alone (``data.val_limit`` images): ``eval`` never opens the training split."""
        d = self.cfg.data
        self.data_stats = {}
        val_set = self._dataset(d.val_split, False, d.val_limit)
        return DataLoader(val_set, batch_size=d.eval_batch_size or d.batch_size, num_workers=d.workers)

    # -- the student card --------------------------------------------------------------------------------
    def configured_preprocessing(self) -> dict[str, Any]:
        """The preprocessing keys the config fixes (compared with a checkpoint's card)."""
        return {"input_size": list(self.crop)}

    @classmethod
    def describe_outputs(cls, card: dict[str, Any]) -> str:
        """The exported segmenter's output, for its model card."""
        return (
            "per-pixel logits (`out`, `[batch, classes, H, W]`); argmax gives class indices, "
            f"names in `classes`, label {card.get('ignore_index')} ignored in training"
        )

    def card_fields(self, student: nn.Module) -> dict[str, Any]:
        """Normalisation, training crop, class names and ignore index for the student card.

        Segmenters run on whole images of any size (``resize: none``); ``input_size`` is the training crop.
        """
        preprocessing = {
            **self.configured_preprocessing(),
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": "none",
            "bits": 8,  # segmentation decodes 8-bit pixels
            "channels": 3,
            "color_mode": "RGB",
            "normalize_in_model": False,
        }
        fields = {
            "num_classes": self.num_classes,
            "preprocessing": preprocessing,
            "classes": list(self.class_names),
            "ignore_index": IGNORE_INDEX,
        }
        config = hf_model_config(student) if isinstance(student, HFSemanticSegmenter) else None
        if config is not None:  # predict and eval rebuild it without the hf: folder or the hub
            fields["model_config"] = config
        return fields

    def apply_card(self, card: dict[str, Any]) -> None:
        """Take the normalisation and class names from a student card, and an ``hf:`` student's transformers
        config (:meth:`build_student` builds it from that)."""
        self._card_config = card_hf_config(card)
        p = card["preprocessing"]
        self.mean, self.std = list(p["mean"]), list(p["std"])
        self.class_names = list(card["classes"])

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
