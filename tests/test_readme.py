"""The README's own-loop example runs exactly as written, and CI runs the README's test command."""

import re
import shlex
from pathlib import Path

import pytest
import torch

from conftest import REPO
from featdistill.cli.main import main


def _readme() -> str:
    return (REPO / "README.md").read_text()


def test_readme_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", _readme(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    student = namespace["student"]
    assert type(student).__name__ == "ResNet"
    assert all(not m._forward_hooks for m in student.modules())
    assert namespace["loss"].dim() == 0


def test_readme_plugin_example_registers_a_method_the_distiller_uses():
    section = re.search(r"\n## Your own methods and tasks\n(.*?)\n## ", _readme(), flags=re.S).group(1)
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    exec(compile(block, "README.md", "exec"), {})
    import featdistill as fd

    student, teacher = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 8, 1)
    x = torch.randn(2, 3, 4, 4)
    d = fd.Distiller(student, teacher, pairs=[("", "")], method="cosine_cwt", alpha=1.0, sample_input=x)
    assert d(x).loss.item() > 0


def test_ci_runs_the_readme_test_command():
    test_command = re.search(r"Run the tests:\n\n    (.+)\n", _readme()).group(1)
    assert test_command in (REPO / ".ci" / "run").read_text()


def _pipeline(line: str) -> tuple[list[str], str | None, str | None]:
    """The arguments of a README command line, and the FILE of its ``> FILE``, the WORD of its ``| grep WORD``."""
    words = shlex.split(line, comments=True)[1:]
    redirect = grep = None
    if "|" in words:
        words, (_, grep) = words[: words.index("|")], words[words.index("|") + 1 :]
    if ">" in words:
        words, (redirect,) = words[: words.index(">")], words[words.index(">") + 1 :]
    return words, redirect, grep


def test_every_command_in_the_command_line_section_runs(tmp_path, monkeypatch, capsys):
    """Each ``featdistill ...`` line, in order, on tiny synthetic data (one step; the demo shows its help)."""
    section = re.search(r"\n## Command line\n(.*?)\n## ", _readme(), flags=re.S).group(1)
    commands = re.findall(r"^    (featdistill .+)$", section, flags=re.M)
    assert len(commands) >= 8
    tiny = ["data.name=synthetic", "data.limit=16", "data.val_limit=16", "data.batch_size=8"]
    tiny += ["train.max_steps=1", "device=cpu", "output.progress=false"]
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    for line in commands:
        words, redirect, grep = _pipeline(line)
        if words[0] in ("train", "eval", "export", "sweep", "compare", "data", "layers"):
            words += [arg for item in tiny for arg in ("--set", item)]
        if words[0] == "demo":
            words.append("--help")  # the demo itself takes minutes
        try:
            code = main(words)
        except SystemExit as stop:  # --help, --version
            code = stop.code
        out = capsys.readouterr().out
        assert code in (0, None), line
        if redirect:
            Path(redirect).write_text(out)
        if grep:
            assert any(grep in printed for printed in out.splitlines()), line
        assert out, line


def test_readme_hugging_face_layer_exists_in_the_installed_transformers(tmp_path):
    """The README's ``hf.vit....`` example names a module of a ViTForImageClassification built here."""
    transformers = pytest.importorskip("transformers")
    from featdistill.taps.hooks import resolve_module
    from featdistill.tasks.classification.models import build_classifier

    example = re.search(r"`(hf\.vit\.[\w.]+)`", _readme()).group(1)
    config = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
    )
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "tiny-vit")
    teacher = build_classifier(f"hf:{tmp_path / 'tiny-vit'}", 2)
    last_block = re.sub(r"\.\d+$", f".{config.num_hidden_layers - 1}", example)  # ViT-Base has 12 blocks
    assert isinstance(resolve_module(teacher, last_block), torch.nn.Module)
