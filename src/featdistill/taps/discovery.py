"""Listing every tensor a model's submodules produce in one forward pass, for automatic pairing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .hooks import _version, unwrap_model


@dataclass(frozen=True)
class LayerOutput:
    """One submodule output seen in a dry run, in the order the outputs were produced."""

    name: str
    shape: tuple[int, ...]
    order: int


def trace_outputs(model: nn.Module, run: Callable[[nn.Module], object]) -> list[LayerOutput]:
    """Run ``run(model)`` once and list the tensor outputs that are safe to tap.

    Outputs of modules that ran more than once, or that were modified in place after being produced,
    are left out: tapping them would be ambiguous or would read a corrupted value.
    """
    model = unwrap_model(model)
    seen: dict[str, tuple[torch.Tensor, int | None, int]] = {}
    repeated: set[str] = set()
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_m: nn.Module, _i: object, output: object, name: str = name) -> None:
            if name in seen:
                repeated.add(name)
            if isinstance(output, torch.Tensor):
                seen[name] = (output, _version(output), len(seen))

        handles.append(module.register_forward_hook(hook))
    try:
        run(model)
    finally:
        for handle in handles:
            handle.remove()
    return [
        LayerOutput(name, tuple(t.shape), order)
        for name, (t, version, order) in sorted(seen.items(), key=lambda item: item[1][2])
        if name not in repeated and _version(t) == version
    ]
