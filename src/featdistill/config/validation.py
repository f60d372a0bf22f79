"""Checking config values against a schema of dataclasses: types, unknown keys, YAML and ``--set`` values.

The machinery under :mod:`featdistill.config.schema`, generic over the dataclass it checks: an unknown key
names itself and the closest valid key, a wrong type names the key and the expected type, a missing
required key names itself, a YAML file or ``--set`` value is read with the safe loader only.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import types
import typing
from collections.abc import Collection
from typing import Any, Literal, TypeVar

import yaml

from ..suggest import did_you_mean
from .task_names import check_task_name


class ConfigError(ValueError):
    """A configuration problem, reported as one line that names the key."""


REQUIRED: Any = dataclasses.MISSING
T = TypeVar("T")


def type_name(tp: Any) -> str:
    """A type annotation in words for an error message: ``int or null``, ``'sgd' or 'adamw'``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def matches_type(value: Any, tp: Any) -> bool:
    """Whether ``value`` (plain YAML data) fits the annotation ``tp``; an int fits a float, a bool fits neither."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(matches_type(v, item) for v in value)
    if origin is dict:
        _, item = typing.get_args(tp) or (Any, Any)
        return isinstance(value, dict) and all(matches_type(v, item) for v in value.values())
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def build_section(cls: type, values: Any, prefix: str, passthrough: Collection[str] = ()) -> Any:
    """An instance of the schema dataclass ``cls`` from the mapping ``values``, every key checked (``prefix``:
    the dotted path of the section, for messages; ``passthrough``: keys accepted unchecked and left out)."""
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
            kwargs[name] = build_section(tp, value, f"{prefix}{name}.")
        elif not matches_type(value, tp):
            raise ConfigError(
                f"config key '{prefix}{name}' expects {type_name(tp)}, got {value!r} ({type(value).__name__})"
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
    return build_section(schema, values, prefix, passthrough)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree``'s key ``dotted`` (``train.lr``), making the sections on the way."""
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
        set_dotted(tree, key.strip(), safe_yaml(raw, f"--set {key.strip()}"))
    return tree


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python objects, ever) that also reads ``1e-3`` as a float, as YAML 1.2 does."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def safe_yaml(text: str, where: str) -> Any:
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

    A module that is not found or fails while importing is a one-line ``ConfigError`` naming it.
    """
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(f"config key 'plugins' expects a list of module names, got {modules!r}")
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # any failure of user code at import time: name the module and the error
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ConfigError(
                f"plugins: cannot import {module!r} ({type(err).__name__}: {first}); it must be importable "
                "from here (installed, or on PYTHONPATH)"
            ) from None


def check_key_in(schema: type, dotted: str) -> None:
    """Raise a ``ConfigError`` unless ``dotted`` (e.g. ``distill.alpha``) is a key of the dataclass ``schema``.

    Keys inside a free-form mapping (``data.options.crop_size``, ``distill.options.cwt.tau``) are accepted.
    """
    cls: Any = schema
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
            if accepts_mapping(tp):
                return
            raise ConfigError(f"'{'.'.join(parts[: depth + 1])}' is a key, not a section; use it alone")


def accepts_mapping(tp: Any) -> bool:
    """Whether the annotation ``tp`` admits a mapping, whose keys are then free-form."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(accepts_mapping(a) for a in typing.get_args(tp))
    return origin is dict or tp is dict


def check_task(name: str) -> None:
    """The ``task`` key checked against the known task names, without importing a task plug-in."""
    try:
        check_task_name(name)
    except ValueError as err:
        raise ConfigError(f"config key 'task': {err}") from None
