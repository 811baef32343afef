"""No value depends on the grad mode.

Rules compute in place into preallocated planes when autograd does not record, and with new tensors
when it does; reentrant checkpointing then recomputes under grad what it first ran without, so both
forms must give the same numbers. Property over a catalogue of rules (analytic series, products,
powers, norms, reductions, decisions, GEMMs) at orders 1 to 3, bit for bit."""

import pytest
import torch
import torch.nn.functional as F

import torchlc

_W = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
_K = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

CATALOGUE = {
    "exp": torch.exp, "expm1": torch.expm1, "sin": torch.sin, "cosh": torch.cosh, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "erf": torch.erf, "atan": torch.atan, "gelu": F.gelu, "silu": F.silu,
    "log": lambda t: torch.log(t.abs() + 0.5), "log1p": lambda t: torch.log1p(t.abs()),
    "sqrt": lambda t: torch.sqrt(t * t + 1), "rsqrt": lambda t: torch.rsqrt(t * t + 1),
    "reciprocal": lambda t: 1 / (t + 3), "div": lambda t: t / (t * t + 2), "x**3": lambda t: t ** 3,
    "x**0.5": lambda t: (t * t + 1) ** 0.5, "x**-1.5": lambda t: (t * t + 1) ** -1.5,
    "x*x": lambda t: t * t, "x*sin(x)": lambda t: t * torch.sin(t), "atan2": lambda t: torch.atan2(t, t * t + 1),
    "hypot": lambda t: torch.hypot(t, t + 1), "softmax": lambda t: torch.softmax(t, -1),
    "log_softmax": lambda t: torch.log_softmax(t, -1), "logsumexp": lambda t: t.logsumexp(-1),
    "layer_norm": lambda t: F.layer_norm(t, (6,)), "var": lambda t: t.var(-1), "norm": lambda t: t.norm(dim=-1),
    "prod": lambda t: t.prod(-1), "cumsum": lambda t: t.cumsum(-1), "mean of squares": lambda t: (t * t).mean(-1),
    "relu": torch.relu, "abs": torch.abs, "max": lambda t: t.max(-1).values, "sort": lambda t: t.sort(-1).values,
    "matmul plain": lambda t: t @ _W.to(t.dtype), "matmul LC": lambda t: t @ t.T, "bmm": lambda t: torch.bmm(t[None], t.T[None]),
    "einsum": lambda t: torch.einsum("ij,kj->ik", t, t), "conv1d": lambda t: F.conv1d(t[None], _K.to(t.dtype)),
    "conv2d": lambda t: F.conv2d(t.view(1, 2, 3, 4), _K.view(2, 2, 3, 2).to(t.dtype), padding=1),
    "group_norm": lambda t: F.group_norm(t.view(2, 4, 3), 2), "batch_norm (train)": lambda t: F.batch_norm(t, None, None, training=True),
    "rms_norm": lambda t: F.rms_norm(t, (6,)), "normalize": lambda t: F.normalize(t, dim=-1), "cumprod": lambda t: t.cumprod(-1),
    "softplus": F.softplus, "x**x": lambda t: torch.pow(t.abs() + 1, t), "cdist": lambda t: torch.cdist(t, t.flip(0)),
    "cross_entropy": lambda t: F.cross_entropy(t, torch.tensor([0, 1, 2, 3])),
    "sdpa": lambda t: F.scaled_dot_product_attention(t[None, None], t[None, None], t[None, None]),
}


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("name", list(CATALOGUE))
def test_results_do_not_depend_on_the_grad_mode(name, order):
    f = CATALOGUE[name]
    g = torch.Generator().manual_seed(order)
    x, v = (torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        off = f(x.nonstd(v, order=order))
    on = f(x.nonstd(v.clone().requires_grad_(), order=order))
    assert torchlc.support(off) == torchlc.support(on)
    a, b = torchlc.coeffs(off), torchlc.coeffs(on).detach()
    assert torch.equal(a.view(torch.int64), b.view(torch.int64)), f"{int((a != b).sum())} coefficients differ"


_GEMMS = ["matmul plain", "matmul LC", "bmm", "einsum", "x*x", "x*sin(x)", "layer_norm", "softmax", "conv1d"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", _GEMMS)
def test_half_and_single_precision_results_do_not_depend_on_the_grad_mode(name, dtype):
    """The same in float32 and bfloat16, where a GEMM accumulating into the ε¹ rows (one rounding of
    the sum in its accumulation type) and a separate add of rounded products differ: LC × LC mm/bmm
    run the accumulating GEMMs in both grad modes (bf16 `x @ x.T` differed before)."""
    f = CATALOGUE[name]
    g = torch.Generator().manual_seed(7)
    x, v = (torch.randn(4, 6, generator=g).to(dtype) for _ in range(2))
    with torch.no_grad():
        off = f(x.nonstd(v))
    on = f(x.nonstd(v.clone().requires_grad_()))
    a, b = torchlc.coeffs(off), torchlc.coeffs(on).detach()
    assert torch.equal(a.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                       b.view(torch.int16 if dtype == torch.bfloat16 else torch.int32))


def test_first_order_lc_gemms_differentiate_correctly():
    """The LC × LC GEMM paths now taken under autograd (row-stacked mm with an accumulating addmm;
    interleaved bmm with in-place steps on a fresh buffer) have the right gradients."""
    from torch.autograd import gradcheck

    g = torch.Generator().manual_seed(0)
    a0, a1 = (torch.randn(3, 4, 5, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(2))
    b0, b1 = (torch.randn(3, 5, 2, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(2))
    assert gradcheck(lambda a0, a1, b0, b1: torchlc.coeffs(torch.bmm(a0.nonstd(a1), b0.nonstd(b1))),
                     (a0, a1, b0, b1))
    assert gradcheck(lambda a0, a1, b0, b1: torchlc.coeffs(a0.nonstd(a1) @ b0.nonstd(b1)),
                     (a0[0], a1[0], b0[0], b1[0]))
