"""torchlc on a CUDA device: the paths that only exist there (skipped without CUDA).

Fused Triton selection kernels, PyTorch's CUDA SDPA backends (efficient/flash/cuDNN), the recurrent
layers routed at ``AutogradCUDA``, and the fused transformer fast path; each checked against
``torch.func.jvp`` on the math path.
"""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import torchlc

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

DEV = "cuda"


def _jvp(f, x, v):
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            return torch.func.jvp(f, (x,), (v,))
    finally:
        torch.backends.mha.set_fastpath_enabled(True)


def _check(y, ref, tol):
    y0, y1 = ref
    torch.testing.assert_close(torchlc.coeff(y, 0), y0, rtol=tol, atol=tol)
    torch.testing.assert_close(torchlc.coeff(y, 1), y1, rtol=tol, atol=tol)


def test_mlp_with_fused_relu():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).to(DEV)
    x = torch.randn(32, 64, device=DEV)
    v = torch.randn_like(x)
    with torch.no_grad():
        y = m(x.nonstd(v))
    _check(y, _jvp(m, x, v), 1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_sdpa_default_cuda_backend(dtype):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 8, device=DEV, dtype=dtype) for _ in range(3))
    dq, dk, dv = (torch.randn_like(q) for _ in range(3))
    with torch.no_grad():
        y = torch.nn.functional.scaled_dot_product_attention(q.nonstd(dq), k.nonstd(dk), v.nonstd(dv), is_causal=True)
    with sdpa_kernel(SDPBackend.MATH):
        ref = torch.func.jvp(lambda a, b, c: torch.nn.functional.scaled_dot_product_attention(a, b, c, is_causal=True),
                             (q.float(), k.float(), v.float()), (dq.float(), dk.float(), dv.float()))
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(torchlc.coeff(y, 0).float(), ref[0], rtol=tol, atol=tol)
    torch.testing.assert_close(torchlc.coeff(y, 1).float(), ref[1], rtol=tol, atol=tol)


@pytest.mark.parametrize("fast_path", [True, False])
def test_transformer_encoder(fast_path):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    m = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).to(DEV).eval()
    x = torch.randn(3, 10, 32, device=DEV)
    v = torch.randn_like(x)
    torch.backends.mha.set_fastpath_enabled(fast_path)
    try:
        with torch.no_grad():
            y = m(x.nonstd(v))
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    _check(y, _jvp(m, x, v), 1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("padding", [False, True])
def test_half_precision_encoder_is_as_accurate_as_the_formulas(monkeypatch, dtype, norm_first, padding):
    """The fused half-precision encoder (flash-style attention jet, tiled head copies) is as close to
    torch.func.jvp of the float32 model as the jet's torch formulas in the same precision are, with
    and without a key padding mask."""
    from torchlc.kernels import jets

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True, norm_first=norm_first)
    m = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).to(DEV).eval()
    x = torch.randn(3, 70, 64, device=DEV)
    v = torch.randn_like(x)
    kw = {}
    if padding:
        mask = torch.zeros(3, 70, dtype=torch.bool, device=DEV)
        mask[0, 50:] = True
        mask[2, 7:] = True
        kw = {"src_key_padding_mask": mask}
    ref = _jvp(lambda t: m(t, **kw), x, v)
    m = m.to(dtype)
    calls = []
    fused = jets.attention_merged
    monkeypatch.setattr(jets, "attention_merged", lambda *a: calls.append(1) or fused(*a))

    def errors():
        with torch.no_grad():
            y = m(x.to(dtype).nonstd(v.to(dtype)), **kw)
        return [(torchlc.coeff(y, k).float() - ref[k]).abs().max().item() for k in (0, 1)]

    got = errors()
    assert calls  # the flash-style jet ran
    monkeypatch.setattr(jets, "attention_merged", lambda *a: None)
    monkeypatch.setattr(jets, "contiguous_rows", lambda *a, **k: None)
    formulas = errors()
    for f, t in zip(got, formulas):
        assert f <= 1.5 * t + 1e-3, (got, formulas)


@pytest.mark.parametrize("need_weights", [False, True])
def test_half_precision_self_attention_is_as_accurate_as_the_formulas(monkeypatch, need_weights):
    """MultiheadAttention in bf16 (eval, self-attention): without weights it takes the flash-style
    jet, and is as close to jvp of the float32 module as the formulas; with weights they are returned."""
    from torchlc.kernels import jets

    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(64, 4, batch_first=True).to(DEV).eval()
    x = torch.randn(3, 70, 64, device=DEV)
    v = torch.randn_like(x)
    ref = _jvp(lambda t: mha(t, t, t, need_weights=False)[0], x, v)
    mha = mha.to(torch.bfloat16)
    calls = []
    fused = jets.attention_merged
    monkeypatch.setattr(jets, "attention_merged", lambda *a: calls.append(1) or fused(*a))

    def errors():
        with torch.no_grad():
            t = x.to(torch.bfloat16).nonstd(v.to(torch.bfloat16))
            y, w = mha(t, t, t, need_weights=need_weights)
        assert (w is not None and w.shape == (3, 70, 70)) == need_weights
        return [(torchlc.coeff(y, k).float() - ref[k]).abs().max().item() for k in (0, 1)]

    got = errors()
    assert bool(calls) != need_weights
    monkeypatch.setattr(jets, "attention_merged", lambda *a: None)
    formulas = errors()
    for f, t in zip(got, formulas):
        assert f <= 1.5 * t + 1e-3, (got, formulas)


@pytest.mark.parametrize("case", ["causal", "bool mask", "float mask", "grouped heads"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_sdpa_takes_the_flash_jet(monkeypatch, case, dtype):
    """F.scaled_dot_product_attention on half-precision LC q, k, v (views of (B, L, H, D) projections,
    as models write them) reaches a CUDA kernel's rule, which runs the flash-style jet: as close to
    jvp of the float32 call as the formulas in the same precision."""
    from torchlc.kernels import jets

    g = torch.Generator(device=DEV).manual_seed(0)
    B, L, H, D = 3, 150, 4, 64
    Hk = 2 if case == "grouped heads" else H
    x = [torch.randn(B, L, h, D, device=DEV, generator=g).transpose(1, 2) for h in (H, Hk, Hk)]
    t = [torch.randn_like(a) for a in x]
    kw = {"causal": {"is_causal": True}, "grouped heads": {"is_causal": True, "enable_gqa": True}}.get(case, {})
    if case == "bool mask":  # what to attend to (no row left empty: there the CUDA kernels' masks, which
        # are finite for cuDNN, and the math kernel's _safe_softmax disagree, for plain tensors too)
        kw = {"attn_mask": torch.rand(B, 1, L, L, device=DEV, generator=g) < 0.7}
    elif case == "float mask":
        kw = {"attn_mask": torch.randn(B, H, L, L, device=DEV, generator=g)}
    f = lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, **kw)  # noqa: E731
    with sdpa_kernel(SDPBackend.MATH):
        ref = torch.func.jvp(f, tuple(x), tuple(t))
    calls = []
    fused = jets.flash_attention
    monkeypatch.setattr(jets, "flash_attention", lambda *a, **k: calls.append(1) or fused(*a, **k))

    def errors():
        with torch.no_grad():
            y = f(*(a.to(dtype).nonstd(b.to(dtype)) for a, b in zip(x, t)))
        assert y.shape == (B, H, L, D) and y.dtype == dtype
        return [(torchlc.coeff(y, k).float() - ref[k]).abs().max().item() for k in (0, 1)]

    got = errors()
    assert calls  # the flash-style jet ran
    monkeypatch.setattr(jets, "flash_attention", lambda *a, **k: None)
    formulas = errors()
    for e, r in zip(got, formulas):
        assert e <= 1.5 * r + 1e-3, (got, formulas)


def test_half_precision_decoder_layer_takes_the_flash_jet(monkeypatch):
    """A bf16 TransformerDecoderLayer (eval, causal self-attention, cross-attention to a memory) runs
    both attentions through SDPA's kernels, so the flash-style jet: as close to jvp of the float32
    layer as the formulas in bf16."""
    from torchlc.kernels import jets

    torch.manual_seed(0)
    layer = torch.nn.TransformerDecoderLayer(64, 4, 128, dropout=0.0, batch_first=True).to(DEV).eval()
    x, mem = torch.randn(3, 40, 64, device=DEV), torch.randn(3, 70, 64, device=DEV)
    v = torch.randn_like(x)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(40, device=DEV)
    ref = _jvp(lambda t: layer(t, mem, tgt_mask=causal, tgt_is_causal=True), x, v)
    layer = layer.to(torch.bfloat16)
    calls = []
    fused = jets.flash_attention
    monkeypatch.setattr(jets, "flash_attention", lambda *a, **k: calls.append(1) or fused(*a, **k))

    def errors():
        with torch.no_grad():
            y = layer(x.to(torch.bfloat16).nonstd(v.to(torch.bfloat16)), mem.to(torch.bfloat16),
                      tgt_mask=causal.to(torch.bfloat16), tgt_is_causal=True)
        return [(torchlc.coeff(y, k).float() - ref[k]).abs().max().item() for k in (0, 1)]

    got = errors()
    assert len(calls) == 2  # self- and cross-attention
    monkeypatch.setattr(jets, "flash_attention", lambda *a, **k: None)
    formulas = errors()
    for e, r in zip(got, formulas):
        assert e <= 1.5 * r + 1e-3, (got, formulas)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_linear_planes_equal_the_plain_layer(dtype):
    """In half precision nn.Linear on x.nonstd(v) adds the bias in the ε⁰ GEMM's epilogue, as the plain
    layer does: the ε⁰ plane is lin(x) and the ε¹ plane v·Wᵀ, bit for bit (2-d and 3-d inputs)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(96, 80).to(DEV, dtype)
    for shape in ((50, 96), (3, 17, 96)):
        x, v = torch.randn(shape, device=DEV, dtype=dtype), torch.randn(shape, device=DEV, dtype=dtype)
        with torch.no_grad():
            y = lin(x.nonstd(v))
            assert torch.equal(torchlc.coeff(y, 0), lin(x))
            assert torch.equal(torchlc.coeff(y, 1), torch.nn.functional.linear(v, lin.weight))


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_compiled_sdpa_runs_the_flash_jet(mode):
    """torchlc.compile with grad off: the SDPA call is one opaque op running the same kernel as eager,
    so the compiled result is the eager one bit for bit (Inductor alone, and under CUDA graphs)."""
    g = torch.Generator(device=DEV).manual_seed(1)
    q, k, v, dq, dk, dv = (torch.randn(2, 96, 4, 64, device=DEV, dtype=torch.bfloat16, generator=g).transpose(1, 2)
                           for _ in range(6))

    def f(a, b, c):
        return torch.nn.functional.scaled_dot_product_attention(a, b, c, is_causal=True)

    cf = torchlc.compile(f, mode=mode)
    with torch.no_grad():
        for _ in range(3):  # trace, (record,) replay
            y = cf(q.nonstd(dq), k.nonstd(dk), v.nonstd(dv))
        ref = f(q.nonstd(dq), k.nonstd(dk), v.nonstd(dv))
    assert torch.equal(torchlc.coeffs(y), torchlc.coeffs(ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bias_fused_into_relu_and_add_norm_is_exact(dtype):
    """The encoder layer's fused consumers give bit for bit what the separate adds then the kernels
    give: relu(P + bias on ε⁰) and layer_norm(residual + (P + bias on ε⁰))."""
    from torchlc import _jet
    from torchlc.kernels import relu2

    g = torch.Generator(device=DEV).manual_seed(0)
    P, R = (torch.randn(2, 64, 96, device=DEV, dtype=dtype, generator=g) for _ in range(2))
    bias, w, b = (torch.randn(96, device=DEV, dtype=dtype, generator=g) for _ in range(3))
    biased = torch.stack([P[0] + bias, P[1]])
    assert torch.equal(relu2(P, bias), relu2(biased))
    got = _jet.layer_norm(P.clone(), 1, w, b, 1e-5, residual=R, bias0=bias)
    assert torch.equal(got, _jet.layer_norm(R + biased, 1, w, b, 1e-5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fused_integer_power_is_the_product_path(dtype):
    """x**3 and x**4 in one kernel give the product path's two mul2 launches bit for bit (half types
    round x·x to the dtype in registers as the store between the launches does)."""
    from torchlc import kernels

    g = torch.Generator(device=DEV).manual_seed(0)
    p = torch.randn(2, 5, 1001, device=DEV, dtype=dtype, generator=g)
    s2 = kernels.mul2(p, p)
    assert torch.equal(kernels.powint2(p, 3), kernels.mul2(s2, p))
    assert torch.equal(kernels.powint2(p, 4), kernels.mul2(s2, s2))
    with torch.no_grad():
        y = torchlc.from_terms({0: p[0], 1: p[1]}) ** 3
    assert torch.equal(torchlc.coeffs(y), kernels.mul2(s2, p))
    # and the product kernel rounds as the torch path (what autograd recording runs): mul, mul, addcmul_
    q = torch.randn(p.shape, device=DEV, dtype=dtype, generator=g)
    torch_path = torch.stack([p[0] * q[0], torch.addcmul(p[0] * q[1], p[1], q[0])])
    assert torch.equal(kernels.mul2(p, q), torch_path)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_max_pool_jet_kernel_is_the_formulas(monkeypatch, dtype, channels_last):
    """The one-pass max-pool kernel against the window formulas (ties, ±inf, NaN), values and indices;
    channels-last planes are read in place and give channels-last results, as torch's pooling."""
    import torch.nn.functional as F

    from torchlc.kernels import jets

    g = torch.Generator(device=DEV).manual_seed(0)
    x = torch.randint(-2, 3, (4, 8, 33, 30), device=DEV, generator=g).to(dtype)
    v = torch.randint(-2, 3, x.shape, device=DEV, generator=g).to(dtype)
    x.view(-1)[::97] = float("nan")
    v.view(-1)[5::89] = float("-inf")
    if channels_last:
        x, v = x.to(memory_format=torch.channels_last), v.to(memory_format=torch.channels_last)
    X = x.nonstd(v)
    calls = []
    real = jets.max_pool2d_jet
    monkeypatch.setattr(jets, "max_pool2d_jet", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        got, gi = F.max_pool2d(X, 3, 2, 1, return_indices=True)
        assert calls
        monkeypatch.setattr(jets, "max_pool2d_jet", lambda *a: None)
        want, wi = F.max_pool2d(X, 3, 2, 1, return_indices=True)
    assert torch.equal(torchlc.coeffs(got).nan_to_num(7.5), torchlc.coeffs(want).nan_to_num(7.5))
    assert torch.equal(gi, wi)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert torchlc.coeffs(got)[0].is_contiguous(memory_format=layout) and gi.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_head_split_and_merge_copies_are_exact(dtype):
    """The attention jet's tiled head split (with the in-projection's bias on ε⁰) and merge give
    torch's copies and add bit for bit."""
    from torchlc import _jet

    g = torch.Generator(device=DEV).manual_seed(0)
    Y = torch.randn(2, 8, 33, 3 * 4 * 64, device=DEV, dtype=dtype, generator=g)
    bias = torch.randn(3 * 4 * 64, device=DEV, dtype=dtype, generator=g)
    Yb = torch.stack([Y[0] + bias, Y[1]]).view(2, 8, 33, 3, 4, 64)
    for i, t in enumerate(_jet.qkv_planes(Y, 4, bias)):
        assert torch.equal(t, Yb[:, :, :, i].transpose(2, 3))
    Po = torch.randn(8 * 4, 2 * 33, 64, device=DEV, dtype=dtype, generator=g).view(8, 4, 2, 33, 64)
    Po = Po.permute(2, 0, 1, 3, 4)
    assert torch.equal(_jet.merge_heads(Po), Po.transpose(2, 3).reshape(2, 8, 33, 256))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_flash_attention_jet_matches_the_formulas(dtype):
    """The flash-style attention jet (one kernel, heads merged) against the torch formulas in float64."""
    from torchlc import _jet
    from torchlc.kernels import jets

    g = torch.Generator(device=DEV).manual_seed(0)
    Q, K, V = (torch.randn(2, 4, 4, 130, 64, device=DEV, generator=g).to(dtype) for _ in range(3))
    got = jets.attention_merged(Q, K, V, 0.125)
    if dtype == torch.float32:  # full-precision float32 products stay on cuBLAS
        assert got is None
        return
    want = _jet.merge_heads(_jet.attention(Q.double(), K.double(), V.double(), 0.125)[0])
    torch.testing.assert_close(got.double(), want, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("cls", [torch.nn.RNN, torch.nn.GRU, torch.nn.LSTM])
def test_recurrent_layers_with_autograd(cls):
    torch.manual_seed(0)
    m = cls(4, 6, num_layers=2, batch_first=True).to(DEV)
    x = torch.randn(3, 5, 4, device=DEV)
    v = torch.randn_like(x)
    y = m(x.nonstd(v))[0]
    # reference on the CPU: forward AD has no rule for cuDNN's RNN nor for CUDA's fused GRU/LSTM cells
    m_cpu = cls(4, 6, num_layers=2, batch_first=True)
    m_cpu.load_state_dict(m.state_dict())
    with torch.backends.mkldnn.flags(enabled=False):  # nor for mkldnn's LSTM layer
        ref = torch.func.jvp(lambda t: m_cpu(t)[0], (x.cpu(),), (v.cpu(),))
    _check(y, tuple(r.to(DEV) for r in ref), 1e-4)
    torchlc.coeff(y, 1).pow(2).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    # plain calls still take cuDNN
    assert m(x)[0].grad_fn is not None


def test_torchlc_compile_with_cuda_graphs():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).to(DEV).eval()
    f = torchlc.compile(m, mode="reduce-overhead")
    with torch.no_grad():
        for _ in range(3):  # warm-up, recording, replay
            x = torch.randn(32, 64, device=DEV)
            v = torch.randn_like(x)
            y = f(x.nonstd(v))
            ref = m(x.nonstd(v))
            torch.testing.assert_close(torchlc.coeffs(y), torchlc.coeffs(ref), rtol=1e-5, atol=1e-5)
