"""Detection labels as COCO json, YOLO txt and Pascal VOC xml: one reader result, one evaluator, and bad
label lines that end in one line naming ``file:line``."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from conftest import tiny_tree
from featdistill.cli.main import main
from featdistill.config import parse_config
from featdistill.tasks.detection import DetectionTask
from featdistill.tasks.detection.labels import LabelError
from tiny_data import detection_formats

pytestmark = pytest.mark.usefixtures("one_thread")

FORMATS = ("coco", "yolo", "voc")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return detection_formats(
        tmp_path_factory.mktemp("formats"), np.random.default_rng(0), {"train": 5, "val": 6}
    )


def _task(root, fmt: str, **data) -> DetectionTask:
    tree = tiny_tree(task="detection", alone=True, data={"name": fmt, "root": str(root), **data})
    return DetectionTask(parse_config(tree))


def _counts(split: dict) -> str:
    """A split's ingest report without its root, file names without their folders (which formats lay out
    differently)."""
    split = {k: v for k, v in split.items() if k != "root"}
    return re.sub(r"'[^']*/([^'/]+)'", r"'\1'", repr(split))


class _NoisyOracle(torch.nn.Module):
    """The ground-truth boxes of the COCO copy, shifted a little, with a wrong-class guess and a stray box, so
    that AP lies strictly between 0 and 1; keyed by the image's pixels, so any format's loader can ask."""

    def __init__(self, dataset) -> None:
        super().__init__()
        self.answers = {}
        for i in range(len(dataset)):
            image, target = dataset[i]
            boxes = target["boxes"] + torch.tensor([1.0, 0.0, 2.0, 1.0])
            labels = target["labels"]
            stray = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
            found = torch.cat([boxes, boxes[:1], stray])
            self.answers[image.sum().item()] = {
                "boxes": found,
                "labels": torch.cat([labels, 3 - labels[:1], torch.tensor([1])]),
                "scores": torch.linspace(0.9, 0.2, len(found)),
            }

    def forward(self, images):
        return [self.answers[image.sum().item()] for image in images]


def test_one_dataset_as_coco_yolo_and_voc_reads_and_scores_the_same(roots) -> None:
    figures, reports = {}, {}
    oracle = None
    for fmt in FORMATS:
        task = _task(roots[fmt], fmt, val_split="val")
        _, val = task.build_loaders()
        oracle = oracle or _NoisyOracle(val.dataset)
        figures[fmt] = task.evaluate(oracle, val, torch.device("cpu"))
        reports[fmt] = [_counts(split) for split in task.data_report()["splits"]]
        assert task.num_classes == 3
    assert 0.1 < figures["coco"]["bbox/AP"] < 0.99
    coco = _task(roots["coco"], "coco", val_split="val")
    card = {"categories": [{"label": 0, "id": 0, "name": "bg"}, {"label": 1, "id": 3, "name": "cat"}]}
    card["categories"].append({"label": 2, "id": 7, "name": "dog"})
    for fmt in ("yolo", "voc"):  # a checkpoint trained on the COCO copy evaluates on the others (same names)
        task = _task(roots[fmt], fmt, val_split="val")
        task.apply_card(card)
        assert len(task.build_eval_loader().dataset) == 6
    coco.apply_card({"categories": [*card["categories"][:2], {"label": 2, "id": 8, "name": "cow"}]})
    with pytest.raises(ValueError, match="other categories"):
        coco.build_eval_loader()
    assert figures["yolo"] == figures["coco"] == figures["voc"]
    assert reports["yolo"] == reports["coco"] == reports["voc"]
    assert "'images': 6" in reports["coco"][1] and "'without_annotations': {'count': 1" in reports["coco"][1]


def test_voc_difficult_boxes_are_ignored_by_the_metric(roots, tmp_path) -> None:
    """A difficult box is neither trained on nor missed: a detector that never finds it loses no AP."""
    import shutil

    voc = shutil.copytree(roots["voc"], tmp_path / "voc")
    xml = voc / "Annotations" / "val0.xml"
    extra = (
        "<object><name>cat</name><difficult>1</difficult><bndbox><xmin>2</xmin><ymin>2</ymin>"
        "<xmax>30</xmax><ymax>30</ymax></bndbox></object>\n</annotation>"
    )
    xml.write_text(xml.read_text().replace("</annotation>", extra))
    plain, hard = _task(roots["voc"], "voc", val_split="val"), _task(voc, "voc", val_split="val")
    _, plain_val = plain.build_loaders()
    _, hard_val = hard.build_loaders()
    oracle = _NoisyOracle(plain_val.dataset)
    assert hard.evaluate(oracle, hard_val, torch.device("cpu")) == plain.evaluate(
        oracle, plain_val, torch.device("cpu")
    )
    assert len(hard_val.dataset[0][1]["boxes"]) == len(plain_val.dataset[0][1]["boxes"])


YOLO_BAD = [
    ("0 0.5 0.5 0.2", "4 fields"),
    ("2 0.5 0.5 0.2 0.2", "class id 2 out of range 0..1"),
    ("1 0.95 0.5 0.2 0.2", "coordinate 1.05 outside [0, 1]"),
    ("0 0.5 0.5 0.0 0.2", "degenerate box"),
    ("0 0.1 0.1 0.5 0.5 0.1 0.5 0.2", "8 fields"),
]


@pytest.mark.parametrize(("line", "why"), YOLO_BAD)
def test_a_bad_yolo_label_is_one_line_naming_file_and_line(roots, tmp_path, capsys, line, why) -> None:
    import shutil

    yolo = shutil.copytree(roots["yolo"], tmp_path / "yolo")
    labels = yolo / "labels" / "val" / "val1.txt"
    labels.write_text(labels.read_text() + line + "\n")
    bad_line = len(labels.read_text().splitlines())
    with pytest.raises(LabelError, match="^" + re.escape(f"{labels}:{bad_line}: {why}")):
        _task(yolo, "yolo", val_split="val").build_eval_loader()
    config = tmp_path / "run.yaml"
    import yaml

    config.write_text(
        yaml.safe_dump(
            tiny_tree(
                tmp_path / "out",
                task="detection",
                alone=True,
                data={"name": "yolo", "root": str(yolo), "val_split": "val"},
            )
        )
    )
    assert main(["data", str(config)]) == 2  # lists every bad label, then says train would stop at the first
    out, err = capsys.readouterr()
    assert f"{labels}:{bad_line}: {why}" in out and "bad label (train stops at the first" in out
    assert len(err.strip().splitlines()) == 1 and "1 bad file(s), listed above" in err
    skipping = _task(yolo, "yolo", val_split="val", on_bad_file="skip")
    loader = skipping.build_eval_loader()
    assert len(loader.dataset) == 6
    skipped = skipping.data_report()["splits"][0]["skipped"]["bad label (on_bad_file: skip)"]
    assert skipped["count"] == 1 and skipped["first"][0].startswith(f"{labels}:{bad_line}: {why}")


VOC_BAD = [
    ("<xmin>1</xmin><ymin>1</ymin><xmax>70</xmax><ymax>9</ymax>", "xmax 70 outside the 64x32 image"),
    ("<xmin>9</xmin><ymin>1</ymin><xmax>8</xmax><ymax>9</ymax>", "degenerate box"),
]


@pytest.mark.parametrize(("bndbox", "why"), VOC_BAD)
def test_a_bad_voc_box_is_one_line_naming_file_and_line(roots, tmp_path, bndbox, why) -> None:
    import shutil

    voc = shutil.copytree(roots["voc"], tmp_path / "voc")
    xml = voc / "Annotations" / "val1.xml"
    bad = f"<object>\n<name>dog</name>\n<bndbox>\n{bndbox}\n</bndbox>\n</object>\n</annotation>"
    xml.write_text(xml.read_text().replace("</annotation>", bad))
    line = xml.read_text().splitlines().index(bndbox) + 1
    with pytest.raises(LabelError, match="^" + re.escape(f"{xml}:{line}: {why}")):
        _task(voc, "voc", val_split="val").build_eval_loader()
    unknown = _task(voc, "voc", val_split="val", options={"names": ["cat"]})
    with pytest.raises(
        LabelError, match="^" + re.escape(f"{xml}:") + r"\d+: class 'dog' is not one of the 1 names"
    ):
        unknown.build_eval_loader()
