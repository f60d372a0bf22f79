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
