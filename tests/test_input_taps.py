"""Taps on a module's input (``name@input``): parsing, capture, early stop, in-place check, every method."""

import pytest
import torch
from torch import nn

import featdistill as fd
from featdistill.distiller import METHODS
from featdistill.taps import FeatureTaps, TapError, parse_address
from tiny_models import small_cnn


class TwoInputs(nn.Module):
    def forward(self, a, b):
        return a + b


class Calls(nn.Module):
    """Calls ``block`` positionally, by keywords only, or twice."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.block = TwoInputs()
        self.mode = mode

    def forward(self, x):
        if self.mode == "positional":
            return self.block(x, 3 * x)
        if self.mode == "keywords":
            return self.block(a=x, b=2 * x)
        return self.block(self.block(x, x), x)


def test_parse_input_address_with_selectors():
    parsed = parse_address("block@input[1]")
    assert (parsed.module, parsed.on_input, parsed.keys) == ("block", True, ("1",))
    assert str(parsed) == "block@input[1]"
    assert not parse_address("block[1]").on_input
    with pytest.raises(ValueError, match="'@input'"):
        parse_address("block@inputs")


def test_input_tap_reads_what_the_module_receives_and_stops_before_it():
    model = small_cnn().eval()
    ran = []
    model[8].register_forward_hook(lambda *a: ran.append("fc"))
    taps = FeatureTaps(model, ["8@input", "5@input", "4"])
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), taps.capture(stop_early=True) as features:
        model(x)
    assert ran == []  # the classifier never ran: reading its input is enough
    torch.testing.assert_close(features["8@input"], model[:8](x))
    torch.testing.assert_close(features["5@input"], features["4"])


def test_input_and_output_of_one_module_and_positional_selectors():
    model, x = Calls("positional"), torch.randn(2, 3)
    with FeatureTaps(model, ["block@input[1]", "block@input[0]", "block"]).capture() as features:
        model(x)
    torch.testing.assert_close(features["block@input[0]"], x)
    torch.testing.assert_close(features["block@input[1]"], 3 * x)
    torch.testing.assert_close(features["block"], 4 * x)


def test_keyword_only_call_is_read_by_name_and_double_call_is_refused():
    x = torch.randn(2, 3)
    taps = FeatureTaps(model := Calls("keywords"), ["block@input[b]"])
    with taps.capture() as features:
        model(x)
    torch.testing.assert_close(features["block@input[b]"], 2 * x)
    twice = Calls("twice")
    taps = FeatureTaps(twice, ["block@input[0]"])
    with pytest.raises(TapError, match=r"'block@input' ran 2 times"), taps.capture():
        twice(x)


def test_input_overwritten_by_an_inplace_module_is_an_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(inplace=True))
    taps = FeatureTaps(model, ["1@input"])
    with pytest.raises(TapError, match=r"the input of model layer '1@input' was modified"), taps.capture():
        model(torch.randn(2, 3, 4, 4))


def test_input_tap_not_reached_names_the_side():
    model = small_cnn()
    model[0].add_module("unused", nn.Identity())  # a submodule that Conv2d.forward never calls
    taps = FeatureTaps(model, ["0.unused@input"])
    with pytest.raises(TapError, match=r"\['0.unused@input'\] did not run"), taps.capture():
        model(torch.randn(2, 3, 8, 8))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_distils_an_input_tap_like_the_output_that_feeds_it(method):
    """``5@input`` (the ReLU's pre-activation) is the output of BatchNorm ``4``: the loss must be the same."""
    address = "8@input" if method == "kd" else "5@input"
    feeder = "7" if method == "kd" else "4"
    x = torch.randn(2, 3, 8, 8)
    losses = []
    for tap in (address, feeder):
        torch.manual_seed(0)
        student, teacher = small_cnn(), small_cnn()
        d = fd.Distiller(student, teacher, pairs=[(tap, tap)], method=method, alpha=1.0, sample_input=x[:1])
        torch.manual_seed(1)
        out = d(x)
        out.loss.backward()
        assert student[0].weight.grad is not None
        losses.append(out.loss)
    assert losses[0] > 0
    torch.testing.assert_close(losses[0], losses[1])
