"""Local weight files to a state_dict: ``.pt``/``.pth``/``.bin`` with ``weights_only``, or ``.safetensors``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..engine.checkpoint import CheckpointError, load_safely

# A featdistill checkpoint keeps the student under "student"; other trainers use "model" or "state_dict".
_CHECKPOINT_KEYS = ("model", "state_dict", "student")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise ImportError(
            f"{path} is a safetensors file, which needs the safetensors package: pip install 'featdistill[hub]'"
        ) from None
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"cannot read {path}: {first} (corrupt or truncated safetensors file?); download or export it again"
        ) from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a model state_dict from a local file; nothing in it is ever run.

    ``.safetensors`` files are read with safetensors; any other file with ``load_safely`` (``weights_only=True``)
    (a raw state_dict, or a dict holding it under ``"model"``, ``"state_dict"`` or ``"student"``). A DDP
    ``module.`` prefix is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
    checkpoint = _read_safetensors(path) if path.suffix == ".safetensors" else load_safely(path)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a state_dict or a dict of them, got {type(checkpoint).__name__}")
    for key in _CHECKPOINT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    if not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(
            f"{path}: not a state_dict (no tensor mapping at the top level or under "
            f"{', '.join(repr(k) for k in _CHECKPOINT_KEYS)}); top-level keys: {list(checkpoint)[:10]}"
        )
    if checkpoint and all(k.startswith("module.") for k in checkpoint):
        return {k[len("module.") :]: v for k, v in checkpoint.items()}
    return dict(checkpoint)
