"""``torch.compile``d students passed to the Distiller: same loss as eager, a clean ``export()``.

Backends "eager" and "aot_eager" run dynamo's tracing (and, for aot_eager, functionalization) without
inductor's code generation, which keeps these tests fast on CPU.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import featdistill as fd
from featdistill.taps import FeatureTaps, TapError


class Block(nn.Module):
    """A residual block that finishes with in-place ops on its own output, as torchvision's BasicBlock."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        out += x
        return self.relu(out)


class Net(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.stage = Block(channels)
        self.head = nn.Linear(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage(self.stem(x)).mean(dim=(2, 3)))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_student_gives_the_eager_loss_and_exports_clean(backend: str) -> None:
    torch.manual_seed(0)
    student, teacher = Net(4), Net(6)
    x = torch.randn(2, 3, 8, 8)
    kwargs = {"pairs": [("stage", "stage")], "alpha": 1.0, "sample_input": x, "verbose": False}
    eager = fd.Distiller(copy.deepcopy(student), teacher, **kwargs)
    torch.manual_seed(1)  # the same transform initialisation for both
    eager.transforms = fd.Distiller(copy.deepcopy(student), teacher, **kwargs).transforms
    torch.manual_seed(1)
    compiled = fd.Distiller(torch.compile(student, backend=backend), teacher, **kwargs)
    torch.testing.assert_close(compiled(x).loss, eager(x).loss, rtol=1e-5, atol=1e-5)
    exported = compiled.export()
    assert exported is student and type(exported) is Net
    assert all(not m._forward_hooks for m in exported.modules())
    assert list(exported.state_dict()) == list(Net(4).state_dict())


def test_compiled_tap_keeps_the_value_the_layer_produced() -> None:
    # ``stage.conv``'s output is modified in place afterwards (Block's ``out += x``): eagerly that is an
    # error; compiled, the tap holds a copy taken when the layer returned.
    net = Net(4).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = net.stage.conv(net.stem(x))
        with pytest.raises(TapError, match="modified in place"), FeatureTaps(net, ["stage.conv"]).capture():
            net(x)
        compiled = torch.compile(net, backend="eager")
        with FeatureTaps(compiled, ["stage.conv"]).capture() as feats:
            compiled(x)
    torch.testing.assert_close(feats["stage.conv"], expected)
