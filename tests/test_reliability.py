"""Bad input, unsafe files and failing disks: one clear line, a non-zero exit, nothing already written damaged.

Each case here is a row of ``docs/reliability.md``. Most go through the CLI in this process
(``featdistill.cli.main.main``); ``test_real_process_exit_code_and_no_traceback`` runs two as real processes.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import pickle
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.config import ConfigError, load_config
from featdistill.engine import CheckpointError, NonFiniteLossError, ResumableLoader, load_safely, save_atomic
from featdistill.engine.checkpoint import rng_state, set_rng_state
from featdistill.run import build_trainer
from featdistill.tasks.classification.models import build_classifier
from tiny_data import image_folder

pytestmark = pytest.mark.usefixtures("one_thread")


def cli(capsys: pytest.CaptureFixture, *args: Any) -> tuple[int, str]:
    """Run the CLI in this process; return the exit code and what it printed to stderr."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1, err
    assert lines[0].startswith("featdistill: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def trained(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> tuple[Path, Path, dict[str, bytes]]:
    """A finished 4-step run: (config, output folder, the bytes of every file in it)."""
    cfg = tiny_config()
    assert cli(capsys, "train", cfg)[0] == 0
    out = tmp_path / "run"
    assert {"last.pt", "config.yaml", "log.csv", "metrics.json"} <= set(snapshot(out))
    return cfg, out, snapshot(out)


def make_image_folder(
    root: Path, classes: int = 2, per_class: int = 4, splits: tuple = ("train", "val")
) -> Path:
    names = [f"class{c}" for c in range(classes)]
    return image_folder(
        root,
        dict.fromkeys(splits, per_class),
        names,
        lambda c, i: np.full((8, 8, 3), 30 * c + 5 * i, np.uint8),
    )


def folder_data(root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "name": "imagefolder",
        "root": str(root),
        "val_split": "val",
        "limit": None,
        "val_limit": None,
        "batch_size": 4,
        **extra,
    }


# -- models and layers ---------------------------------------------------------------------------------
def test_unknown_layer_name(trained, capsys) -> None:
    cfg, out, before = trained
    code, err = cli(capsys, "train", cfg, "--set", "distill.pairs=[[layer9, layer3]]")
    assert_one_line_error(code, err, "unknown layer 'layer9' in CifarResNet (the student); did you mean")
    assert snapshot(out) == before


def test_feature_ranks_that_cannot_be_aligned(trained, capsys) -> None:
    cfg, out, before = trained
    code, err = cli(capsys, "train", cfg, "--set", "distill.pairs=[[fc, layer3]]")
    assert_one_line_error(code, err, "different ranks and cannot be aligned", "pair layers of the same kind")
    assert snapshot(out) == before


# -- configuration -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=0.1", "unknown config key 'train.lrr'; did you mean 'train.lr'?"),
        ("train.epochs=ten", "config key 'train.epochs' expects int, got 'ten' (str)"),
        ("model.student=null", "config key 'model.student' expects str, got None"),
    ],
    ids=["typo", "wrong-type", "null-required"],
)
def test_config_typo_and_wrong_type(trained, capsys, override: str, message: str) -> None:
    cfg, out, before = trained
    code, err = cli(capsys, "train", cfg, "--set", override)
    assert_one_line_error(code, err, message)
    assert snapshot(out) == before


def test_config_missing_required_key(tiny_config, tmp_path, capsys) -> None:
    cfg = tiny_config()
    tree = yaml.safe_load(cfg.read_text())
    del tree["model"]["student"]
    cfg.write_text(yaml.safe_dump(tree))
    code, err = cli(capsys, "train", cfg)
    assert_one_line_error(code, err, "missing required config key 'model.student'", "--set model.student=")
    assert not (tmp_path / "run").exists()


def test_scientific_notation_is_a_float(tiny_config) -> None:
    # PyYAML (YAML 1.1) reads 1e-3 as a string; a config must not fail with "expects float, got '1e-3'".
    cfg = tiny_config()
    cfg.write_text(cfg.read_text().replace("lr: 0.05", "lr: 1e-3"))
    assert load_config(cfg, ["distill.alpha=2e-4"]).train.lr == 1e-3


def test_yaml_python_tag_is_refused(tiny_config, tmp_path, capsys) -> None:
    marker = tmp_path / "yaml-ran-code"
    cfg = tiny_config()
    cfg.write_text(cfg.read_text() + f"evil: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="refused YAML tag"):
        load_config(cfg)
    code, err = cli(capsys, "train", cfg)
    assert_one_line_error(code, err, "refused YAML tag", "python/object/apply:os.system")
    code, err = cli(
        capsys,
        "train",
        tiny_config(name="ok.yaml"),
        "--set",
        f"x=!!python/object/apply:os.system ['touch {marker}']",
    )
    assert_one_line_error(code, err, "--set x: refused YAML tag")
    assert not marker.exists()


# -- data ----------------------------------------------------------------------------------------------
def test_dataset_folder_missing_or_empty(tiny_config, tmp_path, capsys) -> None:
    missing = tmp_path / "no-such-data"
    cfg = tiny_config(data=folder_data(missing))
    code, err = cli(capsys, "train", cfg)
    assert_one_line_error(code, err, f"image folder not found: {missing / 'train'}", "expected")

    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    code, err = cli(capsys, "train", tiny_config(data=folder_data(empty)))
    assert_one_line_error(code, err, f"no class folders in {empty / 'train'}")

    (empty / "train" / "cat").mkdir()
    code, err = cli(capsys, "train", tiny_config(data=folder_data(empty)))
    assert_one_line_error(code, err, f"no images in class folder {empty / 'train' / 'cat'}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "streaming"])
def test_corrupt_image_stops_naming_the_file(tiny_config, tmp_path, capsys, in_memory: bool) -> None:
    root = make_image_folder(tmp_path / "images")
    bad = root / "train" / "class1" / "2.png"
    bad.write_bytes(b"this is not a png")
    cfg = tiny_config(data=folder_data(root, in_memory=in_memory))
    code, err = cli(capsys, "train", cfg)
    assert_one_line_error(code, err, f"cannot decode image {bad}", "data.on_bad_file: skip")
    if not in_memory:  # the error is raised mid-epoch; from a DataLoader worker too
        code, err = cli(capsys, "train", cfg, "--set", "data.workers=2")
        assert_one_line_error(code, err, f"cannot decode image {bad}")


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "streaming"])
def test_corrupt_image_skipped_with_a_warning(tiny_config, tmp_path, capsys, in_memory: bool) -> None:
    root = make_image_folder(tmp_path / "images")
    bad = root / "train" / "class0" / "1.png"
    bad.write_bytes(b"\x89PNG truncated")
    cfg = tiny_config(data=folder_data(root, in_memory=in_memory, on_bad_file="skip"))
    with pytest.warns(UserWarning, match=f"skipping undecodable image {bad}"):
        code, err = cli(capsys, "train", cfg, "--set", "model.num_classes=2")
    assert code == 0, err
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "streaming"])
def test_label_outside_the_model_classes(tiny_config, tmp_path, capsys, in_memory: bool) -> None:
    root = make_image_folder(tmp_path / "images", classes=3)
    cfg = tiny_config(data=folder_data(root, in_memory=in_memory))
    code, err = cli(capsys, "train", cfg, "--set", "model.num_classes=2")
    assert_one_line_error(code, err, "has label 2 outside the model's 2 classes", "set model.num_classes")


def test_coco_json_invalid_or_missing_images(tmp_path) -> None:
    pytest.importorskip("pycocotools")
    from featdistill.tasks.detection.data import CocoDetection

    (tmp_path / "images").mkdir()
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        CocoDetection(tmp_path / "images", broken)
    not_coco = tmp_path / "not_coco.json"
    not_coco.write_text('{"images": []}')
    with pytest.raises(ValueError, match="not a COCO annotation file: missing or non-list key"):
        CocoDetection(tmp_path / "images", not_coco)
    dangling = tmp_path / "dangling.json"
    images = [{"id": 1, "file_name": "gone.jpg", "width": 8, "height": 8}]
    dangling.write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    with pytest.raises(
        FileNotFoundError, match=r"1 image\(s\) listed in .*dangling\.json missing under .*: gone\.jpg"
    ):
        CocoDetection(tmp_path / "images", dangling)


def test_coco_errors_through_the_cli(tmp_path, capsys) -> None:
    pytest.importorskip("featdistill.tasks.detection.task")
    (tmp_path / "images").mkdir()
    (tmp_path / "broken.json").write_text('{"images": [')
    images = [{"id": 1, "file_name": "gone.jpg", "width": 8, "height": 8}]
    categories = [{"id": 1, "name": "thing"}]
    (tmp_path / "dangling.json").write_text(
        json.dumps({"images": images, "annotations": [], "categories": categories})
    )
    options = {"ann_file": "broken.json", "images": "images"}
    tree = tiny_tree(tmp_path / "run", "detection", data={"root": str(tmp_path), "options": options})
    cfg = write_yaml(tmp_path / "detection.yaml", tree)
    code, err = cli(capsys, "train", cfg)
    assert_one_line_error(code, err, "broken.json is not valid JSON")
    code, err = cli(capsys, "train", cfg, "--set", "data.options.ann_file=dangling.json")
    assert_one_line_error(code, err, "1 image(s) listed in", "dangling.json missing under", "gone.jpg")
    assert not (tmp_path / "run").exists()


# -- checkpoints ---------------------------------------------------------------------------------------
def test_resume_from_another_config_or_model(trained, capsys) -> None:
    cfg, out, before = trained
    code, err = cli(capsys, "train", cfg, "--set", "model.student=resnet14", "--resume", "auto")
    assert_one_line_error(code, err, "was written by another config or model", "resume with the config")
    assert snapshot(out) == before  # config.yaml, log.csv and last.pt untouched

    plain = out.parent / "student.pt"
    torch.save(build_classifier("resnet8", 4).state_dict(), plain)
    code, err = cli(capsys, "train", cfg, "--resume", plain)
    assert_one_line_error(code, err, "is not a featdistill training checkpoint", "model.student_weights")
    assert snapshot(out) == before


def test_resume_says_which_changed_settings_it_ignores(trained, capsys) -> None:
    cfg, _, _ = trained
    with pytest.warns(
        UserWarning, match=r"train\.lr 0\.05 -> 0\.01 ignored, the optimizer and schedule continue"
    ):
        assert cli(capsys, "train", cfg, "--set", "train.lr=0.01", "--resume", "auto")[0] == 0


def test_eval_checkpoint_of_another_model(trained, capsys) -> None:
    cfg, out, _ = trained
    code, err = cli(capsys, "eval", cfg, "--checkpoint", out / "last.pt", "--set", "model.student=resnet14")
    assert_one_line_error(
        code, err, "does not fit model.student 'resnet14'", "use the config that trained it"
    )


def test_missing_or_corrupt_checkpoint(trained, capsys) -> None:
    cfg, out, before = trained
    code, err = cli(capsys, "train", cfg, "--resume", out / "nope.pt")
    assert_one_line_error(code, err, "checkpoint or weight file not found")
    truncated = out.parent / "truncated.pt"
    truncated.write_bytes(before["last.pt"][: len(before["last.pt"]) // 3])
    code, err = cli(capsys, "train", cfg, "--resume", truncated)
    assert_one_line_error(code, err, f"cannot read {truncated}", "corrupt or truncated")
    assert snapshot(out) == before


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tiny_config, tmp_path, capsys) -> None:
    cfg = tiny_config(train={"checkpoint_every": 1})
    code, err = cli(capsys, "train", cfg, "--set", "train.lr=1e30")
    line = assert_one_line_error(code, err, "loss became non-finite at step 2", "ce=nan", "lower train.lr")
    assert "NonFiniteLossError" in line
    state = load_safely(tmp_path / "run" / "last.pt")
    assert state["step"] == 1  # the checkpoint before the bad step, complete and finite
    assert all(v.isfinite().all() for v in state["student"].values() if v.is_floating_point())


def test_nonfinite_weights_are_never_saved(trained) -> None:
    cfg, out, before = trained
    trainer = build_trainer(load_config(cfg))
    with torch.no_grad():
        next(trainer.student.parameters())[0] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"weights became non-finite .* the last good checkpoint is"):
        trainer.save_checkpoint()
    assert snapshot(out) == before


def test_disk_full_while_saving(trained, capsys, monkeypatch) -> None:
    cfg, out, before = trained

    def disk_full(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"\0" * 4096)  # some bytes make it to the disk, then it is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    code, err = cli(capsys, "train", cfg, "--set", "train.epochs=2", "--resume", "auto")
    assert_one_line_error(
        code, err, f"cannot write {out / 'last.pt'}: No space left on device", "previous file is unchanged"
    )
    assert (out / "last.pt").read_bytes() == before["last.pt"]
    assert sorted(p.name for p in out.iterdir() if "tmp" in p.name) == []
    monkeypatch.undo()
    assert load_safely(out / "last.pt")["epoch"] == 1


def test_save_atomic_failure_before_rename_leaves_old_file(tmp_path, monkeypatch) -> None:
    path = save_atomic({"v": torch.ones(3)}, tmp_path / "last.pt")
    old = path.read_bytes()

    def crash(*args: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="previous file is unchanged"):
        save_atomic({"v": torch.zeros(3)}, path)
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["last.pt"]


def test_missing_gpu(trained, capsys) -> None:
    cfg, out, before = trained
    code, err = cli(capsys, "train", cfg, "--set", "device=cuda:7")
    assert_one_line_error(code, err, "device 'cuda:7' requested but this machine has", "use device: cpu")
    assert snapshot(out) == before


# -- unsafe files --------------------------------------------------------------------------------------
class TouchOnLoad:
    """Unpickling this creates a file: what a malicious checkpoint would do (with a worse payload)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_pickled_code_is_refused_everywhere(trained, capsys) -> None:
    cfg, out, before = trained
    marker = out.parent / "code-ran"
    evil = out.parent / "evil.pt"
    state = {**load_safely(out / "last.pt"), "student": {"conv1.weight": TouchOnLoad(marker)}}
    torch.save(state, evil)

    with pytest.raises(
        CheckpointError, match=r"refusing to load .*evil\.pt: it holds pickled Python objects"
    ):
        load_safely(evil)
    refusal = "it holds pickled Python objects"
    assert_one_line_error(*cli(capsys, "train", cfg, "--resume", evil), refusal, "nothing in it was run")
    assert_one_line_error(*cli(capsys, "eval", cfg, "--checkpoint", evil), refusal)
    assert_one_line_error(*cli(capsys, "train", cfg, "--set", f"model.teacher_weights={evil}"), refusal)
    assert not marker.exists()
    assert snapshot(out) == before

    with open(evil, "rb") as f:  # the payload is real: unsafe loading runs it
        torch.load(f, weights_only=False)
    assert marker.exists()


def test_weight_loaders_of_every_task_refuse_pickled_code(tmp_path) -> None:
    from featdistill.tasks.detection import models as detection_models
    from featdistill.tasks.segmentation.models import DilatedResNet, load_backbone_weights

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": TouchOnLoad(marker)}, evil)
    loaders = [
        lambda: build_classifier("resnet8", 4, pretrained=evil),
        lambda: load_backbone_weights(DilatedResNet("resnet18"), evil),
        lambda: detection_models.build_detector("fcos", 3, backbone="resnet18", pretrained_backbone=evil),
    ]
    for load in loaders:
        with pytest.raises(CheckpointError, match="it holds pickled Python objects"):
            load()
    assert not marker.exists()


def test_all_file_reading_is_safe() -> None:
    """Guards the rule for new code: tensors only via load_safely, YAML only via the safe loader."""
    import featdistill

    src = Path(featdistill.__file__).parent
    lines = [(p.name, line) for p in sorted(src.rglob("*.py")) for line in p.read_text().splitlines()]
    torch_loads = [(name, line) for name, line in lines if "torch.load(" in line]
    assert len(torch_loads) == 1 and torch_loads[0][0] == "checkpoint.py", torch_loads
    assert "weights_only=True" in torch_loads[0][1]
    risky_calls = ("pickle.load", "yaml.unsafe_load", "yaml.full_load", "allow_pickle=True", "yaml.Loader")
    for risky in (*risky_calls, "load_state_dict_from_url", "trust_remote_code=True"):
        assert not [hit for hit in lines if risky in hit[1]], risky
    yaml_loads = [hit for hit in lines if "yaml.load(" in hit[1]]
    assert [name for name, _ in yaml_loads] == ["validation.py"]
    assert "Loader=_ConfigLoader" in yaml_loads[0][1]


def test_real_process_exit_code_and_no_traceback(tiny_config, tmp_path) -> None:
    typo = tiny_config(name="typo.yaml", train={"epoch": 2})
    evil = tmp_path / "evil.pt"
    marker = tmp_path / "code-ran"
    torch.save({"student": TouchOnLoad(marker)}, evil)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "featdistill", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for args in (["train", str(typo)], ["eval", str(tiny_config()), "--checkpoint", str(evil)])
    ]
    results = [(proc.wait(timeout=120), proc.stderr.read()) for proc in runs]
    for proc in runs:
        proc.stdout.close()
        proc.stderr.close()
    assert_one_line_error(*results[0], "unknown config key 'train.epoch'; did you mean 'train.epochs'?")
    assert_one_line_error(*results[1], "it holds pickled Python objects")
    assert results[0][0] == results[1][0] == 2
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # torch itself refuses it too (weights_only)
        torch.load(evil, weights_only=True)


# -- what exact resume relies on -----------------------------------------------------------------------
def test_rng_states_survive_a_weights_only_checkpoint(tmp_path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    torch.randn(5), np.random.randn(5), random.random()
    save_atomic({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (torch.randn(4), np.random.randn(4), random.random())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    set_rng_state(load_safely(tmp_path / "rng.pt")["rng"])
    got = (torch.randn(4), np.random.randn(4), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


class RandomItems(torch.utils.data.Dataset):
    """A dataset whose items use all three global RNGs, like random augmentation does."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, torch.rand(()).item(), np.random.rand(), random.random()])


@pytest.mark.parametrize("workers", [0, 2])
def test_resumable_loader_batches_do_not_depend_on_resume_point(workers: int) -> None:
    def epoch_batches(start: int) -> list[torch.Tensor]:
        loader = ResumableLoader(RandomItems(), 3, shuffle=True, seed=7, workers=workers)
        loader.set_epoch(1)
        return list(loader.iterate(start))

    torch.manual_seed(0)
    full = epoch_batches(0)
    torch.manual_seed(99)  # whatever the training loop did to the global RNGs before the resume
    expected_draw = torch.rand(3)
    torch.manual_seed(99)
    resumed = epoch_batches(2)
    assert torch.equal(torch.rand(3), expected_draw)  # loading drew nothing from the global RNG
    assert len(full) == 4 and len(resumed) == 2
    assert all(torch.equal(a, b) for a, b in zip(full[2:], resumed))


def test_catalogue_rows_name_existing_tests() -> None:
    """Every row of docs/reliability.md names a test that exists."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| ") and "`test_" in line]
    assert len(rows) >= 25
    for row in rows:
        file_name, test_name = row.rsplit("`", 2)[-2].split("::")
        source = (Path(__file__).parent / file_name).read_text()
        assert f"def {test_name}(" in source, row
