"""Pretrained weights by name, one loader for every task.

``model.student_weights`` / ``model.teacher_weights`` (and the segmentation/detection
``pretrained_backbone``) name their weights with one of:

- a local file: ``.pt``, ``.pth``, ``.bin`` (read with ``weights_only=True``) or ``.safetensors``;
- ``torchvision`` / ``torchvision:<ENUM>``: the DEFAULT (or named) weights of a torchvision model, in
  torch's cache (``$TORCH_HOME/hub/checkpoints``), downloaded once;
- ``timm``: timm's pretrained weights of a ``timm:<name>[.<tag>]`` model, in the Hugging Face cache.

``model.teacher: hf:<repo id or local directory>`` builds a transformers image classifier with its own
weights (:mod:`.huggingface`). Loading into a model leaves out a classifier head whose class count differs
(fine-tuning) and reports every other mismatch (:mod:`.fit`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError
from .files import load_state_dict_file
from .fit import fit_state_dict
from .torchvision_hub import TORCHVISION, torchvision_state_dict

__all__ = ["WeightsError", "fit_state_dict", "load_weights", "read_weights"]


def read_weights(spec: str | Path, model_name: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state_dict that ``spec`` names for the model ``model_name``, and the file it came from."""
    text = str(spec)
    if text == TORCHVISION or text.startswith(f"{TORCHVISION}:"):
        return torchvision_state_dict(model_name, text)
    if text == "timm":
        raise WeightsError(
            f"weights 'timm' need a timm model: set the model name to timm:<name>[.<tag>] "
            f"instead of {model_name!r}, or give a local weights file"
        )
    return load_state_dict_file(text), text


def load_weights(model: nn.Module, spec: str | Path, model_name: str, num_classes: int | None = None) -> None:
    """Load the weights ``spec`` names into ``model`` (built as ``model_name``), in place.

    With ``num_classes``, a classifier head of another class count is left out and a warning names it.
    """
    state, source = read_weights(spec, model_name)
    fit_state_dict(model, state, source, model_name, num_classes)
