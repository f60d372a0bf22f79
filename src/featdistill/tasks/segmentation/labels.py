"""Label maps: decoding a mask PNG to its raw ids, and mapping raw ids to train ids (255 for ignored pixels).

Shared by every layout (:mod:`.layouts`, :mod:`.masks`) through :class:`.folder.SegmentationFolder`; a mask
that does not fit raises :class:`BadMask`, whose message names the file, the value and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = ["IGNORE_INDEX", "SKIP_HINT", "BadMask", "lookup_table", "read_ids"]

IGNORE_INDEX = 255
#: How every bad-mask message ends: the setting that leaves such pairs out instead.
SKIP_HINT = "or set data.on_bad_file: skip to leave such pairs out"


class BadMask(ValueError):
    """A mask that does not fit its image or the class list; the message names the file, the value and the fix."""


def lookup_table(mapping: dict[int, int]) -> Tensor:
    """256-entry uint8 table mapping raw label values to train ids (unlisted values -> ignore)."""
    lut = torch.full((256,), IGNORE_INDEX, dtype=torch.uint8)
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


def read_ids(path: Path, colours: dict[tuple[int, int, int], int] | None = None) -> Tensor:
    """Decode a label PNG to its raw uint8 ids ``[H, W]``: single-channel (``L``), palette (``P``: its
    indices), or RGB through the colour table ``colours`` (colour -> id)."""
    with Image.open(path) as im:
        if im.mode in ("L", "P"):
            return torch.from_numpy(np.asarray(im).copy())
        if im.mode not in ("RGB", "RGBA") or colours is None:
            need = (
                "; an RGB colour mask needs its colour table: 'colors' ([[r, g, b], ...] in class order) in the "
                "dataset's classes.json"
                if im.mode in ("RGB", "RGBA")
                else ""
            )
            raise BadMask(
                f"mask {path} has mode {im.mode}, not an 8-bit single-channel or palette PNG of class ids{need}, "
                f"{SKIP_HINT}"
            )
        rgb = np.asarray(im.convert("RGB")).astype(np.int64)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    ids = np.full(code.shape, -1, dtype=np.int64)
    for (r, g, b), raw in colours.items():
        ids[code == (r << 16) | (g << 8) | b] = raw
    if (ids < 0).any():
        y, x = np.argwhere(ids < 0)[0]
        colour = tuple(int(v) for v in rgb[y, x])
        raise BadMask(
            f"mask {path} has colour {colour} (at x={x}, y={y}), which is not in the colour table; add it to "
            f"'colors' (a class) or 'ignore_colors' in classes.json, {SKIP_HINT}"
        )
    return torch.from_numpy(ids.astype(np.uint8))
