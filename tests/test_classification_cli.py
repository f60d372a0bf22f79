"""End to end through the CLI on a few hundred real CIFAR-10 images: train, eval, resume, export."""

import json

import pytest
import torch

from conftest import image_folder_data, tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.tasks.classification.models import build_classifier


def write_config(tmp_path, shared_data, **train):
    cifar = {
        "limit": 200,
        "val_limit": 100,
        "batch_size": 50,
        "options": {"cache_dir": str(tmp_path / "cache")},
    }
    tree = tiny_tree(
        tmp_path / "run",
        data=image_folder_data(shared_data / "cifar10", **cifar),
        model={"teacher": "resnet14", "num_classes": 10},
        train={"log_every": 2, **train},
    )
    return write_yaml(tmp_path / "cfg.yaml", tree)


def test_train_eval_resume_export(tmp_path, shared_data, capsys):
    cfg = write_config(tmp_path, shared_data)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= 100.0
    assert (run / "log.csv").read_text().startswith("step,")
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and not any(k.startswith("teacher") for k in state["student"])
    assert set(state["transforms"]) == {
        "0.layers.0.weight",
        "0.layers.0.bias",
        "0.layers.2.weight",
        "0.layers.2.bias",
    }

    capsys.readouterr()
    assert main(["eval", str(cfg), "--checkpoint", str(run / "last.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(metrics["top1"])

    # resume: one more epoch on top of the first
    assert main(["train", str(cfg), "--set", "train.epochs=2", "--resume", "auto"]) == 0
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2

    out = tmp_path / "student.pt"
    export = ["export", str(cfg), "--checkpoint", str(run / "last.pt"), "--format", "state_dict"]
    assert main([*export, "--output", str(out)]) == 0
    student = build_classifier("resnet8", 10)
    student.load_state_dict(torch.load(out, weights_only=True))
    ts = tmp_path / "student.ts"
    assert (
        main(
            [
                "export",
                str(cfg),
                "--checkpoint",
                str(run / "last.pt"),
                "--format",
                "torchscript",
                "--output",
                str(ts),
            ]
        )
        == 0
    )
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(torch.jit.load(str(ts))(x), student.eval()(x))


def test_config_error_is_one_line_without_traceback(tmp_path, shared_data, capsys):
    cfg = write_config(tmp_path, shared_data)
    assert main(["train", str(cfg), "--set", "train.lrr=0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'train.lr'" in err and "Traceback" not in err
