"""``data.holdout``: a deterministic, class-balanced split of the training images that is never trained on,
for every task, and ``evaluate_on="holdout"`` never reads ``data.val_split``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from featdistill.cli.main import main
from featdistill.config import ConfigError, parse_config
from featdistill.tasks.classification.task import ClassificationTask
from featdistill.tasks.holdout import HOLDOUT_SEED, holdout_size, split_holdout
from featdistill.tasks.ingest import format_report
from featdistill.tasks.segmentation.task import SegmentationTask

# ---------------------------------------------------------------- the split itself


def test_counts_round_half_up_and_a_count_is_taken_as_given() -> None:
    assert holdout_size(0.1, 15) == 2  # 1.5 -> 2
    assert holdout_size(0.1, 14) == 1  # 1.4 -> 1
    assert holdout_size(0.01, 10) == 1  # never an empty holdout
    assert holdout_size(3, 10) == 3
    for holdout, total in ((0.1, 37), (0.5, 9), (5, 12)):
        train, held = split_holdout(total, holdout)
        assert len(held) == holdout_size(holdout, total)
        assert sorted(train + held) == list(range(total)) and not set(train) & set(held)


def test_stratified_shares_are_exact_and_largest_remainder_breaks_the_rest() -> None:
    labels = torch.tensor([0] * 6 + [1] * 6 + [2] * 3)
    # 3 of 15: each class's share is 1.2, 1.2, 0.6 -> floors 1, 1, 0 and the one left to class 2 (0.6).
    _, held = split_holdout(15, 0.2, labels)
    assert labels[held].tolist() == [0, 1, 2]
    labels = torch.tensor([3] * 50 + [7] * 30 + [9] * 20)  # any label values
    _, held = split_holdout(100, 10, labels)
    assert torch.bincount(labels[held])[[3, 7, 9]].tolist() == [5, 3, 2]


def test_split_ignores_the_global_seed_and_uses_a_fixed_one() -> None:
    labels = torch.arange(40) % 4
    torch.manual_seed(1)
    first = split_holdout(40, 8, labels)
    torch.manual_seed(2)
    assert split_holdout(40, 8, labels) == first
    assert HOLDOUT_SEED == 20230323  # changing it changes every published holdout score


def test_holdout_as_large_as_the_data_is_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"keeps out 10 of the 10 training images.*count below 10") as err:
        split_holdout(10, 10)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="keeps out 10 of the 10"):
        split_holdout(10, 0.99)  # rounds to all of them


def _tree(**data: Any) -> dict[str, Any]:
    return {"data": {"name": "imagefolder", "root": "unused", **data}, "model": {"student": "resnet8"}}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.0, r"data.holdout 1.0 is a fraction and must be in \(0, 1\); for a count .* \(1, not 1.0\)"),
        (0.0, r"data.holdout 0.0 is a fraction"),
        (1.5, r"data.holdout 1.5 is a fraction"),
        (0, r"data.holdout 0 must be a count of at least 1"),
        ("ten", r"'data.holdout' expects float or int or null"),
    ],
)
def test_config_refuses_bad_holdout_values(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_tree(holdout=value))


def test_config_keeps_a_count_an_int_and_a_fraction_a_float() -> None:
    assert parse_config(_tree(holdout=1)).data.holdout == 1
    assert isinstance(parse_config(_tree(holdout=1)).data.holdout, int)
    assert parse_config(_tree(holdout=0.1)).data.holdout == 0.1


# ---------------------------------------------------------------- classification, both loaders

CLASS_SIZES = {"cat": 6, "dog": 6, "eel": 3}  # 15 training images


def _image_folder(root: Path) -> Path:
    """``root/train/<class>/<i>.png``: 4x4 images filled with ``10 * n + 5`` (n counts all images)."""
    n = 0
    for cls, size in CLASS_SIZES.items():
        (root / "train" / cls).mkdir(parents=True)
        for i in range(size):
            Image.fromarray(np.full((4, 4, 3), 10 * n + 5, np.uint8)).save(root / "train" / cls / f"{i}.png")
            n += 1
    return root  # no root/test: the validation split does not exist


def _classification(root: Path, in_memory: bool, seed: int = 0, **data: Any) -> ClassificationTask:
    tree = {
        "data": {
            "name": "imagefolder",
            "root": str(root),
            "val_split": "test",
            "batch_size": 2,
            "image_size": 4,
            "in_memory": in_memory,
            **data,
        },
        "model": {"student": "resnet8", "num_classes": 3},
        "train": {"seed": seed},
    }
    return ClassificationTask(parse_config(tree))


def _first_pixel(path: str) -> int:
    with Image.open(path) as image:
        return int(np.asarray(image)[0, 0, 0])


def _ids(loader: Any) -> list[int]:
    """Image numbers (see ``_image_folder``) a classification loader holds, in-memory or streaming."""
    if hasattr(loader, "images"):  # TensorBatchLoader
        values = loader.images[:, 0, 0, 0]
    else:  # a ResumableLoader over the streaming FolderSamples
        values = torch.tensor([_first_pixel(str(path)) for path, _ in loader.dataset.samples])
    return sorted(((values.long() - 5) // 10).tolist())


@pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "streaming"])
def test_classification_holdout_is_disjoint_balanced_and_seed_independent(
    tmp_path: Path, in_memory: bool
) -> None:
    root = _image_folder(tmp_path)
    train, held = _classification(root, in_memory, holdout=0.2).build_loaders(evaluate_on="holdout")
    train_ids, held_ids = _ids(train), _ids(held)
    assert len(held_ids) == 3 and len(train_ids) == 12
    assert sorted(train_ids + held_ids) == list(range(15))
    assert [i // 6 for i in held_ids] == [0, 1, 2]  # one image of each class (ids 12-14 are 'eel')
    report = _classification(root, in_memory, holdout=0.2)
    report.build_loaders(evaluate_on="holdout")
    train_report = report.data_report()["splits"][0]  # the images read, and how many of them are held out
    assert (train_report["split"], train_report["images"], train_report["held_out"]) == ("train", 15, 3)
    assert "holdout (data.holdout): 3 of these images kept out of training for scoring; 12 trained on" in (
        format_report(report.data_report())
    )
    other_seed = _classification(root, in_memory, seed=7, holdout=0.2)
    assert _ids(other_seed.build_loaders(evaluate_on="holdout")[1]) == held_ids
    # The same held-out images whichever loader serves them, and unaugmented, like validation.
    other_path = _classification(root, not in_memory, holdout=0.2).build_loaders(evaluate_on="holdout")
    assert _ids(other_path[1]) == held_ids
    if in_memory:
        assert not held.augment and not held.shuffle and train.augment
    else:
        assert not held.dataset.augment and not held.sampler.shuffle and train.dataset.augment
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    metrics = other_seed.evaluate(model, held, torch.device("cpu"))
    assert 0 <= metrics["top1"] <= 100


@pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "streaming"])
def test_classification_val_split_is_never_opened_for_the_holdout(tmp_path: Path, in_memory: bool) -> None:
    root = _image_folder(tmp_path)
    task = _classification(root, in_memory, holdout=2)
    train, _ = task.build_loaders(evaluate_on="holdout")  # root/test does not exist
    with pytest.raises(FileNotFoundError, match="test"):
        task.build_loaders(evaluate_on="val")  # ...which the other evaluation would read
    assert len(_ids(train)) == 13  # the holdout also leaves training with evaluate_on="val"
    with pytest.raises(ValueError, match=r"evaluating on the holdout needs data\.holdout"):
        _classification(root, in_memory).build_loaders(evaluate_on="holdout")
    with pytest.raises(ValueError, match=r"evaluate_on must be one of \('val', 'holdout'\), got 'test'"):
        task.build_loaders(evaluate_on="test")


def test_classification_holdout_counts_after_limit_and_shards_over_ranks(tmp_path: Path) -> None:
    root = _image_folder(tmp_path)
    task = _classification(root, True, limit=9, holdout=0.34)  # 3 of each class, then 3.06 -> 3 held out
    train, held = task.build_loaders(evaluate_on="holdout")
    assert len(_ids(train)) == 6 and [i // 6 for i in _ids(held)] == [0, 1, 2]
    shards = [task.build_loaders(rank, 2, "holdout")[1] for rank in (0, 1)]
    seen = sorted(int(v) for loader in shards for _, y in loader for v in y)
    assert len(seen) == 4 and set(seen) == {0, 1, 2}  # each rank 2 of the 3 images padded to 4
    with pytest.raises(ValueError, match=r"keeps out 9 of the 9 training images"):
        _classification(root, True, limit=9, holdout=9).build_loaders()


@pytest.mark.parametrize(
    ("holdout", "message"),
    [
        ("15", "data.holdout 15 keeps out 15 of the 15 training images, leaving none to train on; set"),
        (
            "1.0",
            "data.holdout 1.0 is a fraction and must be in (0, 1); for a count of images write an integer",
        ),
    ],
)
def test_bad_holdout_through_the_cli_is_one_line(tmp_path: Path, capsys, holdout: str, message: str) -> None:
    root = _image_folder(tmp_path / "data")
    config = tmp_path / "cfg.yaml"
    config.write_text(json.dumps(_classification(root, True).cfg.to_dict()))  # JSON is YAML
    out = tmp_path / "run"
    code = main(["train", str(config), "--set", f"data.holdout={holdout}", "--set", f"output.dir={out}"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"featdistill: error: {message}")
    assert not out.exists()


# ---------------------------------------------------------------- segmentation


def _camvid(root: Path, n: int = 8) -> Path:
    """``root/train`` + ``root/trainannot``: 8x8 images filled with ``10 * i + 5``, labels ``i % 11``."""
    for folder in ("train", "trainannot"):
        (root / folder).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 10 * i + 5, np.uint8)).save(root / "train" / f"{i}.png")
        Image.fromarray(np.full((8, 8), i % 11, np.uint8)).save(root / "trainannot" / f"{i}.png")
    return root  # no root/val


def _segmentation(root: Path, seed: int = 0, **data: Any) -> SegmentationTask:
    tree = {
        "task": "segmentation",
        "data": {"name": "camvid", "root": str(root), "val_split": "val", "batch_size": 2, **data},
        "model": {"student": "pspnet", "num_classes": 11},
        "train": {"seed": seed},
    }
    tree["data"]["options"] = {"crop_size": 8}
    return SegmentationTask(parse_config(tree))


def _files(subset: Any) -> list[int]:
    return sorted(int(subset.dataset.images[i].stem) for i in subset.indices)


@pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "from_files"])
def test_segmentation_holdout_is_disjoint_unaugmented_and_seed_independent(
    tmp_path: Path, in_memory: bool
) -> None:
    root = _camvid(tmp_path)
    task = _segmentation(root, holdout=3, in_memory=in_memory)
    train, held = task.build_loaders(evaluate_on="holdout")
    train_ids, held_ids = _files(train.dataset), _files(held.dataset)
    assert len(held_ids) == 3 and sorted(train_ids + held_ids) == list(range(8))
    assert [(s["split"], s["images"], s["held_out"]) for s in task.data_report()["splits"]] == [
        ("train", 8, 3)
    ]
    assert _files(_segmentation(root, holdout=3, seed=5).build_loaders(evaluate_on="holdout")[1].dataset) == (
        held_ids
    )
    image, label = held.dataset[0]  # the whole image, only normalised
    assert image.shape == (3, 8, 8) and torch.equal(label, torch.full((8, 8), held_ids[0] % 11))
    assert train.dataset.dataset.transform is not held.dataset.dataset.transform
    metrics = task.evaluate(nn.Conv2d(3, 11, 1), held, torch.device("cpu"))
    assert 0 <= metrics["miou"] <= 100
    with pytest.raises(FileNotFoundError, match="val"):
        task.build_loaders(evaluate_on="val")  # root/val does not exist: "holdout" never read it


def test_segmentation_holdout_after_limit_and_shards_over_ranks(tmp_path: Path) -> None:
    root = _camvid(tmp_path)
    task = _segmentation(root, limit=6, holdout=0.5)  # 6 evenly spaced of 8, then 3 of those held out
    train, held = task.build_loaders(evaluate_on="holdout")
    limited = [0, 1, 3, 4, 6, 7]  # linspace(0, 7, 6) rounded
    assert sorted(_files(train.dataset) + _files(held.dataset)) == limited and len(_files(held.dataset)) == 3
    shards = [task.build_loaders(rank, 2, "holdout")[1].dataset for rank in (0, 1)]
    assert sum(len(s) for s in shards) == 3
    with pytest.raises(ValueError, match=r"keeps out 6 of the 6 training images.*data.limit"):
        _segmentation(root, limit=6, holdout=6).build_loaders()


# ---------------------------------------------------------------- detection


def _coco(root: Path, n: int = 10) -> Path:
    """``root/images`` + ``root/train.json``: n 32x32 images filled with ``10 * i + 5``, one box each."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for i in range(n):
        Image.fromarray(np.full((32, 32, 3), 10 * i + 5, np.uint8)).save(root / "images" / f"{i}.png")
        images.append({"id": 100 + i, "file_name": f"{i}.png", "height": 32, "width": 32})
        box = [2.0 + i, 3.0, 12.0, 10.0 + i]
        annotations.append(
            {
                "id": i + 1,
                "image_id": 100 + i,
                "category_id": 1 + i % 2,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": 0,
            }
        )
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "train.json").write_text(json.dumps(data))
    return root


def _detection(root: Path, seed: int = 0, **data: Any) -> Any:
    from featdistill.tasks.detection import DetectionTask

    options = {"train_ann": "train.json", "train_images": "images", "val_ann": "missing.json"}
    tree = {
        "task": "detection",
        "data": {"name": "coco", "root": str(root), "batch_size": 2, "options": options, **data},
        "model": {"student": "fasterrcnn"},
        "train": {"seed": seed},
    }
    return DetectionTask(parse_config(tree))


class _GroundTruth(nn.Module):
    """A stand-in detector that answers each image (known by its fill value) with its ground-truth boxes."""

    def __init__(self, dataset: Any) -> None:
        super().__init__()
        self.answers = {}
        for image, target in (dataset[i] for i in range(len(dataset))):
            n = len(target["boxes"])
            self.answers[round(float(image[0, 0, 0]) * 255)] = {**target, "scores": torch.ones(n)}

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self.answers[round(float(image[0, 0, 0]) * 255)] for image in images]


def test_detection_holdout_is_a_coco_dataset_of_held_out_ids_scored_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pycocotools")
    from featdistill.tasks.detection import evaluate as evaluate_module

    root = _coco(tmp_path)
    task = _detection(root, holdout=0.3)
    train, held = task.build_loaders(evaluate_on="holdout")  # val_ann does not exist
    train_ids, held_ids = train.dataset.ids, held.dataset.ids
    assert len(held_ids) == 3 and sorted(train_ids + held_ids) == list(range(100, 110))
    assert [(s["split"], s["images"], s["held_out"]) for s in task.data_report()["splits"]] == [
        ("train", 10, 3)
    ]
    assert held.dataset.transforms is None and train.dataset.transforms is not None
    assert (
        _detection(root, seed=3, holdout=0.3).build_loaders(evaluate_on="holdout")[1].dataset.ids == held_ids
    )

    scored: list[list[int]] = []
    original = evaluate_module.COCOeval.evaluate

    def spy(self: Any) -> None:
        scored.append(list(self.params.imgIds))
        original(self)

    monkeypatch.setattr(evaluate_module.COCOeval, "evaluate", spy)
    metrics = task.evaluate(_GroundTruth(held.dataset), held, torch.device("cpu"))
    # AP 1: the training images, whose boxes nothing predicts, are not in the ground truth scored.
    assert scored == [held_ids] and metrics["bbox/AP"] == pytest.approx(1.0)
    with pytest.raises(FileNotFoundError, match=r"no val annotation file at .*missing.json"):
        task.build_loaders(evaluate_on="val")


def test_detection_holdout_shards_and_too_large(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    root = _coco(tmp_path)
    task = _detection(root, limit=8, holdout=2)
    shards = [task.build_loaders(rank, 2, "holdout")[1] for rank in (0, 1)]
    assert sorted(t["image_id"] for s in shards for _, targets in s for t in targets) == sorted(
        shards[0].dataset.ids
    )
    assert set(shards[0].dataset.ids) <= set(range(100, 108))  # drawn after data.limit
    with pytest.raises(ValueError, match=r"keeps out 8 of the 8 training images"):
        _detection(root, limit=8, holdout=0.95).build_loaders()
