"""Token features as maps: a ViT's ``(B, N, C)`` tokens to the ``(B, C, H/p, W/p)`` grid of its patches.

A CNN student has feature maps; a ViT teacher has tokens: its prefix tokens (CLS, registers, distillation)
then one token per patch, row by row. Dropping the prefix and reshaping the rest gives the spatial map the
student's map is compared with (resized to it, as any map pair). The prefix count comes from the model
(``num_prefix_tokens``, which timm's ViTs have and featdistill's ``hf:`` backbones set from their config);
the grid is square unless the address gives it (``[grid=16x12]``: 16 rows, 12 columns).
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

GRID = "grid"  # the selector key: ``blocks.11[grid]`` or ``blocks.11[grid=16x12]``
_GRID_KEY = re.compile(r"^grid(=(?P<h>\d+)x(?P<w>\d+))?$")


def is_grid_key(key: str) -> bool:
    """Whether a selector key asks for the token grid (``grid`` or ``grid=HxW``)."""
    return _GRID_KEY.match(key) is not None


def grid_size(key: str) -> tuple[int, int] | None:
    """The ``(rows, columns)`` a ``grid=HxW`` key gives, None for a plain ``grid``."""
    match = _GRID_KEY.match(key)
    if match is None or match.group("h") is None:
        return None
    return int(match.group("h")), int(match.group("w"))


def prefix_tokens(model: nn.Module) -> int:
    """How many tokens come before the patch tokens in ``model``'s token outputs (CLS, registers): the model's
    ``num_prefix_tokens`` (timm ViTs; featdistill's ``hf:`` backbones), else 1 (a CLS token)."""
    count = getattr(model, "num_prefix_tokens", None)
    return 1 if count is None else int(count)


def tokens_to_grid(
    tokens: torch.Tensor, prefix: int, size: tuple[int, int] | None = None, where: str = "a token feature"
) -> torch.Tensor:
    """``(B, N, C)`` tokens → ``(B, C, rows, columns)``: the first ``prefix`` tokens dropped, the rest reshaped.

    ``size`` gives ``(rows, columns)``; without it the patch tokens must form a square. Raises a one-line
    ``ValueError`` (naming ``where``) for a tensor that is not tokens or does not fill the grid.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(
            f"{where} is {shape}, neither a feature map (B, C, H, W) nor tokens (B, N, C) to lay out as a grid; "
            "tap a block of the model (e.g. its last encoder layer)"
        )
    batch, count, channels = tokens.shape
    patches = count - prefix
    if size is None:
        side = math.isqrt(max(patches, 0))
        if patches <= 0 or side * side != patches:
            raise ValueError(
                f"{where} has {count} tokens, {patches} after its {prefix} prefix (CLS/register) tokens: not a "
                "square grid; give the grid in the address, e.g. '[grid=16x12]' (rows x columns), or feed the "
                "teacher square images"
            )
        size = (side, side)
    if size[0] * size[1] != patches:
        raise ValueError(
            f"{where} has {patches} patch tokens (after {prefix} prefix tokens), not the {size[0]}x{size[1]} grid "
            "its address gives"
        )
    grid = tokens[:, prefix:, :].transpose(1, 2)
    return grid.reshape(batch, channels, size[0], size[1])
