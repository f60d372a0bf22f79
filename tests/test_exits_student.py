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

from conftest import tiny_tree, write_yaml
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


def test_a_loss_only_plugin_is_not_needed_to_predict_eval_or_export(
    tmp_path: Path, loss_only_plugin, capsys: pytest.CaptureFixture
) -> None:
    module, method, folder = loss_only_plugin
    tree = tiny_tree(tmp_path / "run", distill={"method": method}, train={"max_steps": 2})
    cfg = write_yaml(tmp_path / "run.yaml", {**tree, "plugins": [module]})
    assert main(["train", str(cfg)]) == 0
    last = tmp_path / "run" / "last.pt"
    card = torch.load(last, weights_only=True)["card"]
    assert card["plugins"] == {"build": [], "train": [module]}
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


def test_an_older_card_tries_its_plugins_and_warns_once(
    tmp_path: Path, loss_only_plugin, capsys: pytest.CaptureFixture
) -> None:
    module, method, folder = loss_only_plugin
    tree = tiny_tree(tmp_path / "run", distill={"method": method}, train={"max_steps": 2})
    cfg = write_yaml(tmp_path / "run.yaml", {**tree, "plugins": [module]})
    assert main(["train", str(cfg)]) == 0
    last = tmp_path / "run" / "last.pt"
    state = torch.load(last, weights_only=True)
    del state["card"]["plugins"]  # as an older featdistill wrote it
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
    from conftest import REPO
    from PIL import Image

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
