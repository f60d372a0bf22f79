"""Segmentation data layouts: ``masks`` (parallel trees, mmseg order, palette and colour masks, classes.json),
Pascal VOC and ADE20K, and every bad-mask case as one line naming the file (or skipped and counted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import tiny_tree
from featdistill.cli.main import main
from featdistill.tasks.ingest import SplitStats
from featdistill.tasks.segmentation.data import BadMask, MaskFolder, build_dataset
from tiny_data import write_png

SIZE = 8


def _pair(root: Path, image: str, mask: str, values: np.ndarray, image_size: int = SIZE) -> None:
    write_png(root / image, np.full((image_size, image_size, 3), 100, np.uint8))
    write_png(root / mask, values.astype(np.uint8))


def _ids(values: list[int]) -> np.ndarray:
    return np.resize(np.array(values, np.uint8), (SIZE, SIZE))


def test_masks_layout_pairs_by_relative_path_and_counts_the_unpaired(tmp_path: Path) -> None:
    _pair(tmp_path, "train/images/a/1.jpg", "train/masks/a/1.png", _ids([0, 1, 255]))
    _pair(tmp_path, "train/images/2.png", "train/masks/2.png", _ids([2]))
    write_png(tmp_path / "train/images/3.png", np.zeros((SIZE, SIZE, 3), np.uint8))  # no mask
    write_png(tmp_path / "train/masks/a/4.png", np.zeros((SIZE, SIZE), np.uint8))  # no image
    stats = SplitStats("train", str(tmp_path))
    data = build_dataset("masks", tmp_path, "train", stats=stats, num_classes=3)
    assert len(data) == 2 and data.classes == ("0", "1", "2")
    assert data.labels == [tmp_path / "train/masks/2.png", tmp_path / "train/masks/a/1.png"]
    image, label = data[1]
    assert image.shape == (3, SIZE, SIZE) and set(label.unique().tolist()) == {0, 1, 255}
    assert stats.skipped["image without mask"] == [str(tmp_path / "train/images/3.png")]
    assert stats.skipped["mask without image"] == [str(tmp_path / "train/masks/a/4.png")]


def test_mmseg_order_palette_masks_reduce_zero_label_and_class_names(tmp_path: Path) -> None:
    palette = Image.fromarray(_ids([0, 1, 2, 3]), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    (tmp_path / "ann_dir/val").mkdir(parents=True)
    palette.save(tmp_path / "ann_dir/val/x.png")
    write_png(tmp_path / "img_dir/val/x.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["road", "car", "sky"]}))
    data = build_dataset(
        "masks",
        tmp_path,
        "val",
        images_dir="img_dir",
        masks_dir="ann_dir",
        order="folder_first",
        reduce_zero_label=True,
    )
    assert data.classes == ("road", "car", "sky")
    assert data[0][1].flatten()[:4].tolist() == [255, 0, 1, 2]  # palette indices, 0 ignored, shifted down


def test_colour_masks_read_through_the_colour_table(tmp_path: Path) -> None:
    colours = {"classes": ["a", "b"], "colors": [[255, 0, 0], [0, 0, 255]], "ignore_colors": [[0, 0, 0]]}
    (tmp_path / "classes.json").write_text(json.dumps(colours))
    mask = np.zeros((SIZE, SIZE, 3), np.uint8)
    mask[0, 0], mask[0, 1] = (255, 0, 0), (0, 0, 255)
    write_png(tmp_path / "train/images/1.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    write_png(tmp_path / "train/masks/1.png", mask)
    label = build_dataset("masks", tmp_path, "train")[0][1]
    assert label[0, :3].tolist() == [0, 1, 255]


def test_voc_and_ade20k_layouts(tmp_path: Path) -> None:
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    _pair(voc, "JPEGImages/2007_000032.jpg", "SegmentationClass/2007_000032.png", _ids([0, 15, 255]))
    (voc / "ImageSets/Segmentation").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/val.txt").write_text("2007_000032\n")
    data = build_dataset("voc", tmp_path, "val")
    assert data.num_classes == 21 and data.classes[15] == "person"
    assert set(data[0][1].unique().tolist()) == {0, 15, 255}
    with pytest.raises(FileNotFoundError, match="did you mean 'val'"):
        build_dataset("voc", tmp_path, "vall")

    ade = tmp_path / "ADEChallengeData2016"
    _pair(ade, "images/validation/ADE_val_1.jpg", "annotations/validation/ADE_val_1.png", _ids([0, 1, 150]))
    data = build_dataset("ade20k", tmp_path, "val")
    assert data.num_classes == 150
    assert set(data[0][1].unique().tolist()) == {255, 0, 149}


def _data_config(tmp_path: Path, root: Path, **data: object) -> Path:
    tree = tiny_tree(
        tmp_path / "run",
        "segmentation",
        alone=True,
        data={"name": "masks", "root": str(root), "val_split": "train", **data},
        model={"num_classes": 3},
    )
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("size", "is 4x4 but its image is 8x8; resize the mask"),
        ("value", "has value 7, which is neither a class id (3 classes) nor void (255)"),
        ("colour", "has colour (9, 9, 9) (at x=0, y=0), which is not in the colour table"),
        ("rgb", "an RGB colour mask needs its colour table"),
    ],
)
def test_a_bad_mask_is_one_line_naming_the_file_or_skipped(
    tmp_path: Path, case: str, expected: str, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "data"
    for i in range(3):
        _pair(root, f"train/images/{i}.png", f"train/masks/{i}.png", _ids([0, 1, 2]))
    bad = root / "train/masks/1.png"
    if case == "size":
        write_png(bad, np.zeros((4, 4), np.uint8))
    elif case == "value":
        write_png(bad, _ids([0, 7]))
    else:
        if case == "colour":
            table = {"classes": ["a", "b", "c"], "colors": [[0, 0, 0], [1, 1, 1], [2, 2, 2]]}
            (root / "classes.json").write_text(json.dumps(table))
            for i in range(3):
                write_png(root / f"train/masks/{i}.png", np.zeros((SIZE, SIZE, 3), np.uint8))
        write_png(bad, np.full((SIZE, SIZE, 3), 9, np.uint8))

    with pytest.raises(
        BadMask
    ) as raised:  # what train stops with: one line naming the file, the value, the fix
        MaskFolder(root, "train", num_classes=3).read(1)  # pair 1 is the bad one
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and str(bad) in message and expected in message
    assert "on_bad_file: skip" in message

    config = _data_config(tmp_path, root)
    assert main(["data", str(config)]) != 0  # lists every bad mask, then says train would stop
    out, err = capsys.readouterr()
    assert str(bad) in out and "bad mask (train stops at the first" in out
    assert len(err.strip().splitlines()) == 1 and "1 bad file(s), listed above" in err, err

    assert main(["data", str(config), "--json", "--set", "data.on_bad_file=skip"]) == 0
    report = json.loads(capsys.readouterr().out)["splits"][0]
    assert report["images"] == 2
    assert report["skipped"]["bad mask (on_bad_file: skip)"] == {"count": 1, "first": [str(bad)]}
