"""Values do not depend on the input's memory format.

Property over elementwise rules (analytic series, products, quotients, decisions, pooling, norms) at
orders 1 and 2: a channels-last or otherwise permuted-dense input gives the planes a contiguous one
gives, bit for bit. Result planes take the input's memory order (``kernels.alloc.empty(like=...)``):
with a mixed order TensorIterator runs its element-by-element loop, whose roundings can differ from
the vectorised one (second-order sigmoid differed in 4,245 of 51,200 coefficients). Excluded: ops
whose torch kernels themselves differ by memory format (``F.gelu``: torch's channels-last gelu rounds
differently)."""

import pytest
import torch
import torch.nn.functional as F

import torchlc

_BN_W = torch.randn(8, generator=torch.Generator().manual_seed(1))

CATALOGUE = {
    "exp": torch.exp, "sin": torch.sin, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "silu": F.silu,
    "relu": torch.relu, "relu_": lambda t: torch.relu_(t.clone()), "abs": torch.abs, "floor": torch.floor,
    "clamp": lambda t: t.clamp(-0.5, 0.5), "where": lambda t: torch.where(t > 0, t, -t),
    "heaviside": lambda t: torch.heaviside(t, torch.tensor(0.5, dtype=t.dtype)),
    "x*x": lambda t: t * t, "x*sin(x)": lambda t: t * torch.sin(t), "x/(1+x*x)": lambda t: t / (1 + t * t),
    "rsqrt": lambda t: torch.rsqrt(t * t + 1), "x**3": lambda t: t ** 3, "softmax": lambda t: torch.softmax(t, 1),
    "max_pool": lambda t: F.max_pool2d(t, 2),
    "batch_norm": lambda t: F.batch_norm(t, torch.zeros(8, dtype=t.dtype), torch.ones(8, dtype=t.dtype),
                                         _BN_W.to(t.dtype), None, False),
}


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("name", list(CATALOGUE))
def test_values_do_not_depend_on_the_memory_format(name, order):
    f = CATALOGUE[name]
    g = torch.Generator().manual_seed(order)
    x, v = (torch.randn(4, 8, 12, 12, generator=g, dtype=torch.float64) for _ in range(2))
    x[:, :, :3] = torch.round(x[:, :, :3])  # ties for the decisions
    v[:, :, :2] = 0
    with torch.no_grad():
        want = f(x.nonstd(v, order=order))
        for t, w in ((x.contiguous(memory_format=torch.channels_last), v.contiguous(memory_format=torch.channels_last)),
                     (x.transpose(2, 3).contiguous().transpose(2, 3), v.transpose(2, 3).contiguous().transpose(2, 3))):
            got = f(t.nonstd(w, order=order))
            assert torchlc.support(got) == torchlc.support(want)
            a, b = torchlc.coeffs(got), torchlc.coeffs(want)
            assert torch.equal(a.view(torch.int64), b.view(torch.int64)), f"{int((a != b).sum())} coefficients differ"
