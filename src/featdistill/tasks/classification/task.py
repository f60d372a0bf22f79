"""The classification plug-in: builds classifiers and loaders, gives cross-entropy, top-1/top-5.

Data (``task: classification``): ``data.in_memory`` (default) decodes a split once and augments whole
batches; ``false`` streams ImageFolder files through DataLoader workers. Both read the same files
(``limit``/``val_limit``: class-balanced first images), decode them alike (``data.bits``), keep the native
size unless ``image_size`` is set, and with ``data.crop: pad`` augment alike (zero-padded random crop by
``data.options.pad``, default ``image_size // 8``, and flip). ``data.options.mean``/``std`` fix the
normalisation; otherwise it is estimated from the training images (streaming: up to 1000 of them).
``data.options.cache_dir`` caches decoded in-memory ImageFolder splits.

After training, the student card (:mod:`featdistill.card`) is the one source of the normalisation, size and
class names: :meth:`ClassificationTask.apply_card` sets them, and :meth:`build_eval_loader` reads only the
evaluation split with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...config import RunConfig
from ...distiller.auto_pairs import auto_pairs
from ...engine.distributed import sum_across_ranks
from ..base import TaskBase
from ..holdout import check_evaluate_on, split_holdout
from ..image_batches import ImageLabelBatches
from ..ingest import ReportsData, SplitStats, check_not_constant
from ..options import data_options
from .data import TensorBatchLoader, channel_stats, class_names, image_size_of, load_tensors
from .models import build_classifier, list_classifiers
from .prediction import ClassificationPrediction
from .streaming import EVAL_CROP_FRACTION, streaming_loader
from .synthetic import make_synthetic

#: ``featdistill config --task classification``: configs/classification/cifar10_cpu_cwt.yaml with a generic data folder. Its teacher
#: is read from ``runs/classification_teacher/last.pt``, which the starter trains first with ``TEACHER_RUN``.
STARTER: dict[str, Any] = {
    "task": "classification",
    "data": {"name": "imagefolder", "root": "data/cifar10", "limit": 5000, "batch_size": 64},
    "model": {
        "student": "resnet8",
        "teacher": "resnet20",
        "num_classes": 10,
        "teacher_weights": "runs/classification_teacher/last.pt",
    },
    "distill": {"method": "cwt", "pairs": [["layer3", "layer3"]], "alpha": 3.0e-4},
    "train": {"epochs": 15, "lr": 0.05, "eval_every": 5},
    "output": {"dir": "runs/classification_cwt", "tensorboard": False},
}
TEACHER_RUN = [
    "model.teacher=null",
    "model.student=resnet20",
    "train.epochs=30",
]  # --set items: the starter trains its teacher


class ClassificationTask(ImageLabelBatches, ReportsData, TaskBase):
    """Image classification: ``(images, labels)`` batches, logits out."""

    name = "classification"
    metric = "top1"  # what a sweep selects on (higher is better)
    starter = STARTER
    teacher_run = TEACHER_RUN
    data_state = (
        "input_size",
        "normalization",
        "classes",
        "data_stats",
    )  # read from the data: shared by a lockstep group

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.options = data_options(cfg)
        self.data_stats: dict[str, SplitStats] = {}  # split -> what was read (the ingest report)
        self.input_size: tuple[int, int] | None = None  # (H, W) of the training images, once loaded
        self.normalization: tuple[list[float], list[float]] | None = None  # (mean, std) in use, once known
        self.classes: list[str] | None = None  # output index -> class name, once known
        self.color_mode = "L" if cfg.data.name in ("mnist", "fashionmnist") else "RGB"

    # featdistill predict: prediction(card) builds the task's Prediction (see :mod:`.prediction`)
    prediction = ClassificationPrediction

    @classmethod
    def catalogue(cls) -> list[tuple[str, list[tuple[str, str]]]]:
        """featdistill's and torchvision's classifiers by name, and the hub forms."""
        import torchvision

        from_torchvision = set(torchvision.models.list_models(module=torchvision.models))
        rows = [
            (name, "torchvision" if name in from_torchvision else "featdistill")
            for name in list_classifiers()
        ]
        hub = [
            ("timm:<name>", "any timm model, e.g. timm:resnet50 (pip install 'featdistill[hub]')"),
            (
                "hf:<repo id or folder>",
                "a Hugging Face image classifier (transformers AutoModelForImageClassification)",
            ),
        ]
        return [("classification: model.student, model.teacher", rows + hub)]

    # -- models -------------------------------------------------------------------------------------
    def build_student(self) -> nn.Module:
        m = self.cfg.model
        return build_classifier(m.student, m.num_classes, m.student_weights, **m.options)

    def build_teacher(self, name: str | None = None) -> nn.Module:
        """``model.teacher``, or the ``model.teachers`` entry ``name`` (its options over ``model.options``)."""
        m = self.cfg.model
        spec = m.teacher_spec(name)
        return build_classifier(spec.model, m.num_classes, spec.weights, **{**m.options, **spec.options})

    def default_pairs(self, student: nn.Module, teacher: nn.Module) -> list[tuple[str, str]]:
        """The paper's classification setting: the last spatial stage of both networks."""
        student_layer, teacher_layer, _ = auto_pairs(
            student, teacher, self.sample_input(), self.teacher_forward
        )[-1]
        return [(student_layer, teacher_layer)]

    def image_size(self) -> tuple[int, int]:
        """(H, W) the student is trained on: ``data.image_size``, else the size of the data's images."""
        d = self.cfg.data
        if d.image_size is not None:
            return d.image_size, d.image_size
        if d.name == "synthetic":
            return 32, 32
        if self.input_size is None:
            try:
                self.input_size = image_size_of(d.name, d.root, d.train_split)
            except (OSError, ValueError) as err:
                raise FileNotFoundError(
                    f"{err}; the student's input size is read from the training data when data.image_size is "
                    "unset: make the data readable or set data.image_size to the size it was trained on"
                ) from None
        return self.input_size

    def sample_input(self) -> torch.Tensor:
        """Two random images at the training size (dry runs, export)."""
        return torch.randn(2, 3, *self.image_size())

    # -- data ---------------------------------------------------------------------------------------
    def _stats(self, split: str) -> SplitStats:
        self.data_stats[split] = SplitStats(split, f"{self.cfg.data.root}/{split}")
        return self.data_stats[split]

    def _load(self, split: str, limit: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        d, stats = self.cfg.data, self._stats(split)
        if d.name == "synthetic":
            n = limit or 5000
            images, labels = make_synthetic(n, self.cfg.model.num_classes, d.image_size or 32, seed=seed)
            stats.root, stats.images = "generated", n
            stats.classes.update(str(c) for c in labels.tolist())
            stats.sizes[f"{images.shape[-1]}x{images.shape[-2]}"] = n
            stats.formats["RGB"] = n
        else:
            images, labels, classes = load_tensors(
                d.name,
                d.root,
                split,
                image_size=d.image_size,
                limit=limit,
                on_bad_file=d.on_bad_file,
                cache_dir=self.options.cache_dir,
                bits=d.bits,
                stats=stats,
            )
            if split == d.train_split:
                self.classes = list(classes)
        check_not_constant(images, split, stats.root)
        return images, labels

    def _normalization(self, images: torch.Tensor | None) -> tuple[list[float] | None, list[float] | None]:
        """The card's (after :meth:`apply_card`), ``data.options.mean``/``std`` if given, else the training
        images' statistics (None: estimate)."""
        if self.normalization is not None:
            return self.normalization
        if self.options.mean is not None:
            return [float(v) for v in self.options.mean], [float(v) for v in self.options.std]
        return channel_stats(images) if images is not None else (None, None)

    # -- the student card --------------------------------------------------------------------------------
    def configured_preprocessing(self) -> dict[str, Any]:
        """The preprocessing keys the config itself fixes (compared with a checkpoint's card)."""
        d = self.cfg.data
        resize = "center_crop" if d.crop == "resized" else "exact" if d.image_size is not None else "none"
        fixed: dict[str, Any] = {"bits": d.bits, "color_mode": self.color_mode, "resize": resize}
        if d.image_size is not None:
            fixed["input_size"] = [d.image_size, d.image_size]
        if self.options.mean is not None:
            fixed["mean"] = [float(v) for v in self.options.mean]
            fixed["std"] = [float(v) for v in self.options.std]
        return fixed

    @classmethod
    def describe_outputs(cls, card: dict[str, Any]) -> str:
        """The exported classifier's output, for its model card."""
        return "logits `[batch, classes]`, class names in the sidecar's `classes`"

    def card_fields(self, student: nn.Module) -> dict[str, Any]:
        """What the student card needs from the data: preprocessing and class names (see featdistill.card)."""
        d = self.cfg.data
        mean, std = self._normalization(None)
        size = self.input_size or (self.image_size() if d.image_size or d.name == "synthetic" else None)
        preprocessing = {
            **self.configured_preprocessing(),
            "mean": mean,
            "std": std,
            "input_size": list(size) if size else None,
            "channels": 3,
            "normalize_in_model": False,
        }
        if preprocessing["resize"] == "center_crop":
            preprocessing["crop_fraction"] = EVAL_CROP_FRACTION
        k = self.cfg.model.num_classes
        return {
            "num_classes": k,
            "preprocessing": preprocessing,
            "classes": self.classes or list(map(str, range(k))),
        }

    def apply_card(self, card: dict[str, Any]) -> None:
        """Take the normalisation, input size and class names from a student card (no training data read)."""
        p = card["preprocessing"]
        if p.get("mean") is not None and p.get("std") is not None:
            self.normalization = (list(p["mean"]), list(p["std"]))
        if p.get("input_size") is not None:
            self.input_size = (int(p["input_size"][0]), int(p["input_size"][1]))
        self.classes = list(card["classes"])

    def _streaming_common(self, rank: int, world_size: int) -> dict[str, Any]:
        """The ``streaming_loader`` arguments every split shares."""
        d = self.cfg.data
        if d.name != "imagefolder":
            raise ValueError(
                f"data.in_memory: false reads ImageFolder trees (data.name: imagefolder); {d.name!r} is read "
                "in memory: set data.in_memory: true"
            )
        return {
            "image_size": d.image_size,
            "crop": d.crop,
            "augment": d.augment,
            "pad": self.options.pad,
            "bits": d.bits,
            "on_bad_file": d.on_bad_file,
            "workers": d.workers,
            "rank": rank,
            "world_size": world_size,
        }

    def _streaming_evaluation(self, mean: Any, std: Any, rank: int, world_size: int) -> dict[str, Any]:
        """The ``streaming_loader`` arguments of an evaluation split (no augmentation, given normalisation)."""
        d = self.cfg.data
        return {
            "train": False,
            "batch_size": d.eval_batch_size or d.batch_size,
            "mean": mean,
            "std": std,
            **self._streaming_common(rank, world_size),
        }

    def _streaming_loaders(self, rank: int, world_size: int, evaluate_on: str) -> tuple[Any, Any]:
        """The per-image loaders: same files, limits, holdout, sizes, decoding and augmentation as in memory."""
        d = self.cfg.data
        common = self._streaming_common(rank, world_size)
        mean, std = self._normalization(None)
        train = streaming_loader(
            d.root,
            d.train_split,
            train=True,
            batch_size=d.batch_size,
            limit=d.limit,
            holdout=d.holdout,
            mean=mean,
            std=std,
            seed=self.cfg.train.seed,
            stats=self._stats(d.train_split),
            **common,
        )
        self._check_labels(torch.as_tensor(train.dataset.targets), d.train_split)
        self.normalization = (train.dataset.mean, train.dataset.std)
        self.classes = class_names(Path(d.root) / d.train_split)
        evaluation = self._streaming_evaluation(*self.normalization, rank, world_size)
        if evaluate_on == "holdout":  # the held-out training images; data.val_split is never read
            held = streaming_loader(
                d.root, d.train_split, limit=d.limit, holdout=d.holdout, held_out=True, **evaluation
            )
            self.input_size = tuple(train.dataset.size)
            return train, held
        val = streaming_loader(
            d.root, d.val_split, limit=d.val_limit, stats=self._stats(d.val_split), **evaluation
        )
        self._check_labels(torch.as_tensor(val.dataset.targets), d.val_split)
        self.input_size = tuple(train.dataset.size)
        return train, val

    def _check_labels(self, labels: torch.Tensor, split: str) -> None:
        k = self.cfg.model.num_classes
        outside = labels[(labels < 0) | (labels >= k)]
        if outside.numel():
            raise ValueError(
                f"split {split!r} of {self.cfg.data.root} has label {int(outside[0])} outside the model's "
                f"{k} classes (model.num_classes); set model.num_classes to the number of classes in the data"
            )

    def build_loaders(self, rank: int = 0, world_size: int = 1, evaluate_on: str = "val") -> tuple[Any, Any]:
        """Train loader and evaluation loader: the in-memory batch path, or the per-image streaming path.

        With ``data.holdout`` the training loader never holds the held-out images. ``evaluate_on`` picks the
        second loader: ``val`` (``data.val_split``) or ``holdout`` (then ``data.val_split`` is never read).
        """
        d, seed = self.cfg.data, self.cfg.train.seed
        check_evaluate_on(evaluate_on, d.holdout)
        eval_bs = d.eval_batch_size or d.batch_size
        self.data_stats = {}
        if not d.in_memory:
            return self._streaming_loaders(rank, world_size, evaluate_on)
        if d.crop != "pad":
            raise ValueError(
                f"data.crop: {d.crop} needs data.in_memory: false; in-memory batches use pad crops (crop: pad)"
            )
        train_x, train_y = self._load(d.train_split, d.limit, seed=1000 * (seed // 1000))
        self._check_labels(train_y, d.train_split)
        if d.holdout is not None:
            keep, held = split_holdout(len(train_y), d.holdout, train_y)
            self.data_stats[d.train_split].held_out = len(held)
            val_x, val_y = train_x[held], train_y[held]
            train_x, train_y = train_x[keep], train_y[keep]
        if evaluate_on == "val":
            val_x, val_y = self._load_val()
        train_x, val_x = _three_channels(train_x), _three_channels(val_x)
        self.input_size = (train_x.shape[-2], train_x.shape[-1])
        mean, std = self.normalization = self._normalization(train_x)
        common = {
            "mean": mean,
            "std": std,
            "rank": rank,
            "world_size": world_size,
            "channels_last": self.cfg.train.channels_last,
        }
        pad = self.options.pad if self.options.pad is not None else max(1, self.input_size[1] // 8)
        train = TensorBatchLoader(
            train_x,
            train_y,
            d.batch_size,
            shuffle=True,
            augment=d.augment,
            pad=pad,
            seed=seed,
            drop_last=True,
            **common,
        )
        val = TensorBatchLoader(val_x, val_y, eval_bs, shuffle=False, augment=False, **common)
        return train, val

    def _load_val(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``data.val_split`` (``data.val_limit`` images), its labels checked."""
        d, seed = self.cfg.data, self.cfg.train.seed
        val_x, val_y = self._load(d.val_split, d.val_limit, seed=1000 * (seed // 1000) + 1)
        self._check_labels(val_y, d.val_split)
        return val_x, val_y

    def build_eval_loader(self) -> Any:
        """The evaluation split alone, normalised as the card says: ``eval`` never opens the training split.

        Needs :meth:`apply_card` first (or ``data.options.mean``/``std``); the loader is that of training's
        evaluation (same images, same batches).
        """
        d = self.cfg.data
        mean, std = self._normalization(None)
        if mean is None or std is None:
            raise ValueError(
                "the normalisation of this student is unknown (no student card): set data.options.mean and "
                "data.options.std to the values it was trained with"
            )
        self.data_stats = {}
        if not d.in_memory:
            val = streaming_loader(
                d.root,
                d.val_split,
                limit=d.val_limit,
                stats=self._stats(d.val_split),
                **self._streaming_evaluation(mean, std, 0, 1),
            )
            self._check_labels(torch.as_tensor(val.dataset.targets), d.val_split)
            return val
        val_x, val_y = self._load_val()
        return TensorBatchLoader(
            _three_channels(val_x),
            val_y,
            d.eval_batch_size or d.batch_size,
            shuffle=False,
            augment=False,
            mean=mean,
            std=std,
            channels_last=self.cfg.train.channels_last,
        )

    # -- training and evaluation ---------------------------------------------------------------------
    def loss_terms(self, output: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        return {"ce": F.cross_entropy(output, batch[1].to(output.device))}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        """Top-1 / top-5 accuracy (%) and mean cross-entropy, summed over all ranks."""
        totals = torch.zeros(4, dtype=torch.float64, device=device)  # correct1, correct5, loss, count
        for batch in loader:
            images, labels = self.to_device(batch, device)
            logits = model(images).float()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            hits = top.eq(labels[:, None])
            totals += torch.stack(
                [
                    hits[:, 0].sum(),
                    hits.any(dim=1).sum(),
                    F.cross_entropy(logits, labels, reduction="sum"),
                    torch.tensor(len(labels), device=device),
                ]
            ).double()
        c1, c5, loss, n = sum_across_ranks(totals).tolist()
        n = max(n, 1.0)
        return {"top1": 100 * c1 / n, "top5": 100 * c5 / n, "loss": loss / n}


def _three_channels(images: torch.Tensor) -> torch.Tensor:
    """Gray datasets feed 3-channel models."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
