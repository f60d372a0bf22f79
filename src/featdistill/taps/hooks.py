"""Reading features: forward hooks that capture submodule outputs (or inputs) for exactly one forward pass.

``FeatureTaps`` resolves tap addresses once (failing early with suggestions for unknown names) and, inside
``with taps.capture() as features:``, registers one forward hook per tapped module (a forward pre-hook for
``name@input`` taps, so the input is read before the module can change it). The hooks are removed
when the block ends, also on exceptions, so a model never keeps stray hooks. On exit it checks that every
tap fired exactly once and that no captured tensor was modified in place afterwards (an ``inplace=True``
ReLU or ``out += identity`` after the tapped module would otherwise silently corrupt the feature).

With ``stop_early=True`` the forward pass is aborted as soon as every tap has fired: a teacher then runs
only as far as the distilled features need (no detection heads, no classifier after the last stage).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import torch
from torch import nn

from ..suggest import did_you_mean
from .selectors import TapAddress, module_inputs, parse_address, select

OUTPUT_ALIASES = ("", "output")


class TapError(RuntimeError):
    """A tap could not deliver a trustworthy feature (unknown layer, not run, run twice, modified)."""


class _StopForward(Exception):
    """Raised inside a hook to end a forward pass once every tap has fired."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel/DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


#: The attribute by which a wrapper model names the prefix of its own layer names that a tap address may leave
#: out (``HFImageClassifier.tap_prefix = "hf."``: ``vit.layers.0`` taps ``hf.vit.layers.0``).
TAP_PREFIX_ATTRIBUTE = "tap_prefix"


def resolve_module(model: nn.Module, name: str, role: str = "") -> nn.Module:
    """Return the submodule called ``name`` (``""``/``"output"`` = the model), or raise with suggestions.

    A name inside a wrapper model may leave out the prefix the wrapper names (:data:`TAP_PREFIX_ATTRIBUTE`). ``role``
    ("student", "teacher") names the model in the error.
    """
    modules = dict(model.named_modules())
    prefix = getattr(unwrap_model(model), TAP_PREFIX_ATTRIBUTE, "")
    for candidate in (name, prefix + name) if prefix else (name,):
        if candidate in modules:
            return modules[candidate]
    if name in OUTPUT_ALIASES:
        return model
    names = [n for n in modules if n]
    top = [n for n, _ in model.named_children()][:10]
    hint = did_you_mean(name, names, many=5, otherwise=f"top-level modules of {type(model).__name__}: {top}")
    which = f" (the {role})" if role else ""
    raise TapError(f"unknown layer {name!r} in {type(model).__name__}{which}{hint}")


def tensor_version(value: Any) -> int | None:
    """The in-place version counter of a tensor (None for non-tensors and inference-mode tensors)."""
    if not isinstance(value, torch.Tensor):
        return None
    try:
        return value._version
    except RuntimeError:  # inference tensors have no version counter
        return None


def _compiling() -> bool:
    """True while dynamo traces the code (``torch.compile``); hooks then run inside the compiled graph."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


def _side(module: str, on_input: bool) -> str:
    """How a tapped side of a module is named in messages: ``layer4`` or ``fc@input``."""
    return str(TapAddress(module, on_input=on_input))


class FeatureTaps:
    """Captures the outputs (or ``@input`` inputs) of named submodules of one model during a forward pass.

    Args:
        model: the model (DDP / ``torch.compile`` wrappers are unwrapped).
        addresses: tap addresses, see :mod:`featdistill.taps.selectors`.
        role: "student" or "teacher", used in error messages only.
    """

    def __init__(self, model: nn.Module, addresses: Sequence[str], role: str = "model") -> None:
        self.model = unwrap_model(model)
        self.role = role
        self.addresses: list[str] = list(dict.fromkeys(addresses))
        # One hook per tapped (module, side): a module tapped at its input and its output gets two.
        self._by_side: dict[tuple[str, bool], list[TapAddress]] = {}
        for address in self.addresses:
            parsed = parse_address(address)
            self._by_side.setdefault((parsed.module, parsed.on_input), []).append(parsed)
        self._modules = {name: resolve_module(self.model, name, role) for name, _ in self._by_side}

    @contextmanager
    def capture(self, stop_early: bool = False) -> Iterator[dict[str, Any]]:
        """Hook the tapped modules for the duration of the block; yields ``{address: feature}``."""
        features: dict[str, Any] = {}
        versions: dict[str, int | None] = {}
        calls: dict[tuple[str, bool], int] = dict.fromkeys(self._by_side, 0)
        pending = set(self._by_side)

        def read(side: tuple[str, bool], value: Any) -> None:
            calls[side] += 1
            if calls[side] > 1:
                raise TapError(
                    f"{self.role} layer {_side(*side)!r} ran {calls[side]} times in one forward pass, so "
                    "what it reads is ambiguous; tap a module that runs once (e.g. its parent)"
                )
            compiling = _compiling()
            for parsed in self._by_side[side]:
                key = str(parsed)
                feature = select(value, parsed.keys, key)
                if compiling and isinstance(feature, torch.Tensor):
                    # Inside a compiled graph the version counter is read at trace time, so the
                    # in-place check cannot work; a copy holds the value the layer produced instead.
                    features[key], versions[key] = feature.clone(), None
                else:
                    features[key], versions[key] = feature, tensor_version(feature)
            pending.discard(side)
            if stop_early and not pending:
                raise _StopForward

        def hook(side: tuple[str, bool]) -> Any:
            module = self._modules[side[0]]
            if side[1]:
                return module.register_forward_pre_hook(
                    lambda _m, args, kwargs: read(side, module_inputs(args, kwargs)), with_kwargs=True
                )
            return module.register_forward_hook(lambda _m, _inputs, output: read(side, output))

        handles = [hook(side) for side in self._by_side]
        try:
            with suppress(_StopForward):
                yield features
            self._check(features, versions, calls)
        finally:
            for handle in handles:
                handle.remove()

    def _check(
        self, features: dict[str, Any], versions: dict[str, int | None], calls: dict[tuple[str, bool], int]
    ) -> None:
        missing = [_side(*side) for side, count in calls.items() if count == 0]
        if missing:
            raise TapError(
                f"{self.role} layer(s) {missing} did not run during the forward pass "
                "(a branch used only in training/eval mode, or a module the forward never calls)"
            )
        for key, before in versions.items():
            after = tensor_version(features[key])
            if before is not None and after != before:
                module = parse_address(key).module
                parent = module.rsplit(".", 1)[0] if "." in module else None
                instead = f"tap its parent {parent!r} or " if parent else "tap "
                what = "input" if parse_address(key).on_input else "output"
                raise TapError(
                    f"the {what} of {self.role} layer {key!r} was modified in place later in the forward "
                    "pass (e.g. an inplace=True ReLU or 'out += identity' after it), so it no longer holds "
                    f"the value the layer produced; {instead}the module that produces the final value "
                    "(e.g. the block or the activation after it), or make that operation non-inplace"
                )
