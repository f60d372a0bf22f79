"""The detection / instance segmentation plug-in: torchvision and Hugging Face detectors on COCO json, YOLO
txt or VOC xml labels, COCO AP.

Configuration (``task: detection``):

- ``model.student`` / ``model.teacher``: detector families, ``fasterrcnn``, ``maskrcnn``, ``retinanet`` or
  ``fcos`` (see :func:`build_detector`; ``backbone: timm:<name>`` puts a timm model under them), or
  ``hf:<repo id or save_pretrained folder>`` (transformers ``AutoModelForObjectDetection``: DETR, RT-DETR,
  D-FINE, ..., see :mod:`.hf_detector`; it takes ``min_size``, ``max_size``, ``image_mean``, ``image_std``,
  ``size_divisible`` and ``box_detections_per_img`` and carries its own weights); teacher and student may be
  of different families.
- ``model.options``: keyword arguments of :func:`build_detector` given to both models (``backbone``,
  ``min_size``, ``max_size``, ``trainable_layers``, ``pretrained_backbone`` and torchvision's detector
  arguments such as ``box_detections_per_img``). The nested mappings ``student`` and ``teacher`` add or
  override keys for one side only, e.g.
  ``options: {min_size: 800, student: {backbone: resnet50}, teacher: {backbone: resnet101}}``.
  Preprocessing keys (``min_size``, ``max_size``, ``image_mean``, ``image_std``, ``size_divisible``,
  ``fixed_size``) are shared only: both models must see identical inputs (the teacher's transform is also
  set to the student's with :func:`match_transform`). ``distill_levels`` (default 4) is how many of the
  student's finest FPN levels the default pairs distill; 5 adds ``pool`` (R-CNN) / ``p7`` (one-stage).
- ``model.num_classes``: categories + 1 (background), taken from the annotation file; leave it out, or it
  must equal that number (the schema default, 10, counts as left out).
- ``model.student_weights`` / ``model.teacher_weights``: whole-detector state dicts, or featdistill
  checkpoints (their ``student`` entry), e.g. a teacher trained by this plug-in.
- ``data.name: yolo``: the Ultralytics layout (:mod:`.yolo`), the dataset YAML ``data.options.yaml`` or
  ``root/data.yaml``, its split keys ``data.train_split`` / ``data.val_split`` (``val`` when the YAML has no
  ``test``). ``data.name: voc``: Pascal VOC (:mod:`.voc`), ``ImageSets/Main/<split>.txt``, class names
  ``data.options.names`` or every name in ``Annotations/``; ``difficult`` objects are ignored by the metric.
  A bad label line stops naming ``file:line``, or with ``data.on_bad_file: skip`` is left out and counted in
  the ingest report. Both are read into COCO form, so training and COCO AP are those of the same boxes in json.
- ``data.name: coco`` (COCO-format json); ``data.root`` and, per split (``train`` / ``val``), the annotation
  file and image folder, first found of: ``data.options.{split}_ann`` / ``{split}_images``;
  ``data.options.ann_file`` / ``images`` (both splits); the COCO layout
  ``root/annotations/instances_<data.{split}_split>.json`` with images in ``root/<data.{split}_split>``
  (e.g. ``train2017`` / ``val2017``); the single-file layout ``root/annotations/instances.json`` with
  ``root/images`` (coco128). Relative option paths are relative to ``root``.
- ``data.limit`` / ``data.val_limit``: the first N images (by id) of a split; ``data.augment: false``
  turns training augmentation off, ``{flip: false}`` or ``{scale: false}`` one transform; ``data.batch_size`` is per process. ``data.holdout``: a seeded random
  subset of the training images (after ``skip_empty`` and ``limit``) left out of training, for selection.
- ``data.options``: ``skip_empty`` (true: training leaves out images without instances; evaluation keeps
  all), ``flip_prob`` (0.5), ``scale_range`` (null = off; ``[low, high]`` with ``1 <= low <= high``: zoom in
  by a random factor at the detector's input scale, then crop back to the detector's input size, see
  :mod:`.augment`), ``save_results`` (false; true writes ``results_<bbox|segm>.json`` to ``output.dir``).

Default pairs: CWT (or ``distill.method``) on each of the first ``distill_levels`` FPN levels of the
student, ``backbone[k] -> backbone[k']`` with the teacher level of the same stride (P2-P5 for Faster/Mask
R-CNN, P3-P6 for RetinaNet/FCOS); α applies once to their sum. An ``hf:`` detector offers its backbone
stages instead (``hf.model.backbone[i][0]``, strides 8-32 for RT-DETR) and, with another ``hf:`` detector
whose encoder returns maps (RT-DETR, D-FINE), the encoder maps ``hf.model.encoder[last_hidden_state][i]``;
levels pair by stride across families too. The teacher gets only the images and stops
after its FPN, so its RPN and heads never run.

Loss terms: torchvision's loss dict (``loss_classifier``, ``loss_box_reg``, ``loss_objectness``,
``loss_rpn_box_reg``, ``loss_mask``; ``classification``, ``bbox_regression``, ``bbox_ctrness``); an ``hf:``
detector's own weighted total (``loss``). Metrics:
COCO ``bbox/AP``, ``bbox/AP50``, ... (and ``segm/...`` for a ``maskrcnn`` student) in 0-1, computed by
pycocotools on the results of all processes. Detections of label 0, which RetinaNet and FCOS can output
(their sigmoid heads keep a slot for the background, trained only as a negative), are left out.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from pathlib import Path
from typing import Any

import torch
from pycocotools.coco import COCO
from torch import Tensor, nn

from ...config import ModelConfig, RunConfig
from ...engine import ResumableLoader
from ...suggest import did_you_mean
from ...weights import load_weights
from ...weights.huggingface import card_hf_config, hf_model_config
from ..base import TaskBase
from ..holdout import check_evaluate_on, split_holdout
from ..ingest import ReportsData, SplitStats
from ..options import SIDES, augment_options, builder_options, data_options, model_options
from .augment import Compose, RandomCrop, RandomHorizontalFlip, RandomResize
from .data import CocoDetection, coco_from_dict, coco_split_stats, collate_fn, load_coco
from .evaluate import CocoEvaluator
from .hf_detector import HFDetector, build_hf_detector, hf_detector_from_config, hf_levels
from .labels import BAD_LABEL_SKIPPED, BadLabels
from .models import BACKBONES, DETECTORS, build_detector, fpn_level_names, match_transform
from .prediction import DetectionPrediction, score_detections
from .voc import read_voc, voc_names
from .yolo import find_yaml, read_yolo

DATA_FORMATS = ("coco", "yolo", "voc")  # data.name: COCO json, YOLO txt (Ultralytics layout), Pascal VOC xml
SHARED_ONLY = ("min_size", "max_size", "image_mean", "image_std", "size_divisible", "fixed_size")
_DETECTOR_DEFAULTS = {
    k: p.default for k, p in inspect.signature(build_detector).parameters.items() if k in SHARED_ONLY
}
_SCHEMA_NUM_CLASSES = next(f.default for f in dataclasses.fields(ModelConfig) if f.name == "num_classes")


def teacher_forward(teacher: nn.Module, images: list[Tensor], targets: Any = None) -> Any:
    """Run the teacher on the images only (targets would switch a detector to its loss path)."""
    return teacher(images)


class ScaleJitter:
    """Zoom in by a factor drawn from ``[low, high]`` at the detector's input scale, then crop back.

    The image is resized to ``factor`` times the size the detector would resize it to (shorter side
    ``min_size``, longer side at most ``max_size``), then a random window of that detector size is cropped;
    the detector's own resize then leaves it as is, so objects appear ``factor`` times larger. Factors
    below 1 would be undone by the detector's resize, hence ``low >= 1``.
    """

    def __init__(self, low: float, high: float, min_size: int, max_size: int) -> None:
        if not 1.0 <= low <= high:
            raise ValueError(
                f"data.options.scale_range must be [low, high] with 1 <= low <= high, got [{low}, {high}]: "
                "the detector resizes every image to min_size, which undoes zooming out"
            )
        self.low, self.high, self.min_size, self.max_size = low, high, min_size, max_size

    def __call__(self, image: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        h, w = image.shape[-2:]
        scale = min(self.min_size / min(h, w), self.max_size / max(h, w))
        out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
        factor = self.low + (self.high - self.low) * float(torch.rand(()))
        image, target = RandomResize([max(1, round(min(out_h, out_w) * factor))])(image, target)
        return RandomCrop((out_h, out_w))(image, target)


#: ``featdistill config --task detection``: configs/detection/coco128_cpu_faster_rcnn_cwt.yaml with a generic data folder. Its teacher
#: is read from ``runs/detection_teacher/last.pt``, which the starter trains first with ``TEACHER_RUN``.
STARTER: dict[str, Any] = {
    "task": "detection",
    "data": {
        "name": "coco",
        "root": "data/coco128",
        "limit": 32,
        "val_limit": 32,
        "batch_size": 4,
        "eval_batch_size": 8,
        "options": {"flip_prob": 0.5, "scale_range": [1.0, 1.25]},
    },
    "model": {
        "student": "fasterrcnn",
        "teacher": "fasterrcnn",
        "num_classes": 81,
        "teacher_weights": "runs/detection_teacher/last.pt",
        "options": {
            "min_size": 128,
            "max_size": 224,
            # fewer proposals and sampled RoIs than on COCO (CPU cost, few objects per image)
            "rpn_pre_nms_top_n_train": 500,
            "rpn_post_nms_top_n_train": 200,
            "rpn_pre_nms_top_n_test": 250,
            "rpn_post_nms_top_n_test": 100,
            "box_batch_size_per_image": 64,
            "box_score_thresh": 0.001,  # weak detectors still return ranked detections for COCOeval
            "student": {"backbone": "resnet18"},
            "teacher": {"backbone": "resnet34"},
        },
    },
    "distill": {"method": "cwt", "alpha": 5.0e-6},
    "train": {
        "epochs": 16,
        "lr": 0.01,
        "weight_decay": 1.0e-4,
        "schedule": "step",
        "milestones": [11, 15],
        "warmup_epochs": 1.0,
        "clip_grad": 10.0,
        "eval_every": 16,
    },
    "output": {"dir": "runs/detection_cwt", "tensorboard": False},
}
TEACHER_RUN = [
    "model.teacher=null",
    "model.options.student.backbone=resnet34",
]  # --set items: the starter trains its teacher


class DetectionTask(ReportsData, TaskBase):
    """Object detection / instance segmentation: ``(images, targets)`` lists in, loss dicts out."""

    name = "detection"
    metric = "bbox/AP"  # what a sweep selects on (higher is better)
    starter = STARTER
    teacher_run = TEACHER_RUN
    data_state = (
        "_cat_ids",
        "_cat_names",
        "_num_classes",
        "data_stats",
    )  # read from the data: shared by a lockstep group
    lockstep_keys = ("model.student",)  # the detector family decides the data read (masks) and the metrics

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        d, m = cfg.data, cfg.model
        if d.name not in DATA_FORMATS:
            raise ValueError(
                f"detection reads {', '.join(DATA_FORMATS)} labels: set data.name to one of them (got {d.name!r})"
                f"{did_you_mean(d.name, DATA_FORMATS)}"
            )
        if d.image_size is not None:
            raise ValueError("data.image_size is not used by detection; set model.options.min_size instead")
        self.options = data_options(cfg)
        self.distill_levels = model_options(cfg).distill_levels
        for side in SIDES:
            shared = sorted(set(m.options.get(side) or {}) & set(SHARED_ONLY))
            if shared:
                raise ValueError(
                    f"model.options.{side} sets {shared}: preprocessing must be identical for student and "
                    "teacher, set it once in model.options"
                )
        self.iou_types = ("bbox", "segm") if m.student == "maskrcnn" else ("bbox",)
        self._num_classes: int | None = None
        self._cat_ids: list[int] | None = None
        self._cat_names: dict[int, str] = {}  # category id -> name, once the annotations are read
        self._student: nn.Module | None = None
        self._card_hf: dict[str, Any] | None = None  # an hf: student's config and mean/std, from its card
        self.data_stats: dict[str, SplitStats] = {}  # split -> what was read (the ingest report)

    # -- models -------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Categories + 1, from the data (read from the validation annotation file if not yet loaded)."""
        if self._num_classes is None:
            _, source, coco = self.labels("val", BadLabels("skip"))  # bad lines are reported by the loaders
            ids = sorted(coco.getCatIds())
            self._set_categories(ids, source, [str(coco.cats[c]["name"]) for c in ids])
            self._cat_names = {cid: str(coco.cats[cid]["name"]) for cid in self._cat_ids}
        return self._num_classes  # type: ignore[return-value]

    def _set_categories(self, cat_ids: list[int], source: Path, names: list[str]) -> None:
        """Take the categories of ``source``; they must be those already known (the other split's, or the
        card's), by id or, for the same labels kept in another format (YOLO ids count from 0), by name."""
        known_names = [self._cat_names.get(c) for c in self._cat_ids or []]
        if self._cat_ids is not None and cat_ids != self._cat_ids and names != known_names:
            raise ValueError(
                f"{source} lists other categories than the training annotations; labels would not match "
                "between splits: use annotation files with the same category list"
            )
        k = len(cat_ids) + 1
        given = self.cfg.model.num_classes
        if given not in (k, _SCHEMA_NUM_CLASSES):
            raise ValueError(
                f"model.num_classes is {given} but {source} has {k - 1} categories: it must be {k} "
                "(categories + background); leave model.num_classes out to take it from the data"
            )
        self._cat_ids, self._num_classes = cat_ids, k

    def detector_options(self, role: str) -> dict[str, Any]:
        """The :func:`build_detector` keyword arguments of ``role`` (``student`` or ``teacher``)."""
        return builder_options(self.cfg, role)

    def _build(
        self, family: str, role: str, weights: str | None, options: dict[str, Any] | None = None
    ) -> nn.Module:
        try:
            kwargs = {**self.detector_options(role), **(options or {})}
            if family.startswith("hf:") and role == "student" and self._card_hf is not None:
                model = hf_detector_from_config(**{**kwargs, **self._card_hf})
            elif family.startswith("hf:"):
                model = build_hf_detector(family[len("hf:") :], self.num_classes, **kwargs)
            else:
                model = build_detector(family, self.num_classes, **kwargs)
        except TypeError as err:
            raise ValueError(f"model.options for the {role} ({family}): {err}") from None
        if weights is not None:
            load_weights(model, weights, family)
        return model

    def build_student(self) -> nn.Module:
        m = self.cfg.model
        self._student = self._build(m.student, "student", m.student_weights)
        return self._student

    def build_teacher(self, name: str | None = None) -> nn.Module:
        """The teacher (``model.teacher``, or the ``model.teachers`` entry ``name``, its options over the
        teacher's ``model.options``), with the student's preprocessing (``match_transform``)."""
        spec = self.cfg.model.teacher_spec(name)
        teacher = self._build(spec.model, "teacher", spec.weights, spec.options)
        return match_transform(teacher, self._student if self._student is not None else self.build_student())

    teacher_forward = staticmethod(teacher_forward)

    # featdistill predict: prediction(card) builds the task's Prediction (see :mod:`.prediction`)
    prediction = DetectionPrediction

    @classmethod
    def score_predictions(cls, predictions: Any, truth: Any, **options: Any) -> dict[str, float]:
        """predict's COCO results JSON against ``truth``, a COCO annotation file (``image_ids=``: only those
        images): COCO AP, 0-1."""
        return score_detections(predictions, truth, **options)

    @classmethod
    def catalogue(cls) -> list[tuple[str, list[tuple[str, str]]]]:
        """torchvision's detectors and the backbones they take."""
        return [
            (
                "detection: model.student, model.teacher",
                [(name, f"torchvision {family.__name__}") for name, family in DETECTORS.items()]
                + [
                    (
                        "hf:<repo id or folder>",
                        "transformers AutoModelForObjectDetection: DETR, Conditional/Deformable DETR, "
                        "RT-DETR v1/v2, YOLOS, D-FINE (pip install 'featdistill[hub]')",
                    )
                ],
            ),
            (
                "detection backbones: model.options.backbone (one side: model.options.student.backbone)",
                [(name, "torchvision, with an FPN") for name in BACKBONES]
                + [("timm:<name>", "a timm model's features_only stages, with an FPN")],
            ),
        ]

    def default_pairs(self, student: nn.Module, teacher: nn.Module) -> list[tuple[str, str]]:
        """The first ``distill_levels`` student feature levels, each with the teacher level of equal stride:
        FPN levels of torchvision detectors, backbone levels of HF detectors (and, between two HF detectors,
        their encoder maps too), so cross-family pairs such as a Faster R-CNN teacher and an RT-DETR student
        pair by stride as well."""
        student_levels, teacher_levels = _levels(student), _levels(teacher)
        pairs: list[tuple[str, str]] = []
        for part in ("backbone", "encoder"):
            by_stride = {stride: name for name, stride in teacher_levels.get(part, {}).items()}
            chosen = list(student_levels.get(part, {}).items())[: self.distill_levels]
            pairs += [(n, by_stride[s]) for n, s in chosen if s in by_stride]
        if not pairs:
            raise ValueError(
                f"student feature strides {student_levels} and teacher feature strides {teacher_levels} share "
                "none; set distill.pairs"
            )
        return pairs

    def sample_input(self) -> tuple[list[Tensor]]:
        """Two small images (the detectors resize them to ``min_size`` themselves)."""
        return ([torch.rand(3, 48, 64), torch.rand(3, 48, 64)],)

    def export_example(self) -> list[Tensor]:
        """A list of one image: an exported detector takes a list of images, each of its own size."""
        return self.sample_input()[0][:1]

    # -- data ---------------------------------------------------------------------------------------
    def paths(self, split: str) -> tuple[Path, Path]:
        """``(annotation file, image folder)`` of a COCO-format ``split`` (``train`` or ``val``), see the module doc."""
        d, options = self.cfg.data, self.options
        root = Path(d.root)
        name = d.train_split if split == "train" else d.val_split
        given_ann = getattr(options, f"{split}_ann") or options.ann_file
        if given_ann is not None:
            ann = root / given_ann  # an absolute path stays as it is
        else:
            ann = root / "annotations" / f"instances_{name}.json"
            ann = ann if ann.is_file() else root / "annotations" / "instances.json"
        given_images = getattr(options, f"{split}_images") or options.images
        if given_images is not None:
            images = root / given_images
        else:
            images = root / name if (root / name).is_dir() else root / "images"
        if not ann.is_file():
            raise FileNotFoundError(
                f"no {split} annotation file at {ann}; set data.options.{split}_ann (or ann_file), or use the "
                f"layout root/annotations/instances_{name}.json or root/annotations/instances.json"
            )
        return ann, images

    def labels(self, split: str, bad: BadLabels | None = None) -> tuple[Path, Path, COCO]:
        """``(image folder, label source, annotations in COCO form)`` of ``split`` in the configured format:
        COCO json, YOLO txt (:mod:`.yolo`) or Pascal VOC xml (:mod:`.voc`)."""
        d = self.cfg.data
        bad = bad if bad is not None else BadLabels(d.on_bad_file)
        name = d.train_split if split == "train" else d.val_split
        root = Path(d.root)
        if d.name == "coco":
            ann, images = self.paths(split)
            return images, ann, load_coco(ann)
        if d.name == "yolo":
            source = find_yaml(root, self.options.yaml)
            images, data = read_yolo(source, name, bad)
        else:
            source = root / "Annotations"
            names = self.options.names or voc_names(root)
            images, data = read_voc(root, name, names, bad)
        return images, source, coco_from_dict(data, source)

    def _dataset(self, split: str, limit: int | None) -> CocoDetection:
        d = self.cfg.data
        bad = BadLabels(d.on_bad_file)
        images, source, coco = self.labels(split, bad)
        train = split == "train"
        masks = train and self.cfg.model.student == "maskrcnn"
        if masks:
            boxes_only = [a for a in coco.dataset["annotations"] if not a.get("segmentation")]
            if boxes_only:
                name = coco.imgs[boxes_only[0]["image_id"]]["file_name"]
                raise ValueError(
                    f"a maskrcnn student needs instance masks, but {len(boxes_only)} label(s) in {source} are "
                    f"boxes only (first: {name}); give polygons or use a box detector"
                )
        dataset = CocoDetection(
            images,
            source,
            masks=masks,
            skip_empty=train and self.options.skip_empty,
            transforms=self._train_transforms() if train else None,
            coco=coco,
        )
        self._set_categories(dataset.cat_ids, source, dataset.class_names)
        self._cat_names = {cid: str(dataset.coco.cats[cid]["name"]) for cid in dataset.cat_ids}
        left_out = sorted(set(dataset.coco.getImgIds()) - set(dataset.ids))  # skip_empty's choice
        if limit is not None:
            if limit < 1:
                raise ValueError(f"data.limit and data.val_limit must be at least 1, got {limit}")
            dataset.ids = dataset.ids[:limit]
        stats = self.data_stats[split] = coco_split_stats(dataset, split)
        for image_id in left_out:
            stats.skip(
                "no usable annotation (data.options.skip_empty)", dataset.coco.imgs[image_id]["file_name"]
            )
        for where in bad.found:
            stats.skip(BAD_LABEL_SKIPPED, where)
        return dataset

    def _train_transforms(self) -> Compose | None:
        """The training augmentation that ``data.augment`` keeps on (None: none)."""
        steps: list[Any] = []
        augment = augment_options(self.cfg)
        if augment.flip and self.options.flip_prob > 0:
            steps.append(RandomHorizontalFlip(self.options.flip_prob))
        if augment.scale and self.options.scale_range is not None:
            low, high = self.options.scale_range
            sizes = {**_DETECTOR_DEFAULTS, **self.detector_options("student")}
            steps.append(ScaleJitter(low, high, sizes["min_size"], sizes["max_size"]))
        return Compose(steps) if steps else None

    def build_loaders(
        self, rank: int = 0, world_size: int = 1, evaluate_on: str = "val"
    ) -> tuple[ResumableLoader, ResumableLoader]:
        """A shuffled, resumable training loader and an evaluation loader, each sharded over processes.

        With ``data.holdout`` the training loader never holds the held-out images. ``evaluate_on`` picks the
        evaluation images: ``val`` (``data.val_split``) or ``holdout`` (then ``data.val_split`` is never
        read): a ``CocoDetection`` of the training annotations, without augmentation, whose ``ids`` are the
        held-out images, so COCO AP scores those alone.
        """
        d, seed = self.cfg.data, self.cfg.train.seed
        check_evaluate_on(evaluate_on, d.holdout)
        self.data_stats = {}
        self._cat_ids = None  # both splits below must agree with each other
        train_set = self._dataset("train", d.limit)
        if d.holdout is not None:
            keep, held = split_holdout(len(train_set.ids), d.holdout)
            self.data_stats["train"].held_out = len(held)
            held_set = copy.copy(train_set)  # shares the parsed annotations
            held_set.transforms, held_set.masks = None, False
            held_set.ids = [train_set.ids[i] for i in held]
            train_set.ids = [train_set.ids[i] for i in keep]
        eval_set = held_set if evaluate_on == "holdout" else self._dataset("val", d.val_limit)
        common = {"rank": rank, "world_size": world_size, "workers": d.workers, "collate_fn": collate_fn}
        train = ResumableLoader(train_set, d.batch_size, True, seed=seed, **common)
        val = ResumableLoader(eval_set, d.eval_batch_size or d.batch_size, False, **common)
        return train, val

    def build_eval_loader(self) -> ResumableLoader:
        """The validation split alone (``data.val_limit`` images): ``eval`` never opens the training split."""
        d = self.cfg.data
        self.data_stats = {}
        dataset = self._dataset("val", d.val_limit)
        return ResumableLoader(
            dataset, d.eval_batch_size or d.batch_size, False, workers=d.workers, collate_fn=collate_fn
        )

    # -- the student card --------------------------------------------------------------------------------
    def configured_preprocessing(self) -> dict[str, Any]:
        """The detector's own resize and normalisation as the config sets them (compared with a card)."""
        options = self.detector_options("student")
        keys = {"min_size": "min_size", "max_size": "max_size", "image_mean": "mean", "image_std": "std"}
        return {card_key: options[key] for key, card_key in keys.items() if key in options}

    @classmethod
    def describe_outputs(cls, card: dict[str, Any]) -> str:
        """The exported detector's output, for its model card."""
        return "per image: boxes (xyxy), labels, scores; a label's COCO category id is in the sidecar's `categories`"

    def card_fields(self, student: nn.Module) -> dict[str, Any]:
        """The detector's transform (it resizes and normalises inside) and label -> category for the card."""
        transform = student.transform
        preprocessing = {
            "mean": [float(v) for v in transform.image_mean],
            "std": [float(v) for v in transform.image_std],
            "input_size": None,
            "resize": "none",
            "bits": 8,
            "channels": 3,
            "color_mode": "RGB",
            "normalize_in_model": True,
            "min_size": int(transform.min_size[0]),
            "max_size": int(transform.max_size),
        }
        ids = self._cat_ids or []
        names = ["__background__", *(self._cat_names.get(cid, str(cid)) for cid in ids)]
        categories = [{"label": 0, "id": 0, "name": "__background__"}]
        categories += [{"label": i, "id": cid, "name": names[i]} for i, cid in enumerate(ids, start=1)]
        fields = {
            "num_classes": self.num_classes,
            "preprocessing": preprocessing,
            "classes": names,
            "categories": categories,
        }
        config = hf_model_config(student) if isinstance(student, HFDetector) else None
        if config is not None:  # predict and eval rebuild it without the hf: folder or the hub
            fields["model_config"] = config
        return fields

    def apply_card(self, card: dict[str, Any]) -> None:
        """Take the category list from a student card (no annotation file read to build the student) and, for
        an ``hf:`` student, its transformers config and mean/std: the checkpoint alone rebuilds it."""
        labelled = sorted(card["categories"], key=lambda c: c["label"])[1:]
        self._cat_ids = [int(c["id"]) for c in labelled]
        self._cat_names = {int(c["id"]): str(c["name"]) for c in labelled}
        self._num_classes = len(self._cat_ids) + 1
        config = card_hf_config(card)
        if config is not None:
            pre = card["preprocessing"]
            self._card_hf = {"config": config, "image_mean": pre["mean"], "image_std": pre["std"]}

    # -- training and evaluation ---------------------------------------------------------------------
    def to_device(self, batch: Any, device: torch.device) -> Any:
        images, targets = batch
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [
            {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in t.items()}
            for t in targets
        ]
        return images, targets

    def forward_args(self, batch: Any) -> tuple[tuple, dict]:
        return (batch[0], batch[1]), {}

    def loss_terms(self, output: dict[str, Tensor], batch: Any) -> dict[str, Tensor]:
        """torchvision's training-mode loss dict, unchanged."""
        return dict(output)

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        """COCO AP of ``model`` on ``loader``'s dataset, over the results of all processes."""
        dataset: CocoDetection = loader.dataset
        evaluator = CocoEvaluator.from_dataset(dataset, self.iou_types)
        for images, targets in loader:
            outputs = model([image.to(device, non_blocking=True) for image in images])
            evaluator.update(outputs, [t["image_id"] for t in targets])
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (evaluator.results, evaluator.image_ids))
            evaluator = CocoEvaluator.from_dataset(dataset, self.iou_types)
            for results, image_ids in gathered:
                evaluator.merge(results, image_ids)
        metrics = evaluator.summarize()
        main = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
        if self.options.save_results and main:
            out = Path(self.cfg.output.dir)
            out.mkdir(parents=True, exist_ok=True)
            for iou_type in self.iou_types:
                evaluator.save_json(out / f"results_{iou_type}.json", iou_type)
        return metrics


def _levels(model: nn.Module, size: int = 256) -> dict[str, dict[str, int]]:
    """The tap addresses of a detector's feature levels by kind, each with its stride: ``backbone`` (a
    torchvision detector's FPN levels ``backbone[<level>]``, what its heads read; an HF detector's backbone
    stages) and ``encoder`` (an HF detector's encoder maps)."""
    if isinstance(model, HFDetector):
        return hf_levels(model, size)
    names = fpn_level_names(model)
    backbone = model.backbone
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            features = backbone(torch.zeros(1, 3, size, size, device=device))
    finally:
        backbone.train(was_training)
    return {"backbone": {f"backbone[{name}]": size // features[name].shape[-1] for name in names}}
