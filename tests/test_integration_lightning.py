"""The Lightning integration: DDP on CPU (2 Gloo processes), bf16-mixed, resume, no teacher in checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lightning")

import lightning.pytorch as L

from doc_blocks import python_block
from featdistill.integrations.lightning import DistillationModule
from tiny_models import loader, tiny_cnn

PAGE = "docs/integrations.md"  # its example is run as written here

DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.nn.functional as F
    import lightning.pytorch as L
    from featdistill.integrations.lightning import DistillationModule
    from tiny_models import loader, tiny_cnn

    if __name__ == "__main__":
        out = sys.argv[1]
        torch.manual_seed(0)
        module = DistillationModule(
            tiny_cnn(4), tiny_cnn(8), lambda output, batch: F.cross_entropy(output, batch[1]),
            pairs=[("relu", "relu")], alpha="auto", sample_input=torch.randn(2, 3, 8, 8),
            optimizer=lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9), verbose=False,
        )
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", precision="bf16-mixed", max_steps=3,
                            logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(module, loader(n=32, batch_size=4))
        trainer.save_checkpoint(os.path.join(out, "last.ckpt"))
        rank = trainer.global_rank
        parameters = {name: p.detach() for name, p in module.export().named_parameters()}
        torch.save(parameters, os.path.join(out, f"student{rank}.pt"))
        with open(os.path.join(out, f"alpha{rank}.json"), "w") as f:
            json.dump(dict(module.distiller.alpha), f)
    """
)


def _cross_entropy(output: torch.Tensor, batch) -> torch.Tensor:
    return F.cross_entropy(output, batch[1])


def _module(alpha="auto", **kwargs) -> DistillationModule:
    torch.manual_seed(0)
    return DistillationModule(
        tiny_cnn(4),
        tiny_cnn(8),
        _cross_entropy,
        pairs=[("relu", "relu")],
        alpha=alpha,
        sample_input=torch.randn(2, 3, 8, 8),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        verbose=False,
        **kwargs,
    )


def _trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    options = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **options,
        **kwargs,
    )


def _teacher_free(checkpoint: dict, teacher: torch.nn.Module) -> None:
    keys = checkpoint["state_dict"].keys()
    assert all(k.startswith(("distiller.student.", "distiller.transforms.")) for k in keys), sorted(keys)
    teacher_tensors = [p for p in teacher.state_dict().values() if p.numel() > 1]
    for value in checkpoint["state_dict"].values():
        assert not any(value.shape == t.shape and torch.equal(value, t) for t in teacher_tensors)


@pytest.mark.slow
def test_two_gloo_processes_in_bf16_agree_on_alpha_and_save_no_teacher(tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    # Each rank calibrated on its own share of the data; the averaged measurement gives all the same α.
    alphas = [json.loads((tmp_path / f"alpha{r}.json").read_text()) for r in (0, 1)]
    assert alphas[0] == alphas[1] and alphas[0]["cwt"] > 0
    # DDP averaged the gradients: both ranks end with the same weights (BatchNorm statistics are per rank).
    students = [torch.load(tmp_path / f"student{r}.pt") for r in (0, 1)]
    for key, value in students[0].items():
        torch.testing.assert_close(students[1][key], value, rtol=0, atol=0)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert checkpoint["featdistill"]["balancer"]["alpha"] == alphas[0]
    torch.manual_seed(0)
    tiny_cnn(4)
    _teacher_free(checkpoint, tiny_cnn(8))  # the same teacher weights as the script built


def test_bf16_mixed_runs_the_student_in_bfloat16(tmp_path: Path) -> None:
    dtypes = []

    def recording_loss(output, batch):
        dtypes.append(output.dtype)
        return F.cross_entropy(output.float(), batch[1])

    module = _module(alpha=1e-3)
    module.task_loss = recording_loss
    before = [p.detach().clone() for p in module.student.parameters()]
    _trainer(tmp_path, max_steps=2, precision="bf16-mixed").fit(module, loader())
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in module.distiller.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, module.student.parameters()))
    assert not module.teacher.training and not any(p.requires_grad for p in module.teacher.parameters())


def test_resuming_from_the_checkpoint_reaches_the_uninterrupted_weights(tmp_path: Path) -> None:
    # 24 samples, batch 4: 6 steps an epoch; stop after one epoch, resume to two (momentum, BN, auto α).
    uninterrupted = _module()
    _trainer(tmp_path, max_epochs=2).fit(uninterrupted, loader())

    first = _module()
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(first, loader())
    trainer.save_checkpoint(tmp_path / "epoch1.ckpt")
    checkpoint = torch.load(tmp_path / "epoch1.ckpt", weights_only=False)
    _teacher_free(checkpoint, first.teacher)
    assert checkpoint["featdistill"]["balancer"] == uninterrupted.distiller.balancer.state_dict()

    resumed = _module()  # a fresh module: its α comes from the checkpoint, not from a new calibration
    _trainer(tmp_path, max_epochs=2).fit(resumed, loader(), ckpt_path=tmp_path / "epoch1.ckpt")
    assert resumed.distiller.balancer.state_dict() == uninterrupted.distiller.balancer.state_dict()
    expected = uninterrupted.distiller.state_dict()
    for key, value in resumed.distiller.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-6, atol=1e-7, msg=key)
    exported = resumed.export()
    assert exported is resumed.student and all(not m._forward_hooks for m in exported.modules())


def test_a_checkpoint_that_kept_alpha_alone_is_restored() -> None:
    module = _module()  # alpha "auto": a resume must not leave it uncalibrated
    module.on_load_checkpoint({"featdistill": {"alpha": {"cwt": 0.25}}})  # before the balancer's state
    assert module.distiller.alpha == {"cwt": 0.25} and module.distiller.balancer.uncalibrated == []
    assert module.distiller.balancer.chosen() == {"cwt": 0.25}


def test_configure_optimizers_covers_student_and_transforms_only() -> None:
    module = _module(alpha=1e-3)
    optimizer = module.configure_optimizers()
    given = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert given == {id(p) for p in module.student.parameters()} | {
        id(p) for p in module.distiller.transforms.parameters()
    }
    assert not given & {id(p) for p in module.teacher.parameters()}


def test_wrong_arguments_are_refused_clearly() -> None:
    common = dict(pairs=[("relu", "relu")], sample_input=torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="optimizer is required"):
        DistillationModule(tiny_cnn(4), tiny_cnn(8), _cross_entropy, **common)
    sgd = torch.optim.SGD(tiny_cnn(4).parameters(), lr=0.1)
    with pytest.raises(TypeError, match="optimizer must be a function of the parameters"):
        DistillationModule(tiny_cnn(4), tiny_cnn(8), _cross_entropy, optimizer=sgd, **common)
    with pytest.raises(TypeError, match="task_loss must be a function"):
        DistillationModule(tiny_cnn(4), tiny_cnn(8), "cross_entropy", optimizer=torch.optim.SGD, **common)


def test_without_lightning_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "featdistill.integrations.lightning")
    with pytest.raises(ImportError, match=r"pip install 'featdistill\[lightning\]'"):
        import featdistill.integrations.lightning  # noqa: F401


def test_the_docs_lightning_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # Lightning writes lightning_logs/ into the working directory
    namespace: dict = {}
    exec(compile(python_block(PAGE, "DistillationModule"), PAGE, "exec"), namespace)
    assert namespace["module"].trainer.global_step == 2
    assert namespace["module"].distiller.alpha["cwt"] > 0
    student = namespace["student"]
    assert type(student).__name__ == "ResNet" and all(not m._forward_hooks for m in student.modules())
