"""The run configuration's schema: one typed dataclass per section, and a config read from a dict or a file.

Every key is checked (by :mod:`featdistill.config.validation`) before any work starts. Each field's ``#``
comment is its documentation (``featdistill config`` prints it, :mod:`featdistill.config_docs` reads it).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..suggest import did_you_mean
from .validation import (
    REQUIRED,
    ConfigError,
    apply_overrides,
    build_section,
    check_key_in,
    check_task,
    import_plugins,
    matches_type,
    safe_yaml,
    set_dotted,
    type_name,
)

Alpha = float | Literal["auto"]  # a loss weight, or "auto": calibrated before training (see DistillConfig)
DistillOptions = dict[str, dict[str, Any] | bool]  # {method: {option: value}}, and strict_shapes: true/false


@dataclass
class DataConfig:
    """Where the data is and how it is batched. ``name`` and ``root`` are required."""

    name: str = REQUIRED  # imagefolder, cifar10/100, mnist, fashionmnist, synthetic; coco; camvid, cityscapes
    root: str = REQUIRED  # dataset folder (unused by synthetic)
    train_split: str = "train"  # split (folder or torchvision split) to train on
    val_split: str = "test"  # split to evaluate on
    limit: int | None = None  # images per split (class-balanced for classification), for small runs
    val_limit: int | None = None  # images of the evaluation split (null = all)
    holdout: float | int | None = None  # training images kept out to choose on (sweep): fraction or count
    image_size: int | None = None  # resize images to this side (null = as stored)
    batch_size: int = 128  # training images per step and process
    eval_batch_size: int | None = None  # evaluation batch size (null = batch_size)
    workers: int = 0  # DataLoader worker processes
    in_memory: bool = True  # decode once into tensors and augment whole batches (CPU-fast path)
    augment: bool = True  # training augmentation (false: normalisation only)
    crop: Literal["pad", "resized"] = "pad"  # pad: zero-pad, crop, flip; resized: ImageNet crops (streaming)
    bits: Literal[8, 16] = 8  # pixel depth kept after decoding; 16 keeps every level of 16-bit images
    on_bad_file: Literal["raise", "skip"] = "raise"  # an undecodable image: stop naming it, or skip it
    options: dict[str, Any] = field(
        default_factory=dict
    )  # the task's dataset options (checked by its schema)

    def __post_init__(self) -> None:
        if isinstance(self.holdout, float) and not 0 < self.holdout < 1:
            raise ConfigError(
                f"data.holdout {self.holdout} is a fraction and must be in (0, 1); for a count of images "
                "write an integer (1, not 1.0)"
            )
        if isinstance(self.holdout, int) and self.holdout < 1:
            raise ConfigError(
                f"data.holdout {self.holdout} must be a count of at least 1 image, or a fraction"
            )


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher to build: its model name, weights and own builder options (over ``model.options``)."""

    model: str
    weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """Student and (optional) teacher by registry name, with weights from a file or by name."""

    student: str = REQUIRED  # model name (featdistill models lists them), timm:<name> or hf:<repo or dir>
    teacher: str | None = None  # teacher model name, same forms (null = train the student alone)
    num_classes: int = 10  # classes of the output; a pretrained head of another size is trained anew
    student_weights: str | None = None  # .pt/.pth/.bin/.safetensors file, torchvision[:<ENUM>] or timm
    teacher_weights: str | None = None  # the teacher's weights, same forms as student_weights
    options: dict[str, Any] = field(
        default_factory=dict
    )  # the task's model builder options (checked by its schema)
    teachers: dict[str, Any] = field(
        default_factory=dict
    )  # several teachers instead of teacher: {name: {model, weights, options}}; pairs name their layers name:layer

    def __post_init__(self) -> None:
        if self.teachers and self.teacher is not None:
            raise ConfigError(
                "model.teacher and model.teachers are both set: give one teacher as model.teacher, or several "
                "as model.teachers (set model.teacher: null)"
            )
        for name in self.teachers:
            self.teacher_spec(name)  # each entry checked now, before any work starts

    @property
    def distilled(self) -> bool:
        """Whether a teacher (``model.teacher``) or several (``model.teachers``) are configured."""
        return self.teacher is not None or bool(self.teachers)

    def teacher_spec(self, name: str | None = None) -> TeacherSpec:
        """``model.teacher`` (name None) or the ``model.teachers`` entry ``name``, checked key by key."""
        if name is None:
            if self.teacher is None:
                raise ConfigError("model.teacher is not set")
            return TeacherSpec(self.teacher, self.teacher_weights)
        entry, where = self.teachers.get(name), f"model.teachers.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"'{where}' must be a mapping {{model, weights, options}}, got {entry!r}")
        hints = typing.get_type_hints(TeacherSpec)
        for key, value in entry.items():
            if key not in hints:
                hint = did_you_mean(str(key), hints, prefix=f"{where}.")
                raise ConfigError(f"unknown config key '{where}.{key}'{hint}")
            if not matches_type(value, hints[key]):
                raise ConfigError(
                    f"config key '{where}.{key}' expects {type_name(hints[key])}, got {value!r} "
                    f"({type(value).__name__})"
                )
        if "model" not in entry:
            raise ConfigError(f"missing required config key '{where}.model'; name the teacher's model")
        return TeacherSpec(**entry)


@dataclass
class DistillConfig:
    """What to distill: layer pairs (or ``auto``), the default method, α and per-method options."""

    method: str = "cwt"  # cwt, cwt_linear, l2, kd, fitnets, at, cwd or mgd
    pairs: list[Any] | str | None = None  # [[student_layer, teacher_layer], ...], auto, null = task default
    alpha: Alpha | dict[str, Alpha] | None = (
        None  # loss weight or auto, or {method (or teacher, teacher:method): one}; null = defaults
    )
    auto_ratio: float | None = None  # alpha auto: method loss / task loss at start (null = method's own)
    auto_batches: int = 4  # alpha auto: training batches measured before training
    options: DistillOptions = field(default_factory=dict)  # {method: {option: value}}, strict_shapes: bool
    teacher_dtype: Literal["float32", "bfloat16", "float16"] | None = None  # teacher's dtype

    def __post_init__(self) -> None:
        alphas = self.alpha.items() if isinstance(self.alpha, dict) else [("", self.alpha)]
        for method, value in alphas:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value < math.inf:
                key = f"distill.alpha.{method}" if method else "distill.alpha"
                raise ConfigError(
                    f"{key} is {value}: it must be a finite number >= 0 (0 switches the term off)"
                )
        if self.auto_ratio is not None and not 0 < self.auto_ratio < math.inf:
            raise ConfigError(f"distill.auto_ratio is {self.auto_ratio}: it must be a finite number > 0")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of one run."""

    epochs: int = 1  # passes over the training split
    optimizer: Literal["sgd", "adamw"] = "sgd"  # optimizer of the student and the transforms
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # Nesterov momentum (SGD)
    weight_decay: float = 5e-4  # L2 weight decay
    schedule: Literal["cosine", "step", "poly", "constant"] = "cosine"  # learning-rate schedule after warm-up
    milestones: list[int] = field(default_factory=list)  # epochs, for schedule "step"
    gamma: float = 0.1  # lr factor at each milestone (schedule "step")
    poly_power: float = 0.9  # exponent of schedule "poly"
    warmup_epochs: float = 0.0  # linear warm-up length in epochs (fractions allowed)
    clip_grad: float | None = None  # clip the gradient norm to this value (null = off)
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision autocast
    channels_last: bool = False  # channels-last memory format (faster convolutions on GPUs)
    compile: bool = False  # torch.compile the student
    seed: int = 0  # seed of weights, data order and augmentation
    deterministic: bool = True  # deterministic cuDNN kernels (reproducible, maybe slower)
    log_every: int = 20  # log training losses every N steps
    checkpoint_every: int = 0  # also checkpoint every N steps inside an epoch (0 = epoch ends only)
    eval_every: int = 1  # evaluate every N epochs (and after the last)
    max_steps: int | None = None  # stop after this many steps in total (smoke runs)
    sync_bn: bool = False  # SyncBatchNorm in the student across processes (torchrun)


@dataclass
class OutputConfig:
    """Where logs and checkpoints go."""

    dir: str = "runs/default"  # folder for config.yaml, log.csv, last.pt, metrics.json
    tensorboard: bool = True  # TensorBoard logs (when tensorboard is installed)
    csv: bool = True  # log.csv
    progress: bool = True  # progress bar


@dataclass
class CompareConfig:
    """What ``featdistill compare`` trains from this config: named arms and seeds (``train`` ignores it)."""

    seeds: list[int] = field(
        default_factory=list
    )  # train.seed of each run (empty = train.seed; --seeds wins)
    arms: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # {arm name: {dotted.key: value}}, each arm this config with those keys set; empty = the config alone

    def __post_init__(self) -> None:
        for name, values in self.arms.items():
            if not isinstance(values, dict):
                raise ConfigError(
                    f"compare.arms.{name} must be a mapping of dotted keys to values (e.g. "
                    f"{{model.teacher: null}}; {{}} for the config as it is), got {values!r}"
                )
            for key in values:
                if str(key).split(".", 1)[0] == "compare":
                    raise ConfigError(f"compare.arms.{name}: an arm cannot set '{key}'")
                try:
                    check_key(str(key))
                except ConfigError as err:
                    raise ConfigError(f"compare.arms.{name}: {err}") from None


@dataclass
class RunConfig:
    """A whole run: ``task`` plus the sections above."""

    task: str = "classification"  # the task plug-in: classification, detection, segmentation or your own
    plugins: list[str] = field(default_factory=list)  # modules imported first: your register_* calls
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)

    def __post_init__(self) -> None:
        check_task(self.task)  # by name: no task plug-in is imported here

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for checkpoints and YAML); an empty ``model.teachers`` and an empty ``compare``
        are left out, so the config of a plain run reads (and compares with older checkpoints) as it did before."""
        tree = dataclasses.asdict(self)
        if not tree["model"]["teachers"]:
            del tree["model"]["teachers"]
        if self.compare == CompareConfig():
            del tree["compare"]
        return tree

    def with_overrides(self, values: dict[str, Any]) -> RunConfig:
        """A new validated config: this one with each dotted key set, e.g. ``{"train.lr": 0.05}``.

        ``self`` is never changed; a key that does not exist or a value of the wrong type is a ``ConfigError``.
        """
        tree = self.to_dict()
        for key, value in values.items():
            check_key(key)
            set_dotted(tree, key, copy.deepcopy(value))
        return parse_config(tree)


def parse_config(tree: dict[str, Any]) -> RunConfig:
    """Validate a nested dict into a ``RunConfig`` (after importing its ``plugins``)."""
    if isinstance(tree, dict):
        import_plugins(tree.get("plugins", []))
    return build_section(RunConfig, tree, "")


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config file (safe loader only), apply ``--set`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    tree = safe_yaml(path.read_text(), str(path)) or {}
    return parse_config(apply_overrides(tree, overrides or []))


def check_key(dotted: str) -> None:
    """Raise a ``ConfigError`` unless ``dotted`` (e.g. ``distill.alpha``) is a key of :class:`RunConfig`.

    Keys inside a free-form mapping (``data.options.crop_size``, ``distill.options.cwt.tau``) are accepted.
    """
    check_key_in(RunConfig, dotted)
