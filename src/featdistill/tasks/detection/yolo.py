"""The Ultralytics (YOLO) layout, read into COCO form: a dataset YAML, ``images/`` and ``labels/`` beside it.

The YAML names ``path`` (the dataset root; relative to the YAML's folder, default that folder), a key per
split (``train``, ``val``, optionally ``test``), each an image folder, a ``.txt`` list of image paths, or a
list of those, relative to ``path``, and ``names`` (a list, or ``{index: name}``). The labels of
``.../images/x.jpg`` are in ``.../labels/x.txt`` (the last ``images`` folder in the path becomes ``labels``),
one object a line, coordinates normalised to [0, 1]:

- ``class cx cy w h``: a box;
- ``class x1 y1 x2 y2 x3 y3 ...``: a polygon (an instance mask; its box is the polygon's bounds).

An image without a label file has no objects. Category ids are the YOLO class indices (0-based), so
predictions name classes as the label files do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..decode import IMAGE_EXTENSIONS, is_hidden_or_system
from .labels import TOLERANCE, BadLabels, coco_annotation, image_size

__all__ = ["find_yaml", "read_yolo", "yolo_names"]


def find_yaml(root: Path, given: str | None) -> Path:
    """The dataset YAML: ``data.options.yaml`` (relative to ``root``) or ``root/data.yaml``."""
    path = root / given if given is not None else root / "data.yaml"
    if not path.is_file():
        hint = "" if given is not None else "; name it with data.options.yaml"
        raise FileNotFoundError(f"no YOLO dataset YAML at {path}{hint}")
    return path


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path} is not a YOLO dataset YAML (a mapping with path, train, val, names)")
    return spec


def yolo_names(path: Path) -> list[str]:
    """The class names a dataset YAML lists, in class-index order."""
    spec = _read_yaml(path)
    names = spec.get("names")
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise ValueError(f"{path}: names must be a list of class names or {{0: name, 1: ...}}, got {names!r}")


def _dataset_root(path: Path, spec: dict[str, Any]) -> Path:
    given = spec.get("path")
    return path.parent if given in (None, "") else (path.parent / str(given)).resolve()


def _split_key(spec: dict[str, Any], split: str, path: Path) -> str:
    if spec.get(split):
        return split
    if split == "test" and spec.get("val"):
        return "val"  # data.val_split defaults to test; most YAMLs have only train and val
    raise ValueError(f"{path} has no {split!r} split (keys: {', '.join(sorted(map(str, spec)))})")


def _images_of(root: Path, entry: Any, path: Path) -> list[Path]:
    """Image files of one split entry: a folder (searched recursively), a ``.txt`` list, or a list of these."""
    if isinstance(entry, list):
        return [image for item in entry for image in _images_of(root, item, path)]
    where = root / str(entry)
    if where.is_dir():
        return sorted(
            p
            for p in where.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden_or_system(p) and p.is_file()
        )
    if where.is_file() and where.suffix == ".txt":
        lines = [line.strip() for line in where.read_text(encoding="utf-8").splitlines()]
        return [root / line if not os.path.isabs(line) else Path(line) for line in lines if line]
    raise FileNotFoundError(
        f"{path}: split entry {entry!r} is neither an image folder nor a .txt list ({where})"
    )


def label_path(image: Path) -> Path:
    """``.../images/a/b.jpg`` -> ``.../labels/a/b.txt`` (the last ``images`` folder of the path)."""
    parts = list(image.parts)
    if "images" not in parts:
        return image.with_suffix(".txt")
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def _numbers(fields: list[str]) -> list[float] | None:
    try:
        return [float(f) for f in fields]
    except ValueError:
        return None


def _parse_line(fields: list[str], classes: int) -> tuple[int, list[float], list[float] | None] | str:
    """``(class, xyxy box, polygon or None)`` in normalised units, or why the line is bad."""
    if not (len(fields) == 5 or (len(fields) >= 7 and len(fields) % 2 == 1)):
        return (
            f"{len(fields)} fields; a box is 'class cx cy w h' (5), a polygon 'class x1 y1 x2 y2 x3 y3 ...' "
            "(an odd number, at least 7)"
        )
    values = _numbers(fields)
    if values is None:
        return f"not all fields are numbers: {' '.join(fields)}"
    label = values[0]
    if label != int(label) or not 0 <= label < classes:
        return f"class id {fields[0]} out of range 0..{classes - 1} ({classes} names in the YAML)"
    coords = values[1:]
    if len(coords) == 4:
        cx, cy, w, h = coords
        box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        polygon = None
        checked = [*coords, *box]
    else:
        xs, ys = coords[0::2], coords[1::2]
        box = [min(xs), min(ys), max(xs), max(ys)]
        polygon, checked = coords, coords
    outside = [v for v in checked if not -TOLERANCE <= v <= 1 + TOLERANCE]
    if outside:
        return f"coordinate {outside[0]:g} outside [0, 1] (more than {TOLERANCE:.0%} off the image)"
    box = [min(max(v, 0.0), 1.0) for v in box]
    if box[2] <= box[0] or box[3] <= box[1]:
        return f"degenerate box (zero width or height): {' '.join(fields[1:])}"
    if polygon is not None:
        polygon = [min(max(v, 0.0), 1.0) for v in polygon]
    return int(label), box, polygon


def _polygon_area(points: list[float]) -> float:
    xs, ys = points[0::2], points[1::2]
    return abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2


def read_yolo(path: Path, split: str, bad: BadLabels) -> tuple[Path, dict[str, Any]]:
    """``(dataset root, COCO dict)`` of ``split`` of the dataset YAML at ``path``; file names are relative to
    the root. Bad label lines go to ``bad`` (raise naming ``file:line``, or skip)."""
    spec = _read_yaml(path)
    names = yolo_names(path)
    root = _dataset_root(path, spec)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, image in enumerate(_images_of(root, spec[_split_key(spec, split, path)], path), start=1):
        if not image.is_file():
            raise FileNotFoundError(f"{path}: image {image} of split {split!r} does not exist")
        width, height = image_size(image)
        name = os.path.relpath(image, root) if image.is_relative_to(root) else str(image)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        labels = label_path(image)
        if not labels.is_file():
            continue
        for line_no, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            parsed = _parse_line(fields, len(names))
            if isinstance(parsed, str):
                bad(labels, line_no, parsed)
                continue
            label, (x0, y0, x1, y1), polygon = parsed
            box = [x0 * width, y0 * height, x1 * width, y1 * height]
            extra: dict[str, Any] = {}
            if polygon is not None:
                pixels = [v * (width if i % 2 == 0 else height) for i, v in enumerate(polygon)]
                extra = {"segmentation": [pixels], "area": _polygon_area(pixels)}
            annotations.append(coco_annotation(len(annotations) + 1, image_id, label, box, **extra))
    categories = [{"id": i, "name": n} for i, n in enumerate(names)]
    return root, {"images": images, "annotations": annotations, "categories": categories}
