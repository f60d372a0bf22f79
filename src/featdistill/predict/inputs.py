"""What ``featdistill predict`` reads: image files, folders (recursively) and globs, decoded as training does.

Folders and globs keep the files of an image format Pillow reads and leave out hidden and system files
(:func:`~featdistill.tasks.decode.is_hidden_or_system`), as the ImageFolder scan does; a file named on the
command line is always tried. Each image gets a name relative to the folder or glob it came from, so that
outputs written per image (label PNGs, drawn boxes) keep the input tree and never collide.
"""

from __future__ import annotations

import glob
import itertools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..tasks.decode import IMAGE_EXTENSIONS, BadImageError, decode_image, is_hidden_or_system
from ..tasks.prediction import InputImage

__all__ = ["BadFiles", "InputImage", "collect_images", "decoded_batches"]

ON_BAD_FILE = ("skip", "raise")
_FIRST_NAMES = 5  # bad files named in the report


@dataclass
class BadFiles:
    """Undecodable files met (``--on-bad-file skip``): how many and the first few."""

    count: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, path: Path) -> None:
        self.count += 1
        if len(self.first) < _FIRST_NAMES:
            self.first.append(str(path))


def _is_image(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return path.suffix.lower() in IMAGE_EXTENSIONS and not any(is_hidden_or_system(Path(p)) for p in parts)


def _folder(root: Path) -> list[InputImage]:
    return [
        InputImage(path, path.relative_to(root).as_posix())
        for path in sorted(root.rglob("*"))
        if path.is_file() and _is_image(path, root)
    ]


def _glob(pattern: str) -> list[InputImage]:
    """Files matching ``pattern`` (``**`` recursive), folders among them expanded, named from the fixed part."""
    base = Path(*itertools.takewhile(lambda part: not glob.has_magic(part), Path(pattern).parts))
    found: list[InputImage] = []
    for match in sorted(glob.glob(pattern, recursive=True)):
        path = Path(match)
        if path.is_dir():
            found += [
                InputImage(i.path, f"{path.relative_to(base).as_posix()}/{i.name}") for i in _folder(path)
            ]
        elif path.is_file() and _is_image(path, base):
            found.append(InputImage(path, path.relative_to(base).as_posix()))
    return found


def collect_images(inputs: Sequence[str | Path]) -> list[InputImage]:
    """The images named by ``inputs`` (files, folders, globs), in argument order, each file once."""
    images: list[InputImage] = []
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_file():
            found = [InputImage(path, path.name)]
        elif path.is_dir():
            found = _folder(path)
            if not found:
                raise ValueError(f"no image files in folder {path} (no file of an image format Pillow reads)")
        elif glob.has_magic(str(given)):
            found = _glob(str(path))
            if not found:
                raise ValueError(f"no image files match {given}")
        else:
            raise FileNotFoundError(f"input {given}: no such file or folder, and no glob pattern")
        images += found
    seen: set[Path] = set()
    unique = []
    for image in images:
        key = image.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(image)
    return unique


def decoded_batches(
    images: Sequence[InputImage], batch_size: int, bits: int, on_bad_file: str, bad: BadFiles
) -> Iterator[list[tuple[InputImage, torch.Tensor]]]:
    """Batches of ``(image, [3, H, W] pixels)`` decoded by :func:`decode_image` at ``bits``.

    An undecodable file raises a one-line error (``on_bad_file="raise"``) or is warned about, counted in
    ``bad`` and left out (``"skip"``).
    """
    if on_bad_file not in ON_BAD_FILE:
        raise ValueError(f"--on-bad-file must be one of {', '.join(ON_BAD_FILE)}, got {on_bad_file!r}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    batch: list[tuple[InputImage, torch.Tensor]] = []
    for image in images:
        try:
            pixels = decode_image(image.path, bits).pixels
        except BadImageError as err:
            if on_bad_file == "raise":
                raise ValueError(
                    f"cannot decode image {err}; delete or replace it, or pass --on-bad-file skip"
                ) from None
            warnings.warn(f"skipping undecodable image {err}", stacklevel=2)
            bad.add(image.path)
            continue
        batch.append((image, pixels))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
