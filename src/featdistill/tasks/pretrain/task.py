"""The pretrain plug-in: distil a (foundation) teacher's features into a student backbone without labels.

Data (``task: pretrain``, ``data.name: images``): every image under ``data.root`` at any depth (a flat folder,
an ImageFolder, a COCO or a segmentation tree; labels ignored), read by the classification task's code
(decoding, in-memory and streaming paths, ``limit``, ``holdout``, ``on_bad_file``). Each batch gets one view
per image (random resized crop, flip, colour jitter: ``data.options``), which teacher and student both see;
the teacher gets it in its own normalisation and size (:class:`featdistill.weights.foundation.TeacherInput`),
the student in its own. The loss is the distillation terms alone: α weighs them against each other and
``alpha: auto`` starts each at 1. ``data.probe`` (a labeled ImageFolder with ``train``/``test``) gives a kNN
top-1 every evaluation (:mod:`.probe`). The student is saved without its classifier head: its weights load as
``model.student_weights`` of a classifier or as ``pretrained_backbone`` of a detector or segmenter.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...config import ConfigError, RunConfig
from ...distiller.auto_pairs import auto_pairs
from ..classification.data import TensorBatchLoader
from ..classification.streaming import streaming_loader
from ..classification.task import ClassificationTask, three_channels
from ..holdout import check_evaluate_on, split_holdout
from ..ingest import SplitStats
from ..options import builder_options
from .augment import Views
from .models import build_backbone_student, build_foundation_teacher
from .options import LABEL_KEYS
from .probe import ProbeData, knn_top1, pooled_features, probe_data

#: ``featdistill config --task pretrain``: configs/pretrain/dinov2_resnet18.yaml with a generic image folder.
STARTER: dict[str, Any] = {
    "task": "pretrain",
    "data": {"name": "images", "root": "data/images", "image_size": 224, "batch_size": 64, "probe": None},
    "model": {"student": "resnet18", "teacher": "hf:facebook/dinov2-small"},
    "distill": {"method": "cwt", "alpha": "auto", "teacher_dtype": "bfloat16"},
    "train": {"epochs": 30, "optimizer": "adamw", "lr": 1.0e-3, "weight_decay": 0.05, "warmup_epochs": 1},
    "output": {"dir": "runs/pretrain_dinov2_resnet18", "tensorboard": False},
}


def check_unlabeled(cfg: RunConfig) -> None:
    """Refuse, in one line, a pretrain config with labels or a task loss."""
    if cfg.data.name != "images":
        raise ConfigError(
            f"task: pretrain reads unlabeled images, data.name is {cfg.data.name!r}: set data.name: images (it "
            "reads ImageFolder, COCO and segmentation trees too, their labels ignored); labels go in data.probe"
        )
    for section, options in (("data.options", cfg.data.options), ("model.options", cfg.model.options)):
        given = sorted(set(options) & set(LABEL_KEYS))
        if given:
            raise ConfigError(
                f"task: pretrain has no labels and no task loss, but {section} sets {given}: remove them "
                "(fine-tune with task: classification, detection or segmentation afterwards)"
            )


class PretrainTask(ClassificationTask):
    """Unlabeled images in, the distillation terms out (no task loss); kNN top-1 on ``data.probe``."""

    name = "pretrain"
    metric = "knn_top1"
    starter = STARTER
    teacher_run: ClassVar[list[str]] = []  # a foundation teacher comes trained

    def __init__(self, cfg: RunConfig) -> None:
        check_unlabeled(cfg)
        super().__init__(cfg)
        self.probe_layer: str | None = None  # the last distilled student layer, once the pairs are known

    @classmethod
    def prediction(cls, card: dict[str, Any]) -> Any:
        """A pretrained backbone has no output to predict: ``featdistill probe`` scores it, fine-tuning uses it."""
        raise ValueError(
            "featdistill predict runs a trained task's student; a pretrain checkpoint is a backbone without a "
            "head: score it with featdistill probe, or fine-tune it (model.student_weights)"
        )

    @classmethod
    def catalogue(cls) -> list[tuple[str, list[tuple[str, str]]]]:
        """The classification students, and the foundation teachers' forms."""
        (_, rows), *_ = super().catalogue()
        teachers = [
            (
                "hf:<repo id or folder>",
                "a transformers vision backbone (AutoModel: DINOv2/v3, ViT, ConvNeXt, CLIP/SigLIP tower)",
            ),
            ("timm:<name>", "a timm model, e.g. timm:vit_small_patch14_dinov2.lvd142m (weights: timm)"),
        ]
        return [("pretrain: model.student", rows), ("pretrain: model.teacher", teachers)]

    # -- models -------------------------------------------------------------------------------------
    def build_student(self) -> nn.Module:
        m = self.cfg.model
        return build_backbone_student(
            m.student, m.student_weights, m.num_classes, **builder_options(self.cfg, "student")
        )

    def build_teacher(self, name: str | None = None) -> nn.Module:
        """``model.teacher`` or the ``model.teachers`` entry ``name`` (its options over ``model.options``)."""
        m = self.cfg.model
        spec = m.teacher_spec(name)
        options = {**builder_options(self.cfg, "teacher"), **spec.options}
        return build_foundation_teacher(spec.model, spec.weights, m.num_classes, **options)

    def default_pairs(self, student: nn.Module, teacher: nn.Module) -> list[tuple[str, str]]:
        """The student's last stage with the teacher's last stage, or with a ViT's last block as a grid."""
        student_layer, teacher_layer, _ = auto_pairs(
            student, teacher, self.sample_input(), self.teacher_forward
        )[-1]
        self.probe_layer = student_layer
        return [(student_layer, teacher_layer)]

    def teacher_forward(self, teacher: nn.Module, images: torch.Tensor) -> Any:
        """The teacher on the student's view, in the teacher's own normalisation and size (a foundation
        teacher's ``teacher_input``); a teacher without one gets the student's input as it is."""
        wanted = getattr(teacher, "teacher_input", None)
        if wanted is None:
            return teacher(images)
        mean, std = self._normalization(None)
        pixels = images if mean is None else images * _column(std, images) + _column(mean, images)
        x = (pixels - _column(wanted.mean, images)) / _column(wanted.std, images)
        size = wanted.size_for(tuple(images.shape[-2:]))
        if size != tuple(images.shape[-2:]):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return teacher(x)

    # -- data ---------------------------------------------------------------------------------------
    def build_loaders(self, rank: int = 0, world_size: int = 1, evaluate_on: str = "val") -> tuple[Any, Any]:
        """The unlabeled training images with their shared views, and the probe (None without ``data.probe``).

        ``data.holdout`` images are kept out of training; the evaluation is the probe's either way.
        """
        d, seed = self.cfg.data, self.cfg.train.seed
        if not self.cfg.model.distilled:
            raise ConfigError(
                "task: pretrain learns from a teacher alone (no labels, no task loss): set model.teacher or "
                "model.teachers"
            )
        if isinstance(d.augment, dict):
            raise ConfigError(
                "task: pretrain switches each view in data.options (resized_crop, flip, color_jitter); "
                "data.augment is true or false"
            )
        check_evaluate_on(evaluate_on, d.holdout)
        self.data_stats = {}
        if self._plan_memory([(d.train_split, d.limit)]).in_memory:
            train = self._memory_loader(rank, world_size)
        else:
            mean, std = self._normalization(None)
            train = streaming_loader(
                d.root, d.train_split, name="images", train=True, batch_size=d.batch_size, image_size=d.image_size,
                crop=d.crop, augment=d.augment, limit=d.limit, holdout=d.holdout, bits=d.bits, mean=mean, std=std,
                on_bad_file=d.on_bad_file, workers=d.workers, seed=seed, rank=rank, world_size=world_size,
                stats=self._stats(d.train_split),
            )  # fmt: skip
            self.normalization = (train.dataset.mean, train.dataset.std)
            self.input_size = tuple(train.dataset.size)
        return train, self._probe()

    def _stats(self, split: str) -> SplitStats:
        """The ingest report's record of the training images: all of ``data.root`` (no split folder)."""
        self.data_stats[split] = SplitStats(split, self.cfg.data.root)
        return self.data_stats[split]

    def _memory_loader(self, rank: int, world_size: int) -> TensorBatchLoader:
        d, o = self.cfg.data, self.options
        images, _ = self._load(d.train_split, d.limit, seed=1000 * (self.cfg.train.seed // 1000))
        if d.holdout is not None:
            keep, held = split_holdout(len(images), d.holdout)
            self.data_stats[d.train_split].held_out = len(held)
            images = images[keep]
        images = three_channels(images)
        self.input_size = (images.shape[-2], images.shape[-1])
        mean, std = self.normalization = self._normalization(images)
        views = Views(o.resized_crop, tuple(o.crop_scale), o.flip, o.color_jitter) if d.augment else None
        return TensorBatchLoader(
            images, torch.zeros(len(images), dtype=torch.int64), d.batch_size, shuffle=True, mean=mean, std=std,
            drop_last=True, seed=self.cfg.train.seed, rank=rank, world_size=world_size,
            channels_last=self.cfg.train.channels_last, views=views,
        )  # fmt: skip

    def _probe(self) -> ProbeData | None:
        """``data.probe``'s train and test splits at the training size, in the student's normalisation."""
        d = self.cfg.data
        if d.probe is None:
            return None
        mean, std = self._normalization(None)
        return probe_data(d.probe, self.image_size(), mean, std, d.eval_batch_size or d.batch_size)

    def build_eval_loader(self) -> Any:
        """The probe alone (``featdistill eval``), normalised as the card says."""
        if self.cfg.data.probe is None:
            raise ValueError(
                "a pretrain student is evaluated on data.probe (an ImageFolder with train and test): set it"
            )
        return self._probe()

    # -- training and evaluation ---------------------------------------------------------------------
    def loss_terms(self, output: Any, batch: Any) -> dict[str, torch.Tensor]:
        """No task loss: the distillation terms are the whole loss."""
        return {}

    def evaluation_layer(self) -> str:
        """The layer the probe reads: the last distilled student layer (the model's pooled output by default)."""
        pairs = self.cfg.distill.pairs
        if isinstance(pairs, list) and pairs:
            last = pairs[-1]
            return str(last["student"] if isinstance(last, dict) else last[0])
        return self.probe_layer or ""

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        """kNN top-1 (%) on the probe's test split, the probe's train split the neighbours."""
        layer = self.evaluation_layer()
        train, train_labels = pooled_features(model, layer, loader.train, device)
        test, test_labels = pooled_features(model, layer, loader.test, device)
        return {"knn_top1": knn_top1(train, train_labels, test, test_labels)}

    # -- the student card ----------------------------------------------------------------------------
    def card_fields(self, student: nn.Module) -> dict[str, Any]:
        """The classification card's preprocessing; no outputs or classes (a backbone)."""
        return {**super().card_fields(student), "num_classes": 0, "classes": []}

    def apply_card(self, card: dict[str, Any]) -> None:
        """The normalisation and input size of the card (a backbone has no class names), and the last distilled
        student layer its pairs name (what the probe reads)."""
        super().apply_card({**card, "classes": []})
        pairs = (card.get("distillation") or {}).get("pairs")
        if pairs:
            self.probe_layer = str(pairs[-1][0])

    @classmethod
    def describe_outputs(cls, card: dict[str, Any]) -> str:
        """What the exported backbone returns."""
        return "pooled features `[batch, channels]` (the classifier head was removed: a backbone)"


def _column(values: Any, like: torch.Tensor) -> torch.Tensor:
    """Per-channel values as a ``(1, C, 1, 1)`` tensor on ``like``'s device and dtype."""
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
