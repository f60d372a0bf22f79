"""Several teachers in one Distiller: the loss is the sum of each teacher's term alone, each runs on its own."""

import pytest
import torch
from torch import nn

import featdistill as fd
from featdistill.distiller import SharedTeacher
from tiny_models import small_cnn


class Mixer(nn.Module):
    """A teacher of another family: patch embedding and token MLP, features (B, C, H, W) and logits."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 12, 2, stride=2)
        self.mix = nn.Sequential(nn.Conv2d(12, 12, 1), nn.GELU())
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        return self.head(self.mix(self.embed(x)).mean(dim=(2, 3)))


PAIRS = [("5", "cnn:5"), ("5", "mixer:mix"), ("8", "mixer:head", "kd")]
X = torch.randn(3, 3, 8, 8)


@pytest.fixture
def models():
    torch.manual_seed(0)
    return small_cnn(4).eval(), small_cnn(8), Mixer()


def make(student, cnn, mixer, **kw):
    kw.setdefault("pairs", PAIRS)
    kw.setdefault("alpha", {"cwt": 0.5, "kd": 2.0})
    return fd.Distiller(student, teachers={"cnn": cnn, "mixer": mixer}, sample_input=X[:2], **kw)


def alone(student, teacher, pairs, alpha, source):
    """The same pairs distilled from one teacher, with ``source``'s transforms copied in."""
    d = fd.Distiller(student, teacher, pairs=pairs, alpha=alpha, sample_input=X[:2])
    for index, pair in enumerate(d.pairs):
        match = next(i for i, p in enumerate(source.pairs) if p.teacher.endswith(":" + pair.teacher))
        d.transforms[index].load_state_dict(source.transforms[match].state_dict())
    return d


def test_loss_is_the_sum_of_each_teachers_term_alone(models):
    student, cnn, mixer = models
    both = make(student, cnn, mixer, alpha={"cnn": 0.5, "mixer": {"cwt": 0.25, "kd": 2.0}})
    out = both(X)
    assert list(out.losses) == ["cwt:5->cnn:5", "cwt:5->mixer:mix", "kd:8->mixer:head"]
    assert both.alpha == {"cnn:cwt": 0.5, "mixer:cwt": 0.25, "mixer:kd": 2.0}
    cnn_alone = alone(student, cnn, [("5", "5")], 0.5, both)(X)
    mixer_alone = alone(student, mixer, [("5", "mix"), ("8", "head", "kd")], {"cwt": 0.25, "kd": 2.0}, both)(
        X
    )
    torch.testing.assert_close(out.loss, cnn_alone.loss + mixer_alone.loss)
    torch.testing.assert_close(out.losses["cwt:5->cnn:5"], cnn_alone.losses["cwt:5"])
    torch.testing.assert_close(out.losses["kd:8->mixer:head"], mixer_alone.losses["kd:8->head"])
    torch.testing.assert_close(out.student, student(X))


def test_export_is_the_plain_student_and_teachers_stay_out(models):
    student, cnn, mixer = models
    d = make(student, cnn, mixer)
    d.train()
    assert not cnn.training and not mixer.training
    assert {id(p) for p in d.parameters()} == {id(p) for p in student.parameters()} | {
        id(p) for p in d.transforms.parameters()
    }
    assert all(k.startswith(("student.", "transforms.")) for k in d.state_dict())
    assert not any(p.requires_grad for t in (cnn, mixer) for p in t.parameters())
    d(X).loss.backward()
    assert all(p.grad is None for t in (cnn, mixer) for p in t.parameters())
    assert d.export() is student
    assert set(d.export().state_dict()) == set(small_cnn(4).state_dict())
    assert d.teachers == {"cnn": cnn, "mixer": mixer}
    with pytest.raises(RuntimeError, match=r"several teachers \['cnn', 'mixer'\]: use d.teachers\[name\]"):
        _ = d.teacher


def test_each_teacher_stops_after_its_own_last_tap(models):
    student, cnn, mixer = models
    ran = []
    cnn[6].register_forward_hook(lambda *a: ran.append("cnn pool"))
    mixer.head.register_forward_hook(lambda *a: ran.append("mixer head"))
    make(student, cnn, mixer, pairs=[("5", "cnn:5"), ("5", "mixer:mix")], alpha=1.0)(X)
    assert ran == []


def test_teacher_forward_and_dtype_per_teacher(models):
    student, cnn, mixer = models
    d = make(
        student,
        cnn,
        mixer,
        teacher_forward={"mixer": lambda teacher, x: teacher(x.flip(-1))},
        teacher_dtype={"cnn": torch.bfloat16},
    )
    features = d.teacher_features(X)
    assert features["cnn:5"].dtype == torch.bfloat16
    torch.testing.assert_close(features["mixer:head"], mixer(X.flip(-1)))
    assert torch.isfinite(d(X).loss)
    with pytest.raises(ValueError, match=r"teacher_dtype names teacher\(s\) \['vit'\]"):
        make(student, cnn, mixer, teacher_dtype={"vit": torch.bfloat16})


def test_alpha_auto_calibrates_each_teachers_term(models):
    student, cnn, mixer = models
    d = make(student, cnn, mixer, alpha="auto", auto_ratio=3.0)
    assert d.balancer.uncalibrated == ["cnn:cwt", "mixer:cwt", "mixer:kd"]
    batches = [(X, torch.tensor([0, 1, 2]))]
    task = nn.functional.cross_entropy
    measured = d.measure_losses(batches, lambda out, b: task(out, b[1]))
    chosen = d.calibrate_alpha(batches, lambda out, b: task(out, b[1]))
    assert set(chosen) == {"cnn:cwt", "mixer:cwt", "mixer:kd"}
    for key, value in chosen.items():  # each term starts at 3x the task loss, whatever its teacher's scale
        assert value * measured[key] == pytest.approx(3.0 * measured["task"])
    assert d.balancer.auto == list(chosen) and d.balancer.chosen() == chosen
    restored = make(student, cnn, mixer, alpha={"cnn": "auto", "mixer": {"cwt": "auto", "kd": "auto"}})
    restored.balancer.load_state_dict(d.balancer.state_dict())  # the keys of several teachers round-trip
    assert restored.alpha == d.alpha and restored.balancer.ratios == dict.fromkeys(chosen, 3.0)


def test_shared_teacher_serves_distillers_with_several_teachers(models):
    student, cnn, mixer = models
    first = make(student, cnn, mixer, alpha=1.0)
    second = make(small_cnn(4).eval(), cnn, mixer, pairs=[("2", "cnn:2"), ("5", "mixer:embed")], alpha=1.0)
    shared = SharedTeacher([first, second]).features(X)
    assert {"cnn:5", "cnn:2", "mixer:mix", "mixer:head", "mixer:embed"} <= set(shared)
    for d in (first, second):
        torch.testing.assert_close(d(X, teacher_features=shared).loss, d(X).loss)
    with pytest.raises(ValueError, match="same teacher module"):
        SharedTeacher([first, fd.Distiller(student, cnn, pairs=[("5", "5")], sample_input=X[:2])])


def test_auto_pairs_pair_the_student_with_each_teacher(models, capsys):
    student, cnn, mixer = models
    d = make(student, cnn, mixer, pairs="auto", alpha=1.0)
    assert {p.teacher_name for p in d.pairs} == {"cnn", "mixer"}
    assert all(p.teacher.startswith(p.teacher_name + ":") for p in d.pairs)
    assert "->cnn:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        (
            {"pairs": [("5", "5")]},
            "teacher layer '5' does not say which teacher it is in: write it as 'NAME:layer'",
        ),
        ({"pairs": [("5", "vit:5")]}, r"NAME one of \['cnn', 'mixer'\]"),
        ({"pairs": [("5", "cnn:5")]}, r"teacher 'mixer' is in teachers but no pair names it"),
        ({"alpha": {"cwt": 1.0, "kd": 1.0, "vit": 2.0}}, r"alpha has entries \['vit'\] that are neither"),
        ({"alpha": {"cnn": 1.0}}, r"alpha has no entry for \['mixer:cwt', 'mixer:kd'\]"),
        ({"pairs": [("5", "cnn:layer9"), ("5", "mixer:mix")]}, r"unknown layer 'layer9' .*teacher 'cnn'"),
    ],
)
def test_several_teachers_refusals(models, kw, error):
    with pytest.raises((ValueError, RuntimeError), match=error):
        make(*models, **kw)


def test_teacher_names_and_the_teacher_arguments(models):
    student, cnn, _ = models
    with pytest.raises(ValueError, match="not both, not none"):
        fd.Distiller(student, cnn, teachers={"cnn": cnn}, pairs=[("5", "cnn:5")], sample_input=X)
    for name in ("kd", "a:b", ""):
        with pytest.raises(ValueError, match="must be a non-empty string without ':'"):
            fd.Distiller(student, teachers={name: cnn}, pairs=[("5", f"{name}:5")], sample_input=X)
    with pytest.raises(ValueError, match="pairs is required"):
        fd.Distiller(student, cnn, sample_input=X)
