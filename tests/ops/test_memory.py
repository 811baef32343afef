"""prims.copy_strided and aten.put on LC tensors (torchlc.ops.memory) against torch.func.jvp (float64)."""

import torch
from torch.func import jvp
from torch.testing import assert_close

import torchlc

f64 = torch.float64


def test_copy_strided_copies_every_term_with_the_requested_strides():
    x = torch.randn(3, 4, dtype=f64).nonstd(torch.randn(3, 4, dtype=f64)).mT  # (4, 3), strides (1, 4)
    y = torch.ops.prims.copy_strided(x, (1, 4))
    assert y.stride() == (1, 4) and not y.lc_view
    assert_close(torchlc.coeffs(y), torchlc.coeffs(x))
    z = torch.ops.prims.copy_strided(x, (3, 1))
    assert z.stride() == (3, 1)
    assert_close(torchlc.coeffs(z), torchlc.coeffs(x))


def test_lerp_of_non_contiguous_inputs_matches_jvp():  # torch's lerp reference calls copy_strided
    g = torch.Generator().manual_seed(0)
    a, b, va, vb = (torch.randn(4, 3, dtype=f64, generator=g).mT for _ in range(4))
    w = torch.rand(3, 4, dtype=f64, generator=g)
    y = torch.lerp(a.nonstd(va), b.nonstd(vb), w)
    p, t = jvp(lambda a, b: torch.lerp(a, b, w), (a, b), (va, vb))
    assert_close(torchlc.coeff(y, 0), p)
    assert_close(torchlc.coeff(y, 1), t)


def test_put_is_linear_in_self_and_source():
    g = torch.Generator().manual_seed(1)
    x, vx = torch.randn(3, 4, dtype=f64, generator=g), torch.randn(3, 4, dtype=f64, generator=g)
    s, vs = torch.randn(5, dtype=f64, generator=g), torch.randn(5, dtype=f64, generator=g)
    idx = torch.tensor([0, 11, 5, 5, 2])
    for acc in (False, True):
        def f(x, s, acc=acc):
            return torch.put(x, idx, s, accumulate=acc)

        y = f(x.nonstd(vx), s.nonstd(vs))
        p, t = jvp(f, (x, s), (vx, vs))
        assert_close(torchlc.coeff(y, 0), p)
        assert_close(torchlc.coeff(y, 1), t)
    # a plain source into an LC tensor, and terms of different supports
    y = torch.put(torchlc.from_terms({"1/2": x}), idx, s)
    assert [str(q) for q in torchlc.support(y)] == ["0", "1/2"]
    assert torch.equal(torchlc.coeff(y, 0).flatten()[[0, 11, 2]], s[[0, 1, 4]])
    assert torch.equal(torchlc.coeff(y, "1/2").flatten()[[0, 11, 2]], torch.zeros(3, dtype=f64))
