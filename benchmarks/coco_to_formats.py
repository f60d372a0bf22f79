"""Write a COCO detection set (json + image folder) again as an Ultralytics (YOLO) folder and a Pascal VOC
folder, images linked, for the format table of benchmarks/results/detection_models.md.

YOLO cannot say ``iscrowd``: crowd regions are left out of its labels (``--no-crowd`` writes the COCO json
without them too, the same boxes as the YOLO copy). VOC writes them as ``difficult``, which featdistill reads
as crowd regions again. Boxes are written exactly (``repr`` floats for YOLO, VOC's 1-based xmin/ymin).

    python benchmarks/coco_to_formats.py ../shared/data/coco128 /tmp/coco128_formats
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="COCO folder: annotations/instances.json and images/")
    parser.add_argument("out", type=Path, help="folder to write coco/, coco_no_crowd/, yolo/ and voc/ into")
    args = parser.parse_args()
    data = json.loads((args.root / "annotations" / "instances.json").read_text())
    images = (args.root / "images").resolve()
    cats = sorted(c["id"] for c in data["categories"])
    index = {c: i for i, c in enumerate(cats)}
    names = {c["id"]: c["name"] for c in data["categories"]}
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)

    for name, keep in (
        ("coco", data["annotations"]),
        ("coco_no_crowd", [a for a in data["annotations"] if not a["iscrowd"]]),
    ):
        (args.out / name / "annotations").mkdir(parents=True, exist_ok=True)
        (args.out / name / "annotations" / "instances.json").write_text(
            json.dumps({**data, "annotations": keep})
        )
        _link(images, args.out / name / "images")

    yolo = args.out / "yolo"
    (yolo / "labels" / "all").mkdir(parents=True, exist_ok=True)
    (yolo / "images").mkdir(parents=True, exist_ok=True)
    _link(images, yolo / "images" / "all")
    yaml_names = "\n".join(f"  {i}: {names[c]}" for i, c in enumerate(cats))
    (yolo / "data.yaml").write_text(f"path: .\ntrain: images/all\nval: images/all\nnames:\n{yaml_names}\n")

    voc = args.out / "voc"
    for folder in ("Annotations", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    _link(images, voc / "JPEGImages")
    stems = []
    for info in data["images"]:
        w, h = info["width"], info["height"]
        stem = Path(info["file_name"]).stem
        stems.append(stem)
        lines, objects = [], []
        for ann in by_image.get(info["id"], []):
            x, y, bw, bh = ann["bbox"]
            if not ann["iscrowd"]:
                lines.append(
                    f"{index[ann['category_id']]} {(x + bw / 2) / w!r} {(y + bh / 2) / h!r} {bw / w!r} {bh / h!r}"
                )
            objects.append(
                f"<object><name>{names[ann['category_id']]}</name><difficult>{int(ann['iscrowd'])}</difficult>"
                f"<bndbox><xmin>{x + 1!r}</xmin><ymin>{y + 1!r}</ymin><xmax>{x + bw!r}</xmax><ymax>{y + bh!r}</ymax>"
                "</bndbox></object>"
            )
        if lines:
            (yolo / "labels" / "all" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        (voc / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{info['file_name']}</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>\n"
        )
    (voc / "ImageSets" / "Main" / "all.txt").write_text("\n".join(stems) + "\n")
    print(f"wrote {args.out}/coco, coco_no_crowd, yolo (data.yaml, split 'all'), voc (split 'all')")


def _link(target: Path, link: Path) -> None:
    if not link.exists():
        os.symlink(target, link, target_is_directory=True)


if __name__ == "__main__":
    main()
