"""The Pascal VOC layout, read into COCO form: ``Annotations/<id>.xml``, ``ImageSets/Main/<split>.txt``,
``JPEGImages/``.

Each ``<object>`` is a box (``<bndbox>`` with 1-based inclusive ``xmin ymin xmax ymax``, read as the pixel
box ``[xmin - 1, ymin - 1, xmax, ymax]``). A ``<difficult>1</difficult>`` object is kept out of the metric as
VOC does: it becomes a COCO crowd region (``iscrowd``), which training leaves out and COCOeval ignores
(a detection on it is neither a true nor a false positive). Classes are ``data.options.names`` or, without
it, every object name in ``Annotations/``, sorted; category ids count from 1 in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers import expat

from .labels import TOLERANCE, BadLabels, coco_annotation, image_size

__all__ = ["read_voc", "voc_names"]


@dataclass
class _Object:
    line: int
    fields: dict[str, str] = field(default_factory=dict)  # name, difficult, xmin, ... -> text
    lines: dict[str, int] = field(default_factory=dict)  # the same keys -> line


@dataclass
class _Annotation:
    fields: dict[str, str] = field(default_factory=dict)  # filename, width, height
    objects: list[_Object] = field(default_factory=list)


def _parse(path: Path) -> _Annotation:
    """The fields of a VOC xml that detection reads, each with the line it is on."""
    parser = expat.ParserCreate()
    result, stack, text = _Annotation(), [], []

    def start(tag: str, _attrs: dict[str, str]) -> None:
        stack.append(tag)
        text.clear()
        if stack == ["annotation", "object"]:
            result.objects.append(_Object(parser.CurrentLineNumber))

    def end(tag: str) -> None:
        value = "".join(text).strip()
        if stack[:2] == ["annotation", "object"] and len(stack) >= 3 and tag != "bndbox":
            if len(stack) == 3 or stack[2] == "bndbox":
                result.objects[-1].fields[tag] = value
                result.objects[-1].lines[tag] = parser.CurrentLineNumber
        elif stack in (
            ["annotation", "filename"],
            ["annotation", "size", "width"],
            ["annotation", "size", "height"],
        ):
            result.fields[tag] = value
        stack.pop()
        text.clear()

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = text.append
    try:
        parser.Parse(path.read_bytes(), True)
    except expat.ExpatError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid XML ({expat.ErrorString(err.code)})") from None
    return result


def voc_names(root: Path) -> list[str]:
    """Every object name in ``root/Annotations/*.xml``, sorted."""
    folder = root / "Annotations"
    if not folder.is_dir():
        raise FileNotFoundError(f"no VOC Annotations folder at {folder}")
    names = {o.fields.get("name", "") for p in folder.glob("*.xml") for o in _parse(p).objects}
    return sorted(n for n in names if n)


def _split_ids(root: Path, split: str) -> list[str]:
    folder = root / "ImageSets" / "Main"
    path = folder / f"{split}.txt"
    if not path.is_file() and split == "test" and (folder / "val.txt").is_file():
        path = folder / "val.txt"  # data.val_split defaults to test; VOC2012 has only train and val
    if not path.is_file():
        raise FileNotFoundError(f"no VOC image list {path}; set data.train_split / data.val_split")
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _box(obj: _Object, width: int, height: int) -> list[float] | tuple[str, str]:
    """The pixel box ``[xmin - 1, ymin - 1, xmax, ymax]`` of an object, or ``(why it is bad, field)``."""
    keys = ("xmin", "ymin", "xmax", "ymax")
    missing = [k for k in keys if k not in obj.fields]
    if missing:
        return f"object without bndbox {'/'.join(missing)}", "name"
    try:
        xmin, ymin, xmax, ymax = (float(obj.fields[k]) for k in keys)
    except ValueError:
        return f"bndbox values are not numbers: {' '.join(obj.fields[k] for k in keys)}", "xmin"
    box = [xmin - 1, ymin - 1, xmax, ymax]
    sides = (width, height, width, height)
    for key, value, side in zip(keys, box, sides):
        if not -TOLERANCE * side <= value <= (1 + TOLERANCE) * side:
            why = (
                f"{key} {obj.fields[key]} outside the {width}x{height} image (more than {TOLERANCE:.0%} off)"
            )
            return why, key
    box = [min(max(v, 0.0), side) for v, side in zip(box, sides)]
    if box[2] <= box[0] or box[3] <= box[1]:
        return f"degenerate box (zero width or height): {' '.join(obj.fields[k] for k in keys)}", "xmin"
    return box


def read_voc(root: Path, split: str, names: list[str], bad: BadLabels) -> tuple[Path, dict[str, Any]]:
    """``(image folder, COCO dict)`` of ``split`` (``ImageSets/Main/<split>.txt``) under the VOC ``root``."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    folder = root / "JPEGImages"
    ids = {name: i for i, name in enumerate(names, start=1)}
    for image_id, stem in enumerate(_split_ids(root, split), start=1):
        path = root / "Annotations" / f"{stem}.xml"
        if not path.is_file():
            raise FileNotFoundError(f"{stem} is listed for split {split!r} but {path} does not exist")
        xml = _parse(path)
        file_name = xml.fields.get("filename") or f"{stem}.jpg"
        try:
            width, height = int(xml.fields["width"]), int(xml.fields["height"])
        except (KeyError, ValueError):
            width, height = image_size(folder / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for obj in xml.objects:
            name = obj.fields.get("name", "")
            if name not in ids:
                why = f"class {name!r} is not one of the {len(names)} names (data.options.names)"
                bad(path, obj.lines.get("name", obj.line), why)
                continue
            box = _box(obj, width, height)
            if isinstance(box, tuple):
                why, key = box
                bad(path, obj.lines.get(key, obj.line), why)
                continue
            difficult = obj.fields.get("difficult", "0").strip() == "1"
            annotations.append(
                coco_annotation(len(annotations) + 1, image_id, ids[name], box, iscrowd=int(difficult))
            )
    categories = [{"id": i, "name": n} for n, i in ids.items()]
    return folder, {"images": images, "annotations": annotations, "categories": categories}
