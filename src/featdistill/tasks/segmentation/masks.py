"""The ``masks`` layout: images and masks in parallel folders, matched by relative path, as most tools export.

:class:`MaskFolder` reads ``root/<split>/images/**`` with ``root/<split>/masks/**`` (or mmseg's
``root/<images>/<split>/**`` order); the class names, and an RGB mask's colour table, come from
``root/classes.json`` (:func:`class_table`). ADE20K (:class:`.layouts.ADE20K`) is this layout with its folder
names fixed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..decode import IMAGE_EXTENSIONS, is_hidden_or_system
from ..ingest import HIDDEN, UNSUPPORTED, SplitStats
from .folder import Pairs, SegmentationFolder, require_dir
from .labels import IGNORE_INDEX

__all__ = ["NO_IMAGE", "NO_MASK", "MaskFolder", "class_table"]

#: The ingest report's reasons for leaving a file out.
NO_MASK = "image without mask"
NO_IMAGE = "mask without image"


def _files(folder: Path, stats: SplitStats | None) -> dict[Path, Path]:
    """The image files under ``folder`` by relative path without extension; the others recorded in ``stats``."""
    found: dict[Path, Path] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(folder)
        if any(is_hidden_or_system(Path(part)) for part in relative.parts):
            if stats is not None:
                stats.skip(HIDDEN, path)
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            if stats is not None:
                stats.skip(UNSUPPORTED, path)
        else:
            found[relative.with_suffix("")] = path
    return found


def class_table(root: Path, num_classes: int | None, default: Sequence[str] | None = None) -> dict:
    """``root/classes.json`` (``classes``, optional ``colors`` and ``ignore_colors``), else ``default`` names,
    else ``num_classes`` numbered classes."""
    meta = root / "classes.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if not isinstance(info, dict) or not isinstance(info.get("classes"), list):
            raise ValueError(
                f"{meta} must be a JSON object with a 'classes' list (and optionally 'colors', 'ignore_colors')"
            )
        colours = info.get("colors")
        if colours is not None and len(colours) != len(info["classes"]):
            raise ValueError(
                f"{meta} has {len(info['classes'])} classes but {len(colours)} colors; give one [r, g, b] a class"
            )
        return info
    if default is not None:
        return {"classes": list(default)}
    if num_classes is None:
        raise ValueError(f"no {meta}: give the class names there, or set model.num_classes")
    return {"classes": [str(i) for i in range(num_classes)]}


class MaskFolder(SegmentationFolder):
    """Images and masks in parallel trees, matched by relative path without extension.

    ``root/<split>/<images_dir>/**`` with ``root/<split>/<masks_dir>/**`` (``order="split_first"``), or mmseg's
    ``root/<images_dir>/<split>/**`` with ``root/<masks_dir>/<split>/**`` (``order="folder_first"``, e.g.
    ``img_dir``/``ann_dir``). A mask is a single-channel PNG of class ids, a palette PNG (its indices), or an
    RGB colour mask read through the colour table of ``root/classes.json`` (``{"classes": [...], "colors":
    [[r, g, b], ...], "ignore_colors": [[r, g, b]]}``). Class names come from ``classes.json``, else
    ``num_classes`` numbered ones. ``ignore_index`` is the mask value ignored (255); ``reduce_zero_label``
    ignores 0 and shifts the other values down by one (ADE20K's convention). Images without a mask and masks
    without an image are counted in the ingest report.
    """

    LAYOUT = "root/<split>/images/** with root/<split>/masks/** of the same relative path (any extension)"
    LABEL = "mask"

    def find(
        self,
        root: Path,
        split: str,
        stats: SplitStats | None,
        num_classes: int | None = None,
        images_dir: str = "images",
        masks_dir: str = "masks",
        order: str = "split_first",
        ignore_index: int = IGNORE_INDEX,
        reduce_zero_label: bool = False,
        classes: Sequence[str] | None = None,
        dataset: str = "masks",
    ) -> Pairs:
        """The pairs matched by relative path; unmatched images and masks are recorded in ``stats``."""
        layout = self.LAYOUT
        if order == "folder_first":
            layout = (
                f"root/{images_dir}/<split>/** with root/{masks_dir}/<split>/** of the same relative path"
            )
            image_dir, mask_dir = root / images_dir / split, root / masks_dir / split
        else:
            layout = layout.replace("/images/", f"/{images_dir}/").replace("/masks/", f"/{masks_dir}/")
            image_dir, mask_dir = root / split / images_dir, root / split / masks_dir
        require_dir(root, f"{dataset} root", layout)
        require_dir(image_dir, f"{dataset} {split!r} image", layout)
        require_dir(mask_dir, f"{dataset} {split!r} mask", layout)
        images, masks = _files(image_dir, stats), _files(mask_dir, stats)
        paired = sorted(set(images) & set(masks))
        if stats is not None:
            stats.root, stats.extra["label_root"] = str(image_dir), str(mask_dir)
            for key in sorted(set(images) - set(masks)):
                stats.skip(NO_MASK, images[key])
            for key in sorted(set(masks) - set(images)):
                stats.skip(NO_IMAGE, masks[key])
        if not paired:
            raise ValueError(
                f"no image in {image_dir} has a mask of the same relative path in {mask_dir} "
                f"({len(images)} images, {len(masks)} masks; expected layout: {layout})"
            )
        table = class_table(root, num_classes, classes)
        names = table["classes"]
        if reduce_zero_label:
            label_map = {raw + 1: raw for raw in range(len(names))}
            void: tuple[int, ...] = (0, ignore_index)
        else:
            label_map = {raw: raw for raw in range(len(names))}
            void = (ignore_index,)
        if ignore_index in label_map:
            raise ValueError(
                f"data.options.ignore_index {ignore_index} is also a class id ({len(names)} classes); "
                "choose a value outside the classes (255 by default)"
            )
        colours = None
        if table.get("colors") is not None:
            colours = {tuple(int(v) for v in c): raw for raw, c in enumerate(table["colors"])}
            colours.update({tuple(int(v) for v in c): ignore_index for c in table.get("ignore_colors", [])})
            if reduce_zero_label:
                colours = {c: raw + 1 if raw != ignore_index else raw for c, raw in colours.items()}
        return Pairs(
            [images[key] for key in paired],
            [masks[key] for key in paired],
            label_map,
            names,
            void,
            colours,
        )
