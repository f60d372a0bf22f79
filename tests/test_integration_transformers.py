"""The Hugging Face Trainer integration: a Trainer user swaps in DistillationTrainer and gets a plain student."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import transformers
from transformers import (
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

from doc_blocks import python_block
from featdistill.integrations.transformers import TRANSFORMS_FILE, DistillationTrainer

PAGE = "docs/integrations.md"  # its example is run as written here

# Trains the tiny ViT pair of these tests under torchrun; each rank writes its α and its student's weights.
DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    from test_integration_transformers import _vit_trainer

    out = Path(sys.argv[1])
    trainer = _vit_trainer(out / "run")
    trainer.train()
    trainer.save_model()
    rank = os.environ["RANK"]
    torch.save({n: p.detach() for n, p in trainer.student.named_parameters()}, out / f"student{rank}.pt")
    logged = [row["distill_loss"] for row in trainer.state.log_history if "distill_loss" in row]
    (out / f"rank{rank}.json").write_text(json.dumps({"alpha": dict(trainer.distiller.alpha), "distill": logged}))
    """
)


def _vit(hidden: int) -> ViTForImageClassification:
    config = ViTConfig(
        image_size=16,
        patch_size=4,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        num_labels=4,
    )
    return ViTForImageClassification(config)


def _dataset(n: int = 16, size: int = 16) -> list[dict]:
    """Rows as a user's dataset has them: the image, the label and a column the model does not take."""
    g = torch.Generator().manual_seed(1)
    images, labels = torch.randn(n, 3, size, size, generator=g), torch.randint(0, 4, (n,), generator=g)
    return [{"pixel_values": images[i], "labels": int(labels[i]), "image_id": i} for i in range(n)]


def _args(out: Path, **overrides) -> TrainingArguments:
    """What a Trainer user passes; nothing here is specific to distillation."""
    options = dict(
        per_device_train_batch_size=4,
        max_steps=4,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_steps=2,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return TrainingArguments(output_dir=str(out), **{**options, **overrides})


def _vit_trainer(out: Path, alpha="auto", **overrides) -> DistillationTrainer:
    torch.manual_seed(0)
    student, teacher = _vit(16), _vit(32)
    return DistillationTrainer(
        model=student,
        teacher=teacher,
        pairs=[("vit.layers.1", "vit.layers.1")],
        alpha=alpha,
        args=_args(out, **overrides),
        train_dataset=_dataset(),
        processing_class=ViTImageProcessor(size={"height": 16, "width": 16}),
    )


def test_a_trainer_user_swaps_in_distillation_trainer_and_loads_the_student(tmp_path: Path) -> None:
    out = tmp_path / "out"
    trainer = _vit_trainer(out)
    teacher_before = {k: v.clone() for k, v in trainer.distiller.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    trainer.train()
    trainer.save_model()

    # The Trainer kept the columns the student's forward takes (the Distiller's signature would keep none).
    assert "pixel_values" in trainer._signature_columns and "image_id" not in trainer._signature_columns
    distill_logs = [row["distill_loss"] for row in trainer.state.log_history if "distill_loss" in row]
    assert len(distill_logs) == 4 and all(value > 0 for value in distill_logs)
    assert trainer.distiller.alpha["cwt"] > 0  # "auto" was calibrated before the first step

    loaded = ViTForImageClassification.from_pretrained(out)
    trained = trainer.student.state_dict()
    assert set(loaded.state_dict()) == set(trained)
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(student_before[k], trained[k]) for k in trained)
    for key, value in trainer.distiller.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert (out / "preprocessor_config.json").is_file() and not (out / TRANSFORMS_FILE).exists()

    classify = transformers.pipeline("image-classification", model=str(out), device="cpu")
    from PIL import Image

    predictions = classify(Image.new("RGB", (20, 20), (120, 30, 200)))
    assert len(predictions) == 4 and {p["label"] for p in predictions} == {f"LABEL_{i}" for i in range(4)}


def test_evaluation_scores_the_student_alone(tmp_path: Path) -> None:
    trainer = _vit_trainer(tmp_path / "out", alpha=1e-3)
    metrics = trainer.evaluate(_dataset(8))
    reference = Trainer(model=trainer.student, args=_args(tmp_path / "plain")).evaluate(_dataset(8))
    assert metrics["eval_loss"] == pytest.approx(reference["eval_loss"], rel=1e-6)


def test_resuming_from_a_checkpoint_restores_the_transforms_and_alpha(tmp_path: Path) -> None:
    uninterrupted = _vit_trainer(tmp_path / "a")
    uninterrupted.train()
    assert (tmp_path / "a" / "checkpoint-2" / TRANSFORMS_FILE).is_file()

    # A fresh trainer (its transforms at their initial values, α not calibrated) resumes at step 2 of 4.
    resumed = _vit_trainer(tmp_path / "b")
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    assert resumed.distiller.balancer.state_dict() == uninterrupted.distiller.balancer.state_dict()
    expected = uninterrupted.distiller.state_dict()
    for key, value in resumed.distiller.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)

    # A checkpoint written before the balancer kept α alone in the file's metadata; it still resumes.
    from safetensors.torch import load_file, save_file

    path = tmp_path / "a" / "checkpoint-2" / TRANSFORMS_FILE
    alpha = dict(uninterrupted.distiller.alpha)
    save_file(load_file(path), path, metadata={"alpha": json.dumps(alpha)})
    old = _vit_trainer(tmp_path / "c")
    old._load_from_checkpoint(str(path.parent))
    assert old.distiller.alpha == alpha and old.distiller.balancer.uncalibrated == []


def test_gradient_accumulation_gives_the_step_of_the_whole_batch(tmp_path: Path) -> None:
    # One SGD step on 4 examples: 2 accumulated batches of 2 move the student as 1 batch of 4 does, with the
    # distillation term scaled like the Trainer's task loss (normalised over the accumulated batch here).
    students = {}
    for accumulate in (1, 2):
        trainer = _vit_trainer(
            tmp_path / str(accumulate),
            alpha=1e-2,
            max_steps=1,
            optim="sgd",
            per_device_train_batch_size=4 // accumulate,
            gradient_accumulation_steps=accumulate,
            train_sampling_strategy="sequential",
        )
        trainer.train()
        students[accumulate] = trainer.distiller.state_dict()
    for key, value in students[2].items():
        torch.testing.assert_close(value, students[1][key], rtol=1e-4, atol=1e-6, msg=key)


def test_a_timm_teacher_distils_into_a_timm_student(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    torch.manual_seed(0)
    student = TimmWrapperForImageClassification(TimmWrapperConfig(architecture="test_resnet", num_labels=4))
    teacher = timm.create_model("test_convnext", num_classes=4)  # a plain timm model: it takes images only
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        pairs=[("timm_model.layer3", "stages.2")],
        alpha=1e-3,
        args=_args(tmp_path / "out", max_steps=2, save_steps=10, label_smoothing_factor=0.1),
        train_dataset=_dataset(8, size=32),
    )
    trainer.train()
    trainer.save_model()
    assert all(row["distill_loss"] > 0 for row in trainer.state.log_history if "distill_loss" in row)
    loaded = TimmWrapperForImageClassification.from_pretrained(tmp_path / "out")
    torch.testing.assert_close(loaded.state_dict(), trainer.student.state_dict(), rtol=0, atol=0)


def test_wrong_arguments_are_refused_clearly(tmp_path: Path) -> None:
    args = _args(tmp_path / "out")
    with pytest.raises(ValueError, match="needs model=<the student>"):
        DistillationTrainer(model_init=lambda: _vit(16), teacher=_vit(32), pairs=[], args=args)
    with pytest.raises(TypeError, match=r"teacher must be a torch\.nn\.Module"):
        DistillationTrainer(model=_vit(16), teacher="google/vit-base", pairs=[], args=args)
    with pytest.raises(ValueError, match="sample_input is required"):
        DistillationTrainer(
            model=_vit(16), teacher=_vit(32), pairs=[("vit.layers.1", "vit.layers.1")], args=args
        )
    with pytest.raises(ValueError, match="activation_checkpointing"):
        DistillationTrainer(
            model=_vit(16), teacher=_vit(32), pairs=[], args=_args(tmp_path, gradient_checkpointing=True)
        )
    unnamed = [{"image": torch.randn(3, 16, 16), "labels": 0}] * 2
    with pytest.raises(ValueError, match="the training examples have no 'pixel_values' column"):
        DistillationTrainer(
            model=_vit(16),
            teacher=_vit(32),
            pairs=[("vit.layers.1", "vit.layers.1")],
            args=args,
            train_dataset=unnamed,
        )


def test_resuming_from_a_plain_trainer_checkpoint_names_the_missing_file(tmp_path: Path) -> None:
    plain = Trainer(model=_vit(16), args=_args(tmp_path / "plain", max_steps=2), train_dataset=_dataset(8))
    plain.train()
    trainer = _vit_trainer(tmp_path / "out", alpha=1e-3)
    with pytest.raises(FileNotFoundError, match=f"has no {TRANSFORMS_FILE}"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "plain" / "checkpoint-2"))


def test_without_transformers_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "featdistill.integrations.transformers", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'featdistill\[hub\]'"):
        import featdistill.integrations.transformers  # noqa: F401


def test_the_docs_trainer_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_block(PAGE, "DistillationTrainer"), PAGE, "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.state.global_step == 4 and trainer.distiller.alpha["cwt"] > 0
    loaded = ViTForImageClassification.from_pretrained(tmp_path / "runs" / "vit_distilled")
    torch.testing.assert_close(loaded.state_dict(), trainer.student.state_dict(), rtol=0, atol=0)


@pytest.mark.slow
def test_two_gloo_processes_agree_on_alpha_logs_and_weights(tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # α from the measurement averaged over both shards; distill_loss averaged over processes at each log.
    assert ranks[0] == ranks[1] and len(ranks[0]["distill"]) == 4 and ranks[0]["alpha"]["cwt"] > 0
    students = [torch.load(tmp_path / f"student{r}.pt") for r in (0, 1)]
    for key, value in students[0].items():
        torch.testing.assert_close(students[1][key], value, rtol=0, atol=0, msg=key)
    assert ViTForImageClassification.from_pretrained(tmp_path / "run") is not None
