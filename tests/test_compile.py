"""torch.compile and torchlc.compile on LC code: values equal eager, gradients equal eager,
speculated supports fall back to eager, in-place mutation of inputs is kept, cache keys carry
the rule hash."""

import pytest
import torch
import torch.nn.functional as F

import torchlc

f64 = torch.float64


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).double()


def test_dynamo_lc_in_lc_out_fullgraph_no_grad():
    m = _mlp()
    x = torch.randn(4, 3, dtype=f64).nonstd(torch.randn(4, 3, dtype=f64))
    with torch.no_grad():
        y = torch.compile(m, backend="aot_eager", fullgraph=True)(x)
        ref = m(x)
    assert isinstance(y, torchlc.LCTensor)
    assert torchlc.support(y) == torchlc.support(ref)
    torch.testing.assert_close(torchlc.coeffs(y), torchlc.coeffs(ref), rtol=0, atol=0)


def test_torchlc_compile_training_gradients_equal_eager():
    m = _mlp()
    x = torch.randn(4, 3, dtype=f64)
    v = torch.randn(4, 3, dtype=f64)

    def loss_fn(z):
        y = torch.tanh(m(z)) / (1 + z.abs().sum())
        return y

    step = torchlc.compile(loss_fn, backend="aot_eager", fullgraph=True)
    grads = []
    for fn in (step, loss_fn):
        m.zero_grad()
        y = fn(x.nonstd(v))
        (torchlc.coeff(y, 1) ** 2).sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_speculated_support_falls_back_to_eager():
    recip = torchlc.compile(lambda z: 1 / z, backend="aot_eager")
    a = recip(torch.tensor([1.0, 2.0], dtype=f64).nonstd())      # traced: every element led by ε⁰
    b = recip(torch.tensor([0.0, 2.0], dtype=f64).nonstd())      # 1/ε: another lead, eager fallback
    assert torchlc.support(a) == (0, 1)
    assert torchlc.coeff(b, -1).tolist() == [1.0, 0.0]
    assert torchlc.coeff(b, 0).tolist() == [0.0, 0.5]


def _mutate(x):
    x.add_(1.0)
    x.mul_(2.0)
    return x.sin()


def test_input_mutation_survives_compilation():
    for compiled in (
        torch.compile(_mutate, backend="aot_eager", fullgraph=True),
        torchlc.compile(_mutate, backend="aot_eager"),
    ):
        for _ in range(2):  # trace call and cached call
            x = torch.tensor([0.5, -1.0], dtype=f64).nonstd(torch.tensor([1.0, 3.0], dtype=f64))
            with torch.no_grad():
                compiled(x)
            assert torchlc.coeff(x, 0).tolist() == [3.0, 0.0]
            assert torchlc.coeff(x, 1).tolist() == [2.0, 6.0]


def test_flatten_context_carries_the_rule_hash():
    x = torch.ones(2).nonstd()
    names, ctx = x.__tensor_flatten__()
    assert torchlc.ops.RULES_HASH in ctx
    y = torchlc.LCTensor.__tensor_unflatten__({n: getattr(x, n) for n in names}, ctx, x.shape, x.stride())
    assert torch.equal(torchlc.coeffs(y), torchlc.coeffs(x))


# -- fused eval encoder layers: traced as eager runs them ---------------------------------------------


def _encoder(norm_first=False, activation="relu", dtype=f64):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, norm_first=norm_first,
                                             activation=activation)
    return torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).to(dtype).eval()


class _Recording:
    """A torch.compile backend that keeps the graphs it is given and runs them as they are."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return gm.forward

    def targets(self):
        return {str(n.target) for g in self.graphs for n in g.graph.nodes if n.op == "call_function"}


def _fast_path_traced() -> bool:
    from torchlc._compile import _FAST_PATH_OPTIONS

    return bool(_FAST_PATH_OPTIONS)


@pytest.mark.skipif(not _fast_path_traced(), reason="this torch's make_fx cannot trace without its function mode")
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("padding", [False, True])
def test_encoder_layers_trace_to_one_opaque_op_each(monkeypatch, norm_first, activation, padding):
    """Where hand-fused kernels exist (CUDA; forced here on the CPU), each fused eval encoder layer is
    one torchlc::encoder_layer_jet call in the traced graph, which runs the eager jet: the compiled
    result is the eager result bit for bit."""
    from torchlc.ops import transformer as lc_transformer

    monkeypatch.setattr(lc_transformer, "OPAQUE_ENCODER_DEVICES", {"cpu"})
    model = _encoder(norm_first, activation)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 16, dtype=f64, generator=g)
    v = torch.randn(3, 5, 16, dtype=f64, generator=g)
    kw = {}
    if padding:
        mask = torch.zeros(3, 5, dtype=torch.bool)
        mask[1, 3:] = True
        kw = {"src_key_padding_mask": mask}
    backend = _Recording()
    f = torchlc.compile(lambda t: model(t, **kw), backend=backend)
    with torch.no_grad():
        for _ in range(2):
            y, ref = f(x.nonstd(v)), model(x.nonstd(v), **kw)
            assert torch.equal(torchlc.coeffs(y), torchlc.coeffs(ref))
    assert len(backend.graphs) == 1
    calls = [n for n in backend.graphs[0].graph.nodes if n.target is torch.ops.torchlc.encoder_layer_jet.default]
    assert len(calls) == 2
    assert not {"aten.mm.default", "aten.bmm.default", "aten.baddbmm.default"} & backend.targets()


def test_encoder_layers_on_cpu_trace_the_composite_path(monkeypatch):
    """On the CPU the trace runs torch.nn's composite path, whose formulas Inductor compiles better
    there than the fused layer's jet."""
    from torchlc.ops import transformer as lc_transformer

    jets = []
    eager_jet = lc_transformer._encoder_layer_jet
    monkeypatch.setattr(lc_transformer, "_encoder_layer_jet", lambda *a, **k: jets.append(1) or eager_jet(*a, **k))
    model = _encoder()
    x = torch.randn(3, 5, 16, dtype=f64).nonstd(torch.randn(3, 5, 16, dtype=f64))
    backend = _Recording()
    with torch.no_grad():
        y = torchlc.compile(model, backend=backend)(x)
        assert not jets
        ref = model(x)
        assert len(jets) == 2  # eager takes the fused path
    torch.testing.assert_close(torchlc.coeffs(y), torchlc.coeffs(ref), rtol=1e-12, atol=1e-12)
    assert "torchlc.encoder_layer_jet.default" not in backend.targets()


def test_encoder_layer_op_passes_opcheck():
    """Schema, fake (meta) implementation and dynamic-shape tracing of the opaque op agree with its
    implementation."""
    layer = _encoder().layers[0]
    sa = layer.self_attn
    weights = [t.detach() for t in (sa.in_proj_weight, sa.in_proj_bias, sa.out_proj.weight, sa.out_proj.bias,
                                    layer.norm1.weight, layer.norm1.bias, layer.norm2.weight, layer.norm2.bias,
                                    layer.linear1.weight, layer.linear1.bias, layer.linear2.weight, layer.linear2.bias)]
    planes = torch.randn(2, 3, 5, 16, dtype=f64)
    for mask in (None, torch.zeros(3, 5, dtype=torch.bool)):
        args = (planes, mask, weights, 16, 2, False, False, 1e-5, None if mask is None else 1)
        torch.library.opcheck(torch.ops.torchlc.encoder_layer_jet.default, args)


def test_one_lc_argument_keys_on_its_metadata():
    """The single-LC-argument fast path keys on support, order, shape, dtype: each signature gets its
    own graph and the results equal eager."""
    m = _mlp()
    backend = _Recording()
    f = torchlc.compile(m, backend=backend)
    x, v = torch.randn(4, 3, dtype=f64), torch.randn(4, 3, dtype=f64)
    with torch.no_grad():
        inputs = [x.nonstd(v), x.nonstd(v, order=2), x[:2].nonstd(v[:2]), x.nonstd(v)]
        for t in inputs:
            assert torch.equal(torchlc.coeffs(f(t)), torchlc.coeffs(m(t)))
    assert len(backend.graphs) == 3


def test_key_carries_strides_grad_and_autocast():
    """A compiled graph is reused only for inputs it was traced for: other strides, a tangent that
    requires grad and autocast each trace anew, and each result is eager's. Strict mode runs eagerly
    (no graph; see test_compile_cache.py for its DomainError)."""
    m = _mlp()
    backend = _Recording()
    f = torchlc.compile(lambda t: m(t.t()), backend=backend)
    x, v = torch.randn(3, 4, dtype=f64), torch.randn(3, 4, dtype=f64)
    lx = x.nonstd(v)
    transposed = x.t().contiguous().nonstd(v.t().contiguous()).t()  # same shape, other strides
    with torch.no_grad():
        for t in (lx, transposed):
            assert torch.equal(torchlc.coeffs(f(t)), torchlc.coeffs(m(t.t())))
        with torchlc.strict():
            assert torch.equal(torchlc.coeffs(f(lx)), torchlc.coeffs(m(lx.t())))
    assert len(backend.graphs) == 2
    w = v.clone().requires_grad_()
    y = f(x.nonstd(w))
    assert len(backend.graphs) == 3
    (g,) = torch.autograd.grad(torchlc.coeff(y, 1).sum(), w)
    (ref,) = torch.autograd.grad(torchlc.coeff(m(x.nonstd(w).t()), 1).sum(), w)
    torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-12)
    m32 = torch.nn.Linear(4, 2)
    f32 = torchlc.compile(m32, backend=_Recording())
    x32 = torch.randn(3, 4).nonstd(torch.randn(3, 4))
    with torch.no_grad():
        assert f32(x32).dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, ref = f32(x32), m32(x32)
    assert y.dtype == ref.dtype == torch.bfloat16
    assert torch.equal(torchlc.coeffs(y), torchlc.coeffs(ref))


def test_inductor_compiles_the_trace_without_dynamo(monkeypatch):
    """With Inductor (torch.compile's default) and no CUDA graphs the traced graph is compiled
    directly: the wrapper's key is its guard, so Dynamo's per-call frame evaluation is skipped.
    Values and gradients match eager; CUDA graphs and other backends still go through
    torch.compile."""
    from torchlc import _compile

    real_compile = torch.compile
    via_dynamo = []
    monkeypatch.setattr(_compile.torch, "compile", lambda fn, **kw: via_dynamo.append(kw) or real_compile(fn, **kw))
    m = _mlp()
    x, v = torch.randn(4, 3, dtype=f64), torch.randn(4, 3, dtype=f64)
    f = torchlc.compile(m)
    with torch.no_grad():
        y, ref = f(x.nonstd(v)), m(x.nonstd(v))
    torch.testing.assert_close(torchlc.coeffs(y), torchlc.coeffs(ref), rtol=1e-12, atol=1e-12)
    grads = []
    for fn in (f, m):
        m.zero_grad()
        (torchlc.coeff(fn(x.nonstd(v)), 1) ** 2).sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert not via_dynamo
    with torch.no_grad():
        torchlc.compile(m, mode="reduce-overhead")(x.nonstd(v))
        torchlc.compile(m, backend="aot_eager")(x.nonstd(v))
    assert [kw.get("mode") or kw.get("backend") for kw in via_dynamo] == ["reduce-overhead", "aot_eager"]


def test_compile_arguments():
    m = _mlp()
    x = torch.randn(4, 3, dtype=f64).nonstd()
    with torch.no_grad():
        assert torch.equal(torchlc.coeffs(torchlc.compile(m, disable=True)(x)), torchlc.coeffs(m(x)))
    with pytest.raises(TypeError, match="unexpected arguments \\['fulgraph'\\]"):
        torchlc.compile(m, fulgraph=True)


@pytest.mark.parametrize("case", ["causal", "bool mask", "grouped heads"])
def test_sdpa_traces_to_one_opaque_op(monkeypatch, case):
    """Traced with grad off on CUDA (forced here on the CPU, where the op runs the formulas), a fused
    SDPA kernel's call on LC q, k, v is one torchlc::flash_attention_jet op: the compiled result is the
    eager result bit for bit. With grad on the trace keeps the formulas (the op has no backward)."""
    from torchlc.kernels import jets
    from torchlc.ops import attention as lc_attention

    monkeypatch.setattr(lc_attention, "OPAQUE_ATTENTION_DEVICES", {"cpu"})
    monkeypatch.setattr(jets, "attention_applies", lambda *a: True)
    g = torch.Generator().manual_seed(2)
    Hk = 1 if case == "grouped heads" else 2
    q, k, v = (torch.randn(3, h, 7, 16, dtype=f64, generator=g) for h in (2, Hk, Hk))
    kw = {"is_causal": True, "enable_gqa": case == "grouped heads"}
    if case == "bool mask":
        mask = torch.rand(3, 1, 7, 7, generator=g) < 0.6
        mask[1, 0, 2] = False  # a row with nothing to attend to gives 0
        kw = {"attn_mask": mask}

    def f(a):
        return torch.nn.functional.scaled_dot_product_attention(a, a[:, :Hk] * 2, a[:, :Hk] - 1, **kw)

    x = q.nonstd(torch.randn(q.shape, dtype=f64, generator=g))
    backend = _Recording()
    with torch.no_grad():
        y, ref = torchlc.compile(f, backend=backend)(x), f(x)
    assert torch.equal(torchlc.coeffs(y), torchlc.coeffs(ref))
    assert "torchlc.flash_attention_jet.default" in backend.targets()
    training = _Recording()
    torchlc.compile(f, backend=training)(x)
    assert "torchlc.flash_attention_jet.default" not in training.targets()


def test_flash_attention_op_passes_opcheck():
    g = torch.Generator().manual_seed(3)
    Q, K, V = (torch.randn(2, 2, 2, 5, 16, dtype=f64, generator=g) for _ in range(3))
    ignore = torch.rand(2, 1, 5, 5, generator=g) < 0.3
    for args in ((Q, K, V, None, 0.25, True, False), (Q, K, V, ignore, 0.25, False, True)):
        torch.library.opcheck(torch.ops.torchlc.flash_attention_jet.default, args)


def test_max_pool_op_passes_opcheck():
    """The opaque max-pool op (here its formula fallback: no kernel on CPU) promises the layout it
    returns: channels-last results for channels-last planes, contiguous ones otherwise."""
    g = torch.Generator().manual_seed(4)
    P = torch.randint(-2, 3, (2, 2, 3, 7, 6), generator=g).to(f64)
    cl = P.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # each plane channels-last
    for planes in (P, cl):
        args = (planes, [3, 3], [2, 2], [1, 1], [1, 1], True)
        torch.library.opcheck(torch.ops.torchlc.max_pool2d_jet.default, args)
        vals, ind = torch.ops.torchlc.max_pool2d_jet(*args)
        assert vals[0].is_contiguous(memory_format=torch.channels_last) == (planes is cl)
        assert ind.is_contiguous(memory_format=torch.channels_last) == (planes is cl)


@pytest.mark.parametrize("pool", ["max_pool2d", "adaptive_max_pool2d", "max_pool3d"])
def test_inductor_compiles_max_pooling_after_a_pointwise_op(pool):
    """The stem of a ResNet (conv, batch norm, relu, max_pool) under torchlc.compile with Inductor.
    Max pooling selects windows by the field's order; its windows were once gathered through a view
    merging the spatial dims, which Inductor (torch 2.13) could not compile after a pointwise op
    ("vr must not be None for symbol q2")."""
    nd = 3 if pool.endswith("3d") else 2
    call = {
        "max_pool2d": lambda t: F.max_pool2d(t, 3, 2, 1),
        "adaptive_max_pool2d": lambda t: F.adaptive_max_pool2d(t, (3, 2)),
        "max_pool3d": lambda t: F.max_pool3d(t, 2, 2, 0, ceil_mode=True),
    }[pool]
    conv = (torch.nn.Conv2d if nd == 2 else torch.nn.Conv3d)(2, 3, 3, padding=1, dtype=f64)
    bn = (torch.nn.BatchNorm2d if nd == 2 else torch.nn.BatchNorm3d)(3, dtype=f64).eval()

    def stem(t):
        return call(torch.relu(bn(conv(t))))

    shape = (2, 2, 9, 8) if nd == 2 else (1, 2, 5, 4, 5)
    x, v = torch.randn(shape, dtype=f64), torch.randn(shape, dtype=f64)
    with torch.no_grad():
        got, want = torchlc.compile(stem)(x.nonstd(v)), stem(x.nonstd(v))
    assert torchlc.support(got) == torchlc.support(want)
    torch.testing.assert_close(torchlc.coeffs(got), torchlc.coeffs(want), rtol=1e-12, atol=1e-12)


def test_inductor_compiles_a_cat_onto_an_empty_tensor():
    """transformers' key/value cache concatenates onto an empty 1-D tensor: the LC rule drops it and
    copies the one tensor left. Eager ``cat`` returns that copy contiguous, and views recorded after it
    in the trace rely on that; Inductor lowers a one-tensor ``cat`` to a stride-keeping clone, so the
    rule says ``clone(memory_format=contiguous_format)`` (torchlc.compile of GPT-2 failed on it)."""

    def f(t):  # t (batch, tokens, heads, head dim), as attention splits its projection
        q = t.transpose(1, 2)
        k = torch.cat([torch.tensor([], dtype=t.dtype), q], dim=-2)
        return torch.matmul(q, k.transpose(-2, -1))  # k viewed as (batch·heads, dim, tokens)

    x, v = torch.randn(2, 4, 3, 5, dtype=f64), torch.randn(2, 4, 3, 5, dtype=f64)
    with torch.no_grad():
        got, want = torchlc.compile(f)(x.nonstd(v)), f(x.nonstd(v))
    torch.testing.assert_close(torchlc.coeffs(got), torchlc.coeffs(want), rtol=1e-12, atol=1e-12)


def test_plane_merges_into_convolutions_get_the_channels_last_hint(monkeypatch):
    """Where Inductor lays 2-d convolutions out channels-last, every merge of the planes into the batch
    that feeds a convolution gets the stride-order hint (so the pointwise kernel before it writes
    channels-last, with no copy); a graph Inductor keeps contiguous gets none; and results equal eager.
    The layout decision is forced both ways, so the test does not depend on the machine's heuristic."""
    from torch._inductor.graph import GraphLowering

    from torchlc import _compile

    hints = []
    real = _compile._channels_last_plane_merges
    monkeypatch.setattr(_compile, "_channels_last_plane_merges", lambda gm, ex: hints.append(real(gm, ex)) or hints[-1])
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1, dtype=f64), torch.nn.BatchNorm2d(4, dtype=f64), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 1, dtype=f64), torch.nn.BatchNorm2d(4, dtype=f64), torch.nn.ReLU(inplace=True),
        torch.nn.Conv2d(4, 3, 3, stride=2, dtype=f64),
    ).eval()
    x, v = torch.randn(2, 2, 8, 8, dtype=f64), torch.randn(2, 2, 8, 8, dtype=f64)
    for layout_opt, want_hints in ((True, 3), (False, 0)):
        monkeypatch.setattr(GraphLowering, "decide_layout_opt", staticmethod(lambda gm, is_inference, o=layout_opt: o))
        with torch.no_grad():
            got, want = torchlc.compile(net)(x.nonstd(v)), net(x.nonstd(v))
        assert hints[-1] == want_hints
        torch.testing.assert_close(torchlc.coeffs(got), torchlc.coeffs(want), rtol=1e-12, atol=1e-12)
    # other backends never see Inductor's prim
    with torch.no_grad():
        torchlc.compile(net, backend="aot_eager")(x.nonstd(v))
    assert len(hints) == 2
