from collections import OrderedDict

import pytest
import torch
from torch import nn

from featdistill.taps import FeatureTaps, SelectorError, TapError, parse_address, trace_outputs, unwrap_model


class DictOut(nn.Module):
    def forward(self, x):
        return OrderedDict([("0", x * 2), ("pool", x.mean(dim=(2, 3), keepdim=True))])


class TupleOut(nn.Module):
    def forward(self, x):
        return x + 1, (x - 1, x * 3)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        self.fpn = DictOut()
        self.pair = TupleOut()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.body(x)
        levels = self.fpn(y)
        a, (b, c) = self.pair(levels["0"])
        return self.act(a) + b + c


def test_parse_address_splits_module_and_keys():
    assert parse_address("backbone.body[0][pool]").module == "backbone.body"
    assert parse_address("backbone.body[0]['pool']").keys == ("0", "pool")
    with pytest.raises(ValueError, match="invalid tap address"):
        parse_address("a[0")


def test_dict_and_tuple_selectors_pick_elements():
    net = Net().eval()
    x = torch.randn(2, 3, 5, 5)
    taps = FeatureTaps(net, ["fpn[0]", "fpn[pool]", "pair[1][0]", "body.0"])
    with taps.capture() as feats:
        net(x)
    y = net.body(x)
    torch.testing.assert_close(feats["fpn[0]"], y * 2)
    assert feats["fpn[pool]"].shape == (2, 4, 1, 1)
    torch.testing.assert_close(feats["pair[1][0]"], y * 2 - 1)
    assert feats["body.0"].shape == (2, 4, 5, 5)


def test_bad_selector_names_available_keys():
    net = Net().eval()
    taps = FeatureTaps(net, ["fpn[p7]"])
    with pytest.raises(SelectorError, match=r"available keys: \['0', 'pool'\]"), taps.capture():
        net(torch.randn(1, 3, 2, 2))


def test_unknown_layer_lists_closest_names():
    with pytest.raises(TapError, match=r"unknown layer 'fpnn'.*closest existing names: \['fpn'"):
        FeatureTaps(Net(), ["fpnn"])


def test_inplace_modification_after_tap_is_an_error():
    net = Net().eval()
    # ``pair[0]`` (a = x + 1) is later modified by the in-place ReLU.
    taps = FeatureTaps(net, ["pair[0]"], role="student")
    message = r"student layer 'pair\[0\]' was modified in place.*non-inplace"
    with pytest.raises(TapError, match=message), taps.capture():
        net(torch.randn(1, 3, 2, 2))


def test_hooks_removed_after_exception():
    net = Net().eval()
    taps = FeatureTaps(net, ["body.0", "fpn[0]"])
    with pytest.raises(RuntimeError, match="boom"), taps.capture():
        raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in net.modules())


def test_module_run_twice_is_ambiguous():
    relu = nn.ReLU()
    net = nn.Sequential(relu, nn.Identity(), relu)
    with pytest.raises(TapError, match="ran 2 times"), FeatureTaps(net, ["0"]).capture():
        net(torch.randn(2))


def test_stop_early_skips_later_modules():
    calls = []
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    net[2].register_forward_hook(lambda *a: calls.append("last"))
    with FeatureTaps(net, ["1"]).capture(stop_early=True) as feats:
        net(torch.randn(1, 2))
    assert feats["1"].shape == (1, 2)
    assert calls == []


def test_unwrap_compiled_and_data_parallel():
    net = nn.Linear(2, 2)
    assert unwrap_model(nn.DataParallel(net)) is net
    assert unwrap_model(torch.compile(net)) is net


def test_trace_outputs_skips_corrupted_and_repeated():
    net = Net().eval()
    names = [o.name for o in trace_outputs(net, lambda m: m(torch.randn(1, 3, 4, 4)))]
    assert "body.1" in names and "body" in names
    assert "fpn" not in names  # dict output, not a tensor
    assert "act" in names
