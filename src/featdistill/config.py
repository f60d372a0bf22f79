"""Run configuration: a typed schema, YAML loading (safe loader only), ``--set`` overrides, validation.

Every key is checked before any work starts: an unknown key names itself and the closest valid key, a
wrong type names the key and the expected type, a missing required key names itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration problem, reported as one line that names the key."""


REQUIRED: Any = dataclasses.MISSING


@dataclass
class DataConfig:
    """Where the data is and how it is batched. ``name`` and ``root`` are required."""

    name: str = REQUIRED
    root: str = REQUIRED
    train_split: str = "train"
    val_split: str = "test"
    limit: int | None = None  # images per split (class-balanced for classification), for small runs
    val_limit: int | None = None
    image_size: int | None = None
    batch_size: int = 128
    eval_batch_size: int | None = None
    workers: int = 0
    in_memory: bool = True  # decode once into tensors and augment whole batches (CPU-fast path)
    augment: bool = True
    crop: Literal["pad", "resized"] = "pad"  # pad: zero-pad, crop, flip; resized: ImageNet crops (streaming)
    bits: Literal[8, 16] = 8  # pixel depth kept after decoding; 16 keeps every level of 16-bit images
    on_bad_file: Literal["raise", "skip"] = "raise"
    options: dict[str, Any] = field(default_factory=dict)  # task-specific dataset options


@dataclass
class ModelConfig:
    """Student and (optional) teacher by registry name; weights only from local files."""

    student: str = REQUIRED
    teacher: str | None = None
    num_classes: int = 10
    student_weights: str | None = None
    teacher_weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # task-specific builder options


@dataclass
class DistillConfig:
    """What to distill: layer pairs (or ``auto``), the default method, α and per-method options."""

    method: str = "cwt"
    pairs: list[Any] | str | None = None  # None = the task's default pairs
    alpha: float | dict[str, float] | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    teacher_dtype: Literal["float32", "bfloat16", "float16"] | None = None


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of one run."""

    epochs: int = 1
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "step", "poly", "constant"] = "cosine"
    milestones: list[int] = field(default_factory=list)  # epochs, for schedule "step"
    gamma: float = 0.1
    poly_power: float = 0.9
    warmup_epochs: float = 0.0
    clip_grad: float | None = None
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    deterministic: bool = True
    log_every: int = 20
    checkpoint_every: int = 0  # also checkpoint every N steps inside an epoch (0 = epoch ends only)
    eval_every: int = 1
    max_steps: int | None = None  # stop after this many steps in total (smoke runs)
    sync_bn: bool = False


@dataclass
class OutputConfig:
    """Where logs and checkpoints go."""

    dir: str = "runs/default"
    tensorboard: bool = True
    csv: bool = True
    progress: bool = True


@dataclass
class RunConfig:
    """A whole run: ``task`` plus the sections above."""

    task: Literal["classification", "detection", "segmentation"] = "classification"
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for checkpoints and YAML)."""
        return dataclasses.asdict(self)


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


def _build(cls: type, values: Any, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"'{prefix or 'config'}' must be a mapping of keys, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.4)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {sorted(fields)}"
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


def parse_config(tree: dict[str, Any]) -> RunConfig:
    """Validate a nested dict into a ``RunConfig``."""
    return _build(RunConfig, tree, "")


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config file (safe loader only), apply ``--set`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    tree = _safe_yaml(path.read_text(), str(path)) or {}
    return parse_config(apply_overrides(tree, overrides or []))
