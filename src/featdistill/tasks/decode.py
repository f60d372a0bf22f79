"""Decoding image files into RGB pixel tensors without losing or distorting information.

The rules (also in ``docs/reliability.md``, "Image decoding"):

- Every format Pillow opens is read (:data:`IMAGE_EXTENSIONS`). Baseline JPEGs and 8/16-bit non-palette
  PNGs are decoded by ``torchvision.io`` when it has its decoders (libjpeg-turbo / libpng: ~40% faster than
  Pillow on CIFAR-sized files, same pixels; see ``benchmarks/results/data_path.md``); everything else (CMYK JPEG, palette or 1/2/4-bit PNG, GIF, WebP, TIFF,
  BMP, ...) by Pillow. GIF and other animations: the first frame.
- EXIF orientation is applied, so phone photos are upright.
- The result has 3 channels: gray is repeated, palettes expanded, CMYK/YCbCr converted to RGB, and an
  alpha channel dropped (the colour values are kept as stored, not composited); ``Decoded.alpha`` says so
  when it made some pixel transparent (a fully opaque alpha channel loses nothing, so it is not reported).
- High bit depths are scaled, never clipped: unsigned 16-bit images by their range 0..65535; 32-bit
  integer images (Pillow mode ``I``, e.g. 16-bit PGM) must hold values in 0..65535 and are read as 16-bit;
  float images (mode ``F``) must hold values in [0, 1] and are read as such. Values outside these ranges
  raise :class:`BadImageError` naming the file and the range found, instead of being clipped.
- ``bits=8`` returns ``uint8`` (16-bit level ``v`` becomes ``round(v * 255 / 65535)``); ``bits=16`` returns
  ``uint16`` and keeps all 16-bit levels (8-bit level ``v`` becomes ``v * 257``, so 255 stays white).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2.functional import resize as resize_tensor

try:  # deprecated since torchvision 0.29 (in favour of TorchCodec); Pillow decodes everything without it
    from torchvision.io import ImageReadMode, decode_jpeg, decode_png
except ImportError:  # pragma: no cover - a torchvision without image decoders
    decode_jpeg = decode_png = None
else:
    warnings.filterwarnings(
        "ignore", "The image decoding and encoding capabilities of TorchVision", DeprecationWarning
    )

__all__ = [
    "IMAGE_EXTENSIONS",
    "BadImageError",
    "Decoded",
    "decode_image",
    "decode_or_fail",
    "is_hidden_or_system",
    "max_level",
    "resize_pixels",
]

# Formats Pillow can open without external programs or plug-ins (stubs, Ghostscript, Windows-only).
_NOT_READABLE = {".bufr", ".grib", ".h5", ".hdf", ".mpeg", ".mpg", ".eps", ".ps", ".emf", ".wmf"}
#: File extensions (lower case) of every image format Pillow reads.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    ext
    for ext, fmt in Image.registered_extensions().items()
    if fmt in Image.OPEN and ext not in _NOT_READABLE
)

_SYSTEM_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# PNG colour type (IHDR) -> Pillow-style mode name; 3 (palette) goes through Pillow, which expands it.
_PNG_MODES = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class BadImageError(ValueError):
    """A file that cannot be decoded faithfully (corrupt, unknown format, values out of range)."""


@dataclass
class Decoded:
    """One decoded image: ``pixels`` ``[3, H, W]`` (uint8 or uint16), the file's pixel format, alpha."""

    pixels: torch.Tensor
    mode: str  # Pillow-style mode of the file: RGB, L, P, CMYK, I;16, RGBA, ...
    alpha: bool  # an alpha channel with some transparent pixel was dropped


def is_hidden_or_system(path: Path) -> bool:
    """Dot files (``.DS_Store``, ``._x.jpg``) and OS bookkeeping files (``Thumbs.db``, ``desktop.ini``)."""
    return path.name.startswith(".") or path.name.lower() in _SYSTEM_FILES or path.name == "__MACOSX"


def max_level(dtype: torch.dtype) -> int:
    """The white level of a pixel storage dtype (255 for uint8, 65535 for uint16)."""
    if dtype == torch.uint8:
        return 255
    if dtype == torch.uint16:
        return 65535
    raise ValueError(f"pixels must be uint8 or uint16, got {dtype}")


def decode_image(path: str | Path, bits: int = 8) -> Decoded:
    """Decode ``path`` to ``[3, H, W]`` pixels of ``bits`` (8 or 16) per channel; see the module rules."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    path = Path(path)
    try:
        data = path.read_bytes()
        decoded = _decode_torchvision(data, bits)
        if decoded is None:
            decoded = _decode_pillow(path, bits)
    except BadImageError as err:
        raise BadImageError(f"{path}: {err}") from None
    except (OSError, ValueError, SyntaxError, RuntimeError, EOFError) as err:
        raise BadImageError(f"{path}: {err}") from err
    return decoded


def decode_or_fail(path: str | Path, bits: int = 8) -> Decoded:
    """:func:`decode_image` where a bad file cannot be skipped: a ValueError that says to replace the file."""
    try:
        return decode_image(path, bits)
    except BadImageError as err:
        raise ValueError(f"cannot decode image {err}; delete or replace it") from None


def _decode_torchvision(data: bytes, bits: int) -> Decoded | None:
    """The fast path for baseline JPEG and 8/16-bit non-palette PNG; None for anything else."""
    if decode_jpeg is None:
        return None
    if data.startswith(_JPEG_MAGIC):
        pixels = decode_jpeg(_as_tensor(data), mode=ImageReadMode.UNCHANGED, apply_exif_orientation=True)
        if pixels.shape[0] not in (1, 3):  # CMYK / YCCK: Pillow converts these correctly
            return None
        return Decoded(_to_bits(_three_channels(pixels), bits), "L" if pixels.shape[0] == 1 else "RGB", False)
    if data.startswith(_PNG_MAGIC) and len(data) > 26:
        depth, color_type = data[24], data[25]
        if depth not in (8, 16) or color_type not in _PNG_MODES:
            return None
        pixels = decode_png(_as_tensor(data), mode=ImageReadMode.UNCHANGED, apply_exif_orientation=True)
        mode = "I;16" if (depth, color_type) == (16, 0) else _PNG_MODES[color_type] + (";16" * (depth == 16))
        alpha = color_type in (4, 6) and _transparent(pixels[-1], max_level(pixels.dtype))
        return Decoded(_to_bits(_three_channels(pixels), bits), mode, alpha)
    return None


def _as_tensor(data: bytes) -> torch.Tensor:
    with warnings.catch_warnings():  # frombuffer warns that bytes are read-only; the decoders only read
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(data, dtype=torch.uint8)


def _transparent(alpha: torch.Tensor | np.ndarray, opaque: int) -> bool:
    """Whether an alpha channel makes any pixel (partly) transparent."""
    return bool((alpha < opaque).any())


def _three_channels(pixels: torch.Tensor) -> torch.Tensor:
    """``[C, H, W]`` with C in 1..4 (gray, gray+alpha, RGB, RGBA) to RGB ``[3, H, W]``."""
    if pixels.shape[0] <= 2:
        return pixels[:1].expand(3, -1, -1)
    return pixels[:3]


def _to_bits(pixels: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 or uint16 pixels to ``bits`` per channel by the module's scaling rule (contiguous)."""
    if pixels.dtype == torch.uint8:
        return pixels.contiguous() if bits == 8 else pixels.to(torch.int32).mul_(257).to(torch.uint16)
    if bits == 16:
        return pixels.contiguous()
    return pixels.to(torch.int32).mul_(255).add_(32767).div_(65535, rounding_mode="floor").to(torch.uint8)


def _decode_pillow(path: Path, bits: int) -> Decoded:
    with Image.open(path) as image:
        mode = image.mode
        alpha = mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in image.info)
        image = ImageOps.exif_transpose(image)  # loads the first frame, upright
        if mode.startswith("I;16"):
            array = np.asarray(image).astype(np.uint16)
        elif mode == "I":
            array = _checked(np.asarray(image), 0, 65535, "32-bit integer", "0..65535").astype(np.uint16)
        elif mode == "F":
            values = _checked(np.asarray(image, dtype=np.float64), 0.0, 1.0, "float", "[0, 1]")
            array = np.rint(values * 65535).astype(np.uint16)
        elif alpha:
            rgba = np.asarray(image.convert("RGBA"))
            array, alpha = rgba[..., :3], _transparent(rgba[..., 3], 255)
        else:
            array = np.asarray(image.convert("RGB"))
    pixels = torch.from_numpy(np.array(array))  # a writable copy (Pillow arrays are read-only)
    pixels = pixels.unsqueeze(0) if pixels.dim() == 2 else pixels.permute(2, 0, 1)
    return Decoded(_to_bits(_three_channels(pixels), bits), mode, alpha)


def _checked(values: np.ndarray, low: float, high: float, kind: str, expected: str) -> np.ndarray:
    if values.size and not (np.isfinite(values).all() and values.min() >= low and values.max() <= high):
        raise BadImageError(
            f"{kind} image with values in [{values.min()}, {values.max()}], outside {expected}; featdistill "
            f"reads {kind} images as {expected} intensities and does not clip: rescale the file"
        )
    return values


def resize_pixels(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[..., C, H, W]`` uint8/uint16 pixels to ``size`` (bilinear, antialiased), same dtype."""
    if tuple(pixels.shape[-2:]) == tuple(size):
        return pixels
    if pixels.dtype == torch.uint8:
        return resize_tensor(pixels, list(size), antialias=True)
    resized = resize_tensor(pixels.float(), list(size), antialias=True)
    return resized.round_().clamp_(0, max_level(pixels.dtype)).to(pixels.dtype)
