"""Listing every tensor a model's submodules produce in one forward pass, for automatic pairing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .hooks import tensor_version, unwrap_model


@dataclass(frozen=True)
class LayerOutput:
    """One submodule output seen in a dry run, in the order the outputs were produced."""

    name: str
    shape: tuple[int, ...]
    order: int
    unsafe: str = ""  # why tapping it would be wrong ("ran 2 times", "modified in place"); "" = tappable
    is_output: bool = False  # the tensor is (part of) what the model returns: logits, a head's output


def _tensor_ids(value: object) -> set[int]:
    """The ids of the tensors in a model output (nested tuples, lists, dicts, or one tensor)."""
    if isinstance(value, torch.Tensor):
        return {id(value)}
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return set().union(*(_tensor_ids(item) for item in value))
    return set()


def trace_outputs(
    model: nn.Module, run: Callable[[nn.Module], object], include_unsafe: bool = False
) -> list[LayerOutput]:
    """Run ``run(model)`` once and list the tensor outputs that are safe to tap.

    ``run`` returns the model's output, so that the outputs which are (part of) it are marked ``is_output``.

    Outputs of modules that ran more than once, or that were modified in place after being produced,
    are left out (or, with ``include_unsafe``, listed with the reason): tapping them would be ambiguous
    or would read a corrupted value.
    """
    model = unwrap_model(model)
    seen: dict[str, tuple[torch.Tensor, int | None, int]] = {}
    calls: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m: nn.Module, _i: object, output: object, name: str = name) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor):
                seen[name] = (output, tensor_version(output), len(seen))

        handles.append(module.register_forward_hook(hook))
    try:
        output = run(model)
    finally:
        for handle in handles:
            handle.remove()
    returned = _tensor_ids(output)
    listed = []
    for name, (tensor, version, order) in sorted(seen.items(), key=lambda item: item[1][2]):
        unsafe = f"ran {calls[name]} times" if calls[name] > 1 else ""
        if not unsafe and tensor_version(tensor) != version:
            unsafe = "modified in place"
        if include_unsafe or not unsafe:
            listed.append(LayerOutput(name, tuple(tensor.shape), order, unsafe, id(tensor) in returned))
    return listed
