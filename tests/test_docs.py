"""The documentation's code runs as written: every python block of README.md and docs/ (doc_blocks.py says
which are run elsewhere or not at all), the command lines of the README and of the command-line guide, the
plug-in example, and the Hugging Face layer names the pages use."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from doc_blocks import REPO, command_lines, pages, python_block, python_blocks, text
from featdistill.cli.main import main

BLOCKS = [block for page in pages() for block in python_blocks(page)]


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.marker is None], ids=lambda b: b.id if hasattr(b, "id") else None
)
def test_python_block_runs_as_written(
    block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(block.code, block.page, "exec"), {"__name__": "__docs__"})


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.marker], ids=lambda b: b.id if hasattr(b, "id") else None
)
def test_a_block_not_run_here_says_who_runs_it_or_why_not(block) -> None:
    run_by = re.fullmatch(r"run by (tests/[\w/]+\.py)", block.marker)
    if run_by:
        test_file = REPO / run_by.group(1)
        assert test_file.is_file(), f"{block.id}: {run_by.group(1)} does not exist"
        assert block.page in test_file.read_text(), f"{block.id}: {run_by.group(1)} never reads {block.page}"
    else:
        assert re.fullmatch(r"not run: \S.{5,}", block.marker), f"{block.id}: unknown marker {block.marker!r}"


def test_docs_have_python_blocks_and_most_run() -> None:
    assert {b.page for b in BLOCKS} >= {"README.md", "docs/concepts.md", "docs/integrations.md"}
    assert any(b.marker is None for b in BLOCKS)  # the rest are run, with their checks, by the tests named


def test_plugin_example_registers_a_method_the_distiller_uses() -> None:
    exec(compile(python_block("docs/extending.md", "register_method"), "docs/extending.md", "exec"), {})
    import featdistill as fd

    student, teacher = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 8, 1)
    x = torch.randn(2, 3, 4, 4)
    d = fd.Distiller(student, teacher, pairs=[("", "")], method="cosine_cwt", alpha=1.0, sample_input=x)
    assert d(x).loss.item() > 0


def _pipeline(line: str) -> tuple[list[str], str | None, str | None]:
    """The arguments of a command line, and the FILE of its ``> FILE``, the WORD of its ``| grep WORD``."""
    words = shlex.split(line, comments=True)[1:]
    redirect = grep = None
    if "|" in words:
        words, (_, grep) = words[: words.index("|")], words[words.index("|") + 1 :]
    if ">" in words:
        words, (redirect,) = words[: words.index(">")], words[words.index(">") + 1 :]
    return words, redirect, grep


@pytest.mark.parametrize(
    ("page", "heading", "at_least"),
    [
        ("README.md", "From the command line", 3),
        ("docs/getting_started.md", "A first run from the command line", 5),
        ("docs/cli.md", "Command line", 8),
    ],
)
def test_every_command_line_runs(
    page: str,
    heading: str,
    at_least: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    one_thread,
) -> None:
    """Each ``featdistill ...`` line of the section, in order, on tiny synthetic data (one step; the demo shows
    its help); ``photos/`` holds two generated images for ``predict``."""
    commands = command_lines(page, heading)
    assert len(commands) >= at_least
    tiny = ["data.name=synthetic", "data.limit=16", "data.val_limit=16", "data.batch_size=8"]
    tiny += ["train.max_steps=1", "device=cpu", "output.progress=false"]
    monkeypatch.chdir(tmp_path)
    Path("photos").mkdir()
    for i in range(2):
        pixels = np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(f"photos/{i}.png")
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


def test_hugging_face_layer_names_exist_in_the_installed_transformers(tmp_path: Path) -> None:
    """Every ``hf.vit....`` layer the pages name is a module of a ViTForImageClassification built here."""
    transformers = pytest.importorskip("transformers")
    from featdistill.taps.hooks import resolve_module
    from featdistill.tasks.classification.models import build_classifier

    names = {name for page in pages() for name in re.findall(r"\b(hf\.vit\.[\w.]+\d)", text(page))}
    assert "hf.vit.layers.11" in names
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
    for name in names:
        last_block = re.sub(r"\.\d+$", f".{config.num_hidden_layers - 1}", name)  # ViT-Base has 12 blocks
        assert isinstance(resolve_module(teacher, last_block), torch.nn.Module), name


def test_reference_pages_are_generated_for_every_command_key_and_method() -> None:
    """docs/hooks.py (run by ``mkdocs build``) writes a section per CLI command, a row per config key and per
    method: nothing in them is copied by hand, so nothing can be missing."""
    pytest.importorskip("mkdocs")
    import dataclasses
    import importlib.util
    import typing

    from featdistill.cli.main import build_parser
    from featdistill.config import RunConfig
    from featdistill.distiller.methods import METHODS

    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)

    cli = hooks.cli_reference()
    commands = build_parser()._subparsers._group_actions[0].choices
    assert all(f"## featdistill {name}\n" in cli for name in commands)
    assert "featdistill sweep [-h]" in cli  # the parser's own usage line

    def keys(cls: type, prefix: str = "") -> list[str]:
        hints = typing.get_type_hints(cls)
        found = []
        for f in dataclasses.fields(cls):
            nested = dataclasses.is_dataclass(hints[f.name])
            found += keys(hints[f.name], f"{prefix}{f.name}.") if nested else [f"{prefix}{f.name}"]
        return found

    config = hooks.config_reference()
    assert all(f"| `{key}` |" in config for key in keys(RunConfig))
    assert "| `data.options.scale_range` |" in config  # a task's own option schema (detection, segmentation)
    table = hooks.methods_table()
    assert all(f"| `{name}` |" in table for name in METHODS)
