"""First-order rules through PyTorch's own derivative kernels (gelu, silu, tanh, sigmoid, softmax, layer
norm): the ε⁰ plane is the plain op's value bit for bit, the ε¹ plane is torch.func.jvp's (bit for bit
where PyTorch's forward AD calls the same kernels; checked against finite differences where PyTorch's
forward AD is wrong: the statistics of native_layer_norm), and each takes the few kernels it promises instead of a Taylor series' dozens."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torchlc
from torchlc.bench.measure import kernel_names

f64 = torch.float64

ELEMENTWISE = {
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "silu": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softmax_0": lambda t: torch.softmax(t, 0),
    "softmax_-1": lambda t: torch.softmax(t, -1),
}


def _awkward(shape, dtype, seed):
    """Random values with the awkward ones mixed in: ±0, large magnitudes, ±inf and NaN."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=f64) * 3
    flat = x.view(-1)
    specials = torch.tensor([0.0, -0.0, 40.0, -40.0, float("inf"), float("-inf"), float("nan")], dtype=f64)
    flat[: specials.numel()] = specials
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [f64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_first_order_equals_the_plain_op_and_jvp(name, dtype):
    f = ELEMENTWISE[name]
    x, v = _awkward((4, 7), dtype, 0), _awkward((4, 7), dtype, 1).flip(1)
    with torch.no_grad():
        y = f(x.nonstd(v))
        plain = f(x)
        ref = torch.func.jvp(f, (x,), (v,))
    assert torchlc.support(y) == (0, 1)
    torch.testing.assert_close(torchlc.coeff(y, 0), plain, rtol=0, atol=0, equal_nan=True)
    # the elementwise ops' forward AD calls the same backward kernels: bit for bit. Softmax's forward
    # AD is written as separate ops (s·(b − Σ s·b)), the backward kernel fuses them, and silu's tangent
    # is built from plain ops (silu_backward has no derivative): rounding apart
    tol = 0 if not name.startswith(("softmax", "silu")) else {f64: 1e-15, torch.float32: 1e-6, torch.bfloat16: 1.6e-2}[dtype]
    torch.testing.assert_close(torchlc.coeff(y, 1), ref[1], rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("name,most", [("gelu", 3), ("gelu_tanh", 3), ("silu", 6), ("tanh", 3),
                                       ("sigmoid", 3), ("softmax_-1", 3)])
def test_elementwise_first_order_kernels(name, most):
    f = ELEMENTWISE[name]
    x = torch.randn(8, 16).nonstd(torch.randn(8, 16))
    with torch.no_grad():
        names = kernel_names(lambda: f(x))
    assert len(names) <= most, names


@pytest.mark.parametrize("dtype", [f64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("affine", ["none", "weight", "both"])
@pytest.mark.parametrize("shape", [(6,), (4, 6)])
def test_layer_norm_first_order_equals_the_plain_op_and_jvp(shape, affine, dtype):
    g = torch.Generator().manual_seed(2)
    x, v = (torch.randn(3, 4, 6, generator=g, dtype=f64) for _ in range(2))
    w = torch.randn(shape, generator=g, dtype=f64) if affine != "none" else None
    b = torch.randn(shape, generator=g, dtype=f64) if affine == "both" else None

    def f(t, w=w, b=b):
        return F.layer_norm(t, shape, w, b, 1e-5)

    cast = [None if t is None else t.to(dtype) for t in (x, v, w, b)]
    with torch.no_grad():
        y = f(cast[0].nonstd(cast[1]), cast[2], cast[3])
        plain = f(cast[0], cast[2], cast[3])
        ref = torch.func.jvp(f, (x,), (v,))  # in float64
    torch.testing.assert_close(torchlc.coeff(y, 0), plain, rtol=0, atol=0)
    tol = {f64: 1e-13, torch.float32: 2e-6, torch.bfloat16: 3e-2}[dtype]
    torch.testing.assert_close(torchlc.coeff(y, 1).to(f64), ref[1], rtol=tol, atol=tol)


def test_layer_norm_statistics_against_finite_differences():
    """native_layer_norm's mean and rstd planes: mean(c₁) and −r₀³·mean(c₀c₁). PyTorch's own forward
    AD gets these two outputs wrong (torch 2.13: off by O(1)), so the reference is a central difference
    in float64."""
    g = torch.Generator().manual_seed(3)
    x, v = (torch.randn(3, 4, 6, generator=g, dtype=f64) for _ in range(2))

    def f(t):
        return torch.ops.aten.native_layer_norm(t, (4, 6), None, None, 1e-5)

    with torch.no_grad():
        got = f(x.nonstd(v))
    h = 1e-6
    for i, (hi, lo) in enumerate(zip(f(x + h * v), f(x - h * v))):
        torch.testing.assert_close(torchlc.coeff(got[i], 1), (hi - lo) / (2 * h), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(torchlc.coeff(got[i], 0), f(x)[i], rtol=0, atol=0)


def test_layer_norm_first_order_kernels():
    x = torch.randn(8, 16).nonstd(torch.randn(8, 16))
    w, b = torch.randn(16), torch.randn(16)
    from torchlc import _jet

    with torch.no_grad():
        names = kernel_names(lambda: _jet.layer_norm(x.lc_planes(), 1, w, b, 1e-5))
    assert len(names) <= 5, names


def test_derivative_kernels_have_correct_derivatives():
    """The rules take these kernels under autograd too (a result must not depend on the grad mode):
    each one's own derivative, checked by finite differences."""
    from torch.autograd import gradcheck

    aten = torch.ops.aten
    g = torch.Generator().manual_seed(4)
    a, b = (torch.randn(3, 5, generator=g, dtype=f64, requires_grad=True) for _ in range(2))
    w = torch.randn(5, generator=g, dtype=f64, requires_grad=True)

    def layer_norm(a, b, w):
        y, m, r = torch.native_layer_norm(a, (5,), w, None, 1e-5)
        return y, aten.native_layer_norm_backward(b, a, (5,), m, r, None, None, [True, False, False])[0] * w

    assert gradcheck(lambda a, b: aten.gelu_backward(b, a), (a, b))
    assert gradcheck(lambda a, b: aten.gelu_backward(b, a, approximate="tanh"), (a, b))
    assert gradcheck(lambda a, b: aten.tanh_backward(b, torch.tanh(a)), (a, b))
    assert gradcheck(lambda a, b: aten.sigmoid_backward(b, torch.sigmoid(a)), (a, b))
    assert gradcheck(lambda a: aten.silu(a), (a,))
    assert gradcheck(lambda a, b: torch._softmax_backward_data(b, torch.softmax(a, -1), -1, a.dtype), (a, b))
    assert gradcheck(layer_norm, (a, b, w))


@pytest.mark.parametrize("name", list(ELEMENTWISE) + ["layer_norm", "batch_norm (eval)"])
def test_first_order_results_do_not_depend_on_the_grad_mode(name):
    """Reentrant checkpointing runs a block without grad, then again with grad: both must agree."""
    g = torch.Generator().manual_seed(5)
    x, v = (torch.randn(4, 6, generator=g, dtype=torch.float32) for _ in range(2))
    w = torch.randn(6, generator=g, requires_grad=True)
    rm, rv = torch.randn(6, generator=g), torch.rand(6, generator=g) + 0.5
    f = {"layer_norm": lambda t: F.layer_norm(t, (6,), w),
         "batch_norm (eval)": lambda t: F.batch_norm(t, rm, rv, w, -w, training=False)}.get(name) or ELEMENTWISE[name]
    with torch.no_grad():
        off = f(x.nonstd(v))
    on = f(x.nonstd(v.requires_grad_()))
    assert torch.equal(torchlc.coeffs(off), torchlc.coeffs(on).detach())
