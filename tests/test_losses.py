import math

import torch

from featdistill.losses import (
    attention_transfer,
    channel_wise_divergence,
    kd_divergence,
    mean_squared_error,
    squared_error_per_sample,
)


def test_squared_error_per_sample_by_hand():
    s = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 0.0]]]])  # (2, 1, 1, 2)
    t = torch.tensor([[[[0.0, 0.0]]], [[[3.0, 1.0]]]])
    # (1 + 4) + (9 + 1) = 15, over N = 2
    assert squared_error_per_sample(s, t).item() == 7.5


def test_mse_by_hand():
    assert mean_squared_error(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])).item() == 5.0


def test_kd_by_hand():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # softmax(t / 1) = (0.75, 0.25)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert math.isclose(kd_divergence(s, t, tau=1.0).item(), expected, rel_tol=1e-5)
    # τ² scaling: with τ = 2 the teacher distribution is softmax(t / 2)
    p = torch.softmax(t / 2, dim=1)[0]
    expected2 = 4 * sum(pi * math.log(pi / 0.5) for pi in p.tolist())
    assert math.isclose(kd_divergence(s, t, tau=2.0).item(), expected2, rel_tol=1e-5)


def test_attention_transfer_by_hand():
    s = torch.zeros(1, 2, 1, 2)
    s[0, :, 0, 0] = 1.0  # attention (1, 0)
    t = torch.zeros(1, 1, 1, 2)
    t[0, 0, 0, 1] = 2.0  # attention (0, 1)
    # normalised maps (1, 0) and (0, 1): mean of squared differences = (1 + 1) / 2
    assert attention_transfer(s, t).item() == 1.0
    assert attention_transfer(t, t).item() == 0.0


def test_cwd_by_hand():
    s = torch.zeros(1, 1, 1, 2)  # uniform (0.5, 0.5)
    t = torch.tensor([[[[math.log(3.0), 0.0]]]])  # (0.75, 0.25) at τ = 1
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert math.isclose(channel_wise_divergence(s, t, tau=1.0).item(), expected, rel_tol=1e-5)
    # two identical channels and a batch of two: τ²/(C·N) keeps the per-channel mean
    s2, t2 = s.repeat(2, 2, 1, 1), t.repeat(2, 2, 1, 1)
    assert math.isclose(channel_wise_divergence(s2, t2, tau=1.0).item(), expected, rel_tol=1e-5)


def _kl_by_hand(p_logits: list[float], q_logits: list[float], tau: float) -> float:
    """KL(softmax(p/τ) ‖ softmax(q/τ)) · τ² with Python floats."""
    p_exp = [math.exp(v / tau) for v in p_logits]
    q_exp = [math.exp(v / tau) for v in q_logits]
    p = [v / sum(p_exp) for v in p_exp]
    q = [v / sum(q_exp) for v in q_exp]
    return tau**2 * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_kd_on_dense_maps_is_per_pixel_over_the_class_dim():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 3, 4, generator=g), torch.randn(2, 5, 3, 4, generator=g)  # (N, K, H, W)
    per_pixel = [
        _kl_by_hand(t[n, :, h, w].tolist(), s[n, :, h, w].tolist(), tau=2.0)
        for n in range(2)
        for h in range(3)
        for w in range(4)
    ]
    expected = sum(per_pixel) / len(per_pixel)
    assert math.isclose(kd_divergence(s, t, tau=2.0).item(), expected, rel_tol=1e-5)


def test_kd_on_tokens_is_per_token_over_the_last_dim():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 3, 6, generator=g), torch.randn(2, 3, 6, generator=g)  # (N, T, K)
    per_token = [_kl_by_hand(t[n, i].tolist(), s[n, i].tolist(), tau=4.0) for n in range(2) for i in range(3)]
    expected = sum(per_token) / len(per_token)
    assert math.isclose(kd_divergence(s, t, tau=4.0).item(), expected, rel_tol=1e-5)
