"""Run configuration: a typed schema, YAML loading (safe loader only), ``--set`` overrides, validation.

Every key is checked before any work starts: an unknown key names itself and the closest valid key, a
wrong type names the key and the expected type, a missing required key names itself.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import re
import types
import typing
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from .plugins import importing
from .suggest import did_you_mean


class ConfigError(ValueError):
    """A configuration problem, reported as one line that names the key."""


REQUIRED: Any = dataclasses.MISSING
T = TypeVar("T")
Alpha = float | Literal["auto"]  # a loss weight, or "auto": calibrated before training (see DistillConfig)
DistillOptions = dict[str, dict[str, Any] | bool]  # {method: {option: value}}, and strict_shapes: true/false


@dataclass
class DataConfig:
    """Where the data is and how it is batched. ``name`` and ``root`` are required."""

    name: str = (
        REQUIRED  # imagefolder, cifar10/100, mnist, fashionmnist, synthetic; coco; camvid, cityscapes; images
    )
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
    in_memory: bool | Literal["auto"] = (
        "auto"  # decode once into memory (fast); auto: when it fits, else stream
    )
    augment: bool | dict[str, bool] = (
        True  # training augmentation: true, false or per transform (classification {crop, flip}, segmentation {scale, crop, flip}, detection {flip, scale})
    )
    crop: Literal["pad", "resized"] = "pad"  # pad: zero-pad, crop, flip; resized: ImageNet crops (streaming)
    bits: Literal[8, 16] = 8  # pixel depth kept after decoding; 16 keeps every level of 16-bit images
    on_bad_file: Literal["raise", "skip"] = "raise"  # an undecodable image: stop naming it, or skip it
    probe: str | None = None  # pretrain: an ImageFolder root (train/test splits) for a kNN top-1 every epoch
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
            if not _matches(value, hints[key]):
                raise ConfigError(
                    f"config key '{where}.{key}' expects {_type_name(hints[key])}, got {value!r} "
                    f"({type(value).__name__})"
                )
        if "model" not in entry:
            raise ConfigError(f"missing required config key '{where}.model'; name the teacher's model")
        return TeacherSpec(**entry)


@dataclass
class DistillConfig:
    """What to distill: layer pairs (or ``auto``), the default method, α and per-method options."""

    method: str = "cwt"  # cwt, cwt_linear, l2, kd, fitnets, at, cwd, mgd or cosine
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

    task: str = (
        "classification"  # the task plug-in: classification, detection, segmentation, pretrain or your own
    )
    plugins: list[str] = field(default_factory=list)  # modules imported first: your register_* calls
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)

    def __post_init__(self) -> None:
        from .tasks.registry import task_class

        try:
            task_class(self.task)
        except ValueError as err:
            raise ConfigError(f"config key 'task': {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for checkpoints and YAML); an empty ``model.teachers`` and an empty ``compare``
        are left out (as is an unset ``data.probe``), so the config of a plain run reads (and compares with older checkpoints) as it did before."""
        tree = dataclasses.asdict(self)
        if not tree["model"]["teachers"]:
            del tree["model"]["teachers"]
        if tree["data"]["probe"] is None:
            del tree["data"]["probe"]
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
            _set_dotted(tree, key, copy.deepcopy(value))
        return parse_config(tree)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        _, item = typing.get_args(tp) or (Any, Any)
        return isinstance(value, dict) and all(_matches(v, item) for v in value.values())
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _build(cls: type, values: Any, prefix: str, passthrough: Collection[str] = ()) -> Any:
    if not isinstance(values, dict):
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"'{where}' must be a mapping of keys, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields and key not in passthrough:
            hint = did_you_mean(str(key), sorted({*fields, *passthrough}), prefix=prefix)
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
    kwargs = {}
    for name, f in fields.items():
        tp = hints[name]
        if name not in values:
            if f.default is REQUIRED and f.default_factory is dataclasses.MISSING:
                raise ConfigError(
                    f"missing required config key '{prefix}{name}'; add it to the config file "
                    f"or pass --set {prefix}{name}=VALUE"
                )
            continue
        value = values[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
        elif not _matches(value, tp):
            raise ConfigError(
                f"config key '{prefix}{name}' expects {_type_name(tp)}, got {value!r} ({type(value).__name__})"
            )
        else:
            kwargs[name] = float(value) if tp is float else value
    return cls(**kwargs)


def check_options(schema: type[T], values: Any, prefix: str, passthrough: Collection[str] = ()) -> T:
    """A task's ``data.options`` or ``model.options`` mapping validated into its schema dataclass.

    Checked as every other section is: an unknown key names the closest valid one, a wrong type the expected
    type. Keys in ``passthrough`` are accepted untyped (they go on to a constructor that checks them itself);
    they are not in the returned instance.
    """
    return _build(schema, values, prefix, passthrough)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings; values are parsed as YAML (``0.1``, ``true``, ``[a, b]``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), _safe_yaml(raw, f"--set {key.strip()}"))
    return tree


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python objects, ever) that also reads ``1e-3`` as a float, as YAML 1.2 does."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _safe_yaml(text: str, where: str) -> Any:
    """Safe YAML loading with one-line errors; Python tags (``!!python/...``) are refused, never run."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader: never constructs Python objects
    except yaml.constructor.ConstructorError as err:
        raise ConfigError(
            f"{where}: refused YAML tag ({err.problem}); configs hold only plain values, lists and "
            "mappings, remove the tag"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML: {str(err).splitlines()[0]}") from None


def import_plugins(modules: Any) -> None:
    """Import the ``plugins:`` modules (once each), so the methods and tasks they register can be named.

    A module that is not found or fails while importing is a one-line ``ConfigError`` naming it. What each
    registers is noted (:mod:`featdistill.plugins`), for the student card's ``plugins``.
    """
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(f"config key 'plugins' expects a list of module names, got {modules!r}")
    for module in modules:
        try:
            with importing(module):
                importlib.import_module(module)
        except Exception as err:  # any failure of user code at import time: name the module and the error
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ConfigError(
                f"plugins: cannot import {module!r} ({type(err).__name__}: {first}); it must be importable "
                "from here (installed, or on PYTHONPATH)"
            ) from None


def parse_config(tree: dict[str, Any]) -> RunConfig:
    """Validate a nested dict into a ``RunConfig`` (after importing its ``plugins``)."""
    if isinstance(tree, dict):
        import_plugins(tree.get("plugins", []))
    return _build(RunConfig, tree, "")


def read_config(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a mapping (safe loader only), not yet validated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return _safe_yaml(path.read_text(), str(path)) or {}


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config file (safe loader only), apply ``--set`` overrides, validate."""
    return parse_config(apply_overrides(read_config(path), overrides or []))


def check_key(dotted: str) -> None:
    """Raise a ``ConfigError`` unless ``dotted`` (e.g. ``distill.alpha``) is a key of the schema.

    Keys inside a free-form mapping (``data.options.crop_size``, ``distill.options.cwt.tau``) are accepted.
    """
    cls: Any = RunConfig
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            prefix = ".".join(parts[:depth])
            hint = did_you_mean(part, sorted(hints), prefix=f"{prefix}." if prefix else "")
            raise ConfigError(f"unknown config key '{dotted}'{hint}")
        tp = hints[part]
        last = depth == len(parts) - 1
        if dataclasses.is_dataclass(tp):
            if last:
                raise ConfigError(
                    f"'{dotted}' is a section, not a key; name one of its keys, e.g. '{dotted}.*'"
                )
            cls = tp
        elif not last:
            if _accepts_mapping(tp):
                return
            raise ConfigError(f"'{'.'.join(parts[: depth + 1])}' is a key, not a section; use it alone")


def _accepts_mapping(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts_mapping(a) for a in typing.get_args(tp))
    return origin is dict or tp is dict
