"""The lean training step through the trainer: the teacher stops early, runs without grad, in a lower dtype,
channels_last; the student compiles once and is not recompiled by the per-step tap hooks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from conftest import tiny_tree
from featdistill.config import parse_config
from featdistill.run import build_trainer


def _trainer(tmp_path: Path, teacher_dtype: str | None = None, **train: object):
    tree = tiny_tree(
        tmp_path / "run",
        drop=["train.epochs"],
        data={"limit": 32, "val_limit": 8},
        model={"teacher": "resnet14", "num_classes": 10},
        distill={"pairs": [["layer2", "layer2"]], "teacher_dtype": teacher_dtype},
        train=train,
    )
    cfg = parse_config(tree)
    cfg.data.batch_size = 8
    return build_trainer(cfg)


def _batches(trainer, count: int) -> list:
    trainer.train_loader.set_epoch(0)
    return list(trainer.train_loader.iterate())[:count]


def test_teacher_is_lean_in_a_trainer_step(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, teacher_dtype="bfloat16", channels_last=True)
    teacher = trainer.core.teacher
    seen: dict[str, list] = {"layer3": [], "fc": [], "layer2": []}
    for name, log in seen.items():
        teacher.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, log=log: log.append((torch.is_grad_enabled(), out.dtype))
        )
    trainer.model.train()
    terms = trainer.train_step(_batches(trainer, 1)[0])
    assert seen["layer3"] == seen["fc"] == []  # stopped right after the tapped layer2
    assert seen["layer2"] == [(False, torch.bfloat16)]  # no grad, bf16 under autocast
    assert not teacher.training and all(p.grad is None for p in teacher.parameters())
    assert teacher.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(terms["loss"]) and terms["loss"].dtype == torch.float32


def test_compiled_student_keeps_checkpoint_keys_and_teacher_stays_eager(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, compile=True)
    assert trainer.core.student._compiled_call_impl is not None
    assert trainer.core.teacher._compiled_call_impl is None
    assert "_orig_mod" not in "".join(trainer.state()["student"])
    eager = _trainer(tmp_path / "eager")
    assert list(trainer.state()["student"]) == list(eager.state()["student"])


INDUCTOR = pytest.param(
    "inductor",
    marks=pytest.mark.skipif(
        not os.environ.get("FEATDISTILL_TEST_INDUCTOR"),
        reason="inductor's C++ code generation takes about a minute per graph on 2 CPU cores; "
        "set FEATDISTILL_TEST_INDUCTOR=1 to run it",
    ),
)


@pytest.mark.parametrize("backend", ["aot_eager", INDUCTOR])
def test_tap_hooks_do_not_recompile_the_student(tmp_path: Path, backend: str) -> None:
    # The taps register fresh hooks on the student every step. Dynamo traces them into the student's graph
    # (guarding on the hook's code, not its identity), so the student compiles once for training and once
    # for evaluation (no hooks, no grad), never again per step. "aot_eager" runs the same dynamo tracing
    # and guards as the default inductor backend, without inductor's code generation.
    torch._dynamo.reset()
    counters.clear()
    compiled, eager = _trainer(tmp_path / "c"), _trainer(tmp_path / "e")
    compiled.core.student.compile(backend=backend)
    batches = _batches(compiled, 4)
    compiled.model.train()
    eager.model.train()
    graphs = []
    for step, batch in enumerate(batches):
        if step == 2:
            compiled.evaluate()
            eager.evaluate()
        a, b = compiled.train_step(batch), eager.train_step(batch)
        torch.testing.assert_close(a["loss"], b["loss"], rtol=1e-4, atol=1e-5)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs == [1, 1, 2, 2]  # one training graph; evaluation added one; no per-step recompiles
