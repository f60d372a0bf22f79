"""Tap addresses: ``module.path[key][key]`` names one element of a module's output.

A tap address is a dotted submodule name, optionally followed by one or more selectors in square brackets
that pick an element of a tuple/list (integer index) or of a dict (key; an integer-looking key is tried as
a string first, then as an int). Examples:

- ``layer4``                 the output of ``model.layer4``
- ``backbone[0]``            level ``"0"`` of torchvision's FPN ``OrderedDict``
- ``backbone[pool]``         the extra pooled FPN level
- ``encoder[1][0]``          first element of the second element of a nested tuple
- ``output`` / ``""``        the model's own output (unless a submodule is literally called ``output``)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_ADDRESS = re.compile(r"^(?P<module>[^\[\]]*)(?P<keys>(\[[^\[\]]+\])*)$")
_KEY = re.compile(r"\[([^\[\]]+)\]")


class SelectorError(ValueError):
    """A selector that does not fit the output: a missing key, an index out of range, a wrong kind of key."""


@dataclass(frozen=True)
class TapAddress:
    """A parsed tap address: the submodule name and the selector keys applied to its output."""

    module: str
    keys: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.module + "".join(f"[{k}]" for k in self.keys)


def parse_address(address: str) -> TapAddress:
    """Split ``"backbone.body[0]"`` into module ``backbone.body`` and keys ``("0",)``."""
    match = _ADDRESS.match(address.strip())
    if match is None:
        raise ValueError(
            f"invalid tap address {address!r}: expected 'module.path' optionally followed by "
            "selectors such as '[0]' or '[pool]'"
        )
    keys = tuple(k.strip().strip("'\"") for k in _KEY.findall(match.group("keys")))
    return TapAddress(match.group("module").strip(), keys)


def select(output: Any, keys: Sequence[str], address: str = "") -> Any:
    """Apply selector keys to a module output (tensor, tuple/list, dict or object with attributes).

    Raises ``SelectorError`` (a ``ValueError``) naming the address when a key does not fit the output.
    """
    value = output
    for key in keys:
        if isinstance(value, Mapping):
            if key in value:
                value = value[key]
            elif key.lstrip("-").isdigit() and int(key) in value:
                value = value[int(key)]
            else:
                raise SelectorError(
                    f"tap {address!r}: key {key!r} not in output; available keys: {list(value)}"
                )
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if not key.lstrip("-").isdigit():
                raise SelectorError(
                    f"tap {address!r}: output is a {type(value).__name__}; use an integer index"
                )
            index = int(key)
            if not -len(value) <= index < len(value):
                raise SelectorError(f"tap {address!r}: index {index} out of range for length {len(value)}")
            value = value[index]
        elif hasattr(value, key):
            value = getattr(value, key)
        else:
            raise SelectorError(f"tap {address!r}: cannot select {key!r} from a {type(value).__name__}")
    return value
