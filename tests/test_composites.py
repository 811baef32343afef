"""Composite ops computed whole (``_dispatch.composite``): an LC call of F.linear, F.layer_norm,
F.scaled_dot_product_attention or torch.matmul reaches its rule as one op in every grad mode, with the decomposition's
values and gradients; plain calls, and calls under a dispatch mode, behave exactly as without torchlc."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import torchlc
from torchlc import _dispatch
from torchlc._tensor import LCTensor

aten = torch.ops.aten
COMPOSITES = [op for op in _dispatch.registered("composite")]


def _inputs(name, dtype=torch.float64, grad=False):
    g = torch.Generator().manual_seed(7)

    def r(*shape):
        t = torch.randn(*shape, generator=g, dtype=dtype)
        return t.requires_grad_() if grad else t

    if name == "linear":
        x, v, w, b = r(2, 3, 4), r(2, 3, 4), r(5, 4), r(5)
        return (x, v), (w, b), lambda t, w, b: F.linear(t, w, b)
    if name == "linear_1d_no_bias":
        x, v, w = r(4), r(4), r(5, 4)
        return (x, v), (w,), lambda t, w: F.linear(t, w)
    if name == "layer_norm":
        x, v, w, b = r(2, 3, 8), r(2, 3, 8), r(8), r(8)
        return (x, v), (w, b), lambda t, w, b: F.layer_norm(t, (8,), w, b)
    if name == "layer_norm_2d_no_affine":
        x, v = r(2, 3, 4, 5), r(2, 3, 4, 5)
        return (x, v), (), lambda t: F.layer_norm(t, (4, 5))
    if name == "sdpa_causal":
        x, v = r(2, 2, 5, 8), r(2, 2, 5, 8)
        return (x, v), (), lambda t: F.scaled_dot_product_attention(t, t, t, is_causal=True)
    if name == "sdpa_gqa_mask":
        q, vq, k, vk, m = r(1, 4, 5, 8), r(1, 4, 5, 8), r(1, 2, 6, 8), r(1, 2, 6, 8), r(5, 6)
        return (q, vq), (k, vk, m), lambda t, k, vk, m: F.scaled_dot_product_attention(
            t, k.nonstd(vk), k.nonstd(vk), attn_mask=m, enable_gqa=True, scale=0.3)
    if name == "matmul_lc_lc":  # eager attention's q·kᵀ, both operands LC (k transposed: a copy to fold)
        q, vq, k, vk = r(2, 3, 5, 8), r(2, 3, 5, 8), r(2, 3, 6, 8), r(2, 3, 6, 8)
        return (q, vq), (k, vk), lambda t, k, vk: t @ k.nonstd(vk).transpose(-1, -2)
    if name == "matmul_lc_plain":
        x, v, w = r(2, 3, 5, 8), r(2, 3, 5, 8), r(2, 3, 8, 4)
        return (x, v), (w,), lambda t, w: torch.matmul(t, w)
    raise KeyError(name)


CASES = ["linear", "linear_1d_no_bias", "layer_norm", "layer_norm_2d_no_affine", "sdpa_causal", "sdpa_gqa_mask",
         "matmul_lc_lc", "matmul_lc_plain"]
MODES = {"no_grad": torch.no_grad, "grad": torch.enable_grad, "inference_mode": torch.inference_mode}


def test_the_composites_are_registered_as_such():
    assert set(COMPOSITES) >= {aten.linear.default, aten.layer_norm.default, aten.scaled_dot_product_attention.default,
                               aten.matmul.default}
    with pytest.raises(_dispatch.RegistrationError, match="not a CompositeImplicitAutograd op"):
        _dispatch.composite([aten.sin.default])(lambda func, x: x)


class _Outermost:
    """The ops LCTensor's dispatcher receives from the caller (not those its rules make)."""

    def __init__(self):
        self.ops, self.depth = [], 0

    @contextlib.contextmanager
    def __call__(self):
        inner = LCTensor.__dict__["_dispatcher"]

        def probe(func, args, kwargs):
            if self.depth == 0:
                self.ops.append(func)
            self.depth += 1
            try:
                return inner(func, args, kwargs)
            finally:
                self.depth -= 1

        LCTensor._dispatcher = staticmethod(probe)
        try:
            yield self
        finally:
            LCTensor._dispatcher = inner


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("case", CASES)
def test_lc_calls_arrive_whole_in_every_grad_mode(mode, case):
    (x, v), params, f = _inputs(case)
    lx = x.nonstd(v)  # built outside the probe
    with MODES[mode](), _Outermost()() as seen:
        f(lx, *params)
    # the composite, after at most the views the case's own code makes (k.transpose), none of its pieces
    assert _dispatch.kind_of(seen.ops[-1]) == "composite", seen.ops
    assert all(_dispatch.kind_of(op) == "structural" for op in seen.ops[:-1]), seen.ops


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("case", CASES)
def test_whole_equals_the_decomposition_and_jvp(mode, case):
    """Bit for bit the decomposition's planes (the pieces' rules run the same kernels), and jvp's."""
    (x, v), params, f = _inputs(case)
    with MODES[mode]():
        whole = torchlc.coeffs(f(x.nonstd(v), *params))
        # the decomposition, as it ran before: the composite rule's fallback
        with _decomposing():
            pieces = torchlc.coeffs(f(x.nonstd(v), *params))
    assert torch.equal(whole, pieces)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):  # the fused kernels have no forward AD
        if case == "sdpa_gqa_mask":  # k, v carry tangents of their own
            k, vk, m = params
            y0, y1 = torch.func.jvp(lambda a, b: F.scaled_dot_product_attention(
                a, b, b, attn_mask=m, enable_gqa=True, scale=0.3), (x, k), (v, vk))
        elif case == "matmul_lc_lc":
            k, vk = params
            y0, y1 = torch.func.jvp(lambda a, b: a @ b.transpose(-1, -2), (x, k), (v, vk))
        else:
            y0, y1 = torch.func.jvp(lambda a: f(a, *params), (x,), (v,))
    torch.testing.assert_close(whole[0], y0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(whole[1], y1, rtol=1e-12, atol=1e-12)


@contextlib.contextmanager
def _decomposing():
    """Every composite rule replaced by its fallback, PyTorch's decomposition."""
    saved = {op: _dispatch.find_rule(op) for op in COMPOSITES}
    for op in COMPOSITES:
        _dispatch.register([op], _dispatch.decompose_composite, kind="composite", replace=True)
    try:
        yield
    finally:
        for op, rule in saved.items():
            _dispatch.register([op], rule, kind="composite", replace=True)


@pytest.mark.parametrize("case", CASES)
def test_gradients_through_the_planes_equal_the_decomposition(case):
    """With autograd on, the rule records on the planes (the LC call skipped the autograd keys): the
    gradients of a loss on the ε¹ coefficient reach the input's planes and the plain parameters, as
    through the decomposition."""

    def grads(ctx):
        (x, v), params, f = _inputs(case, grad=True)
        with ctx:
            y = f(torchlc.from_terms({0: x, 1: v}), *params)
        loss = (torchlc.coeff(y, 1) * torchlc.coeff(y, 0)).sum()
        leaves = [x, v, *(p for p in params if p.requires_grad)]
        return torch.autograd.grad(loss, leaves)

    whole, pieces = grads(contextlib.nullcontext()), grads(_decomposing())
    assert len(whole) == len(pieces)
    for a, b in zip(whole, pieces):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case", ["linear", "layer_norm", "sdpa_causal"])
def test_gradcheck_through_the_whole_rule(case):
    (x, v), params, f = _inputs(case)

    def fn(a, b, *ps):
        y = f(torchlc.from_terms({0: a, 1: b}), *ps)
        return torchlc.coeff(y, 0), torchlc.coeff(y, 1)

    args = [t.detach().requires_grad_() for t in (x, v, *params)]
    assert torch.autograd.gradcheck(fn, args)


def test_plain_calls_are_untouched():
    """The routing kernel sits at a key only tensor subclasses and Python modes reach: plain calls
    keep PyTorch's autograd nodes and values, and a dispatch mode sees the same ops as without it."""
    x, w, b = torch.randn(3, 4, requires_grad=True), torch.randn(5, 4), torch.randn(5)
    y = F.linear(x, w, b)
    assert type(y.grad_fn).__name__ == "AddmmBackward0"
    assert torch.equal(y, torch.addmm(b, x, w.t()))

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    xd = x.detach()
    for ctx, want in ((torch.no_grad, [aten.t.default, aten.addmm.default]),
                      (torch.inference_mode, [aten.linear.default])):
        with ctx(), Seen() as mode:
            F.linear(xd, w, b)
        assert mode.ops[: len(want)] == want, mode.ops


def test_routing_goes_on_through_pytorchs_own_snapshot_kernel():
    """The routing kernel narrows the key set and hands every call to the kernel PyTorch had at
    PythonTLSSnapshot: that kernel records the dispatch state on entry, which the Python key's fallback
    restores. Redispatching past it instead left that state unset, and torch 2.11 asserts on it
    ("tls_on_entry.has_value() INTERNAL ASSERT FAILED") for every LC composite call; torch 2.13
    tolerates it, so on this torch the kernel's identity is what can be checked."""
    for op in COMPOSITES:
        handed_on = _dispatch._SNAPSHOT_FALLBACKS[op]
        assert "PythonFallbackKernel.cpp" in repr(handed_on), (op, handed_on)
        assert "PythonFallbackKernel.cpp" not in repr(torch.library.get_kernel(op, "PythonTLSSnapshot"))


@pytest.mark.parametrize("bad", ["linear_shape", "linear_dtype", "linear_bias", "sdpa_heads", "ln_shape",
                                 "ln_weight", "native_ln_shape"])
def test_bad_arguments_raise_torchs_error(bad):
    x = torch.randn(3, 4)
    q = torch.randn(1, 4, 5, 8)
    calls = {
        "linear_shape": lambda t: F.linear(t, torch.randn(5, 3)),
        "linear_dtype": lambda t: F.linear(t, torch.randn(5, 4, dtype=torch.float64)),
        "linear_bias": lambda t: F.linear(t, torch.randn(5, 4), torch.randn(3)),
        "ln_weight": lambda t: F.layer_norm(t, (4,), torch.ones(3)),
        "native_ln_shape": lambda t: torch.native_layer_norm(t, (5,), None, None, 1e-5),
        "sdpa_heads": lambda t: F.scaled_dot_product_attention(t, t[:, :2], t[:, :2]),
        "ln_shape": lambda t: F.layer_norm(t, (5,)),
    }
    arg = q if bad.startswith("sdpa") else x
    with pytest.raises(RuntimeError) as plain:
        calls[bad](arg)
    with pytest.raises(RuntimeError) as lc:
        calls[bad](arg.nonstd(torch.ones_like(arg)))
    assert str(plain.value).split("\n")[0] in str(lc.value), (plain.value, lc.value)


def test_other_inputs_take_the_decomposition():
    """Second order, an LC weight, complex coefficients and dropout: the decomposition's pieces."""
    g = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g,
                                                                                 dtype=torch.float64), None
    for lx, lw in ((x.nonstd(torch.ones_like(x), order=2), w), (x.nonstd(torch.ones_like(x)), w.nonstd(w)),
                   (x.to(torch.complex128).nonstd(torch.ones_like(x).to(torch.complex128)), w.to(torch.complex128))):
        with torch.no_grad(), _Outermost()() as seen:
            y = F.linear(lx, lw, b)
        assert seen.ops[0] is aten.linear.default
        with _decomposing():
            ref = F.linear(lx, lw, b)
        assert torch.equal(torchlc.coeffs(y), torchlc.coeffs(ref))
    q = torch.randn(1, 2, 4, 8, dtype=torch.float64).nonstd(torch.randn(1, 2, 4, 8, dtype=torch.float64))
    torch.manual_seed(0)
    y = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    torch.manual_seed(0)
    with _decomposing():
        ref = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    assert torch.equal(torchlc.coeffs(y), torchlc.coeffs(ref))


def test_vmap_over_tangent_directions():
    x, w, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64), torch.randn(5,
                                                                                                       dtype=torch.float64)
    vs = torch.randn(6, 3, 4, dtype=torch.float64)
    got = torch.func.vmap(lambda v: torchlc.coeff(F.layer_norm(F.linear(x.nonstd(v), w, b), (5,)), 1))(vs)
    want = torch.stack([torch.func.jvp(lambda a: F.layer_norm(F.linear(a, w, b), (5,)), (x,), (v,))[1] for v in vs])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_plain_models_still_trace_compile_and_export():
    """Under a tracing mode every call reaches the PythonTLSSnapshot key, plain ones included: they
    must come out as PyTorch makes them (make_fx decomposes F.linear, export keeps it) and compile."""
    from torch.fx.experimental.proxy_tensor import make_fx

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)

        def forward(self, x):
            h = self.norm(self.lin(x))
            q = h.view(2, 1, 4, 8)
            return F.scaled_dot_product_attention(q, q, q, is_causal=True).sum() + h.sum()

    torch.manual_seed(0)
    m, x = M(), torch.randn(2, 4, 8)
    ref = m(x)
    g = make_fx(m)(x)
    targets = {n.target for n in g.graph.nodes if n.op == "call_function"}
    assert aten.addmm.default in targets and aten.linear.default not in targets
    torch.testing.assert_close(g(x), ref, rtol=0, atol=0)
    ep = torch.export.export(m, (x,))
    targets = {n.target for n in ep.graph.nodes if n.op == "call_function"}
    assert {aten.linear.default, aten.layer_norm.default, aten.scaled_dot_product_attention.default} <= targets
    torch.testing.assert_close(ep.module()(x), ref, rtol=0, atol=0)
    torch.testing.assert_close(torch.compile(m, fullgraph=True, backend="aot_eager")(x), ref)


@pytest.mark.parametrize("shape", [(0, 8), (2, 0, 8)])
def test_zero_size_inputs(shape):
    """Empty batches through every composite, and native_layer_norm (whose fused path viewed its rows
    with an ambiguous -1 when there were none): torch's shapes, empty planes."""
    x = torch.randn(shape)
    lx = x.nonstd(torch.ones_like(x))
    w, b = torch.randn(3, 8), torch.randn(3)
    calls = [lambda t: F.linear(t, w, b), lambda t: F.layer_norm(t, (8,)),
             lambda t: torch.native_layer_norm(t, (8,), None, None, 1e-5)[0],
             lambda t: t.unsqueeze(0) @ t.unsqueeze(0).transpose(-1, -2),
             lambda t: F.scaled_dot_product_attention(*(t.reshape(1, 1, -1, 8),) * 3)]
    for f in calls:
        y = f(lx)
        assert y.shape == f(x).shape and torchlc.coeffs(y).numel() == 0
