"""Classification data: list ImageFolder trees, decode once into pixel tensors, augment whole batches.

Small datasets (CIFAR, (Fashion-)MNIST, small ImageFolders) are decoded once by :func:`load_tensors` into a
``uint8`` (or, with ``bits=16``, ``uint16``) ``[N, C, H, W]`` tensor and served by :class:`TensorBatchLoader`,
which augments each batch with a few vectorised tensor ops (crop, flip, normalise); on a CPU this keeps data
time a small fraction of a training step. Large datasets (ImageNet) use the per-image pipeline of
:mod:`.streaming`, which lists, selects and decodes files with the functions here, so both paths read the
same images the same way (decoding rules: :mod:`featdistill.tasks.decode`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.transforms.v2.functional import resize as resize_tensor

from ...suggest import did_you_mean
from ..decode import (
    IMAGE_EXTENSIONS,
    BadImageError,
    decode_image,
    is_hidden_or_system,
    max_level,
    resize_pixels,
)
from ..ingest import HIDDEN, OUTSIDE_CLASSES, UNDECODABLE_SKIPPED, UNSUPPORTED, SplitStats, warn_alpha
from ..parallel import map_in_workers
from .augment import crop_flip, crop_flip_params, normalize

__all__ = [
    "IMAGE_EXTENSIONS",
    "NORMALIZATION",
    "TensorBatchLoader",
    "channel_stats",
    "decode_to_numpy",
    "image_size_of",
    "imagefolder_plan",
    "load_tensors",
    "scan_folder",
    "scan_imagefolder",
    "scan_images",
    "select_balanced",
]

#: Per-channel (mean, std) in 0..1 units, for ``normalize`` / the loaders.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashionmnist": ((0.2860,), (0.3530,)),
}

_TORCHVISION = {
    "cifar10": (torchvision.datasets.CIFAR10, "cifar-10-batches-py"),
    "cifar100": (torchvision.datasets.CIFAR100, "cifar-100-python"),
    "mnist": (torchvision.datasets.MNIST, "MNIST/raw"),
    "fashionmnist": (torchvision.datasets.FashionMNIST, "FashionMNIST/raw"),
}
_CACHE_VERSION = 2  # bump when decoding changes, so older cached arrays are not reused

#: (H, W) of the images of each torchvision dataset that ``load_tensors`` reads.
_TORCHVISION_SIZES = {"cifar10": (32, 32), "cifar100": (32, 32), "mnist": (28, 28), "fashionmnist": (28, 28)}

Size = int | tuple[int, int]
_STATS_CHUNK_VALUES = 1 << 22  # values per chunk of channel_stats (an int64 copy of 32 MB)


def load_tensors(
    name: str,
    root: str | Path,
    split: str,
    *,
    image_size: Size | None = None,
    limit: int | None = None,
    on_bad_file: Literal["raise", "skip"] = "raise",
    cache_dir: str | Path | None = None,
    download: bool = False,
    bits: int = 8,
    stats: SplitStats | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode a whole dataset split into memory.

    An ImageFolder is decoded by ``workers`` processes (None: one per core), behind a progress bar, into
    one tensor allocated once (no list of images stacked afterwards): the result costs its pixels.

    Args:
        name: ``images`` (every image under ``root``, at any depth, one unlabeled class: see
            :func:`scan_images`), ``imagefolder`` (``root/<split>/<class>/<image>``, every format Pillow reads, decoded by
            :func:`~featdistill.tasks.decode.decode_image` to RGB), ``cifar10``, ``cifar100``, ``mnist`` or
            ``fashionmnist`` (torchvision layouts under ``root``, e.g. ``root`` containing
            ``FashionMNIST/raw``; split ``train`` or ``test``; MNIST-style sets have 1 channel).
        image_size: resize every image to ``(H, W)`` (an int means square; bilinear, antialiased).
            Required for an ImageFolder whose images differ in size.
        limit: keep a deterministic class-balanced subset of at most ``limit`` images: the first
            ``limit // num_classes`` images of each class in sorted (file or index) order, one more for
            the first ``limit % num_classes`` classes, so small runs still see every class.
        on_bad_file: for an undecodable ImageFolder file, ``raise`` a ValueError naming it, or ``skip``
            it with a warning.
        cache_dir: ImageFolder only: decode into a ``.npy`` file here (with a ``.json`` sidecar of labels,
            classes and report), keyed by the arguments and the folder's file count and newest mtime; the
            next call memory-maps it (seconds, whatever the size), and a split larger than memory is
            served from the page cache.
        download: let torchvision download the torchvision datasets (off by default).
        bits: ImageFolder only: 8 (``uint8``) or 16 (``uint16``, keeps every level of 16-bit images).
        stats: filled with what was read and skipped (for the ingest report).
        workers: ImageFolder only: decoding processes (None: one per core; 1: this process alone; the
            pixels are the same either way).
        progress: ImageFolder only: show a progress bar (images/s, time left) while decoding.

    Returns:
        ``(images uint8/uint16 [N, C, H, W], labels int64 [N], class names)``.
    """
    if on_bad_file not in ("raise", "skip"):
        raise ValueError(f"on_bad_file must be 'raise' or 'skip', got {on_bad_file!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    size = as_size(image_size)
    stats = stats if stats is not None else SplitStats(split, str(Path(root) / split))
    key = name.lower()
    if key in ("imagefolder", "images"):
        return _load_imagefolder(
            key, Path(root), split, size, limit, on_bad_file, cache_dir, bits, stats, workers, progress
        )
    if key in _TORCHVISION:
        return _load_torchvision(key, Path(root), split, size, limit, download, stats)
    raise _unknown_dataset(name)


def _unknown_dataset(name: str) -> ValueError:
    return ValueError(
        f"unknown dataset {name!r}{did_you_mean(name.lower(), ['imagefolder', 'images', *_TORCHVISION])}"
    )


def image_size_of(name: str, root: str | Path, split: str) -> tuple[int, int]:
    """(H, W) of the images ``load_tensors`` would return without ``image_size``, without decoding them.

    The size a model is trained on when ``data.image_size`` is unset: torchvision datasets have one size;
    an ImageFolder is read at its first image's size (``load_tensors`` requires them all to match).
    """
    key = name.lower()
    if key in _TORCHVISION_SIZES:
        return _TORCHVISION_SIZES[key]
    if key not in ("imagefolder", "images"):
        raise _unknown_dataset(name)
    _, files = scan_folder(key, root, split)
    first = next(path for paths in files for path in paths)
    with Image.open(first) as image:
        width, height = image.size
    return height, width


def as_size(image_size: Size | None) -> tuple[int, int] | None:
    """``image_size`` as ``(H, W)``; an int means square."""
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return int(size[0]), int(size[1])


def _balanced_quota(num_classes: int, limit: int | None) -> list[int | None]:
    """How many items of each class to keep under ``limit`` (None: all)."""
    if limit is None:
        return [None] * num_classes
    base, extra = divmod(limit, num_classes)
    return [base + (1 if c < extra else 0) for c in range(num_classes)]


def class_names(folder: Path) -> list[str]:
    """Sorted class sub-folders of an ImageFolder split, with a one-line error when there are none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder} (expected {folder}/<class>/<image files>)")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not is_hidden_or_system(p))
    if not classes:
        raise ValueError(f"no class folders in {folder} (expected {folder}/<class>/<image files>)")
    return classes


def _walk_files(folder: Path) -> list[tuple[str, ...]]:
    """Relative parts of every file under ``folder`` (symlinked files followed, symlinked folders not), in
    the order of ``sorted(folder.rglob("*"))``.

    ``os.scandir`` reads each folder once and knows from the directory entry whether it is a file, so a
    200,000-file tree is listed in seconds instead of one ``stat`` per path.
    """
    found: list[tuple[str, ...]] = []
    pending: list[tuple[Path, tuple[str, ...]]] = [(folder, ())]
    while pending:
        path, parts = pending.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), (*parts, entry.name)))
                elif entry.is_file():
                    found.append((*parts, entry.name))
    found.sort()
    return found


def _left_out(parts: tuple[str, ...]) -> str | None:
    """Why a file (its path parts below the folder read) is no image to read: hidden or system, or of no
    image format Pillow reads; None for an image."""
    if any(is_hidden_or_system(Path(part)) for part in parts):
        return HIDDEN
    if Path(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
        return UNSUPPORTED
    return None


def _images_among(folder: Path, walked: Iterable[tuple[str, ...]], stats: SplitStats | None) -> list[Path]:
    """The image files among ``walked`` (path parts below ``folder``); every other file is recorded in
    ``stats`` with the reason :func:`_left_out` gives."""
    found = []
    for parts in walked:
        path = folder.joinpath(*parts)
        reason = _left_out(parts)
        if reason is None:
            found.append(path)
        elif stats is not None:
            stats.skip(reason, path)
    return found


def scan_imagefolder(folder: Path, stats: SplitStats | None = None) -> tuple[list[str], list[list[Path]]]:
    """Class names and each class's image files (sorted) of ``folder/<class>/...``.

    Files of no image format Pillow reads, hidden or system files (``.DS_Store``, ``._x.jpg``, ``Thumbs.db``,
    anything under a dot or ``__MACOSX`` folder) and files beside the class folders are left out and recorded
    in ``stats``.
    """
    classes = class_names(folder)
    if stats is not None:  # files beside the class folders (a stray README.txt) are no class's images
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            stats.skip(HIDDEN if is_hidden_or_system(path) else OUTSIDE_CLASSES, path)
    files = []
    for cls in classes:
        found = _images_among(folder / cls, _walk_files(folder / cls), stats)
        if not found:
            raise ValueError(
                f"no images in class folder {folder / cls} (no file of an image format Pillow reads)"
            )
        files.append(found)
    return classes, files


#: Folders of label images in segmentation trees (CamVid's ``trainannot``, VOC's ``SegmentationClass``,
#: Cityscapes' ``gtFine``) and of annotations: ``data.name: images`` leaves them out, so only photos are read.
LABEL_FOLDERS = (
    "annot",
    "annotations",
    "labels",
    "masks",
    "segmentationclass",
    "segmentationobject",
    "gtfine",
)


def _is_label_folder(name: str) -> bool:
    lowered = name.lower()
    return lowered in LABEL_FOLDERS or lowered.endswith("annot") or lowered.startswith("gtfine")


def scan_images(folder: Path, stats: SplitStats | None = None) -> tuple[list[str], list[list[Path]]]:
    """Every image file under ``folder``, at any depth, grouped by the folder that holds it (``data.name: images``).

    A flat folder, an ImageFolder, a COCO ``images/`` tree or a segmentation tree are all read, their labels
    ignored: hidden and system files and files of no image format are left out as in
    :func:`scan_imagefolder`, and so are folders of label images (:data:`LABEL_FOLDERS`). The groups (relative
    folder paths, ``""`` for ``folder`` itself) are not labels: they let ``limit`` take images from every
    folder alike, as it takes them from every class of an ImageFolder.
    """
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder not found: {folder} (data.name: images reads every image under it)"
        )
    walked = (parts for parts in _walk_files(folder) if not any(_is_label_folder(p) for p in parts[:-1]))
    found = _images_among(folder, walked, stats)
    if not found:
        raise ValueError(
            f"no images in {folder} (no file of an image format Pillow reads, at any depth outside label folders)"
        )
    groups: dict[str, list[Path]] = {}
    for path in found:
        relative = path.parent.relative_to(folder)
        groups.setdefault("" if relative == Path() else relative.as_posix(), []).append(path)
    return sorted(groups), [groups[name] for name in sorted(groups)]


def scan_folder(
    name: str, root: str | Path, split: str, stats: SplitStats | None = None
) -> tuple[list[str], list[list[Path]]]:
    """The classes and files that ``load_tensors`` and the streaming path read: ``root/<split>/<class>/...``
    (``imagefolder``) or every image under ``root`` (``images``, grouped by folder; ``split`` unused)."""
    if name == "images":
        return scan_images(Path(root), stats)
    return scan_imagefolder(Path(root) / split, stats)


def select_balanced(files: list[list[Path]], limit: int | None) -> list[tuple[Path, int]]:
    """``(path, label)`` of the class-balanced first-``limit`` selection (see :func:`load_tensors`)."""
    return [
        (path, label)
        for label, (per_class, quota) in enumerate(zip(files, _balanced_quota(len(files), limit)))
        for path in per_class[:quota]
    ]


def bad_file(err: BadImageError, on_bad_file: str, stats: SplitStats | None, path: Path) -> None:
    """Raise the one-line error for an undecodable file, or warn and record it when skipping."""
    if on_bad_file == "raise":
        raise ValueError(
            f"cannot decode image {err}; delete or replace it, or set data.on_bad_file: skip"
        ) from None
    warnings.warn(f"skipping undecodable image {err}", stacklevel=3)
    if stats is not None:
        stats.skip(UNDECODABLE_SKIPPED, path)


def imagefolder_plan(
    root: str | Path,
    split: str,
    *,
    image_size: Size | None = None,
    limit: int | None = None,
    bits: int = 8,
    kind: str = "imagefolder",
) -> tuple[int, int]:
    """``(images, decoded bytes per image)`` that ``load_tensors`` would hold for an ImageFolder split (or,
    ``kind="images"``, for every image under ``root``).

    Lists the files and reads the size from the first image's header (nothing is decoded), so
    ``data.in_memory: auto`` can decide before any decoding.
    """
    _, files = scan_folder(kind, root, split)
    count = len(select_balanced(files, limit))
    size = as_size(image_size)
    if size is None:
        with Image.open(files[0][0]) as image:
            width, height = image.size
        size = (height, width)
    return count, 3 * size[0] * size[1] * bits // 8


def cache_path(
    root: Path,
    split: str,
    size: tuple[int, int] | None,
    limit: int | None,
    on_bad_file: str,
    bits: int,
    cache_dir: str | Path,
    files: list[list[Path]],
    kind: str = "imagefolder",
) -> Path:
    """The decode cache's ``.npy`` of these arguments; its ``.json`` sidecar (same stem) holds the rest."""
    folder = root if kind == "images" else root / split
    all_files = [f for per_class in files for f in per_class]
    fingerprint = [len(all_files), max(f.stat().st_mtime_ns for f in all_files)]
    spec = [str(folder.resolve()), size, limit, on_bad_file, fingerprint, bits, _CACHE_VERSION]
    digest = hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{kind}-{split}-{digest}.npy"


def decode_to_numpy(path: Path, bits: int, size: tuple[int, int] | None) -> tuple[np.ndarray | str, tuple]:
    """One file decoded (and resized to ``size``) in a worker process: ``(pixels, (width, height, mode,
    alpha) as stored)``, or ``(error message, ())`` for an undecodable file."""
    try:
        decoded = decode_image(path, bits)
    except BadImageError as err:
        return str(err), ()
    image = decoded.pixels
    info = (image.shape[2], image.shape[1], decoded.mode, decoded.alpha)
    if size is not None:
        image = resize_pixels(image, size)
    return image.numpy(), info


def _load_imagefolder(
    kind: str,
    root: Path,
    split: str,
    size: tuple[int, int] | None,
    limit: int | None,
    on_bad_file: str,
    cache_dir: str | Path | None,
    bits: int,
    stats: SplitStats,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    folder = root if kind == "images" else root / split
    classes, files = scan_folder(kind, root, split, stats)
    cached = None
    if cache_dir is not None:
        cached = cache_path(root, split, size, limit, on_bad_file, bits, cache_dir, files, kind=kind)
        sidecar = cached.with_suffix(".json")
        if cached.is_file() and sidecar.is_file():
            meta = json.loads(sidecar.read_text())
            _restore_stats(stats, meta["stats"])
            warn_alpha(stats)
            images = torch.from_numpy(np.load(cached, mmap_mode="c"))[: meta["count"]]
            return images, torch.tensor(meta["labels"], dtype=torch.int64), meta["classes"]
    selected = select_balanced(files, limit)
    decode = functools.partial(decode_to_numpy, bits=bits, size=size)
    images: torch.Tensor | None = None
    mapped: np.memmap | None = None  # the cache file being written, when there is a cache
    tmp = None if cached is None else cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npy")
    labels = []
    results = map_in_workers(
        decode, [path for path, _ in selected], workers=workers, desc=f"decoding {split}", progress=progress
    )
    try:
        for (path, label), (pixels, info) in zip(selected, results):
            if isinstance(pixels, str):
                bad_file(BadImageError(pixels), on_bad_file, stats, path)
                continue
            if images is None:  # the first decodable image fixes the shape: allocate every image's room once
                shape = (len(selected), *pixels.shape)
                if tmp is None:
                    images = torch.empty(shape, dtype=torch.from_numpy(pixels).dtype)
                else:  # decoded straight into the cache file: a split larger than memory never is in memory
                    tmp.parent.mkdir(parents=True, exist_ok=True)
                    mapped = np.lib.format.open_memmap(tmp, mode="w+", dtype=pixels.dtype, shape=shape)
                    images = torch.from_numpy(mapped)
            elif tuple(pixels.shape) != tuple(images.shape[1:]):
                raise ValueError(
                    f"image {path} is {info[0]}x{info[1]} but earlier images are "
                    f"{images.shape[3]}x{images.shape[2]}; set data.image_size (image_size=) to resize them all"
                )
            images[len(labels)] = torch.from_numpy(pixels)
            stats.saw(*info)
            labels.append(label)
            stats.classes[classes[label]] += 1
    except BaseException:  # a bad file, an interrupt: no half-written cache file is left behind
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    if images is None:
        raise ValueError(f"no decodable images in {folder}")
    images = images[: len(labels)]
    stats.images = len(labels)
    warn_alpha(stats)
    if mapped is not None and cached is not None and tmp is not None:
        mapped.flush()
        del mapped, images
        os.replace(tmp, cached)
        meta = {
            "count": len(labels),
            "labels": labels,
            "classes": classes,
            "stats": stats.to_dict() | {"skipped_all": stats.skipped},
        }
        sidecar = cached.with_suffix(".json")
        tmp_json = sidecar.with_name(f"{sidecar.stem}.{os.getpid()}.tmp")
        tmp_json.write_text(json.dumps(meta))
        os.replace(tmp_json, sidecar)  # written last: a cache without its sidecar is never read
        images = torch.from_numpy(np.load(cached, mmap_mode="c"))[: len(labels)]
    return images, torch.tensor(labels, dtype=torch.int64), classes


def _restore_stats(stats: SplitStats, saved: dict) -> None:
    stats.images = saved["images"]
    stats.classes.update(saved["classes"])
    stats.sizes.update(saved["sizes"])
    stats.formats.update(saved["formats"])
    stats.alpha_dropped = saved["alpha_dropped"]
    stats.skipped = {reason: list(paths) for reason, paths in saved["skipped_all"].items()}


def _load_torchvision(
    name: str,
    root: Path,
    split: str,
    size: tuple[int, int] | None,
    limit: int | None,
    download: bool,
    stats: SplitStats,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    if split not in ("train", "test"):
        raise ValueError(f"{name} split must be 'train' or 'test', got {split!r}")
    dataset_cls, subdir = _TORCHVISION[name]
    try:
        dataset = dataset_cls(str(root), train=split == "train", download=download)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"{name} not found under {root}: expected {root / subdir} (torchvision layout); "
            "pass download=True to fetch it"
        ) from err
    data = torch.as_tensor(dataset.data)
    images = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    classes = list(dataset.classes)
    if limit is not None:
        keep = [
            torch.nonzero(labels == c).flatten()[:quota]
            for c, quota in enumerate(_balanced_quota(len(classes), limit))
        ]
        index = torch.cat(keep).sort().values
        images, labels = images[index], labels[index]
    stats.root = str(root / subdir)
    stats.images = images.shape[0]
    stats.classes.update(
        {classes[c]: n for c, n in enumerate(labels.bincount(minlength=len(classes)).tolist())}
    )
    stats.sizes[f"{images.shape[-1]}x{images.shape[-2]}"] = images.shape[0]
    stats.formats["L" if images.shape[1] == 1 else "RGB"] = images.shape[0]
    if size is not None and tuple(images.shape[-2:]) != size:
        images = resize_tensor(images, list(size), antialias=True)
    return images.contiguous(), labels, classes


def channel_stats(images: torch.Tensor | Sequence[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0..1 units) of uint8/uint16 images, for normalisation.

    ``images`` is one ``[N, C, H, W]`` tensor, or ``[C, H, W]`` images of any sizes (the streaming loader's
    sample). A channel that never changes (a constant dataset, a blank channel) would have std 0 and turn
    every normalised pixel into NaN; its std is floored at one storage level (1/255 or 1/65535), which leaves
    every real dataset's statistics unchanged and maps a constant channel to 0.

    Sums are exact integers, taken over chunks of about :data:`_STATS_CHUNK_VALUES` values (an int64 copy of
    a few MB, never a float copy of the set), so the result does not depend on the chunking.
    """
    if isinstance(images, torch.Tensor):
        per_image = max(1, images[0].numel())
        chunks: Sequence[torch.Tensor] = images.split(max(1, _STATS_CHUNK_VALUES // per_image))
    else:
        chunks = [image[None] for image in images]
    level = max_level(chunks[0].dtype)
    sums = [0] * chunks[0].shape[1]
    squares = [0] * chunks[0].shape[1]
    count = 0
    for chunk in chunks:
        values = chunk.to(torch.int64)
        sums = [a + b for a, b in zip(sums, values.sum(dim=(0, 2, 3)).tolist())]
        squares = [a + b for a, b in zip(squares, values.square_().sum(dim=(0, 2, 3)).tolist())]
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = [s / (count * level) for s in sums]
    # variance from exact integers: (n * sum(x^2) - sum(x)^2) / (n (n - 1)), then in 0..1 units
    var = [(count * q - s * s) / (count * max(count - 1, 1) * level * level) for s, q in zip(sums, squares)]
    return mean, [max(math.sqrt(max(v, 0.0)), 1.0 / level) for v in var]


class TensorBatchLoader:
    """Batches of an in-memory uint8 / uint16 dataset, augmented and normalised as whole tensors.

    Each epoch draws, from ``torch.Generator().manual_seed(seed + epoch)``, one permutation of the dataset
    and one set of crop/flip parameters per sample position, so an epoch is fully determined by
    ``(seed, epoch)``: :meth:`iterate` can resume at any batch and later batches are unchanged.

    With ``world_size > 1`` every rank computes the same epoch plan; global batch ``i`` is positions
    ``[i * G, (i + 1) * G)`` with ``G = batch_size * world_size`` and rank ``r`` takes the ``r``-th contiguous
    slice, so ranks together see exactly what one process with batch ``G`` sees. Without ``drop_last``, the
    epoch is padded (wrapping around, like ``DistributedSampler``) to a multiple of ``world_size`` so every
    rank gets the same number of non-empty batches.

    Args:
        images: ``uint8`` or ``uint16`` ``[N, C, H, W]`` (white = 255 or 65535).
        labels: ``[N]`` targets, returned as given.
        batch_size: per-rank batch size.
        augment: random crop (zero padding ``pad``) and, if ``flip``, horizontal flip with p = 0.5.
        mean, std: per-channel normalisation in 0..1 units (None: only scale to [0, 1]).
        channels_last: return images in ``torch.channels_last`` memory format.
        views: ``f(batch, generator)`` → the batch augmented in its own dtype, applied after crop and flip
            (pretrain's shared views); each batch's generator is seeded by ``(seed, epoch, batch, rank)``, so a
            resumed epoch draws the same views.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        pad: int = 4,
        flip: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        views: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ) -> None:
        if images.dtype not in (torch.uint8, torch.uint16) or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 or uint16 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape[:1] != images.shape[:1]:
            raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if batch_size < 1 or pad < 0:
            raise ValueError(f"batch_size must be >= 1 and pad >= 0, got {batch_size} and {pad}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.mean, self.std, self.pad, self.flip = mean, std, pad, flip
        self.drop_last, self.seed, self.rank, self.world_size = drop_last, seed, rank, world_size
        self.channels_last, self.views = channels_last, views
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation and augmentation the next iteration uses."""
        self.epoch = epoch

    def _num_positions(self) -> int:
        n = self.images.shape[0]
        if self.drop_last or self.world_size == 1:
            return n
        return math.ceil(n / self.world_size) * self.world_size

    def __len__(self) -> int:
        global_batch = self.batch_size * self.world_size
        if self.drop_last:
            return self._num_positions() // global_batch
        return math.ceil(self._num_positions() / global_batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iterate()

    def iterate(self, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield this rank's ``(float images, labels)`` batches of the current epoch from ``start_batch``."""
        num_batches = len(self)
        if not 0 <= start_batch <= num_batches:
            raise ValueError(f"start_batch must be in [0, {num_batches}], got {start_batch}")
        n = self.images.shape[0]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        params = crop_flip_params(n, self.pad, self.flip, generator) if self.augment else None
        extra = self._num_positions() - n
        if extra:
            order = torch.cat([order, order[:extra]])
            params = None if params is None else tuple(torch.cat([p, p[:extra]]) for p in params)
        global_batch = self.batch_size * self.world_size
        for batch in range(start_batch, num_batches):
            lo = batch * global_batch
            per_rank = (min(lo + global_batch, order.numel()) - lo) // self.world_size
            start = lo + self.rank * per_rank
            index = order[start : start + per_rank]
            images = self.images[index]
            if params is not None:
                dy, dx, flips = (p[start : start + per_rank] for p in params)
                images = crop_flip(images, self.pad, dy, dx, flips)
            if self.views is not None:
                draws = torch.Generator().manual_seed(hash((self.seed, self.epoch, batch, self.rank)) % 2**62)
                images = self.views(images, draws)
            yield normalize(images, self.mean, self.std, self.channels_last), self.labels[index]
