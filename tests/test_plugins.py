"""Your own methods and tasks: ``register_method`` / ``register_task`` in a module that a config's ``plugins:``
imports, used by ``train``, ``export``, ``sweep``, ``compare``, ``layers`` and ``config`` (tests/plugins/fd_example_plugin.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

import featdistill as fd
from conftest import REPO, tiny_tree
from featdistill.cli.main import main
from featdistill.config import ConfigError, parse_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _plugin_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "tests" / "plugins"))


def test_a_user_method_and_task_train_export_sweep_and_compare_through_the_cli(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = tiny_config("train", task="regression")
    assert main(["train", str(cfg)]) == 0
    said = capsys.readouterr().out
    assert "alpha auto chose cosine_sum=" in said
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics["neg_mse"] < 0 and metrics["alpha"]["cosine_sum"] > 0
    state = torch.load(tmp_path / "train" / "last.pt", weights_only=True)
    assert state["transforms"]["0.layers.0.weight"].shape[:2] == (
        8,
        4,
    )  # CWT: 4 student to 8 teacher channels
    exported = tmp_path / "student.pt2"  # traced with the task's export_example, TaskBase's default
    args = [
        "export",
        str(cfg),
        "--checkpoint",
        str(tmp_path / "train" / "last.pt"),
        "--output",
        str(exported),
    ]
    assert main(args) == 0
    assert (
        "Output: the student's output, as its forward returns it."
        in (tmp_path / "student.pt2.md").read_text()
    )
    program = torch.export.load(str(exported)).module()
    assert program(torch.randn(3, 3, 8, 8)).shape[0] == 3
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")  # a task without prediction(): JSON lines
    out = tmp_path / "predicted.jsonl"
    assert (
        main(
            [
                "predict",
                str(tmp_path / "train" / "last.pt"),
                str(tmp_path / "photo.png"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["file"].endswith("photo.png") and len(row["output"]) == 1

    sweep = tiny_config("sweep", task="regression")
    assert main(["sweep", str(sweep), "--grid", "distill.alpha=auto,0.1"]) == 0
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [v["status"] for v in record["variants"]] == ["done", "done"]
    assert record["metric"] == "holdout neg_mse" and record["best"] is not None

    args = ["--grid", "distill.method=cosine_sum,cwt", "--seeds", "0,1"]
    assert main(["compare", str(tiny_config("compare", task="regression")), *args]) == 0
    arms = json.loads((tmp_path / "compare" / "compare.json").read_text())["arms"]
    assert [a["values"]["distill.method"] for a in arms] == ["cosine_sum", "cwt"]
    assert all(a["summary"]["n"] == 2 for a in arms)

    capsys.readouterr()
    assert main(["layers", str(cfg)]) == 0
    assert "3" in capsys.readouterr().out
    assert main(["config", str(cfg)]) == 0
    printed = capsys.readouterr().out
    assert "plugins: [fd_example_plugin]" in printed and "task: regression" in printed


def test_the_cosine_method_is_the_sum_of_its_pairs_terms() -> None:
    """The registered loss runs on the CWT-transformed student feature, weighted by α like any method."""
    import fd_example_plugin

    student, teacher = fd_example_plugin._regressor(4), fd_example_plugin._regressor(8)
    x = torch.randn(4, 3, 8, 8)
    d = fd.Distiller(student, teacher, pairs=[("3", "3")], method="cosine_sum", alpha=0.5, sample_input=x)
    out = d(x)
    with torch.no_grad():
        aligned = d.transforms[0](student[:4](x), (8, 8))
        expected = fd_example_plugin.cosine_loss(aligned, teacher[:4](x), {})
    assert out.loss.item() == pytest.approx(0.5 * expected.item(), rel=1e-5)


def test_plugin_and_registration_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tree = tiny_tree(tmp_path / "bad", task="regression")
    with pytest.raises(ConfigError, match="plugins: cannot import 'no_such_plugin' \\(ModuleNotFoundError"):
        parse_config({**tree, "plugins": ["no_such_plugin"]})
    with pytest.raises(ConfigError, match="did you mean 'classification'"):
        parse_config({**tree, "plugins": [], "task": "clasification"})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**tree, "plugins": ["no_such_plugin"]}))
    assert main(["train", str(bad)]) == 2
    assert "cannot import 'no_such_plugin'" in capsys.readouterr().err

    class Incomplete(fd.tasks.base.TaskBase):
        name, metric = "incomplete", "score"

    with pytest.raises(TypeError, match="lacks batch_size, build_loaders, build_student"):
        fd.register_task("incomplete", Incomplete)
    with pytest.raises(ValueError, match="built-in task"):
        fd.register_task("detection", Incomplete)
    with pytest.raises(ValueError, match="exists already"):
        fd.register_method("cwt", loss=lambda s, t, o: (s - t).pow(2).sum())
