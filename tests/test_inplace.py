"""In-place updates: fresh results may grow their support; views write through to their base."""

import pytest
import torch

import torchlc


def test_inplace_on_fresh_results_may_widen_the_support():
    x = torch.tensor([1.5, 2.5]).nonstd()
    h = torch.floor(x)  # real-valued result (support {0})
    h += x
    assert torchlc.coeff(h, 0).tolist() == [2.5, 4.5] and torchlc.coeff(h, 1).tolist() == [1.0, 1.0]
    z = torch.sign(x)
    z.mul_(x)
    assert torchlc.coeff(z, 1).tolist() == [1.0, 1.0]


def test_writes_through_views_reach_the_base():
    x = torch.tensor([1.5, 2.5]).nonstd()
    b = torch.zeros(3, 2).nonstd()
    b[0] = x * 3
    b[1:, 0].add_(1.0)
    assert torchlc.coeff(b, 0).tolist() == [[4.5, 7.5], [1.0, 0.0], [1.0, 0.0]]
    assert torchlc.coeff(b, 1).tolist() == [[3.0, 3.0], [1.0, 1.0], [1.0, 1.0]]


def test_a_view_cannot_grow_its_support():
    e = torch.zeros(2).nonstd()
    with pytest.raises(RuntimeError, match="view"):
        e[0] = 1 / torchlc.eps()
    assert torchlc.support(e) == (0, 1)
