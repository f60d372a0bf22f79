"""Nothing lost and nothing misleading at the exits (issue 29, items 1, 2, 5, 8 and 10): every file written for a
user is atomic (a bad image, an error or a kill leaves the previous predictions, export or report as they
were); a folder that holds a run is never trained over; a wrong file given as a checkpoint or an export is
named by its bytes; messages fit the case (``--set`` alone, the export sidecar, ``--format hf``, a full
disk); ``featdistill data`` lists every bad file and every file it leaves out."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import featdistill
from conftest import image_folder_data, tiny_tree, write_yaml
from featdistill.cli.main import main
from featdistill.engine import save_atomic
from tiny_data import image_folder, write_png

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ("ant", "bee")


def _pixels(label: int, i: int) -> np.ndarray:
    return np.full((8, 8, 3), 60 + 100 * label + 5 * i, dtype=np.uint8)


def cli(capsys: pytest.CaptureFixture, *args: Any) -> tuple[int, str, str]:
    """Run the CLI in this process; return the exit code, stdout and stderr."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys: pytest.CaptureFixture, *args: Any) -> str:
    """Run the CLI, expecting one ``featdistill: error:`` line (no traceback); return it."""
    code, _, err = cli(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip() and "warning" not in line]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("featdistill: error: "), err
    assert "Traceback" not in err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _config(root: Path, out: Path, **train: Any) -> Path:
    data = image_folder_data(root / "data", batch_size=4, val_split="val")
    tree = tiny_tree(out, data=data, model={"num_classes": 2}, train={"max_steps": 1, **train}, alone=True)
    return write_yaml(root / f"{out.name}.yaml", tree)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A resnet8 trained one step on a tiny ImageFolder: (its config, its last.pt)."""
    root = tmp_path_factory.mktemp("exits")
    image_folder(root / "data", {"train": 4, "val": 3}, CLASSES, _pixels)
    cfg = _config(root, root / "run")
    torch.set_num_threads(1)
    assert main(["train", str(cfg)]) == 0
    return cfg, root / "run" / "last.pt"


# -- 1. atomic outputs ---------------------------------------------------------------------------------------
def test_a_bad_file_mid_predict_keeps_the_previous_csv(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, checkpoint = trained
    images = tmp_path / "images"
    shutil.copytree(checkpoint.parents[1] / "data" / "val", images)
    out = tmp_path / "predictions.csv"
    args = ["predict", checkpoint, images, "--output", out, "--batch-size", "2", "--no-progress"]
    assert cli(capsys, *args)[0] == 0
    before = out.read_bytes()
    assert len(before.splitlines()) == 1 + 6
    (images / "ant" / "1x.png").write_bytes(b"not a png")  # the second batch: the first one was written
    line = one_line_error(capsys, *args)
    assert "1x.png" in line
    assert out.read_bytes() == before  # was: a partial CSV in its place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "predictions.csv"]  # no staging left


KILL_MID_WRITE = """
import os, signal, sys
from featdistill.cli.main import main
from featdistill.tasks.classification.prediction import ClassificationWriter
write = ClassificationWriter.write
def write_then_die(self, *args):
    write(self, *args)
    self._file.flush()  # some rows reach the disk, then the process is killed
    os.kill(os.getpid(), signal.SIGKILL)
ClassificationWriter.write = write_then_die
main(sys.argv[1:])
"""


def test_predict_killed_mid_write_keeps_the_previous_csv(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, checkpoint = trained
    images = checkpoint.parents[1] / "data" / "val"
    out = tmp_path / "predictions.csv"
    args = ["predict", checkpoint, images, "--output", out, "--batch-size", "2", "--no-progress"]
    assert cli(capsys, *args)[0] == 0
    before = out.read_bytes()
    script = tmp_path / "kill_mid_write.py"
    script.write_text(KILL_MID_WRITE)
    here = Path(featdistill.__file__).parents[1]  # the featdistill under test, in the child too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script), *map(str, args)], env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert out.read_bytes() == before
    assert cli(capsys, *args)[0] == 0  # the next run clears the killed run's staging folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kill_mid_write.py", "predictions.csv"]


def test_a_failed_export_keeps_the_previous_file_and_its_sidecars(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, checkpoint = trained
    out = tmp_path / "student.pt"
    args = ["export", "--checkpoint", checkpoint, "--format", "torchscript", "--output", out]
    assert cli(capsys, *args)[0] == 0
    before = snapshot(tmp_path)
    assert set(before) == {"student.pt", "student.pt.json", "student.pt.md"}

    def fail(sidecar: dict) -> str:
        raise RuntimeError("injected failure while writing the model card")

    monkeypatch.setattr("featdistill.export.model_card", fail)  # after the model and the sidecar were written
    assert "injected failure" in one_line_error(capsys, *args)
    assert snapshot(tmp_path) == before


def test_staged_folder_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    from featdistill import atomic

    folder = tmp_path / "predictions"
    with atomic.staged(folder) as target:
        (target / "labels").mkdir(parents=True)
        (target / "labels" / "a.png").write_bytes(b"old")
    with pytest.raises(ValueError, match="bad image"), atomic.staged(folder) as target:
        (target / "labels").mkdir(parents=True)
        (target / "labels" / "b.png").write_bytes(b"new")
        raise ValueError("bad image")
    assert snapshot(folder) == {"labels/a.png": b"old"}
    with atomic.staged(folder) as target:
        (target / "labels").mkdir(parents=True)
        (target / "labels" / "b.png").write_bytes(b"new")
    assert snapshot(folder) == {"labels/b.png": b"new"}
    with pytest.raises(OSError, match="a folder of that name is in the way"), atomic.staged(folder) as target:
        target.write_text("a file where the folder is")  # e.g. --output predictions for a CSV
    assert snapshot(folder) == {"labels/b.png": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions"]


def test_a_failed_plot_keeps_the_previous_report_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    from featdistill.sweep import compare

    run = {"metric": 50.0, "status": "done"}
    record = {
        "metric": "top1",
        "arms": [{"values": {}, "runs": [run], "summary": {"n": 1, "mean": 50.0, "std": 0.0}}],
    }
    path = tmp_path / "compare.png"
    path.write_bytes(b"previous figure")

    def broken(self: Any, target: Any, **kwargs: Any) -> None:
        Path(target).write_bytes(b"half a png")
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken)
    with pytest.raises(OSError):
        compare._plot(path, record)
    assert path.read_bytes() == b"previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compare.png"]


# -- 2. a run is never overwritten -------------------------------------------------------------------------
def test_train_into_a_folder_holding_a_run_is_refused_then_moved_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image_folder(tmp_path / "data", {"train": 4, "val": 2}, CLASSES, _pixels)
    out = tmp_path / "run"
    cfg = _config(tmp_path, out)
    assert cli(capsys, "train", cfg)[0] == 0
    before = snapshot(out)
    line = one_line_error(capsys, "train", cfg, "--set", "train.max_steps=2")
    assert f"{out} already holds a run" in line and "--resume auto" in line and "--overwrite" in line
    assert snapshot(out) == before  # was: last.pt replaced, log.csv restarted
    code, _, err = cli(capsys, "train", cfg, "--set", "train.max_steps=2", "--overwrite")
    assert code == 0, err
    (aside,) = tmp_path.glob("run.old-*")
    assert f"moved the earlier run in {out} to {aside}" in err
    assert snapshot(aside) == before  # nothing deleted
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    line = one_line_error(capsys, "train", cfg, "--resume", "auto", "--overwrite")
    assert "--resume and --overwrite exclude each other" in line


def test_compare_into_folders_holding_runs_is_refused_then_moved_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image_folder(tmp_path / "data", {"train": 4, "val": 2}, CLASSES, _pixels)
    out = tmp_path / "cmp"
    cfg = _config(tmp_path, out)
    assert cli(capsys, "compare", cfg)[0] == 0
    (variant,) = [p for p in out.iterdir() if p.is_dir()]
    before = snapshot(variant)
    line = one_line_error(capsys, "compare", cfg)
    assert f"{variant} already holds a run" in line and "--resume auto" in line and "--overwrite" in line
    assert snapshot(variant) == before  # was: trained anew over it
    assert cli(capsys, "compare", cfg, "--resume", "auto")[0] == 0  # resuming is what it always did
    code, out_text, err = cli(capsys, "compare", cfg, "--overwrite")
    assert code == 0, err
    (aside,) = out.glob(f"{variant.name}.old-*")
    assert snapshot(aside) == before and f"moved the earlier run in {variant} to {aside}" in out_text


def test_demo_into_an_earlier_demo_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def trains(*args: Any) -> None:
        raise AssertionError("the demo trained over an earlier one")

    monkeypatch.setattr("featdistill.demo._teacher", trains)
    out = tmp_path / "demo"
    (out / "teacher").mkdir(parents=True)
    (out / "teacher" / "log.csv").write_text("step\n1\n")
    line = one_line_error(capsys, "demo", "--out", out)
    assert f"{out} holds an earlier demo" in line and "--overwrite" in line and "--out" in line
    assert snapshot(out) == {"teacher/log.csv": b"step\n1\n"}


# -- 5. a wrong file is named by its bytes -----------------------------------------------------------------
def _wrong_files(folder: Path, checkpoint: Path) -> dict[str, tuple[Path, str]]:
    """Files of every kind a user may give by mistake: name -> (path, what the error must call it)."""
    folder.mkdir()
    notes = folder / "notes.txt"
    notes.write_text("remember to export the student\n")
    config = folder / "run.yaml"
    shutil.copy(checkpoint.parent / "config.yaml", config)
    archive = folder / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "x")
    linear = torch.nn.Linear(2, 2)
    script = folder / "student.ts"
    torch.jit.script(linear).save(str(script))
    program = folder / "student.pt2"
    torch.export.save(torch.export.export(linear, (torch.zeros(1, 2),)), str(program))
    onnx = folder / "student.onnx"
    onnx.write_bytes(b"\x08\x09\x12\x07pytorch\x1a\x062.14.1:")  # the leading bytes of an ONNX model
    image = folder / "photo.png"
    write_png(image, np.zeros((4, 4, 3), dtype=np.uint8))
    return {
        "text": (notes, "is a text file, not a checkpoint"),
        "yaml": (config, "is a YAML file (a config?): give a config as the CONFIG argument"),
        "zip": (archive, "is a zip archive that is not a torch checkpoint"),
        "torchscript": (script, "is a TorchScript export: predict takes it"),
        "pt2": (program, "is a torch.export program (.pt2 export): predict takes it"),
        "onnx": (onnx, "is an ONNX export: predict takes it; eval and export need the run's last.pt"),
        "image": (image, "is a PNG image, not a checkpoint"),
        "missing": (folder / "lost.pt", "lost.pt not found"),
        "run folder": (
            checkpoint.parent,
            f"is a folder, not a file: eval needs the run's last.pt (a training checkpoint); did you mean {checkpoint}?",
        ),
    }


def test_eval_and_export_name_a_wrong_file_by_its_bytes(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, checkpoint = trained
    for kind, (path, what) in _wrong_files(tmp_path / "files", checkpoint).items():
        for command in ("eval", "export"):
            args = [command, "--checkpoint", path] + (
                ["--output", tmp_path / "x.pt2"] if command == "export" else []
            )
            line = one_line_error(capsys, *args)
            assert what.replace("eval needs", f"{command} needs") in line, (kind, line)
            # was: KeyError 101, IndexError pop from empty list, "holds pickled Python objects", ...
            for leak in ("KeyError", "IndexError", "pickled", "mmap", "UnpicklingError"):
                assert leak not in line, (kind, line)
    assert not (tmp_path / "x.pt2").exists()


def test_predict_names_a_wrong_file_by_its_bytes(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, checkpoint = trained
    images = checkpoint.parents[1] / "data" / "val"
    files = _wrong_files(tmp_path / "files", checkpoint)
    for kind in ("text", "yaml", "zip", "image", "missing"):
        path, what = files[kind]
        line = one_line_error(
            capsys, "predict", path, images, "--output", tmp_path / "p.csv", "--no-progress"
        )
        assert what.split(":")[0].split(",")[0] in line, (kind, line)
        assert "predict takes a training checkpoint (the run's last.pt) or an export" in line, (kind, line)
        assert "mmap" not in line and "Error" not in line.split(" (")[0], (
            kind,
            line,
        )  # was: torch's mmap message


# -- 8. messages that fit the case -------------------------------------------------------------------------
def test_set_without_a_config_says_what_set_does(
    trained: tuple[Path, Path], capsys: pytest.CaptureFixture
) -> None:
    _, checkpoint = trained
    line = one_line_error(capsys, "eval", "--checkpoint", checkpoint, "--set", "data.image_size=28")
    assert (
        "--set asks for preprocessing" in line
        and "without a config, --set applies to the checkpoint's own" in line
    )
    assert "give no config" not in line  # was: "use the config that trained it, or give no config"
    code, out, err = cli(capsys, "eval", "--checkpoint", checkpoint, "--set", "data.eval_batch_size=2")
    assert code == 0 and "top1" in json.loads(out.splitlines()[-1]), (
        err
    )  # a --set that keeps the card's steps


def test_the_sidecar_of_an_export_with_preprocessing_says_it_normalises(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, checkpoint = trained
    for flags, inside in (([], False), (["--include-preprocessing"], True)):
        out = tmp_path / f"s{len(flags)}.pt"
        args = ["export", "--checkpoint", checkpoint, "--format", "torchscript", "--output", out, *flags]
        assert cli(capsys, *args)[0] == 0
        sidecar = json.loads((tmp_path / f"{out.name}.json").read_text())
        assert sidecar["export"]["include_preprocessing"] is inside
        assert sidecar["preprocessing"]["normalize_in_model"] is inside  # was: false with the flag too
        assert sidecar["export"]["input"]["dtype"] == ("uint8" if inside else "float32")


def test_hf_export_writes_its_sidecar_and_model_card_and_is_atomic(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8, num_labels=2,
    )  # fmt: skip
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "tiny-vit")
    image_folder(tmp_path / "data", {"train": 2, "val": 1}, CLASSES, _pixels)
    cfg = _config(tmp_path, tmp_path / "run")
    assert cli(capsys, "train", cfg, "--set", f"model.student=hf:{tmp_path / 'tiny-vit'}")[0] == 0
    folder = tmp_path / "hf_student"
    args = ["export", "--checkpoint", tmp_path / "run" / "last.pt", "--format", "hf", "--output", folder]
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    sidecar = json.loads((tmp_path / "hf_student.json").read_text())  # was: neither file written
    assert sidecar["export"]["format"] == "hf" and sidecar["classes"] == list(CLASSES)
    assert "from_pretrained('hf_student')" in (tmp_path / "hf_student.md").read_text()
    assert (folder / "config.json").is_file() and (folder / "preprocessor_config.json").is_file()
    before = {**snapshot(folder), "json": (tmp_path / "hf_student.json").read_bytes()}

    def fail(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(
        transformers.ViTImageProcessor, "save_pretrained", fail
    )  # after the model was written
    one_line_error(capsys, *args)
    assert {**snapshot(folder), "json": (tmp_path / "hf_student.json").read_bytes()} == before
    assert sorted(p.name for p in tmp_path.glob(".*")) == []


def _assert_disk_full(line: str, path: Path) -> None:
    assert f"cannot write {path}: No space left on device in {path.parent} (it needs " in line, line
    assert "free; the previous file is unchanged)" in line, line


def test_a_full_disk_is_one_line_for_every_write(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from featdistill import atomic

    cfg, checkpoint = trained
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent, run)
    tree = yaml.safe_load(cfg.read_text())
    cfg = write_yaml(tmp_path / "cfg.yaml", {**tree, "output": {**tree["output"], "dir": str(run)}})
    last = (run / "last.pt").read_bytes()

    # a checkpoint: torch's own short-write error, told apart by the free space left
    def short_write(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"\0" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1298432 vs 1298320")

    monkeypatch.setattr(torch, "save", short_write)
    monkeypatch.setattr(atomic, "_free", lambda folder: 1000)
    monkeypatch.setattr(atomic, "_needed", lambda write: 5_000_000)
    line = one_line_error(capsys, "train", cfg, "--resume", "auto", "--set", "train.max_steps=2")
    _assert_disk_full(line, run / "last.pt")
    assert "it needs 5.0 MB, 1.0 kB free" in line, line
    assert (run / "last.pt").read_bytes() == last and not list(run.glob(".*tmp*"))
    monkeypatch.undo()

    # the same RuntimeError with space left is not called a full disk
    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_atomic({"x": 1}, tmp_path / "other.pt")
    monkeypatch.undo()

    # the log, an export and predictions: the write raises ENOSPC
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    from featdistill.engine.logger import RunLogger

    logger = RunLogger(run, tensorboard=False)
    logger._header = ["step"]
    monkeypatch.setattr("featdistill.engine.logger.open", full, raising=False)
    with pytest.raises(OSError) as caught:
        logger.log(3, {})
    monkeypatch.undo()
    _assert_disk_full(str(caught.value), run / "log.csv")

    export = tmp_path / "student.pt"
    assert (
        cli(capsys, "export", "--checkpoint", checkpoint, "--format", "torchscript", "--output", export)[0]
        == 0
    )
    monkeypatch.setattr(torch.jit.ScriptModule, "save", full, raising=False)
    monkeypatch.setattr(torch.jit.RecursiveScriptModule, "save", full)
    line = one_line_error(
        capsys, "export", "--checkpoint", checkpoint, "--format", "torchscript", "--output", export
    )
    _assert_disk_full(line, export)
    monkeypatch.undo()

    predictions = tmp_path / "p.csv"
    images = checkpoint.parents[1] / "data" / "val"
    args = ["predict", checkpoint, images, "--output", predictions, "--no-progress"]
    assert cli(capsys, *args)[0] == 0
    kept = predictions.read_bytes()
    monkeypatch.setattr("featdistill.tasks.classification.prediction.ClassificationWriter.write", full)
    line = one_line_error(capsys, *args)
    _assert_disk_full(line, predictions)
    assert predictions.read_bytes() == kept


# -- 10. featdistill data lists every bad file -------------------------------------------------------------
def test_data_lists_every_bad_file_and_the_files_it_leaves_out(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image_folder(tmp_path / "data", {"train": 2, "val": 2}, CLASSES, _pixels)
    for i in range(23):
        (tmp_path / "data" / "train" / CLASSES[i % 2] / f"bad{i:02d}.png").write_bytes(b"not a png")
    (tmp_path / "data" / "val" / "bee" / "broken.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "data" / "train" / "README.txt").write_text("where these images come from")
    cfg = _config(tmp_path, tmp_path / "run")
    code, out, err = cli(capsys, "data", cfg)
    # was: stopped at bad00.png, README.txt never mentioned
    assert "skipped, not in a class folder: 1 (" in out and "README.txt" in out
    train_bad = next(line for line in out.splitlines() if "undecodable" in line and "bad00" in line)
    assert "undecodable (train stops at the first: data.on_bad_file: raise): 23 (" in train_bad
    assert train_bad.count(".png") == 20 and train_bad.endswith(" and 3 more)")
    assert "broken.png" in out
    errors = [line for line in err.splitlines() if line.startswith("featdistill: error:")]
    assert code == 2 and len(errors) == 1 and "24 bad file(s), listed above" in errors[0]
    code, out, err = cli(capsys, "data", cfg, "--set", "data.on_bad_file=skip", "--json")
    assert code == 0, err
    train = json.loads(out)["splits"][0]
    assert train["skipped"]["undecodable (on_bad_file: skip)"]["count"] == 23
    assert train["skipped"]["not in a class folder"]["first"] == [
        str(tmp_path / "data" / "train" / "README.txt")
    ]
