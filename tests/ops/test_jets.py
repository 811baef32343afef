"""First-order jet rules (softmax, log_softmax, native_layer_norm).

These ops have a general path (torch's own decomposition, run on LC tensors) and a fast path for
first-order inputs a + bε. The fast path must give the decomposition's support, order and
exactness, its coefficients up to rounding, and torch.func.jvp's tangent; inputs it does not cover
(higher order, eps = 0, LC weights, half_to_float) must take the general path.
"""

import contextlib
import re
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchlc
from torchlc._algebra import FIRST_ORDER
from torchlc._tensor import wrap
from torchlc.ops._util import decomposed

aten = torch.ops.aten


def _meta(y):
    return (y._support, y._order, y._exact, y.dtype, tuple(y.shape))


def _same_as_decomposition(func, *args):
    fast = func(*args)
    ref = decomposed(func, *args)
    fast = fast if isinstance(fast, tuple) else (fast,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    assert len(fast) == len(ref)
    for f, r in zip(fast, ref):
        assert _meta(f) == _meta(r)
        torch.testing.assert_close(torchlc.coeffs(f), torchlc.coeffs(r), rtol=1e-12, atol=1e-12)
    return fast


def _cases(x, v):
    return [
        (aten._softmax.default, (x.nonstd(v), -1, False)),
        (aten._softmax.default, (x.nonstd(v), 0, False)),
        (aten._log_softmax.default, (x.nonstd(v), 1, False)),
        (aten.native_layer_norm.default, (x.nonstd(v), [x.shape[-1]], None, None, 1e-5)),
        (aten.native_layer_norm.default,
         (x.nonstd(v), list(x.shape[1:]), torch.randn(x.shape[1:], dtype=x.dtype),
          torch.randn(x.shape[1:], dtype=x.dtype), 1e-3)),
    ]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_fast_path_equals_decomposition(n0, n1, n2, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n0, n1, n2, generator=g, dtype=torch.float64) * 3
    v = torch.randn(n0, n1, n2, generator=g, dtype=torch.float64)
    for func, args in _cases(x, v):
        _same_as_decomposition(func, *args)


def test_truncated_input_keeps_its_exactness():
    # exact through ε⁰ only: every output is exact through ε⁰ (the mean too)
    p = torch.randn(2, 3, 4, dtype=torch.float64)
    x = wrap(p, FIRST_ORDER, Fraction(1), Fraction(0))
    for func, args in [(aten._softmax.default, (x, -1, False)), (aten._log_softmax.default, (x, -1, False)),
                       (aten.native_layer_norm.default, (x, [4], None, None, 1e-5))]:
        for y in _same_as_decomposition(func, *args):
            assert torchlc.exact_through(y) == 0


@pytest.mark.parametrize("which", ["softmax", "log_softmax", "layer_norm"])
def test_matches_jvp(which):
    torch.manual_seed(0)
    x = torch.randn(4, 6, 8, dtype=torch.float64)
    v = torch.randn_like(x)
    w, b = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    f = {
        "softmax": lambda t: torch.softmax(t, -1),
        "log_softmax": lambda t: torch.log_softmax(t, 1),
        "layer_norm": lambda t: torch.nn.functional.layer_norm(t, (8,), w, b),
    }[which]
    y = f(x.nonstd(v))
    y0, y1 = torch.func.jvp(f, (x,), (v,))
    torch.testing.assert_close(torchlc.coeff(y, 0), y0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(y, 1), y1, rtol=1e-12, atol=1e-12)
    assert torchlc.support(y) == FIRST_ORDER


def test_hand_values():
    # softmax([a, 0] + [1, 0]ε) at a = 0: s = (½, ½), ε¹ = s·(b − ½) = (¼, −¼)
    x = torch.tensor([0.0, 0.0], dtype=torch.float64).nonstd(torch.tensor([1.0, 0.0], dtype=torch.float64))
    y = torch.softmax(x, 0)
    assert torchlc.coeffs(y).tolist() == [[0.5, 0.5], [0.25, -0.25]]
    # layer_norm of (x₀ − 1, x₀ + 1) + (1, 0)ε, eps → 0 limit replaced by eps = 1e-300 (exact in float64):
    # c = (−1, 1) + (½, −½)ε, v₀ = 1, mean(c₀c₁) = −½, r = 1 + ½ε, out = c·r = (−1, 1) + (0, 0)ε... :
    # c₁r₀ + c₀r₁ = (½ − ½, −½ + ½) = (0, 0): scaling the gap does not change the normalised pair
    x = torch.tensor([2.0, 4.0], dtype=torch.float64).nonstd(torch.tensor([1.0, 0.0], dtype=torch.float64))
    y = torch.nn.functional.layer_norm(x, (2,), eps=1e-300)
    assert torchlc.coeffs(y).tolist() == [[-1.0, 1.0], [0.0, 0.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("grad", [False, True])
def test_softmax_jet_keeps_the_planes_layout(dtype, grad):
    """The softmax jet's planes come back in its input's layout where no autograd records: the
    attention jet's interleaved scores (each batch element's ε⁰ rows, then its ε¹ rows) give
    interleaved weights, which its second product reads without a copy. Bit for bit the stacked
    planes; with autograd recording, a stack."""
    from torchlc import _jet

    g = torch.Generator().manual_seed(0)
    buf = torch.randn(6, 2, 5, 7, generator=g).to(dtype).requires_grad_(grad)
    P = buf.movedim(1, 0)  # (2, 6, 5, 7): planes interleaved per batch element
    res = _jet.softmax(P, -1)
    a, b = P.float()
    s = torch.softmax(a, -1)
    want = torch.stack([torch.softmax(P[0], -1), torch._softmax_backward_data(b, s, -1, torch.float32).to(dtype)])
    assert torch.equal(res, want)
    assert res.stride() == (want.stride() if grad else P.stride())
    if not grad:
        assert _jet._interleaved(res).data_ptr() == res.data_ptr()  # a view


def test_masked_minus_inf_entries_and_nan():
    x = torch.tensor([[0.0, float("-inf"), 1.0]], dtype=torch.float64).nonstd(
        torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64))
    y = torch.softmax(x, -1)
    assert torchlc.coeff(y, 0)[0, 1] == 0 and torchlc.coeff(y, 1)[0, 1] == 0
    _same_as_decomposition(aten._softmax.default, x, -1, False)
    xn = torch.tensor([0.0, 1.0], dtype=torch.float64).nonstd(torch.tensor([float("nan"), 0.0], dtype=torch.float64))
    assert torch.isnan(torchlc.coeff(torch.softmax(xn, 0), 1)).all()


def test_general_inputs_take_the_decomposition():
    x = torch.randn(3, 4, dtype=torch.float64)
    hi = x.nonstd(order=2)  # ε² plane: not first order
    y = torch.softmax(hi, -1)
    assert torchlc.order(y) == 2 and len(torchlc.support(y)) == 3
    y0, y1 = torch.func.jvp(lambda t: torch.softmax(t, -1), (x,), (torch.ones_like(x),))
    torch.testing.assert_close(torchlc.coeff(y, 1), y1)
    # eps = 0: a constant row's variance starts at ε², so the general path decides (order 1: outside
    # the computed field, NaN; order 3: the exact normalised tangent direction)
    t = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    c = torch.ones(3, dtype=torch.float64).nonstd(t)
    y = torch.nn.functional.layer_norm(c, (3,), eps=0.0)
    ref = decomposed(aten.native_layer_norm.default, c, [3], None, None, 0.0)[0]
    torch.testing.assert_close(torchlc.coeffs(y), torchlc.coeffs(ref), equal_nan=True)
    y3 = torch.nn.functional.layer_norm(torch.ones(3, dtype=torch.float64).nonstd(t, order=3), (3,), eps=0.0)
    torch.testing.assert_close(torchlc.coeff(y3, 0), t / t.pow(2).mean().sqrt())
    # LC weight
    w = torch.ones(4, dtype=torch.float64).nonstd()
    y = torch.nn.functional.layer_norm(x.nonstd(), (4,), w)
    ref = decomposed(aten.native_layer_norm.default, x.nonstd(), [4], w, None, 1e-5)[0]
    torch.testing.assert_close(torchlc.coeffs(y), torchlc.coeffs(ref))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_computes_in_float32(dtype):
    x = torch.randn(4, 16)
    v = torch.randn(4, 16)
    X = x.to(dtype).nonstd(v.to(dtype))
    for f in (lambda t: torch.softmax(t, -1), lambda t: torch.nn.functional.layer_norm(t, (16,))):
        y = f(X)
        assert y.dtype == dtype
        y0, y1 = torch.func.jvp(f, (x.to(dtype).float(),), (v.to(dtype).float(),))
        torch.testing.assert_close(torchlc.coeff(y, 1).float(), y1.to(dtype).float(), rtol=2e-2, atol=2e-2)


def test_gradients_flow_through_the_fast_path():
    torch.manual_seed(1)
    x = torch.randn(3, 5, dtype=torch.float64)
    v = torch.randn_like(x)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)

    def lc_loss(w):
        y = torch.nn.functional.layer_norm(torch.softmax(x.nonstd(v), -1), (5,), w)
        return torchlc.coeff(y, 1).pow(2).sum()

    def ref_loss(w):
        f = lambda t: torch.nn.functional.layer_norm(torch.softmax(t, -1), (5,), w)  # noqa: E731
        return torch.func.jvp(f, (x,), (v,))[1].pow(2).sum()

    g = torch.autograd.grad(lc_loss(w), w)[0]
    g_ref = torch.autograd.grad(ref_loss(w), w)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


# -- composite layers: PyTorch's fused transformer kernels --------------------------------------------


def _encoder(norm_first, activation, dtype=torch.float64):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first,
                                             activation=activation, dtype=dtype)
    return torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()


_MASKS = {
    "none": {},
    "padding": {"src_key_padding_mask": torch.tensor([[False] * 5, [False] * 3 + [True] * 2, [False] * 4 + [True]])},
    "causal": {"mask": torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)},
}


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("mask", sorted(_MASKS))
def test_fused_encoder_layer_jet(monkeypatch, norm_first, activation, mask):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from torchlc.ops import attention, norm, transformer

    m = _encoder(norm_first, activation)
    kw = _MASKS[mask]
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    v = torch.randn_like(x)
    calls = []
    from torchlc import _dispatch

    rule = _dispatch.find_rule(aten._transformer_encoder_layer_fwd.default)
    monkeypatch.setitem(_dispatch._RULES, aten._transformer_encoder_layer_fwd.default,
                        lambda *a, **k: calls.append(1) or rule(*a, **k))
    with torch.no_grad():
        y = m(x.nonstd(v), **kw)
        assert len(calls) == 2  # PyTorch's fast path ran, once per layer
        for module in (transformer, attention, norm):  # the general (LC rules) path
            monkeypatch.setattr(module, "first_order", lambda t: None)
        y_general = m(x.nonstd(v), **kw)
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with sdpa_kernel(SDPBackend.MATH):
                y0, y1 = torch.func.jvp(lambda t: m(t, **kw), (x,), (v,))
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    assert _meta(y) == _meta(y_general)
    torch.testing.assert_close(torchlc.coeffs(y), torchlc.coeffs(y_general), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(y, 0), y0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(y, 1), y1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("self_attention", [False, True])
def test_fused_multi_head_attention_jet(need_weights, self_attention):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True, dtype=torch.float64).eval()
    q = torch.randn(2, 5, 16, dtype=torch.float64)
    kv = q if self_attention else torch.randn(2, 7, 16, dtype=torch.float64)
    dq = torch.randn_like(q)
    dkv = dq if self_attention else torch.randn_like(kv)
    Q = q.nonstd(dq)
    KV = Q if self_attention else kv.nonstd(dkv)
    with torch.no_grad():
        o, w = mha(Q, KV, KV, need_weights=need_weights)
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with sdpa_kernel(SDPBackend.MATH):
                (o0, w0), (o1, w1) = torch.func.jvp(
                    lambda a, b: tuple(t if t is not None else a.new_zeros(()) for t in
                                       mha(a, b, b, need_weights=need_weights)), (q, kv), (dq, dkv))
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    torch.testing.assert_close(torchlc.coeff(o, 0), o0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(o, 1), o1, rtol=1e-12, atol=1e-12)
    if need_weights:
        torch.testing.assert_close(torchlc.coeff(w, 1), w1, rtol=1e-12, atol=1e-12)


# -- scaled_dot_product_attention: the CPU flash kernel and the math kernel ---------------------------

_SDPA_CASES = {
    "plain": {},
    "causal": {"is_causal": True},
    "bool_mask": {"attn_mask": "bool"},
    "float_mask": {"attn_mask": "float"},
    "scale": {"scale": 0.3},
    "gqa": {"enable_gqa": True},
}


def _sdpa_inputs(case):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 5, 8, generator=g, dtype=torch.float64)
    kv_heads = 2 if case == "gqa" else 4
    k = torch.randn(2, kv_heads, 7, 8, generator=g, dtype=torch.float64)
    v = torch.randn(2, kv_heads, 7, 8, generator=g, dtype=torch.float64)
    kw = dict(_SDPA_CASES[case])
    if case == "causal":
        k, v = torch.randn(2, 4, 5, 8, generator=g, dtype=torch.float64), torch.randn(2, 4, 5, 8, generator=g, dtype=torch.float64)
    if kw.get("attn_mask") == "bool":
        m = torch.rand(5, 7, generator=g) > 0.3
        m[0] = False  # an entirely masked row: 0, like PyTorch's _safe_softmax
        kw["attn_mask"] = m
    elif kw.get("attn_mask") == "float":
        kw["attn_mask"] = torch.randn(5, 7, generator=g, dtype=torch.float64)
    tangents = tuple(torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (q, k, v))
    return (q, k, v), tangents, kw


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference_mode", "math_inference_mode", "math_no_grad"])
@pytest.mark.parametrize("case", sorted(_SDPA_CASES))
def test_sdpa_jet(mode, case):
    # math_no_grad: PyTorch's math kernel decomposed into LC ops (float32 GQA attention on CUDA takes
    # it): the first-order bmm and _safe_softmax fast paths
    from torch.nn.attention import SDPBackend, sdpa_kernel

    F = torch.nn.functional
    primals, tangents, kw = _sdpa_inputs(case)
    ctx = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "math_no_grad": torch.no_grad}.get(
        mode, torch.inference_mode)
    import contextlib

    backend = sdpa_kernel(SDPBackend.MATH) if mode.startswith("math") else contextlib.nullcontext()
    with ctx(), backend:
        y = F.scaled_dot_product_attention(*(p.nonstd(t) for p, t in zip(primals, tangents)), **kw)
    with sdpa_kernel(SDPBackend.MATH):
        y0, y1 = torch.func.jvp(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, **kw), primals, tangents)
    torch.testing.assert_close(torchlc.coeff(y, 0), y0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(y, 1), y1, rtol=1e-12, atol=1e-12)
    if case == "bool_mask":
        assert torchlc.coeffs(y)[:, :, :, 0].abs().max() == 0


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "math_inference_mode"])
@pytest.mark.parametrize("plain", ["kv", "q"])
def test_sdpa_with_plain_operands_takes_the_jet(monkeypatch, mode, plain):
    """Cross-attention to a plain memory (plain k, v) or a plain query: the plain operands join the jet
    with a zero ε¹ plane, and the result is jvp's with zero tangents for them."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from torchlc.ops import attention as lc_attention

    jets_run = []
    jet = lc_attention._sdpa_jet
    monkeypatch.setattr(lc_attention, "_sdpa_jet", lambda *a, **k: jets_run.append(1) or jet(*a, **k))
    F = torch.nn.functional
    primals, tangents, kw = _sdpa_inputs("float_mask")
    lc = (0,) if plain == "kv" else (1, 2)
    tangents = tuple(t if i in lc else torch.zeros_like(t) for i, t in enumerate(tangents))
    args = [p.nonstd(t) if i in lc else p for i, (p, t) in enumerate(zip(primals, tangents))]
    ctx = torch.no_grad if mode == "no_grad" else torch.inference_mode
    backend = sdpa_kernel(SDPBackend.MATH) if mode.startswith("math") else contextlib.nullcontext()
    with ctx(), backend:
        y = F.scaled_dot_product_attention(*args, **kw)
    assert jets_run
    with sdpa_kernel(SDPBackend.MATH):
        y0, y1 = torch.func.jvp(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, **kw), primals, tangents)
    torch.testing.assert_close(torchlc.coeff(y, 0), y0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(y, 1), y1, rtol=1e-12, atol=1e-12)


def test_sdpa_cpu_kernel_logsumexp():
    (q, k, v), (dq, dk, dv), _ = _sdpa_inputs("plain")
    out_lc, lse = aten._scaled_dot_product_flash_attention_for_cpu.default(q.nonstd(dq), k.nonstd(dk), v.nonstd(dv))
    _, lse_plain = aten._scaled_dot_product_flash_attention_for_cpu.default(q, k, v)

    def ref(a, b):
        return torch.logsumexp(a @ b.transpose(-2, -1) / 8**0.5, -1)

    l0, l1 = torch.func.jvp(ref, (q, k), (dq, dk))
    torch.testing.assert_close(torchlc.coeff(lse, 0), lse_plain.double(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torchlc.coeff(lse, 0), l0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(lse, 1), l1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("mask", ["none", "attn_mask (type 0)", "key padding (type 1)", "merged (type 2)", "untyped"])
def test_native_mha_called_directly_is_torchs(mask, need_weights):
    """aten._native_multi_head_attention called directly with bool masks of each mask_type: the LC
    output's standard part and weights are the plain kernel's (the ε¹ parts are tested through
    nn.MultiheadAttention above); a mask without a mask_type raises torch's error (the rule computed
    with a guessed type before)."""
    g = torch.Generator().manual_seed(7)
    B, L, E, H = 2, 5, 8, 2
    R = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    q, dq = R(B, L, E), R(B, L, E)
    weights = (R(3 * E, E), R(3 * E), R(E, E), R(E))
    m, mask_type = {"none": (None, None), "attn_mask (type 0)": (torch.rand(L, L, generator=g) > 0.7, 0),
                    "key padding (type 1)": (torch.rand(B, L, generator=g) > 0.7, 1),
                    "merged (type 2)": (torch.rand(B, H, L, L, generator=g) > 0.7, 2),
                    "untyped": (torch.rand(L, L, generator=g) > 0.7, None)}[mask]
    if m is not None:
        m[..., 0] = False  # every row attends somewhere: no NaN rows to compare

    def f(x):
        return aten._native_multi_head_attention(x, x, x, E, H, *weights, m, need_weights, True, mask_type)

    lq = q.nonstd(dq)
    if mask == "untyped":
        with pytest.raises(RuntimeError, match="Mask Type should be defined"):
            f(q)
        with torch.inference_mode(), pytest.raises(RuntimeError, match="Mask Type should be defined"):
            f(lq)
        return
    want = f(q)
    with torch.inference_mode():
        got = f(lq)
    torch.testing.assert_close(torchlc.coeff(got[0], 0), want[0], rtol=1e-12, atol=1e-12)
    if need_weights:
        torch.testing.assert_close(torchlc.coeff(got[1], 0), want[1], rtol=1e-12, atol=1e-12)


_GQA_MASKS = {
    "none": lambda B, H, L, S, g: None,
    "padding": lambda B, H, L, S, g: torch.randn(B, 1, 1, S, generator=g, dtype=torch.float64),
    "bool padding": lambda B, H, L, S, g: torch.rand(B, 1, 1, S, generator=g) > 0.3,
    "per head": lambda B, H, L, S, g: torch.randn(B, H, L, S, generator=g, dtype=torch.float64),
    "heads only": lambda B, H, L, S, g: torch.randn(H, L, S, generator=g, dtype=torch.float64),
    "2-D": lambda B, H, L, S, g: torch.randn(L, S, generator=g, dtype=torch.float64),
    "1-D": lambda B, H, L, S, g: torch.randn(S, generator=g, dtype=torch.float64),
}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", sorted(_GQA_MASKS))
def test_grouped_query_attention_jet_shares_the_kv_heads(mask, causal):
    """Grouped-query attention's jet stacks each kv head's query heads into one product with k and v
    as they are: no tensor of k's size times H/Hk is made (k and v copied to the query heads), and the
    planes are the jet's on k and v repeated to the query heads, for every mask shape."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from torchlc.ops import attention as lc_attention

    if causal and mask != "none":
        pytest.skip("a causal call takes no mask")
    g = torch.Generator().manual_seed(5)
    B, H, Hk, L, S, D = 2, 6, 2, 5, 7, 4
    Q = torch.randn(2, B, L, H, D, generator=g, dtype=torch.float64).transpose(2, 3)  # views of projections
    K, V = (torch.randn(2, B, Hk, S, D, generator=g, dtype=torch.float64) for _ in range(2))
    m = _GQA_MASKS[mask](B, H, L, S, g)

    class Sizes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            res = func(*args, **(kwargs or {}))
            made.extend((str(func), t.numel()) for t in (res if isinstance(res, (tuple, list)) else [res])
                        if isinstance(t, torch.Tensor) and not t._is_view())
            return res

    made = []
    with Sizes():
        o, attn, scores = lc_attention._sdpa_jet(Q, K, V, m, causal, None, True)
    assert made and not [op for op, n in made if n in (K.numel() * 3, K.numel() * 3 // 2)], made  # sizes unique here
    wo, wattn, wscores = lc_attention._sdpa_jet(Q, K.repeat_interleave(3, 2), V.repeat_interleave(3, 2), m, causal,
                                                None, False)
    torch.testing.assert_close(o, wo, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(attn.reshape(wattn.shape), wattn, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(scores.reshape(wscores.shape), wscores, rtol=1e-13, atol=1e-13)


_SDPA_KERNELS = {
    "math": (aten._scaled_dot_product_attention_math.default, ("attn_mask", "dropout_p", "is_causal", "dropout_mask")),
    "flash_cpu": (aten._scaled_dot_product_flash_attention_for_cpu.default, ("dropout_p", "is_causal")),
}


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("kernel", sorted(_SDPA_KERNELS))
@pytest.mark.parametrize("case", sorted(_SDPA_CASES))
def test_sdpa_kernels_called_directly_are_torchs(mode, kernel, case):
    """The SDPA kernels called directly, not through F.scaled_dot_product_attention (which turns a bool
    mask into 0/−inf first): on LC inputs each output's standard part is the plain kernel's on the same
    arguments, or the call raises torch's error for them, and the math kernel's ε¹ coefficients are its
    jvp. (The math kernel adds a bool mask as 0/1; the LC rule took it as F.scaled_dot_product_attention's
    attend-to mask, a wrong standard part with no error, before the rule converted it.)"""
    func, positional = _SDPA_KERNELS[kernel]
    primals, tangents, kw = _sdpa_inputs(case)
    if kernel == "flash_cpu":
        kw.pop("enable_gqa", None)  # the CPU flash kernel has no such argument (its shapes must agree)
    args = [kw.pop(name) if name in kw else None if name.endswith("mask") else {"dropout_p": 0.0}.get(name, False)
            for name in positional]
    ctx = torch.no_grad if mode == "no_grad" else torch.inference_mode
    with ctx():
        try:
            want = func(*primals, *args, **kw)
        except RuntimeError as e:
            with pytest.raises(RuntimeError, match=re.escape(str(e).splitlines()[0])):
                func(*(p.nonstd(t) for p, t in zip(primals, tangents)), *args, **kw)
            return
        got = func(*(p.nonstd(t) for p, t in zip(primals, tangents)), *args, **kw)
    for g, w in zip(got, want):
        torch.testing.assert_close(torchlc.coeff(g, 0), w, rtol=1e-12, atol=1e-12)
    if kernel == "math":
        _, tangent = torch.func.jvp(lambda a, b, c: func(a, b, c, *args, **kw), primals, tangents)
        for g, t in zip(got, tangent):
            torch.testing.assert_close(torchlc.coeff(g, 1), t, rtol=1e-12, atol=1e-12)


def test_sdpa_logsumexp_of_a_masked_row():
    """The CPU flash kernel's logsumexp under a mask: −inf (and a zero ε¹ coefficient) for a row that
    attends to nothing, torch.logsumexp of the masked scores elsewhere."""
    (q, k, v), (dq, dk, dv), kw = _sdpa_inputs("bool_mask")
    mask = torch.zeros(kw["attn_mask"].shape, dtype=torch.float64).masked_fill(~kw["attn_mask"], float("-inf"))
    _, lse = aten._scaled_dot_product_flash_attention_for_cpu.default(q.nonstd(dq), k.nonstd(dk), v.nonstd(dv),
                                                                     attn_mask=mask)
    assert torchlc.coeff(lse, 0)[..., 0].eq(float("-inf")).all() and not torchlc.coeff(lse, 1)[..., 0].any()
    want = torch.logsumexp(q @ k.transpose(-2, -1) / 8**0.5 + mask, -1)
    torch.testing.assert_close(torchlc.coeff(lse, 0)[..., 1:], want[..., 1:], rtol=1e-12, atol=1e-12)


def test_sdpa_general_inputs_take_the_decomposition():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    (q, k, v), (dq, dk, dv), _ = _sdpa_inputs("plain")
    mask = torch.randn(5, 7, dtype=torch.float64)
    f = lambda a, b, c: torch.nn.functional.scaled_dot_product_attention(a, b, c, attn_mask=mask, scale=0.4)  # noqa: E731
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        y = f(q.nonstd(dq, order=2), k.nonstd(dk, order=2), v.nonstd(dv, order=2))  # order 2: not a jet
    with sdpa_kernel(SDPBackend.MATH):
        y0, y1 = torch.func.jvp(f, (q, k, v), (dq, dk, dv))
    assert torchlc.order(y) == 2
    torch.testing.assert_close(torchlc.coeff(y, 0), y0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(y, 1), y1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", ["efficient", "flash", "cudnn"])
@pytest.mark.parametrize("order", [1, 2])
def test_sdpa_cuda_kernels_on_lc(kernel, order):
    # PyTorch's CUDA SDPA backends have no CPU kernels, but the LC rules run before the backend, so
    # they are exercised here directly: output as the math kernel, logsumexp as its jet
    (q, k, v), (dq, dk, dv), _ = _sdpa_inputs("causal")
    Q, K, V = q.nonstd(dq, order=order), k.nonstd(dk, order=order), v.nonstd(dv, order=order)
    if kernel == "efficient":
        res = aten._scaled_dot_product_efficient_attention.default(Q, K, V, None, True, 0.0, True)
    elif kernel == "flash":
        res = aten._scaled_dot_product_flash_attention.default(Q, K, V, 0.0, True)
    else:
        res = aten._scaled_dot_product_cudnn_attention.default(Q, K, V, None, True, 0.0, True)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    f = lambda a, b, c: torch.nn.functional.scaled_dot_product_attention(a, b, c, is_causal=True)  # noqa: E731
    with sdpa_kernel(SDPBackend.MATH):
        y0, y1 = torch.func.jvp(f, (q, k, v), (dq, dk, dv))
    torch.testing.assert_close(torchlc.coeff(res[0], 0), y0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(res[0], 1), y1, rtol=1e-12, atol=1e-12)
    if order == 1:
        mask = torch.ones(5, 5, dtype=torch.bool).tril()
        ref = lambda a, b: torch.logsumexp((a @ b.transpose(-2, -1) / 8**0.5).masked_fill(~mask, float("-inf")), -1)  # noqa: E731
        l0, l1 = torch.func.jvp(ref, (q, k), (dq, dk))
        torch.testing.assert_close(torchlc.coeff(res[1], 0), l0, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(torchlc.coeff(res[1], 1), l1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", ["efficient", "cudnn"])
def test_sdpa_cuda_kernels_without_logsumexp(kernel):
    """compute_log_sumexp=False (what SDPA passes under no_grad): the same output bit for bit, an empty
    logsumexp, and the formulas skip its planes (fewer kernels than with the logsumexp)."""
    from torchlc.bench.measure import kernel_names

    (q, k, v), (dq, dk, dv), _ = _sdpa_inputs("causal")
    Q, K, V = q.nonstd(dq), k.nonstd(dk), v.nonstd(dv)
    op = {"efficient": aten._scaled_dot_product_efficient_attention.default,
          "cudnn": aten._scaled_dot_product_cudnn_attention.default}[kernel]
    with_lse = lambda: op(Q, K, V, None, True, 0.0, True)  # noqa: E731
    without = lambda: op(Q, K, V, None, False, 0.0, True)  # noqa: E731
    a, b = with_lse(), without()
    assert torch.equal(a[0].lc_planes(), b[0].lc_planes())
    assert a[1].numel() > 0 and b[1].numel() == 0 and not isinstance(b[1], torchlc.LCTensor)
    assert len(kernel_names(without)) < len(kernel_names(with_lse))


# -- the attention jet: interleaved planes (eager) against the stacked formula (traced code) ----------


def _stacked_attention(Q, K, V, scale, mask):
    """The product-rule formula on stacked planes, written out (the reference for the jet)."""
    a, b = Q * scale
    c, d = K.transpose(-2, -1)
    s0, s1 = a @ c, b @ c + a @ d
    if mask is not None:
        s0 = s0 + mask
    p = torch.softmax(s0, -1)
    p1 = p * (s1 - (p * s1).sum(-1, keepdim=True))
    return torch.stack([p @ V[0], p1 @ V[0] + p @ V[1]]), torch.stack([p, p1])


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("batch", [(3,), (2, 4)])
def test_interleaved_attention_equals_the_product_rule(batch, masked):
    from torchlc import _jet

    g = torch.Generator().manual_seed(len(batch) + masked)
    L, S, E, Ev = 5, 7, 6, 3
    Q = torch.randn(2, *batch, L, E, generator=g, dtype=torch.float64)
    K = torch.randn(2, *batch, S, E, generator=g, dtype=torch.float64)
    V = torch.randn(2, *batch, S, Ev, generator=g, dtype=torch.float64)
    mask = None
    if masked:
        mask = torch.zeros(L, S, dtype=torch.float64).masked_fill(torch.rand(L, S, generator=g) < 0.3, float("-inf"))
        mask[:, 0] = 0.0  # no entirely masked row
    o, attn, scores = _jet.attention(Q, K, V, 0.37, mask)
    o_ref, attn_ref = _stacked_attention(Q, K, V, 0.37, mask)
    assert o.shape == o_ref.shape and attn.shape == attn_ref.shape
    torch.testing.assert_close(o, o_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(attn, attn_ref, rtol=1e-12, atol=1e-12)
    # the traced-code formulation (no in-place, no interleaving) gives the same planes
    torch.compiler.is_compiling, old = (lambda: True), torch.compiler.is_compiling
    try:
        o_t, attn_t, _ = _jet.attention(Q, K, V, 0.37, mask)
    finally:
        torch.compiler.is_compiling = old
    torch.testing.assert_close(o_t, o_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(attn_t, attn_ref, rtol=1e-12, atol=1e-12)


def test_qkv_planes_split_heads_from_one_copy():
    from torchlc import _jet

    B, L, H, D = 2, 5, 3, 4
    Y = torch.randn(2, B, L, 3 * H * D, dtype=torch.float64)
    q, k, v = _jet.qkv_planes(Y, H)
    for i, t in enumerate((q, k, v)):
        want = Y[..., i * H * D : (i + 1) * H * D].reshape(2, B, L, H, D).transpose(2, 3)
        assert torch.equal(t, want)
    assert q.movedim(0, -3).is_contiguous()  # q interleaved: (B, H, 2, L, D) storage
    assert k[0].reshape(B * H, L, D)._base is not None  # k's planes fold their batch dims without a copy


@pytest.mark.parametrize("affine", [False, True])
def test_traced_layer_norm_formula_equals_the_stacked_one(affine):
    """The planes-as-separate-tensors layer norm that CUDA traces use gives the stacked formula's
    output and statistics."""
    from torchlc import _jet

    g = torch.Generator().manual_seed(5)
    P = torch.randn(2, 3, 4, 6, generator=g, dtype=torch.float64)
    w, b = (torch.randn(4, 6, generator=g, dtype=torch.float64) if affine else None for _ in range(2))
    got = _jet._layer_norm_traced(P, (2, 3), w, b, 1e-5, True, P.dtype)
    want = _jet.layer_norm(P.clone(), 2, w, b, 1e-5, stats=True)
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("interleaved", [False, True])
def test_first_order_bmm_is_the_cauchy_product(interleaved):
    """LC × LC bmm at first order (two GEMMs, c broadcast over the planes) gives the general
    truncated Cauchy product's planes (grad mode on takes it) bit for bit, jvp's within rounding, on
    fresh operands and on a previous bmm's result, whose planes are laid out as torch's bmm result
    (contiguous); other supports and mixed dtypes take the general rule."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    a, da, b, db = r(3, 5, 4), r(3, 5, 4), r(3, 4, 6), r(3, 4, 6)
    A, B = a.nonstd(da), b.nonstd(db)
    if interleaved:  # the planes of a previous first-order bmm
        with torch.no_grad():
            A = torch.bmm(A, torch.eye(4, dtype=torch.float64).expand(3, 4, 4).nonstd(torch.zeros(3, 4, 4, dtype=torch.float64)))
        assert A.is_contiguous() and torchlc.coeffs(A).is_contiguous()
    from torchlc.bench.measure import kernel_names

    with torch.no_grad():
        fast = torch.bmm(A, B)
        gemms = [n for n in kernel_names(lambda: torch.bmm(A, B)) if "bmm" in n]
        assert len(gemms) == 2, gemms  # the general rule takes three
    general = torch.bmm(A, B)  # grad mode on: the general rule
    assert torchlc.support(fast) == torchlc.support(general) and torchlc.order(fast) == 1
    assert fast.lc_exact == general.lc_exact
    assert torch.equal(torchlc.coeffs(fast), torchlc.coeffs(general))
    y0, y1 = torch.func.jvp(torch.bmm, (torchlc.coeff(A, 0), b), (torchlc.coeff(A, 1), db))
    torch.testing.assert_close(torchlc.coeff(fast, 0), y0, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(torchlc.coeff(fast, 1), y1, rtol=1e-14, atol=1e-14)
    with torch.no_grad():
        second = torch.bmm(a.nonstd(da, order=2), B)  # order 2: the general rule, an ε² term
        assert 2 in torchlc.support(second)
        with pytest.raises(RuntimeError):
            torch.bmm(A, b.float().nonstd(db.float()))  # mixed dtypes: torch's own error


def test_safe_softmax_zeroes_dead_rows_in_place():
    """_safe_softmax at first order: rows whose every score is −inf give +0.0 in both planes, the other
    rows softmax's jet, bit for bit as the general select (grad mode on)."""
    g = torch.Generator().manual_seed(1)
    s, ds = torch.randn(2, 3, 6, generator=g), torch.randn(2, 3, 6, generator=g)
    s[0, 1] = float("-inf")
    s[1, 2, :4] = float("-inf")
    S = s.nonstd(ds)
    with torch.no_grad():
        fast = aten._safe_softmax.default(S, -1)
    general = aten._safe_softmax.default(S, -1)
    assert torch.equal(torchlc.coeffs(fast), torchlc.coeffs(general))
    assert torchlc.coeffs(fast)[:, 0, 1].eq(0).all() and not torchlc.coeffs(fast)[:, 0, 1].signbit().any()
    assert torchlc.coeffs(fast)[0, 1, 2, :4].eq(0).all() and torchlc.coeffs(fast)[0, 1, 2, 4:].gt(0).all()
