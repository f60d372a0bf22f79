"""What a trained student needs at the exits (issue 29, part B): no loss plug-in to run it, one pair check
for ``layers`` and ``train``, augmentation per transform, one resize rule, the whole ``Task`` contract."""

from __future__ import annotations

import json
import sys
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import image_folder_data, tiny_tree, write_yaml
from featdistill.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def loss_only_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A plug-in module that registers one cosine method and nothing else (a fresh name per test, so its
    import is measured); yields ``(module, method)`` and forgets both afterwards."""
    from featdistill.distiller.methods import METHODS

    suffix = uuid.uuid4().hex[:8]
    module, method = f"fd_loss_only_{suffix}", f"cos_{suffix}"
    folder = tmp_path / "plugin_dir"
    folder.mkdir()
    (folder / f"{module}.py").write_text(
        "import torch.nn.functional as F\nimport featdistill as fd\n\n"
        f"fd.register_method({method!r}, transform='cwt', "
        "loss=lambda s, t, o: (1 - F.cosine_similarity(s, t, dim=1)).mean())\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    yield module, method, folder
    METHODS.pop(method, None)
    sys.modules.pop(module, None)


def _unimportable(module: str, folder: Path) -> None:
    (folder / f"{module}.py").unlink()
    sys.modules.pop(module, None)


def _trained_with(module: str, method: str, tmp_path: Path) -> tuple[Path, Path]:
    """The config and ``last.pt`` of a 2-step run distilling with ``method`` of the plugin ``module``."""
    tree = tiny_tree(tmp_path / "run", distill={"method": method}, train={"max_steps": 2})
    cfg = write_yaml(tmp_path / "run.yaml", {**tree, "plugins": [module]})
    assert main(["train", str(cfg)]) == 0
    return cfg, tmp_path / "run" / "last.pt"


def test_a_loss_only_plugin_is_not_needed_to_predict_eval_or_export(
    tmp_path: Path, loss_only_plugin, capsys: pytest.CaptureFixture
) -> None:
    module, method, folder = loss_only_plugin
    cfg, last = _trained_with(module, method, tmp_path)
    _unimportable(module, folder)
    capsys.readouterr()

    assert main(["eval", "--checkpoint", str(last)]) == 0, capsys.readouterr().err
    assert "top1" in json.loads(capsys.readouterr().out.splitlines()[-1])
    exported = tmp_path / "student.onnx"
    assert main(["export", "--checkpoint", str(last), "--format", "onnx", "--output", str(exported)]) == 0
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "photo.png")
    for model in (last, exported):
        out = tmp_path / f"{model.name}.csv"
        assert main(["predict", str(model), str(tmp_path / "photo.png"), "--output", str(out)]) == 0
        assert out.is_file()
    assert module not in sys.modules
    # the config that trained it, given to eval, does not make it needed either
    assert main(["eval", str(cfg), "--checkpoint", str(last)]) == 0, capsys.readouterr().err
    card = torch.load(last, weights_only=True)["card"]
    assert card["plugins"] == {"build": [], "train": [module]}


def test_an_older_card_tries_its_plugins_and_warns_once(
    tmp_path: Path, loss_only_plugin, capsys: pytest.CaptureFixture
) -> None:
    module, method, folder = loss_only_plugin
    _, last = _trained_with(module, method, tmp_path)
    state = torch.load(last, weights_only=True)
    state["card"].pop("plugins", None)  # as an older featdistill wrote it
    torch.save(state, last)
    _unimportable(module, folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", "--checkpoint", str(last)]) == 0
    said = [str(w.message) for w in caught if "plug-in" in str(w.message)]
    assert len(said) == 1 and f"cannot import {module!r}" in said[0] and "older featdistill" in said[0]


def test_eval_and_predict_run_on_a_plugin_task(
    tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The regression task of tests/plugins/fd_example_plugin.py offers only the Task contract (TaskBase's
    defaults): eval, and predict of its checkpoint and of its export, run on it."""
    from PIL import Image

    from conftest import REPO

    monkeypatch.syspath_prepend(str(REPO / "tests" / "plugins"))
    cfg = tiny_config("train", task="regression", train={"epochs": 1})
    assert main(["train", str(cfg)]) == 0
    last = tmp_path / "train" / "last.pt"
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())["neg_mse"]
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(last)]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["neg_mse"] == pytest.approx(trained)
    card = torch.load(last, weights_only=True)["card"]
    assert card["preprocessing"]["input_size"] == [8, 8] and card["preprocessing"]["bits"] == 8
    assert card["plugins"] == {"build": ["fd_example_plugin"], "train": []}

    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    exported = tmp_path / "student.pt2"
    assert main(["export", "--checkpoint", str(last), "--output", str(exported)]) == 0
    rows = []
    for model in (last, exported):
        out = tmp_path / f"{model.name}.jsonl"
        assert main(["predict", str(model), str(tmp_path / "photo.png"), "--output", str(out)]) == 0
        rows.append(json.loads(out.read_text()))
    student = torch.load(last, weights_only=True)["student"]
    import fd_example_plugin

    model = fd_example_plugin._regressor(4)
    model.load_state_dict(student)
    expected = model.eval()(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255)[0].tolist()
    for row in rows:
        assert row["output"] == pytest.approx(expected, rel=1e-5)


def _gradient_folder(root: Path, size: int = 16) -> Path:
    """An ImageFolder whose images brighten from left to right: a flip puts the brightest column left."""
    from tiny_data import image_folder

    ramp = np.linspace(40, 250, size).astype(np.uint8)

    def pixels(label: int, i: int) -> np.ndarray:
        image = np.broadcast_to(ramp[None, :, None], (size, size, 3)).copy()
        image[0, 0, 0] = 10 * label + i  # distinct images, still a ramp
        return image

    return image_folder(root, {"train": 4, "test": 1}, ["a", "b"], pixels)


@pytest.mark.parametrize("in_memory", [True, False])
def test_augment_flip_false_never_flips(tmp_path: Path, in_memory: bool) -> None:
    from featdistill.config import parse_config
    from featdistill.run import get_task

    root = _gradient_folder(tmp_path / "data")
    data = image_folder_data(root, batch_size=4, in_memory=in_memory, options={"pad": 2})

    def brightest_columns(augment) -> list[int]:
        tree = tiny_tree(tmp_path / "run", data={**data, "augment": augment}, alone=True)
        tree["model"]["num_classes"] = 2
        train, _ = get_task(parse_config(tree)).build_loaders()
        columns = []
        for epoch in range(6):
            train.set_epoch(epoch)
            for images, _ in train.iterate():
                columns += images[:, 1, 8].argmax(dim=1).tolist()  # a middle row, the green channel
        return columns

    kept = brightest_columns({"flip": False})
    assert len(kept) == 48 and all(c >= 13 for c in kept)  # shifted by the crop, never mirrored
    assert min(brightest_columns(True)) <= 2  # the default flips some (the check can fail)
    assert len(set(brightest_columns({"flip": False, "crop": True}))) > 1  # the crop still shifts


def test_augment_mapping_is_recorded_checked_and_reaches_every_task(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from featdistill.config import ConfigError, parse_config
    from featdistill.run import get_task
    from featdistill.tasks.segmentation.augment import (
        RandomHorizontalFlip,
        RandomScale,
        build_train_transform,
    )

    tree = tiny_tree(tmp_path / "run", data={"augment": {"flip": False}}, train={"max_steps": 2}, alone=True)
    assert main(["train", str(write_yaml(tmp_path / "run.yaml", tree))]) == 0
    card = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["card"]
    assert card["augment"] == {"crop": True, "flip": False}

    typo = tiny_tree(tmp_path / "typo", data={"augment": {"flipp": False}}, alone=True)
    with pytest.raises(
        ConfigError, match=r"unknown config key 'data.augment.flipp'; did you mean 'data.augment.flip'\?"
    ):
        get_task(parse_config(typo))
    capsys.readouterr()
    assert main(["train", str(write_yaml(tmp_path / "typo.yaml", typo))]) == 2
    assert "did you mean 'data.augment.flip'" in capsys.readouterr().err

    steps = build_train_transform(8, flip=False, scale=False, photometric=False).transforms
    assert not any(isinstance(s, (RandomHorizontalFlip, RandomScale)) for s in steps)
    detection = tiny_tree(
        data={"root": str(tmp_path), "options": {"scale_range": [1.0, 1.5]}}, task="detection"
    )
    for augment, kinds in (
        (True, ["RandomHorizontalFlip", "ScaleJitter"]),
        ({"flip": False}, ["ScaleJitter"]),
        ({"scale": False}, ["RandomHorizontalFlip"]),
    ):
        task = get_task(parse_config({**detection, "data": {**detection["data"], "augment": augment}}))
        assert [type(s).__name__ for s in task._train_transforms().transforms] == kinds
    off = get_task(parse_config({**detection, "data": {**detection["data"], "augment": False}}))
    assert off._train_transforms() is None


def test_layers_runs_the_distiller_pair_check_and_names_each_refused_pair(
    tiny_config, capsys: pytest.CaptureFixture
) -> None:
    """What ``train`` refuses, ``layers`` refuses too, by the same check, naming every refused pair."""
    pairs = [["fc", "layer3"], ["layer3", "layer3"], ["layer3", "fc"]]
    cfg = tiny_config(distill={"pairs": pairs})
    capsys.readouterr()
    assert main(["layers", str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert "pairs train refuses (building the Distiller):" in out
    assert (
        "  fc->layer3: pair 'fc' -> 'layer3': student feature (2, 4) and teacher feature (2, 64, 4, 4) "
        "have different ranks and cannot be aligned" in out
    )
    assert (
        "  layer3->fc: pair 'layer3' -> 'fc': the features have different ranks: the teacher feature 'fc' is "
        "(2, 4), neither a feature map (B, C, H, W) nor a token grid (B, N, C)" in out
    )
    assert "layer3->layer3:" not in out.split("pairs train refuses")[1]  # the good pair is not refused
    assert "2 pair(s) of this config cannot be distilled" in err
    assert main(["train", str(cfg)]) == 2  # train refuses the first, with the same words
    assert (
        "pair 'fc' -> 'layer3': student feature (2, 4) and teacher feature (2, 64, 4, 4)"
        in capsys.readouterr().err
    )
    assert main(["layers", str(tiny_config(distill={"pairs": [["layer3", "layer3"]]}))]) == 0


def _rows(csv_path: Path) -> dict[str, tuple[str, float]]:
    import csv

    with open(csv_path, newline="") as f:
        return {
            "/".join(Path(r["file"]).parts[-2:]): (r["class_1"], float(r["prob_1"]))
            for r in csv.DictReader(f)
        }


def test_one_resize_rule_for_eval_predict_onnx_and_the_docs_snippet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A student trained on 16x16 images meets 12x20 ones: eval, eager predict, ONNX predict and the
    ONNX snippet of docs/export_predict.md all resize them to 16x16 as the card says; --keep-size runs them as they are."""
    from doc_blocks import python_block
    from tiny_data import image_folder

    rng = np.random.default_rng(0)
    image_folder(
        tmp_path / "data", {"train": 6}, ["a", "b"], lambda c, i: rng.integers(0, 256, (16, 16, 3), np.uint8)
    )
    image_folder(
        tmp_path / "data", {"test": 3}, ["a", "b"], lambda c, i: rng.integers(0, 256, (12, 20, 3), np.uint8)
    )
    data = image_folder_data(tmp_path / "data", batch_size=4)
    tree = tiny_tree(tmp_path / "run", data=data, train={"max_steps": 3}, alone=True)
    tree["model"]["num_classes"] = 2
    assert main(["train", str(write_yaml(tmp_path / "run.yaml", tree))]) == 0
    last = tmp_path / "run" / "last.pt"
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(last)]) == 0
    evaluated = json.loads(capsys.readouterr().out)["top1"]

    exported = tmp_path / "student.onnx"
    assert main(["export", "--checkpoint", str(last), "--format", "onnx", "--output", str(exported)]) == 0
    photos = tmp_path / "data" / "test"
    reports, rows = {}, {}
    for name, args in (("eager", [last]), ("onnx", [exported]), ("kept", [last, "--keep-size"])):
        out = tmp_path / f"{name}.csv"
        capsys.readouterr()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["predict", str(args[0]), str(photos), "--output", str(out), *args[1:]]) == 0
        reports[name] = json.loads(capsys.readouterr().out.splitlines()[-1])
        rows[name] = _rows(out)
        said = [str(w.message) for w in caught if "trained on" in str(w.message)]
        assert said == (
            []
            if name == "kept"
            else [
                "6 of 6 images are not 16x16, the size the student was trained on: resized to it as its card says (resize: exact), as eval and exports do; --keep-size runs them at their own size"
            ]
        )
    assert reports["eager"]["resized"] == reports["onnx"]["resized"] == 6 and reports["kept"]["resized"] == 0
    assert reports["eager"]["top1"] == pytest.approx(evaluated)  # eval resizes the test split alike
    for file, (label, prob) in rows["eager"].items():
        assert rows["onnx"][file][0] == label and rows["onnx"][file][1] == pytest.approx(prob, rel=1e-4)
    assert len(rows["eager"]) == 6
    assert any(rows["kept"][f][1] != pytest.approx(rows["eager"][f][1], rel=1e-4) for f in rows["eager"])

    card = torch.load(last, weights_only=True)["card"]
    assert card["preprocessing"]["input_size"] == [16, 16] and card["preprocessing"]["resize"] == "exact"
    snippet = python_block("docs/export_predict.md", 'onnxruntime.InferenceSession("student.onnx")')
    monkeypatch.chdir(tmp_path)
    for path in sorted(photos.rglob("*.png")):
        (tmp_path / "photo.png").write_bytes(path.read_bytes())
        exec(snippet, {})
        assert capsys.readouterr().out.strip() == rows["eager"][f"{path.parent.name}/{path.name}"][0], path


@pytest.mark.parametrize("resize", ["exact", "center_crop"])
def test_the_hf_image_processor_follows_the_card_resize_rule(tmp_path: Path, resize: str) -> None:
    """``export --format hf``: the saved image processor turns an image of another size into what
    predict's preprocessing gives (was: a center_crop student's processor resized without cropping)."""
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    from featdistill.hf_export import save_hf
    from featdistill.tasks.preprocess import preprocess

    config = transformers.ViTConfig(
        image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, num_labels=2,
    )  # fmt: skip
    student = torch.nn.Module()
    student.hf = transformers.ViTForImageClassification(config)
    p = {
        "mean": [0.4, 0.5, 0.6],
        "std": [0.2, 0.25, 0.3],
        "input_size": [16, 16],
        "resize": resize,
        "bits": 8,
    }
    card = {"task": "classification", "classes": ["a", "b"], "preprocessing": {**p, "crop_fraction": 0.8}}
    folder = save_hf(student, card, tmp_path / "hf")
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8)
    got = processor(images=Image.fromarray(pixels), return_tensors="pt")["pixel_values"]
    expected = preprocess(torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None], card)
    assert got.shape == expected.shape == (1, 3, 16, 16)
    assert torch.allclose(got, expected, atol=0.05)  # resampling of PIL and torchvision: a level or so


@pytest.mark.parametrize("in_memory", [True, False])
def test_the_evaluation_split_is_resized_to_the_training_size(tmp_path: Path, in_memory: bool) -> None:
    """Training's evaluation and eval (after the card) read a test split of another size at the training
    size, in memory and streaming (was: at its own size, in silence)."""
    from featdistill.config import parse_config
    from featdistill.run import get_task
    from tiny_data import image_folder

    rng = np.random.default_rng(0)
    image_folder(
        tmp_path / "data", {"train": 2}, ["a", "b"], lambda c, i: rng.integers(0, 256, (16, 16, 3), np.uint8)
    )
    image_folder(
        tmp_path / "data", {"test": 2}, ["a", "b"], lambda c, i: rng.integers(0, 256, (12, 20, 3), np.uint8)
    )
    data = image_folder_data(tmp_path / "data", batch_size=4, in_memory=in_memory)
    tree = tiny_tree(tmp_path / "run", data=data, alone=True)
    tree["model"]["num_classes"] = 2
    task = get_task(parse_config(tree))
    _, val = task.build_loaders()
    assert next(iter(val))[0].shape[-2:] == (16, 16)
    card = {"preprocessing": task.card_fields(task.build_student())["preprocessing"], "classes": ["a", "b"]}
    fresh = get_task(parse_config(tree))
    fresh.apply_card(card)
    assert next(iter(fresh.build_eval_loader()))[0].shape[-2:] == (16, 16)
