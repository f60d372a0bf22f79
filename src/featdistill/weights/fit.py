"""A state_dict into a model: the classifier head of another class count is left out, all else must fit.

A file without the model's classifier head (a backbone: the student of a ``task: pretrain`` run) loads too: the
head starts new, and one warning names it.

Fine-tuning a pretrained classifier on one's own data changes only the number of classes; the weights
of every other layer load, the new head starts from its random initialisation and one warning names the
keys left out. Any other difference is an error naming the file, the model, the first differing keys
and what to do.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn

from .errors import WeightsError

_SHOWN = 3  # keys named per kind of mismatch
_COUNTER = "num_batches_tracked"  # BatchNorm counters: absent from frozen or older checkpoints


def _is_head(model_tensor: torch.Tensor, file_tensor: torch.Tensor, num_classes: int | None) -> bool:
    """A classifier weight/bias that differs from the file only in its number of classes (dim 0)."""
    return (
        num_classes is not None
        and model_tensor.dim() == file_tensor.dim() >= 1
        and model_tensor.shape[0] == num_classes
        and model_tensor.shape[1:] == file_tensor.shape[1:]
    )


def _head_keys(model: nn.Module) -> set[str]:
    """The parameters of the model's classifier head: its last ``nn.Linear`` (none: an empty set)."""
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        return set()
    return {f"{linears[-1]}.{name}" for name, _ in model.get_submodule(linears[-1]).named_parameters()}


def _listed(keys: list[str], shape_of: Mapping[str, torch.Tensor]) -> str:
    shown = ", ".join(f"{k} {tuple(shape_of[k].shape)}" for k in keys[:_SHOWN])
    return shown + (", …" if len(keys) > _SHOWN else "")


def fit_state_dict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    model_name: str,
    num_classes: int | None = None,
) -> list[str]:
    """Load ``state`` (read from ``source``) into ``model`` (built as ``model_name``); return keys left out.

    With ``num_classes``, a head whose only difference is the class count is left out (warning once).
    Raises ``WeightsError`` for any other missing, unexpected or differently shaped key; the model is then
    partly loaded and should be discarded.
    """
    own = model.state_dict()
    reshaped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    head = [k for k in reshaped if _is_head(own[k], state[k], num_classes)]
    if len(head) != len(reshaped):
        head = []  # a head is left out only when it is the sole difference
    result = model.load_state_dict({k: v for k, v in state.items() if k not in reshaped}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(_COUNTER) and k not in reshaped]
    new_head = sorted(missing) if missing and set(missing) <= _head_keys(model) else []
    missing = [k for k in missing if k not in new_head]
    unexpected = [k for k in result.unexpected_keys if not k.endswith(_COUNTER)]
    wrong = [k for k in reshaped if k not in head]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing in the file ({_listed(missing, own)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_listed(unexpected, state)})")
        if wrong:
            shapes = ", ".join(
                f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:_SHOWN]
            )
            parts.append(f"{len(wrong)} of another shape ({shapes}{', …' if len(wrong) > _SHOWN else ''})")
        raise WeightsError(
            f"{source} does not fit {model_name!r} ({type(model).__name__}): {'; '.join(parts)}; "
            f"the file holds another architecture: set the model name to the one that wrote it, "
            f"or use weights written for {model_name!r}"
        )
    if new_head:
        warnings.warn(
            f"{source}: has no classifier head (a backbone, e.g. a task: pretrain checkpoint): "
            f"{', '.join(new_head)} start from a random initialisation (fine-tuning)",
            stacklevel=2,
        )
    if head:
        file_classes = state[head[0]].shape[0]
        warnings.warn(
            f"{source}: left out the classifier head {', '.join(head)} ({file_classes} classes in the "
            f"file, model.num_classes is {num_classes}); it starts from a random initialisation (fine-tuning)",
            stacklevel=2,
        )
    return head
