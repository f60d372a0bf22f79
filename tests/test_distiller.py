import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import featdistill as fd
from featdistill.taps import TapError
from tiny_models import small_cnn


@pytest.fixture
def pair():
    return small_cnn(4), small_cnn(8)


def make(student, teacher, **kw):
    kw.setdefault("pairs", [("5", "5")])
    kw.setdefault("alpha", 1.0)
    return fd.Distiller(student, teacher, sample_input=torch.randn(2, 3, 8, 8), **kw)


def test_parameters_are_student_and_transforms_only(pair):
    student, teacher = pair
    d = make(student, teacher)
    ids = {id(p) for p in d.parameters()}
    expected = {id(p) for p in student.parameters()} | {id(p) for p in d.transforms.parameters()}
    assert ids == expected
    assert not any(k.startswith("teacher") for k in d.state_dict())
    assert all(not p.requires_grad for p in teacher.parameters())


def test_cwt_loss_matches_formula(pair):
    student, teacher = pair
    d = make(student, teacher, alpha=0.5).eval()
    x = torch.randn(3, 3, 8, 8)
    out = d(x)
    fs = student[:6](x)
    ft = teacher[:6](x)
    expected = 0.5 * (d.transforms[0](fs) - ft).pow(2).sum() / 3
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.student, student(x))
    assert list(out.losses) == ["cwt:5"]


def test_loss_is_linear_in_alpha_and_invariant_to_repeating_batch(pair):
    student, teacher = pair
    d1 = make(student, teacher, alpha=1e-3).eval()
    x = torch.randn(2, 3, 8, 8)
    base = d1(x).loss
    d1.balancer.set({"cwt": 3e-3})
    torch.testing.assert_close(d1(x).loss, 3 * base)
    torch.testing.assert_close(d1(torch.cat([x, x])).loss, 3 * base)


def test_gradients_reach_student_and_transform_never_teacher(pair):
    student, teacher = pair
    d = make(student, teacher)
    d(torch.randn(4, 3, 8, 8)).loss.backward()
    assert all(p.grad is not None for p in d.transforms.parameters())
    assert student[3].weight.grad is not None and student[3].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_teacher_weights_and_bn_buffers_unchanged_after_step(pair):
    student, teacher = pair
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    d = make(student, teacher).train()
    assert not teacher.training
    opt = torch.optim.SGD(d.parameters(), lr=0.1)
    out = d(torch.randn(4, 3, 8, 8))
    (F.cross_entropy(out.student, torch.tensor([0, 1, 2, 3])) + out.loss).backward()
    opt.step()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_teacher_stops_after_last_tapped_layer(pair):
    student, teacher = pair
    calls = []
    teacher[8].register_forward_hook(lambda *a: calls.append("fc"))
    d = make(student, teacher)
    d(torch.randn(2, 3, 8, 8))
    assert calls == []


def test_mixed_methods_with_alpha_per_method(pair):
    student, teacher = pair
    d = make(student, teacher, pairs=[("8", "8", "kd"), ("5", "5", "cwt")], alpha={"kd": 1.0, "cwt": 1e-2})
    out = d(torch.randn(2, 3, 8, 8))
    assert set(out.losses) == {"kd:8", "cwt:5"}
    torch.testing.assert_close(out.loss, out.losses["kd:8"] + out.losses["cwt:5"])
    with pytest.raises(ValueError, match=r"no entry for method\(s\) \['cwt'\]"):
        make(student, teacher, pairs=[("8", "8", "kd"), ("5", "5")], alpha={"kd": 1.0})


@pytest.mark.parametrize("method", ["cwt", "cwt_linear", "fitnets", "at", "cwd", "mgd"])
def test_every_feature_method_trains(pair, method):
    student, teacher = pair
    d = make(student, teacher, method=method, alpha=None)
    out = d(torch.randn(2, 3, 8, 8))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.loss > 0
    assert student[0].weight.grad is not None


def test_spatial_mismatch_is_resized(pair):
    student, teacher = pair
    d = make(student, teacher, pairs=[("2", "5")])  # 8x8 student map vs 4x4 teacher map
    assert d(torch.randn(2, 3, 8, 8)).loss > 0


def test_rank_mismatch_and_unalignable_errors(pair):
    student, teacher = pair
    with pytest.raises(ValueError, match="different ranks"):
        make(student, teacher, pairs=[("5", "8")])
    with pytest.raises(ValueError, match="without a channel transform"):
        make(student, teacher, pairs=[("5", "5", "l2")])
    with pytest.raises(ValueError, match="unknown distillation method 'cwtt'"):
        make(student, teacher, method="cwtt")
    with pytest.raises(ValueError, match="sample_input is required"):
        fd.Distiller(student, teacher, pairs=[("5", "5")])


def test_unknown_layer_error_suggests(pair):
    with pytest.raises(TapError, match=r"unknown layer '55'.*did you mean '5'"):
        make(*pair, pairs=[("5", "55")])


def test_export_is_plain_student_without_hooks(pair):
    student, teacher = pair
    d = make(student, teacher).eval()
    x = torch.randn(2, 3, 8, 8)
    out = d(x)
    plain = d.export()
    assert plain is student
    assert all(not m._forward_hooks for m in plain.modules())
    torch.testing.assert_close(plain(x), out.student)
    assert set(plain.state_dict()) == set(small_cnn(4).state_dict())


def test_teacher_forward_hook_gets_student_arguments(pair):
    student, teacher = pair

    class WithTargets(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, targets):
            return F.cross_entropy(self.net(x), targets)

    d = fd.Distiller(
        WithTargets(student),
        teacher,
        pairs=[("net.5", "5")],
        alpha=1.0,
        sample_input=(torch.randn(2, 3, 8, 8), torch.tensor([0, 1])),
        teacher_forward=lambda t, x, targets: t(x),
    )
    out = d(torch.randn(2, 3, 8, 8), torch.tensor([1, 0]))
    assert out.student.dim() == 0 and out.loss > 0


def test_auto_pairs_torchvision_resnet34_to_resnet18(capsys):
    student, teacher = torchvision.models.resnet18(), torchvision.models.resnet34()
    d = fd.Distiller(student, teacher, pairs="auto", sample_input=torch.randn(1, 3, 64, 64))
    assert [(p.student, p.teacher) for p in d.pairs] == [
        ("relu", "relu"),
        ("layer1", "layer1"),
        ("layer2", "layer2"),
        ("layer3", "layer3"),
        ("layer4", "layer4"),
    ]
    assert "pairs='auto' chose relu->relu, layer1->layer1" in capsys.readouterr().out


def test_teacher_runs_in_lower_precision(pair):
    student, teacher = pair
    d = make(student, teacher, teacher_dtype=torch.bfloat16)
    out = d(torch.randn(2, 3, 8, 8))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_loss_is_float32_and_finite_under_float16_autocast(pair):
    """A sum of squares over whole maps overflows float16 (max 65504): the loss must be summed in float32."""
    student, teacher = pair
    with torch.no_grad():
        teacher[3].weight.mul_(500)  # the squared sum of the teacher map is then far beyond 65504
    d = make(student, teacher).eval()
    x = torch.randn(4, 3, 8, 8)
    reference = d(x).loss
    with torch.autocast("cpu", dtype=torch.float16):
        low = d(x).loss
    assert reference > 1e5 and low.dtype == torch.float32 and torch.isfinite(low)
    torch.testing.assert_close(low, reference, rtol=1e-2, atol=0)
