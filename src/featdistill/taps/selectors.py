"""Tap addresses: ``module.path[@input][key][key]`` names one element of a module's output (or input).

A tap address is a dotted submodule name, optionally followed by ``@input`` to read what the module receives
instead of what it returns (its positional inputs: the single input when there is one, else their tuple),
then by one or more selectors in square brackets that pick an element of a tuple/list (integer index) or of
a dict (key; an integer-looking key is tried as a string first, then as an int). Examples:

- ``layer4``                 the output of ``model.layer4``
- ``backbone[0]``            level ``"0"`` of torchvision's FPN ``OrderedDict``
- ``backbone[pool]``         the extra pooled FPN level
- ``encoder[1][0]``          first element of the second element of a nested tuple
- ``output`` / ``""``        the model's own output (unless a submodule is literally called ``output``)
- ``fc@input``               what ``model.fc`` receives: the pooled features before the classifier
- ``layer4.0.relu@input``    a pre-activation (the ReLU must not be ``inplace``, which would overwrite it)
- ``block@input[1]``         the second positional input of a module called with several
- ``layer@input[hidden_states]``  a keyword input, for a module called with keywords only
- ``blocks.11[grid]``        a ViT block's tokens as the (B, C, H/p, W/p) map of its patches (see :mod:`.grid`)
- ``blocks.11[grid=16x12]``  the same, for a grid that is not square (rows x columns)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .grid import grid_size, is_grid_key, tokens_to_grid

INPUT_SIDE = "@input"
_ADDRESS = re.compile(r"^(?P<module>[^\[\]@]*)(?P<side>@[^\[\]]*)?(?P<keys>(\[[^\[\]]+\])*)$")
_KEY = re.compile(r"\[([^\[\]]+)\]")


class SelectorError(ValueError):
    """A selector that does not fit the output: a missing key, an index out of range, a wrong kind of key."""


@dataclass(frozen=True)
class TapAddress:
    """A parsed tap address: the submodule name, which side of it is read, and the selector keys applied."""

    module: str
    keys: tuple[str, ...] = ()
    on_input: bool = False  # read the module's positional inputs instead of its output

    def __str__(self) -> str:
        return self.module + (INPUT_SIDE if self.on_input else "") + "".join(f"[{k}]" for k in self.keys)


def parse_address(address: str) -> TapAddress:
    """Split ``"backbone.body[0]"`` into module ``backbone.body`` and keys ``("0",)`` (``@input``: inputs)."""
    match = _ADDRESS.match(address.strip())
    side = match.group("side") if match else None
    if match is None or side not in (None, INPUT_SIDE):
        raise ValueError(
            f"invalid tap address {address!r}: expected 'module.path', optionally followed by '@input' "
            "(to read the module's input) and by selectors such as '[0]' or '[pool]'"
        )
    keys = tuple(k.strip().strip("'\"") for k in _KEY.findall(match.group("keys")))
    return TapAddress(match.group("module").strip(), keys, on_input=side == INPUT_SIDE)


def module_inputs(args: tuple, kwargs: Mapping[str, Any]) -> Any:
    """What an ``@input`` tap reads: the single positional argument, else their tuple, else the keywords.

    A module called with keywords only (``layer(hidden_states=x)``, common in transformers) is read as the
    dict of its keyword arguments, so ``layer@input[hidden_states]`` picks one.
    """
    if not args:
        return dict(kwargs)
    return args[0] if len(args) == 1 else args


def select(output: Any, keys: Sequence[str], address: str = "", prefix_tokens: int = 1) -> Any:
    """Apply selector keys to a module output (tensor, tuple/list, dict or object with attributes).

    A ``grid`` key lays a token tensor out as a map, after its ``prefix_tokens`` (CLS, registers) are dropped.
    Raises ``SelectorError`` (a ``ValueError``) naming the address when a key does not fit the output.
    """
    value = output
    for key in keys:
        if isinstance(value, torch.Tensor) and is_grid_key(key):
            try:
                value = tokens_to_grid(value, prefix_tokens, grid_size(key), f"tap {address!r}")
            except ValueError as err:
                raise SelectorError(str(err)) from None
        elif isinstance(value, Mapping):
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
