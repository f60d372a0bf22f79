"""The command line itself: `config`, `models`, `--debug` anywhere, `--version`, help texts with examples."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import re
import typing
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO
from featdistill.cli.main import build_parser, main
from featdistill.cli.starters import teacher_overrides
from featdistill.config import RunConfig, load_config, parse_config
from featdistill.config_docs import field_docs
from featdistill.tasks.options import data_options
from featdistill.tasks.registry import task_class, task_names

TASKS = sorted(task_names())
TRAINED_TEACHERS = [
    task for task in TASKS if task_class(task).teacher_run
]  # pretrain's teacher comes trained
RECIPES = sorted((REPO / "configs").glob("*/*.yaml"))


def _sections(cls: type = RunConfig, prefix: str = ""):
    """(dotted prefix, dataclass) of the schema and of every section in it."""
    yield prefix, cls
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            yield from _sections(tp, f"{prefix}{name}.")


def _printed(capsys, *argv: str) -> str:
    assert main(["config", *argv]) == 0
    return capsys.readouterr().out


# -- config: the documentation -------------------------------------------------------------------------
def test_every_schema_field_has_a_doc() -> None:
    undocumented = [
        f"{prefix}{name}" for prefix, cls in _sections() for name, doc in field_docs(cls).items() if not doc
    ]
    assert undocumented == [], "add a trailing '# comment' to these fields in config/schema.py"


@dataclasses.dataclass
class _Inner:
    """The inner section. It has two keys."""

    size: int = 3  # how big, in ``px``
    plain: str = "x"


@dataclasses.dataclass
class _Outer:
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    wide: dict = dataclasses.field(
        default_factory=dict,
    )  # a comment after a field written over several lines
    url: str = "http://x#y"  # the '#' inside the string is not a comment


def test_docs_are_the_trailing_comments_and_section_docstrings() -> None:
    assert field_docs(_Inner) == {"size": "how big, in px", "plain": ""}
    assert field_docs(_Outer) == {
        "inner": "the inner section",
        "wide": "a comment after a field written over several lines",
        "url": "the '#' inside the string is not a comment",
    }


@pytest.mark.parametrize("task", TASKS)
def test_printed_starter_documents_every_key(task: str, capsys) -> None:
    printed = _printed(capsys, "--task", task)
    by_key, path = {}, []
    for line in printed.splitlines():
        if match := re.match(r"( *)(\w+):", line):
            depth = len(match.group(1)) // 2
            path = [*path[:depth], match.group(2)]
            by_key[".".join(path)] = line
    for prefix, cls in _sections():
        for name, doc in field_docs(cls).items():
            assert by_key[prefix + name].endswith(f"  # {doc}"), by_key[prefix + name]
    assert parse_config(yaml.safe_load(printed)).task == task


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_printed_recipe_is_the_same_config(path: Path, capsys) -> None:
    printed = _printed(capsys, str(path), "--set", "train.lr=0.125")
    cfg = load_config(path, ["train.lr=0.125"])
    expected = cfg.to_dict()
    expected["data"]["options"] = dataclasses.asdict(data_options(cfg))  # every option, defaults filled in
    assert parse_config(yaml.safe_load(printed)).to_dict() == expected
    assert printed.startswith(f"# {path} with --set overrides: every key")


# -- config: the printed starter of each task trains ----------------------------------------------------
def _tiny_coco(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for k in range(2):
        Image.new("RGB", (64, 48), (40 * k, 90, 160)).save(root / "images" / f"{k}.jpg")
        images.append({"id": k + 1, "file_name": f"{k}.jpg", "width": 64, "height": 48})
        box = [8.0 + 4 * k, 6.0, 30.0, 24.0]
        annotations.append(
            {"id": k + 1, "image_id": k + 1, "category_id": k + 1, "bbox": box, "area": 720.0, "iscrowd": 0}
        )
    categories = [{"id": i, "name": f"c{i}"} for i in range(1, 81)]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances.json").write_text(json.dumps(data))


def _tiny_camvid(root: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for k in range(2):
            image = torch.randint(0, 256, (40, 48, 3), generator=generator, dtype=torch.uint8)
            label = torch.randint(0, 12, (40, 48), generator=generator, dtype=torch.uint8)
            Image.fromarray(image.numpy()).save(root / split / f"{k}.png")
            Image.fromarray(label.numpy()).save(root / f"{split}annot" / f"{k}.png")


_TINY = {  # the data and sizes of a seconds-long run; every other key is the printed one
    "classification": ["data.name=synthetic", "data.limit=16", "data.val_limit=16", "data.batch_size=8"],
    "detection": [
        "data.root=coco",
        "data.batch_size=2",
        "model.options.min_size=64",
        "model.options.max_size=96",
    ],
    "segmentation": ["data.root=camvid", "data.batch_size=2", "data.options.crop_size=32"],
}


@pytest.mark.parametrize("task", TRAINED_TEACHERS)
def test_printed_starter_trains_its_teacher_then_distils(
    task: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    if task == "detection":
        pytest.importorskip("pycocotools")
        _tiny_coco(tmp_path / "coco")
    if task == "segmentation":
        _tiny_camvid(tmp_path / "camvid")
    torch.set_num_threads(1)  # tiny batches: a second thread only spins on a shared machine
    monkeypatch.chdir(tmp_path)  # the starter's relative paths (runs/...) land here
    Path("my.yaml").write_text(_printed(capsys, "--task", task))
    tiny = [*_TINY[task], "device=cpu", "output.progress=false", "train.max_steps=1"]
    sets = lambda items: [arg for item in items for arg in ("--set", item)]  # noqa: E731

    assert main(["train", "my.yaml", *sets([*tiny, *teacher_overrides(task)])]) == 0
    teacher = Path(f"runs/{task}_teacher/last.pt")
    assert teacher == Path(load_config("my.yaml").model.teacher_weights)
    assert main(["train", "my.yaml", *sets(tiny)]) == 0
    student_run = Path(load_config("my.yaml").output.dir)
    state = torch.load(student_run / "last.pt", weights_only=True)
    assert state["step"] == 1 and len(state["transforms"]) > 0  # distilled: the CWT transforms trained


def test_config_errors_are_one_line(tmp_path: Path, capsys) -> None:
    recipe = REPO / "configs" / "segmentation" / "camvid_cpu_cwt.yaml"
    assert main(["config", str(recipe), "--task", "detection"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("featdistill: error: ") and "is a segmentation config but --task says detection" in err
    )
    assert "\n" not in err
    assert main(["config", "--set", "train.lr=fast"]) == 2
    assert "train.lr" in capsys.readouterr().err


# -- models ---------------------------------------------------------------------------------------------
def _listed(capsys, *argv: str) -> list[str]:
    assert main(["models", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_models_lists_every_task(capsys) -> None:
    from featdistill.tasks.classification.models import list_classifiers
    from featdistill.tasks.segmentation.models import SEGMENTERS

    lines = _listed(capsys, "--task", "classification")
    names = [line.split()[0] for line in lines if not line.startswith("#")]
    assert names == [*list_classifiers(), "timm:<name>", "hf:<repo"]
    grep = [line.split() for line in lines if "resnet" in line]
    assert ["resnet8", "featdistill"] in grep and ["resnet18", "torchvision"] in grep

    lines = _listed(capsys, "--task", "segmentation")
    assert [line.split()[0] for line in lines[1:]] == [
        *SEGMENTERS,
        "hf:<repo",
        "smp:<Architecture>/<encoder>",
    ]
    assert any(line.startswith("deeplabv3") and "mobilenet_v3_large" in line for line in lines)

    everything = _listed(capsys)
    headers = [line for line in everything if line.startswith("# ")]
    assert [h.split(":")[0] for h in headers] == [
        "# classification",
        "# detection",
        "# detection backbones",
        "# segmentation",
        "# pretrain",
        "# pretrain",
    ]


def test_models_lists_detectors_and_backbones(capsys) -> None:
    pytest.importorskip("pycocotools")
    from featdistill.tasks.detection.models import BACKBONES, DETECTORS

    lines = _listed(capsys, "--task", "detection")
    split = lines.index(next(line for line in lines if line.startswith("# detection backbones")))
    assert [line.split()[0] for line in lines[1:split]] == [*DETECTORS, "hf:<repo"]
    assert [line.split()[0] for line in lines[split + 1 :]] == [*BACKBONES, "timm:<name>"]


# -- the parser: --debug, --version, help ---------------------------------------------------------------
def test_debug_before_or_after_the_command(tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "missing.yaml")
    for argv in (["--debug", "config", missing], ["config", missing, "--debug"]):
        assert build_parser().parse_args(argv).debug is True
        with pytest.raises(Exception, match="config file not found"):
            main(argv)  # the traceback is not swallowed
    assert build_parser().parse_args(["config", missing]).debug is False
    assert main(["config", missing]) == 2
    assert "--debug for the traceback" in capsys.readouterr().err


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"featdistill {importlib.metadata.version('featdistill')}"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_help_ends_with_one_example() -> None:
    commands = _subcommands()
    assert {"train", "eval", "export", "demo", "config", "models"} <= set(commands)
    for name, parser in commands.items():
        assert re.fullmatch(rf"example:\n  featdistill {name} [^\n]+", parser.epilog or ""), name
        assert parser.format_help().rstrip().endswith(parser.epilog), name


def test_help_texts_are_plain_sentences() -> None:
    texts = [build_parser().format_help()] + [p.format_help() for p in _subcommands().values()]
    for text in texts:
        assert "``" not in text and ":func:" not in text
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for choice in action._choices_actions:  # the one-line help of each command in `featdistill --help`
        assert choice.help[0].isupper() and choice.help.endswith("."), choice.help


@pytest.mark.usefixtures("one_thread")
def test_the_demo_trains_its_teacher_and_compares_its_two_students(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``featdistill demo`` end to end (README's main job), on fewer generated images than its 4,000."""
    import featdistill.demo as demo

    full = demo._base_config

    def small(*args: typing.Any) -> dict[str, typing.Any]:
        tree = full(*args)
        tree["data"].update(limit=64, val_limit=32, batch_size=16, eval_batch_size=32)
        return tree

    monkeypatch.setattr(demo, "_base_config", small)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--epochs", "1"]) == 0
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["name"] for r in results] == ["teacher", "student", "student+cwt"]
    assert all(0 <= r["top1"] <= 100 for r in results)
    assert "| student+cwt |" in (tmp_path / "demo" / "compare.md").read_text()  # compare's own table
    assert (tmp_path / "demo" / "curves.png").is_file()
