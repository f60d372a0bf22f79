"""The classification plug-in: builds classifiers and loaders, gives cross-entropy, top-1/top-5.

Data (``task: classification``): ``data.in_memory: auto`` (default) decodes the splits once and augments
whole batches when they fit in memory (:mod:`featdistill.tasks.memory`), and otherwise streams ImageFolder
files through DataLoader workers; ``true`` / ``false`` force one path. Both read the same files
(``limit``/``val_limit``: class-balanced first images), decode them alike (``data.bits``), keep the native
size unless ``image_size`` is set, and with ``data.crop: pad`` augment alike (zero-padded random crop by
``data.options.pad``, default ``image_size // 8``, and flip; ``data.augment: {crop: .., flip: ..}`` switches
each). ``data.options.mean``/``std`` fix the
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
from ...engine.distributed import is_main, sum_across_ranks
from ...weights.huggingface import HFImageClassifier, card_hf_config, hf_model_config, hf_model_from_config
from ..base import TaskBase
from ..holdout import check_evaluate_on, split_holdout
from ..image_batches import ImageLabelBatches
from ..ingest import ReportsData, SplitStats, check_not_constant
from ..memory import MemoryPlan, plan_memory
from ..options import augment_options, data_options
from .data import (
    TensorBatchLoader,
    as_size,
    cache_path,
    channel_stats,
    class_names,
    image_size_of,
    imagefolder_plan,
    load_tensors,
    scan_folder,
)
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
        self.augment = augment_options(cfg)  # data.augment, one flag per transform
        self.data_stats: dict[str, SplitStats] = {}  # split -> what was read (the ingest report)
        self.input_size: tuple[int, int] | None = None  # (H, W) of the training images, once loaded
        self.normalization: tuple[list[float], list[float]] | None = None  # (mean, std) in use, once known
        self.classes: list[str] | None = None  # output index -> class name, once known
        self.color_mode = "L" if cfg.data.name in ("mnist", "fashionmnist") else "RGB"
        self._card_config: dict[str, Any] | None = None  # an hf: student's transformers config, from its card

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
        """``model.student``; an ``hf:`` one of a card (:meth:`apply_card`) from the transformers config it keeps,
        so that a checkpoint's student is rebuilt without its ``hf:`` folder or the hub."""
        m = self.cfg.model
        if self._card_config is not None:
            return HFImageClassifier(hf_model_from_config(self._card_config, "classification"))
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

    def _load(
        self, split: str, limit: int | None, seed: int, size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``split`` decoded, resized to ``data.image_size``, else to ``size`` (None: as stored)."""
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
                image_size=d.image_size if d.image_size is not None else size,
                limit=limit,
                on_bad_file=d.on_bad_file,
                cache_dir=self.options.cache_dir,
                bits=d.bits,
                stats=stats,
                workers=self.options.decode_workers,
                progress=self.cfg.output.progress and is_main(),
            )
            if split == d.train_split:
                self.classes = list(classes)
        check_not_constant(images, split, stats.root)
        return images, labels

    def _plan_memory(self, splits: list[tuple[str, int | None]]) -> MemoryPlan:
        """Apply ``data.in_memory`` to the decoded size of ``splits`` (``(split, limit)``), before decoding."""
        d = self.cfg.data
        if d.name not in ("imagefolder", "images"):
            what = "generated" if d.name == "synthetic" else "a torchvision dataset, small and of one size"
            plan = plan_memory(d.in_memory, None, streamable=False, reason=f"{d.name} is {what}")
        elif d.in_memory == "auto" and d.crop == "resized":
            plan = plan_memory(False, None, reason="data.crop: resized streams")
            plan.setting = d.in_memory
        else:
            estimate, cached = 0, self.options.cache_dir is not None
            for split, limit in splits:
                folder = Path(d.root) if d.name == "images" else Path(d.root) / split
                if not folder.is_dir():  # loading it names the problem, in its turn
                    continue
                count, per_image = imagefolder_plan(
                    d.root, split, image_size=d.image_size, limit=limit, bits=d.bits, kind=d.name
                )
                estimate += count * per_image
                cached = cached and self._cached(split, limit)
            plan = plan_memory(d.in_memory, estimate, cache_dir=self.options.cache_dir, cached=cached)
        self.memory_plan = plan
        return plan

    def _cached(self, split: str, limit: int | None) -> bool:
        """Whether ``data.options.cache_dir`` holds this split decoded already."""
        d = self.cfg.data
        _, files = scan_folder(d.name, d.root, split)
        size = as_size(d.image_size)
        path = cache_path(
            Path(d.root),
            split,
            size,
            limit,
            d.on_bad_file,
            d.bits,
            self.options.cache_dir,
            files,
            kind=d.name,
        )
        return path.is_file() and path.with_suffix(".json").is_file()

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
        fixed: dict[str, Any] = {"bits": d.bits, "color_mode": self.color_mode}
        if d.crop == "resized" or d.image_size is not None:  # else the data fix the size, not the config
            fixed["resize"] = "center_crop" if d.crop == "resized" else "exact"
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
            # one rule at eval, predict and in exports: an image of another size is resized to input_size
            # (the training images' own size when data.image_size is unset), or center-cropped
            "resize": "center_crop" if d.crop == "resized" else "exact" if size else "none",
            "mean": mean,
            "std": std,
            "input_size": list(size) if size else None,
            "channels": 3,
            "normalize_in_model": False,
        }
        if preprocessing["resize"] == "center_crop":
            preprocessing["crop_fraction"] = EVAL_CROP_FRACTION
        k = self.cfg.model.num_classes
        fields = {
            "num_classes": k,
            "preprocessing": preprocessing,
            "classes": self.classes or list(map(str, range(k))),
        }
        config = hf_model_config(student) if isinstance(student, HFImageClassifier) else None
        if config is not None:  # predict and eval rebuild it without the hf: folder or the hub
            fields["model_config"] = config
        return fields

    def apply_card(self, card: dict[str, Any]) -> None:
        """Take the normalisation, input size and class names from a student card (no training data read), and
        an ``hf:`` student's transformers config (:meth:`build_student` builds it from that)."""
        self._card_config = card_hf_config(card)
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
            "augment": self.augment,
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
            "resize_to": self.input_size,  # images of another size than training's are resized to it
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
        self.input_size = tuple(train.dataset.size)
        evaluation = self._streaming_evaluation(*self.normalization, rank, world_size)
        if evaluate_on == "holdout":  # the held-out training images; data.val_split is never read
            held = streaming_loader(
                d.root, d.train_split, limit=d.limit, holdout=d.holdout, held_out=True, **evaluation
            )
            return train, held
        val = streaming_loader(
            d.root, d.val_split, limit=d.val_limit, stats=self._stats(d.val_split), **evaluation
        )
        self._check_labels(torch.as_tensor(val.dataset.targets), d.val_split)
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
        splits = [(d.train_split, d.limit)] + ([(d.val_split, d.val_limit)] if evaluate_on == "val" else [])
        if not self._plan_memory(splits).in_memory:
            return self._streaming_loaders(rank, world_size, evaluate_on)
        if d.crop != "pad":
            raise ValueError(
                f"data.crop: {d.crop} needs data.in_memory: false or auto; in-memory batches use pad crops (crop: pad)"
            )
        train_x, train_y = self._load(d.train_split, d.limit, seed=1000 * (seed // 1000))
        self._check_labels(train_y, d.train_split)
        if d.holdout is not None:
            keep, held = split_holdout(len(train_y), d.holdout, train_y)
            self.data_stats[d.train_split].held_out = len(held)
            val_x, val_y = train_x[held], train_y[held]
            train_x, train_y = train_x[keep], train_y[keep]
        self.input_size = (train_x.shape[-2], train_x.shape[-1])
        if evaluate_on == "val":
            val_x, val_y = self._load_val()
        train_x, val_x = three_channels(train_x), three_channels(val_x)
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
            augment=self.augment.crop or self.augment.flip,
            pad=pad if self.augment.crop else 0,
            flip=self.augment.flip,
            seed=seed,
            drop_last=True,
            **common,
        )
        val = TensorBatchLoader(val_x, val_y, eval_bs, shuffle=False, augment=False, **common)
        return train, val

    def _load_val(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``data.val_split`` (``data.val_limit`` images) at the training size (the card's resize rule), its
        labels checked."""
        d, seed = self.cfg.data, self.cfg.train.seed
        val_x, val_y = self._load(
            d.val_split, d.val_limit, seed=1000 * (seed // 1000) + 1, size=self.input_size
        )
        self._check_labels(val_y, d.val_split)
        return val_x, val_y

    def build_eval_loader(self) -> Any:
        """The evaluation split alone, normalised as the card says: ``eval`` never opens the training split.

        Needs :meth:`apply_card` first (or ``data.options.mean``/``std``); the loader is that of training's
        evaluation (same images, same batches). A student of unknown normalisation (an older checkpoint
        without a card, its config without ``data.options.mean``/``std``) is evaluated as before: the
        normalisation estimated from the training split.
        """
        d = self.cfg.data
        mean, std = self._normalization(None)
        if mean is None or std is None:
            return self.build_loaders()[1]
        self.data_stats = {}
        if not self._plan_memory([(d.val_split, d.val_limit)]).in_memory:
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
            three_channels(val_x),
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


def three_channels(images: torch.Tensor) -> torch.Tensor:
    """Gray datasets feed 3-channel models."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
