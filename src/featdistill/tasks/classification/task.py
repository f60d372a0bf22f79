"""The classification plug-in: builds classifiers and loaders, gives cross-entropy, top-1/top-5.

Data (``task: classification``): ``data.in_memory`` (default) decodes a split once and augments whole
batches; ``false`` streams ImageFolder files through DataLoader workers. Both read the same files
(``limit``/``val_limit``: class-balanced first images), decode them alike (``data.bits``), keep the native
size unless ``image_size`` is set, and with ``data.crop: pad`` augment alike (zero-padded random crop by
``data.options.pad``, default ``image_size // 8``, and flip). ``data.options.mean``/``std`` fix the
normalisation; otherwise it is estimated from the training images (streaming: up to 1000 of them).
``data.options.cache_dir`` caches decoded in-memory ImageFolder splits.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...config import RunConfig
from ...distiller.auto_pairs import auto_pairs
from ...distiller.distiller import default_teacher_forward
from ...engine.distributed import sum_across_ranks
from ..holdout import check_evaluate_on, split_holdout
from ..image_batches import ImageLabelBatches
from ..ingest import ReportsData, SplitStats, check_not_constant
from .data import TensorBatchLoader, channel_stats, image_size_of, load_tensors
from .models import build_classifier
from .streaming import streaming_loader
from .synthetic import make_synthetic


class ClassificationTask(ImageLabelBatches, ReportsData):
    """Image classification: ``(images, labels)`` batches, logits out."""

    name = "classification"
    metric = "top1"  # what a sweep selects on (higher is better)

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.data_stats: dict[str, SplitStats] = {}  # split -> what was read (the ingest report)
        self.input_size: tuple[int, int] | None = None  # (H, W) of the training images, once loaded

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
            student, teacher, self.sample_input(), default_teacher_forward
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
            images, labels, _ = load_tensors(
                d.name,
                d.root,
                split,
                image_size=d.image_size,
                limit=limit,
                on_bad_file=d.on_bad_file,
                cache_dir=d.options.get("cache_dir"),
                bits=d.bits,
                stats=stats,
            )
        check_not_constant(images, split, stats.root)
        return images, labels

    def _normalization(self, images: torch.Tensor | None) -> tuple[list[float] | None, list[float] | None]:
        """``data.options.mean``/``std`` if given, else the training images' statistics (None: estimate)."""
        options = self.cfg.data.options
        if "mean" in options and "std" in options:
            return [float(v) for v in options["mean"]], [float(v) for v in options["std"]]
        return channel_stats(images) if images is not None else (None, None)

    def _streaming_loaders(self, rank: int, world_size: int, evaluate_on: str) -> tuple[Any, Any]:
        """The per-image loaders: same files, limits, holdout, sizes, decoding and augmentation as in memory."""
        d = self.cfg.data
        if d.name != "imagefolder":
            raise ValueError(
                f"data.in_memory: false reads ImageFolder trees (data.name: imagefolder); {d.name!r} is read "
                "in memory: set data.in_memory: true"
            )
        mean, std = self._normalization(None)
        common = {
            "image_size": d.image_size,
            "crop": d.crop,
            "augment": d.augment,
            "pad": d.options.get("pad"),
            "bits": d.bits,
            "on_bad_file": d.on_bad_file,
            "workers": d.workers,
            "rank": rank,
            "world_size": world_size,
        }
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
        evaluation = {
            "train": False,
            "batch_size": d.eval_batch_size or d.batch_size,
            "mean": train.dataset.mean,
            "std": train.dataset.std,
            **common,
        }
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
            val_x, val_y = self._load(d.val_split, d.val_limit, seed=1000 * (seed // 1000) + 1)
            self._check_labels(val_y, d.val_split)
        if train_x.shape[1] == 1:  # gray datasets feed 3-channel models
            train_x, val_x = train_x.expand(-1, 3, -1, -1), val_x.expand(-1, 3, -1, -1)
        self.input_size = (train_x.shape[-2], train_x.shape[-1])
        mean, std = self._normalization(train_x)
        common = {
            "mean": mean,
            "std": std,
            "rank": rank,
            "world_size": world_size,
            "channels_last": self.cfg.train.channels_last,
        }
        pad = int(d.options.get("pad", max(1, self.input_size[1] // 8)))
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
