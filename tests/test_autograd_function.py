"""Custom ``torch.autograd.Function``s on LCTensors, and autograd's entry points taking LCTensors.

A Function applied to LC arguments is a node of the planes' graph: its backward receives the outputs'
gradients as dual series Σ_p g_p ε^(-p) and returns the inputs' the same way, so a backward written in
torch ops gives the exact vector-Jacobian product of the LC computation (checked against the same
computation without the Function, whose planes autograd differentiates op by op).
"""

from fractions import Fraction as F

import pytest
import torch
from torch.testing import assert_close

import torchlc
from torchlc._tensor import plane_gradients

f64 = torch.float64


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class Sin(torch.autograd.Function):  # the setup_context style
    @staticmethod
    def forward(x):
        return torch.sin(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        return torch.cos(ctx.saved_tensors[0]) * g


class MatMul(torch.autograd.Function):  # an LC argument and a plain parameter
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = g @ w.T if ctx.needs_input_grad[0] else None
        return gx, x.transpose(-1, -2) @ g


def _input(kind, order):
    torch.manual_seed(order)
    x0, v = torch.randn(5, 3, dtype=f64), torch.randn(5, 3, dtype=f64)
    if kind == "nonstd":
        return x0.nonstd(v, order=order)
    # a Dirac term below the standard part, as jumps give
    return torchlc.from_terms({-1: torch.randn(5, 3, dtype=f64), 0: x0, 1: v}, order=order)


def _loss(y):
    return sum((c * (i + 1.5)).sin().sum() for i, c in enumerate(torchlc.terms(y).values()))


@pytest.mark.parametrize("kind", ["nonstd", "dirac"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_custom_functions_give_the_exact_vjp_of_the_lc_computation(kind, order):
    w = torch.randn(3, 4, dtype=f64, requires_grad=True)

    # sin of an infinite number (x² has an ε⁻² term when x has an ε⁻¹ one) is not defined: no Sin there
    sin = (lambda t: t) if kind == "dirac" else Sin.apply
    ref_sin = (lambda t: t) if kind == "dirac" else torch.sin

    def grads(use_functions):
        x = _input(kind, order).requires_grad_()
        y = MatMul.apply(sin(Square.apply(x)), w) if use_functions else ref_sin(x * x) @ w
        return y, torch.autograd.grad(_loss(y), [w, torchlc.coeffs(x)])

    (y, got), (ref_y, ref) = grads(True), grads(False)
    assert torchlc.support(y) == torchlc.support(ref_y) and y.grad_fn.name() == "MatMulBackward"
    # the Functions' forwards run without grad (other kernels) and their backward formulas round
    # differently from autograd's op-by-op chain: equal to float64 rounding
    assert_close(torchlc.coeffs(y), torchlc.coeffs(ref_y), rtol=1e-13, atol=1e-13)
    for a, b in zip(got, ref):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_pass_through_non_differentiable_and_unmaterialized_outputs():
    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale, tag):
            ctx.set_materialize_grads(False)
            ctx.scale = scale
            m = x * 0
            ctx.mark_non_differentiable(m)
            return x, m, tag

        @staticmethod
        def backward(ctx, g, gm, gtag):
            assert gm is None and gtag is None
            return g * ctx.scale, None, None

    x = torch.randn(4, dtype=f64).nonstd().requires_grad_()
    y, m, tag = Probe.apply(x, 3.0, "t")
    assert tag == "t" and not m.requires_grad and y.requires_grad
    torchlc.coeff(y, 1).sum().backward()
    assert torch.equal(torchlc.coeffs(x).grad, torch.tensor([0.0, 3.0], dtype=f64)[:, None].expand(2, 4))


@pytest.mark.parametrize("style", ["ctx", "setup_context"])
def test_the_node_reads_as_the_users_ctx(style):
    """Code outside a Function reads its ctx off ``grad_fn`` (torch 2.11's non-reentrant checkpointing
    calls ``grad_fn.get_args(grad_fn.saved_tensors)``): on LC arguments the node shows the attributes
    the user's forward set and the tensors it saved, LCTensors as saved, not their planes."""
    x = torch.randn(5, 3, dtype=f64).nonstd(torch.randn(5, 3, dtype=f64))
    w = torch.randn(3, 2, dtype=f64, requires_grad=True)
    if style == "ctx":
        y = MatMul.apply(x, w)
    else:
        class Tagged(torch.autograd.Function):
            @staticmethod
            def forward(x, w):
                return x @ w

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(*inputs)
                ctx.rebuild = lambda saved: ("rebuilt", *saved)

            @staticmethod
            def backward(ctx, g):
                return None, None

        y = Tagged.apply(x, w)
        assert y.grad_fn.rebuild(y.grad_fn.saved_tensors)[0] == "rebuilt"
    sx, sw = y.grad_fn.saved_tensors
    assert isinstance(sx, torchlc.LCTensor) and torch.equal(torchlc.coeffs(sx), torchlc.coeffs(x))
    assert sw is w or torch.equal(sw, w)
    with pytest.raises(AttributeError):
        y.grad_fn.no_such_attribute  # noqa: B018
    if style == "ctx":  # reading the node does not disturb its backward
        torchlc.coeff(y, 1).sum().backward()
        assert_close(w.grad, torchlc.coeff(x, 1).T @ torch.ones(5, 2, dtype=f64))


def test_in_place_function_marks_the_lc_argument_dirty():
    class Double_(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x.mul_(2)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return 2 * g

    base = torch.randn(3, dtype=f64).nonstd().requires_grad_()
    x = base * 1.0
    y = Double_.apply(x)
    assert y is x and x.grad_fn.name() == "Double_Backward"
    torchlc.coeff(y, 1).sum().backward()
    assert torch.equal(torchlc.coeffs(base).grad, torch.tensor([0.0, 2.0], dtype=f64)[:, None].expand(2, 3))


def test_plain_arguments_take_pytorchs_path():
    x = torch.randn(3, dtype=f64, requires_grad=True)
    y = Square.apply(x)
    assert type(y) is torch.Tensor and type(y.grad_fn).__name__ == "SquareBackward"
    y.sum().backward()
    assert torch.equal(x.grad, 2 * x.detach())


def test_autograd_entry_points_take_lc_tensors_and_dual_series():
    torch.manual_seed(0)
    w = torch.randn(3, 2, dtype=f64, requires_grad=True)
    x = torch.randn(4, 3, dtype=f64).nonstd(torch.randn(4, 3, dtype=f64)).requires_grad_()
    y = torch.tanh(x @ w)
    g = torch.randn(2, 4, 2, dtype=f64)  # plane gradients of y (ε⁰, ε¹)
    dual = torchlc.from_terms({0: g[0], -1: g[1]}, order=1)
    ref_w, ref_x = torch.autograd.grad((torchlc.coeffs(y) * g).sum(), [w, torchlc.coeffs(x)], retain_graph=True)
    gw, gx = torch.autograd.grad(y, [w, x], dual, retain_graph=True)
    assert torch.equal(gw, ref_w)
    assert torchlc.support(gx) == (F(-1), F(0)) and torch.equal(plane_gradients(gx, (F(0), F(1))), ref_x)
    y.backward(dual)
    assert torch.equal(w.grad, ref_w) and torch.equal(torchlc.coeffs(x).grad, ref_x)
    assert torch.equal(torchlc.coeff(x.grad, -1), ref_x[1])  # lc.grad: the dual series of the planes' grads
    x.grad = None
    assert torchlc.coeffs(x).grad is None and x.grad is None
    with pytest.raises(RuntimeError, match="needs its gradient"):
        torch.tanh(x @ w).sum().backward()


def test_a_gradient_not_exact_enough_raises():
    g = torchlc.eps(-1) * torch.tensor(1.0, dtype=f64).nonstd() ** 2  # exact through ε⁰ only
    with pytest.raises(torchlc.TruncationError, match="exact only through"):
        plane_gradients(g, (F(-1), F(0)))
