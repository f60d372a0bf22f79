"""One run per run folder: a second process is refused naming the holder, the lock dies with its holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import tiny_tree
from featdistill.cli.main import main
from featdistill.engine import run_lock as run_lock_module
from featdistill.engine.run_lock import LOCK_NAME, RunFolderBusyError, run_lock

# The lock module alone, loaded from its file: the helper processes start in a blink, without torch.
BASE = tiny_tree(  # a student alone, two steps
    data={"limit": 16, "val_limit": 8, "batch_size": 8, "image_size": 8},
    model={"num_classes": 2},
    alone=True,
)


LOAD = textwrap.dedent(
    f"""
    import importlib.util
    spec = importlib.util.spec_from_file_location("run_lock", {run_lock_module.__file__!r})
    run_lock_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_lock_module)
    run_lock = run_lock_module.run_lock
    """
)
HOLD = LOAD + textwrap.dedent(
    """
    import sys, time
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
    """
)


def test_second_run_on_a_busy_folder_is_refused(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    cfg = tiny_config(out, base=BASE)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        stdout=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert holder.stdout.readline() == b"locked\n"
        capsys.readouterr()
        assert main(["train", str(cfg)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("featdistill: error: "), err
        assert f"{out} is in use by another featdistill run (pid {holder.pid})" in err, err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)  # the kernel releases the lock with its holder
        holder.wait()
        holder.stdout.close()
    assert main(["train", str(cfg)]) == 0
    assert {"last.pt", "metrics.json", "log.csv", "config.yaml"} <= {p.name for p in out.iterdir()}
    assert not (out / LOCK_NAME).exists()  # a finished run removes its lock file


def test_lock_in_this_process_and_what_is_left_behind(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "run"
    with run_lock(folder) as path:
        assert path == folder / LOCK_NAME and path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunFolderBusyError, match=f"pid {os.getpid()}"), run_lock(folder):
            pass
    assert not (tmp_path / "new").exists()  # created here and left empty: removed again
    folder.mkdir(parents=True)
    with run_lock(folder):
        (folder / "log.csv").touch()
    assert sorted(p.name for p in folder.iterdir()) == ["log.csv"]


def test_only_rank_zero_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with run_lock(tmp_path):
        monkeypatch.setenv("RANK", "1")
        with run_lock(tmp_path) as path:  # another rank of the same torchrun job
            assert path is None
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunFolderBusyError), run_lock(tmp_path):
            pass


def test_without_fcntl_runs_unlocked_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_lock_module, "fcntl", None)  # as on Windows
    with pytest.warns(UserWarning, match="is not locked"), run_lock(tmp_path / "run") as path:
        assert path is None
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_do_not_hold_the_lock(tmp_path: Path) -> None:
    """A DataLoader worker forked from a run must not keep the folder locked once the run is killed."""
    script = LOAD + textwrap.dedent(
        """
        import os, sys, time
        with run_lock(sys.argv[1]):
            if os.fork() == 0:  # fork hooks have run when os.fork returns
                print(os.getpid(), flush=True)
                time.sleep(120)  # a child that outlives its parent, like a worker between two checks
                os._exit(0)
            time.sleep(120)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        child = int(parent.stdout.readline())
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        parent.stdout.close()
    try:
        os.kill(child, 0)  # still alive ...
        with run_lock(tmp_path):  # ... and the folder is free all the same
            pass
    finally:
        os.kill(child, signal.SIGKILL)
