import pytest
import torch
from torch import nn

from featdistill.transforms import ChannelWiseTransform, FitNetsRegressor, Identity, MGDGenerator


def test_cwt_is_conv_relu_conv_with_teacher_hidden_width():
    t = ChannelWiseTransform(16, 32)
    kinds = [type(m) for m in t.layers]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.Conv2d]
    assert t.layers[0].out_channels == 32 and t.layers[0].kernel_size == (1, 1)
    assert t(torch.randn(2, 16, 5, 7)).shape == (2, 32, 5, 7)
    assert ChannelWiseTransform(16, 32, hidden_channels=8).layers[0].out_channels == 8


def test_cwt_has_no_spatial_mixing():
    t = ChannelWiseTransform(3, 4).eval()
    x = torch.randn(1, 3, 6, 6)
    y = t(x)
    x2 = x.clone()
    x2[..., 0, 0] += 5.0
    changed = (t(x2) - y).abs().sum(dim=1)[0] > 0
    assert changed[0, 0] and changed.sum() == 1


def test_cwt_tokens_use_linear_layers():
    t = ChannelWiseTransform(8, 12, feature_dim=3)
    assert isinstance(t.layers[0], nn.Linear)
    assert t(torch.randn(2, 5, 8)).shape == (2, 5, 12)


def test_linear_ablation_is_one_layer():
    t = ChannelWiseTransform(8, 12, nonlinear=False)
    assert len(t.layers) == 1
    assert t(torch.randn(2, 8, 3, 3)).shape == (2, 12, 3, 3)


def test_spatial_mismatch_resizes_transformed_map_bilinearly():
    t = ChannelWiseTransform(4, 6)
    x = torch.randn(2, 4, 7, 7)
    y = t(x, size=(14, 14))
    assert y.shape == (2, 6, 14, 14)
    expected = nn.functional.interpolate(t(x), size=(14, 14), mode="bilinear", align_corners=False)
    torch.testing.assert_close(y, expected)


def test_baseline_connectors_shapes():
    assert FitNetsRegressor(4, 8)(torch.randn(2, 4, 3, 3)).shape == (2, 8, 3, 3)
    gen = MGDGenerator(4, 8, mask_ratio=0.5)
    assert gen(torch.randn(2, 4, 6, 6)).shape == (2, 8, 6, 6)
    assert isinstance(MGDGenerator(8, 8).align, nn.Identity)
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(Identity()(x), x)
    with pytest.raises(ValueError, match="mask_ratio"):
        MGDGenerator(4, 4, mask_ratio=1.0)


def test_mgd_masks_only_in_training():
    gen = MGDGenerator(2, 2, mask_ratio=0.9).eval()
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(gen(x), gen(x))
    gen.train()
    torch.manual_seed(1)
    a = gen(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, gen(x))
