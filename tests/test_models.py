"""Whole torch.nn models on ``x.nonstd(v)``: the ε⁰ plane is the plain output and the ε¹ plane is
``torch.func.jvp``'s tangent, in train and eval mode, with grad enabled, under ``torch.no_grad()`` and
under ``torch.inference_mode()`` (where composite ops arrive undecomposed, and eval-mode transformer
layers take PyTorch's fused fast path)."""

import contextlib
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.testing import assert_close

import torchlc

f64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)

MODES = {
    "grad": contextlib.nullcontext,
    "no_grad": torch.no_grad,
    "inference": torch.inference_mode,
}


def _gen(seed):
    g = torch.Generator().manual_seed(seed)
    return g


def lift(xs, vs):
    return [x.nonstd(v) if v is not None else x for x, v in zip(xs, vs)]


def check(f, xs, vs=None, *, modes=MODES, seed=0, tol=TOL, outputs=None):
    """f(*xs lifted along vs) against jvp(f, xs, vs) in every autograd mode.

    ``vs[i] is None`` keeps input i plain (e.g. integer targets). f may return a tensor or a tuple."""
    xs = list(xs)
    if vs is None:
        vs = [torch.randn(x.shape, dtype=x.dtype, generator=_gen(seed + 1 + i)) if x.is_floating_point() else None
              for i, x in enumerate(xs)]
    idx = [i for i, v in enumerate(vs) if v is not None]

    def g(*ts):
        full = list(xs)
        for i, t in zip(idx, ts):
            full[i] = t
        torch.manual_seed(seed)
        return f(*full)

    # the reference: torch.func.jvp, on the math attention kernel (the fused CPU kernels have no forward AD)
    with sdpa_kernel([SDPBackend.MATH]):
        val, tan = jvp(g, tuple(xs[i] for i in idx), tuple(vs[i] for i in idx))
    for name, ctx in modes.items():
        with ctx():
            torch.manual_seed(seed)
            y = f(*lift(xs, vs))
        ys, vals, tans = _flat(y), _flat(val), _flat(tan)
        assert len(ys) == len(vals)
        for k, (yk, vk, tk) in enumerate(zip(ys, vals, tans)):
            if outputs is not None and k not in outputs:
                continue
            assert torchlc.is_lc(yk), f"{name}: output {k} is not an LCTensor"
            assert yk.shape == vk.shape, name
            assert_close(torchlc.coeff(yk, 0), vk, **tol, msg=lambda m, name=name, k=k: f"{name} output {k} ε⁰: {m}")
            assert_close(torchlc.coeff(yk, 1), tk, **tol, msg=lambda m, name=name, k=k: f"{name} output {k} ε¹: {m}")


def _flat(y):
    if isinstance(y, (tuple, list)):
        out = []
        for t in y:
            out += _flat(t)
        return out
    return [y]


def model_fn(m, train):
    m = m.double()
    m.train(train)

    def f(*xs):
        # fresh copy per call: train-mode buffers (BatchNorm running stats) must not leak between runs
        mm = copy.deepcopy(m)
        return mm(*xs)

    return f


def R(*shape, seed=0):
    return torch.randn(*shape, dtype=f64, generator=_gen(seed))


# -- modules, train and eval -------------------------------------------------------------------------

MODULES = {
    "linear": (lambda: nn.Linear(4, 3), [(2, 4)]),
    "linear_3d_nobias": (lambda: nn.Linear(4, 3, bias=False), [(2, 3, 4)]),
    "mlp": (lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)), [(3, 4)]),
    "bilinear": (lambda: nn.Bilinear(3, 4, 2), [(2, 3), (2, 4)]),
    "conv1d": (lambda: nn.Conv1d(2, 3, 3, padding=1), [(2, 2, 6)]),
    "conv1d_unbatched": (lambda: nn.Conv1d(2, 3, 3), [(2, 6)]),
    "conv2d": (lambda: nn.Conv2d(2, 4, 3, stride=2, padding=1, dilation=1, groups=2), [(2, 2, 6, 6)]),
    "conv2d_dilated": (lambda: nn.Conv2d(2, 3, 2, dilation=2, padding="same", bias=False), [(1, 2, 5, 5)]),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2), [(1, 2, 3, 4, 4)]),
    "convT1d": (lambda: nn.ConvTranspose1d(2, 3, 3, stride=2, output_padding=1), [(2, 2, 4)]),
    "convT2d": (lambda: nn.ConvTranspose2d(2, 4, 3, stride=2, groups=2), [(2, 2, 3, 3)]),
    "convT3d": (lambda: nn.ConvTranspose3d(2, 2, 2), [(1, 2, 2, 3, 3)]),
    "maxpool1d": (lambda: nn.MaxPool1d(2), [(2, 2, 5)]),
    "maxpool2d": (lambda: nn.MaxPool2d(3, stride=2, padding=1), [(2, 2, 5, 5)]),
    "maxpool3d": (lambda: nn.MaxPool3d(2), [(1, 2, 4, 4, 4)]),
    "avgpool1d": (lambda: nn.AvgPool1d(2), [(2, 2, 5)]),
    "avgpool2d": (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), [(2, 2, 5, 5)]),
    "avgpool3d": (lambda: nn.AvgPool3d(2, ceil_mode=True), [(1, 2, 3, 5, 4)]),
    "adaptiveavg1d": (lambda: nn.AdaptiveAvgPool1d(3), [(2, 2, 7)]),
    "adaptiveavg2d": (lambda: nn.AdaptiveAvgPool2d((2, 3)), [(2, 2, 5, 7)]),
    "adaptivemax1d": (lambda: nn.AdaptiveMaxPool1d(3), [(2, 2, 7)]),
    "adaptivemax2d": (lambda: nn.AdaptiveMaxPool2d((2, 3)), [(2, 2, 5, 7)]),
    "adaptivemax2d_unbatched": (lambda: nn.AdaptiveMaxPool2d(2), [(2, 5, 5)]),
    "adaptivemax3d": (lambda: nn.AdaptiveMaxPool3d(2), [(1, 2, 3, 5, 4)]),
    "batchnorm1d": (lambda: nn.BatchNorm1d(3), [(4, 3)]),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), [(4, 3, 2, 2)]),
    "batchnorm3d_noaffine": (lambda: nn.BatchNorm3d(2, affine=False), [(2, 2, 2, 2, 2)]),
    "batchnorm_nostats": (lambda: nn.BatchNorm1d(3, track_running_stats=False), [(4, 3, 2)]),
    "layernorm": (lambda: nn.LayerNorm(4), [(2, 3, 4)]),
    "layernorm_2d_nobias": (lambda: nn.LayerNorm((3, 4), bias=False), [(2, 3, 4)]),
    "groupnorm": (lambda: nn.GroupNorm(2, 4), [(2, 4, 3)]),
    "instancenorm2d": (lambda: nn.InstanceNorm2d(2, affine=True), [(2, 2, 3, 3)]),
    "rmsnorm": (lambda: nn.RMSNorm(4), [(2, 3, 4)]),
    "rmsnorm_eps": (lambda: nn.RMSNorm((3, 4), eps=1e-3), [(2, 3, 4)]),
    "dropout": (lambda: nn.Dropout(0.3), [(4, 5)]),
    "dropout2d": (lambda: nn.Dropout2d(0.5), [(2, 4, 3, 3)]),
    "alphadropout": (lambda: nn.AlphaDropout(0.3), [(4, 5)]),
    "mha": (lambda: nn.MultiheadAttention(4, 2, batch_first=True), [(2, 3, 4)] * 3),
    "mha_kdim": (lambda: nn.MultiheadAttention(4, 2, kdim=3, vdim=5), [(3, 2, 4), (2, 2, 3), (2, 2, 5)]),
    "encoder_layer": (lambda: nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True), [(2, 3, 4)]),
    "encoder_layer_gelu_normfirst": (
        lambda: nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, activation="gelu", norm_first=True,
                                           batch_first=True), [(2, 3, 4)]),
    "encoder": (lambda: nn.TransformerEncoder(
        nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True), 2, enable_nested_tensor=False),
        [(2, 3, 4)]),
    "decoder_layer": (lambda: nn.TransformerDecoderLayer(4, 2, 8, dropout=0.0, batch_first=True),
                      [(2, 3, 4), (2, 5, 4)]),
    "transformer": (lambda: nn.Transformer(4, 2, 1, 1, 8, dropout=0.0, batch_first=True), [(2, 3, 4), (2, 2, 4)]),
    "rnn": (lambda: nn.RNN(3, 4, num_layers=2, batch_first=True, bidirectional=True), [(2, 3, 3)]),
    "rnn_relu": (lambda: nn.RNN(3, 4, nonlinearity="relu"), [(3, 2, 3)]),
    "gru": (lambda: nn.GRU(3, 4, num_layers=2, batch_first=True), [(2, 3, 3)]),
    "lstm": (lambda: nn.LSTM(3, 4, bidirectional=True), [(3, 2, 3)]),
    "lstm_proj": (lambda: nn.LSTM(3, 4, proj_size=2, batch_first=True), [(2, 3, 3)]),
    "cnn": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.MaxPool2d(2), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(8, 3), nn.LogSoftmax(-1)), [(2, 1, 6, 6)]),
}

def _module_params():
    for name in MODULES:
        for train in (True, False):
            yield pytest.param(name, train, id=f"{name}-{'train' if train else 'eval'}")


@pytest.mark.parametrize("name,train", list(_module_params()))
def test_module(name, train):
    make, shapes = MODULES[name]
    torch.manual_seed(0)
    m = make()
    check(model_fn(m, train), [R(*s, seed=i) for i, s in enumerate(shapes)])


def test_rnns_inference_mode():
    # under inference_mode the RNN ops would reach dispatch undecomposed; torchlc.ops.rnn runs them
    for make in (lambda: nn.RNN(3, 4, num_layers=2, batch_first=True, bidirectional=True),
                 lambda: nn.GRU(3, 4, batch_first=True), lambda: nn.LSTM(3, 4, bidirectional=True)):
        torch.manual_seed(0)
        check(model_fn(make(), False), [R(2, 3, 3)], modes={"inference": torch.inference_mode})


def test_batchnorm_running_stats_take_the_standard_part():
    bn = nn.BatchNorm1d(3).double()
    ref = copy.deepcopy(bn)
    x, v = R(5, 3), R(5, 3, seed=1)
    bn(x.nonstd(v))
    ref(x)
    assert not torchlc.is_lc(bn.running_mean)
    assert_close(bn.running_mean, ref.running_mean, **TOL)
    assert_close(bn.running_var, ref.running_var, **TOL)
    assert int(bn.num_batches_tracked) == 1


def test_transformer_masks_and_fast_path():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True).double().eval()
    x = R(2, 3, 4)
    causal = nn.Transformer.generate_square_subsequent_mask(3, dtype=f64)
    pad = torch.tensor([[False, False, True], [False, False, False]])
    check(lambda t: layer(t, src_mask=causal), [x])
    check(lambda t: layer(t, src_key_padding_mask=pad), [x], modes={"grad": contextlib.nullcontext})
    mha = nn.MultiheadAttention(4, 2, batch_first=True).double().eval()
    bool_mask = torch.tensor([[False, True, True], [False, False, True], [False, False, False]])
    check(lambda q, k, v: mha(q, k, v, attn_mask=bool_mask), [x, R(2, 3, 4, seed=1), R(2, 3, 4, seed=2)])
    check(lambda q: mha(q, q, q, key_padding_mask=pad, average_attn_weights=False), [x])
    check(lambda q: mha(q, q, q, need_weights=False)[0], [x])


def test_embedding_with_lc_weights():
    idx = torch.tensor([[0, 2, 1], [3, 3, 0]])
    w = R(4, 3)
    check(lambda w: F.embedding(idx, w), [w])
    check(lambda w: F.embedding(idx, w, padding_idx=3), [w])
    emb = nn.Embedding(4, 3).double()
    check(lambda w: torch.func.functional_call(emb, {"weight": w}, (idx,)), [w])


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("include_last_offset", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_embedding_bag_offsets_as_torch_or_refused(dtype, mode, include_last_offset):
    """Every offsets tensor either gives torch's bags (empty bags, bags ending at len(indices)) or an
    error: with include_last_offset an offsets[-1] short of len(indices) is refused (torch's kernels
    disagree between modes and dtypes there: float32 sum ends the last bag at it, float64 sum and max
    scan to the end, mean divides by the count up to len(indices); the rule took the trailing indices into the last bag, a
    wrong sum with no error), and offsets past len(indices) raise torch's error."""
    w = torch.arange(12.0, dtype=dtype).view(4, 3)
    idx = torch.tensor([0, 1, 2, 3, 1])
    for offsets in ([0, 2], [0, 2, 5], [0, 5], [0, 0, 5], [0, 3, 3], [0, 5, 5]):
        offsets = torch.tensor(offsets)
        lc = w.nonstd(torch.ones_like(w))
        if include_last_offset and offsets[-1] != idx.numel():
            with pytest.raises(ValueError, match="include_last_offset=True needs offsets"):
                F.embedding_bag(idx, lc, offsets, mode=mode, include_last_offset=True)
            continue
        got = F.embedding_bag(idx, lc, offsets, mode=mode, include_last_offset=include_last_offset)
        want = F.embedding_bag(idx, w, offsets, mode=mode, include_last_offset=include_last_offset)
        assert torch.equal(torchlc.coeff(got, 0), want), offsets
    with pytest.raises(RuntimeError, match="can not be greater than input's length"):
        torch.ops.aten._embedding_bag(w.nonstd(w), idx, torch.tensor([0, 6]), False, 0)


def test_embedding_bag_with_lc_weights():
    # jvp has no forward AD for _embedding_bag: sum/mean are linear in the weight (ε¹ = the bag of v),
    # max selects rows (ε¹ = v at the chosen rows)
    w, v = R(5, 3), R(5, 3, seed=1)
    flat = torch.tensor([0, 2, 1, 3, 3, 4, 1])
    offsets = torch.tensor([0, 2, 2, 5])
    for kw in (dict(mode="sum"), dict(mode="mean"), dict(mode="max"), dict(mode="sum", padding_idx=3),
               dict(mode="mean", padding_idx=1), dict(mode="max", padding_idx=3),
               dict(mode="sum", include_last_offset=True)):
        # include_last_offset: the offsets end at len(indices) (shorter ones are refused, see above)
        off = torch.cat([offsets, torch.tensor([flat.numel()])]) if kw.get("include_last_offset") else offsets
        for name, ctx in MODES.items():
            with ctx():
                y = F.embedding_bag(flat, w.nonstd(v), off, **kw)
            ref = F.embedding_bag(flat, w, off, **kw)
            assert_close(torchlc.coeff(y, 0), ref, **TOL)
            if kw["mode"] == "max":
                _, _, _, mi = torch.ops.aten._embedding_bag(w, flat, off, False, 2, False, None,
                                                             kw.get("include_last_offset", False),
                                                             kw.get("padding_idx", -1))
                tan = torch.where(ref == 0, 0.0, torch.gather(v, 0, mi))
            else:
                tan = F.embedding_bag(flat, v, off, **kw)
            assert_close(torchlc.coeff(y, 1), tan, **TOL, msg=lambda m, kw=kw, name=name: f"{kw} {name}: {m}")
    p, pv = R(7, seed=2), R(7, seed=3)
    y = F.embedding_bag(flat, w.nonstd(v), offsets, mode="sum", per_sample_weights=p.nonstd(pv))
    tan = F.embedding_bag(flat, v, offsets, mode="sum", per_sample_weights=p) + \
        F.embedding_bag(flat, w, offsets, mode="sum", per_sample_weights=pv)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)
    idx2 = torch.tensor([[0, 2, 1], [3, 3, 0]])
    y = F.embedding_bag(idx2, w.nonstd(v), mode="mean")
    assert_close(torchlc.coeff(y, 1), F.embedding_bag(idx2, v, mode="mean"), **TOL)


def test_lc_weights_in_linear_and_conv():
    x = R(2, 2, 5)
    check(lambda x, w, b: F.conv1d(x, w, b, padding=1), [x, R(3, 2, 3, seed=1), R(3, seed=2)])
    check(lambda x, w: F.conv_transpose1d(x, w, stride=2), [x, R(2, 3, 3, seed=1)])
    check(lambda x, w, b: F.linear(x, w, b), [R(3, 4), R(2, 4, seed=1), R(2, seed=2)])
    check(lambda a, b, w: F.bilinear(a, b, w), [R(2, 3), R(2, 4, seed=1), R(2, 3, 4, seed=2)])


# -- every activation in torch.nn ----------------------------------------------------------------------

ACTIVATIONS = {
    "ELU": lambda: nn.ELU(0.7), "CELU": lambda: nn.CELU(1.3), "SELU": nn.SELU, "GELU": nn.GELU,
    "GELU_tanh": lambda: nn.GELU("tanh"), "Hardshrink": nn.Hardshrink, "Hardsigmoid": nn.Hardsigmoid,
    "Hardtanh": lambda: nn.Hardtanh(-0.5, 0.7), "Hardswish": nn.Hardswish, "LeakyReLU": nn.LeakyReLU,
    "LogSigmoid": nn.LogSigmoid, "PReLU": lambda: nn.PReLU(3), "ReLU": nn.ReLU, "ReLU6": nn.ReLU6,
    "RReLU": nn.RReLU, "Sigmoid": nn.Sigmoid, "SiLU": nn.SiLU, "Mish": nn.Mish,
    "Softplus": lambda: nn.Softplus(2.0, 3.0), "Softshrink": nn.Softshrink, "Softsign": nn.Softsign,
    "Tanh": nn.Tanh, "Tanhshrink": nn.Tanhshrink, "Threshold": lambda: nn.Threshold(0.1, -2.0),
    "GLU": nn.GLU, "Softmin": lambda: nn.Softmin(1), "Softmax": lambda: nn.Softmax(-1),
    "Softmax2d": nn.Softmax2d, "LogSoftmax": lambda: nn.LogSoftmax(1),
}


# torch's own derivative formulas for these use float32 constants (jvp is off by ~1e-8 relative);
# test_activation_exact_slopes checks torchlc against the exact derivative
LOOSE = {"CELU": dict(rtol=1e-6, atol=1e-7), "Hardsigmoid": dict(rtol=1e-6, atol=1e-7)}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_activation(name, train):
    torch.manual_seed(0)
    # 3 standard deviations: both sides of every kink (none exactly on one)
    check(model_fn(ACTIVATIONS[name](), train), [3 * R(2, 3, 2, 4)], tol=LOOSE.get(name, TOL))


def test_activation_exact_slopes():
    a = torch.tensor([-1.2, -0.3, 0.4, 2.5, 3.5], dtype=f64)
    y = F.hardsigmoid(a.nonstd())
    assert_close(torchlc.coeff(y, 1), torch.where(a.abs() < 3, torch.full_like(a, 1 / 6), 0.0), rtol=1e-15, atol=0)
    y = F.celu(a.nonstd(), 1.3)
    assert_close(torchlc.coeff(y, 1), torch.where(a > 0, 1.0, torch.exp(a / 1.3)), rtol=1e-15, atol=0)


def test_weighted_losses_differentiate_the_weight():
    # torch's forward AD treats nll_loss/cross_entropy class weights as constants; torchlc does not:
    # compare with jvp of the same loss written out
    x, w, wv = R(4, 5), W5, R(5, seed=1)
    y = F.nll_loss(x, T_INT, weight=w.nonstd(wv))

    def manual(x, w):
        wt = w[T_INT]
        return -(wt * x.gather(1, T_INT[:, None])[:, 0]).sum() / wt.sum()

    val, tan = jvp(manual, (x, w), (torch.zeros_like(x), wv))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)


# -- losses --------------------------------------------------------------------------------------------

T_INT = torch.tensor([1, 0, 3, 2])
T_IGN = torch.tensor([1, -100, 3, 2])
W5 = torch.tensor([0.5, 1.0, 2.0, 0.25, 1.5], dtype=f64)

LOSSES = {
    "mse": (lambda x, y: F.mse_loss(x, y), [(4, 3), (4, 3)]),
    "mse_none": (lambda x, y: F.mse_loss(x, y, reduction="none"), [(4, 3), (4, 3)]),
    "l1": (lambda x, y: F.l1_loss(x, y, reduction="sum"), [(4, 3), (4, 3)]),
    "huber": (lambda x, y: F.huber_loss(x, y, delta=0.8), [(4, 3), (4, 3)]),
    "smooth_l1": (lambda x, y: F.smooth_l1_loss(x, y, beta=0.5, reduction="none"), [(4, 3), (4, 3)]),
    "cross_entropy_int": (lambda x: F.cross_entropy(x, T_INT), [(4, 5)]),
    "cross_entropy_int_opts": (lambda x: F.cross_entropy(x, T_IGN, weight=W5, label_smoothing=0.1), [(4, 5)]),
    "cross_entropy_prob": (lambda x, p: F.cross_entropy(x, p.softmax(-1)), [(4, 5), (4, 5)]),
    "cross_entropy_prob_smooth": (lambda x, p: F.cross_entropy(x, p.softmax(-1), label_smoothing=0.2,
                                                               reduction="none"), [(4, 5), (4, 5)]),
    "cross_entropy_2d": (lambda x: F.cross_entropy(x, T_INT.view(1, 2, 2).expand(2, 2, 2) % 3), [(2, 3, 2, 2)]),
    "nll": (lambda x: F.nll_loss(x.log_softmax(-1), T_IGN), [(4, 5)]),
    "nll_weight_sum": (lambda x: F.nll_loss(x, T_INT, weight=W5, reduction="sum"), [(4, 5)]),
    "bce_with_logits": (lambda x, y: F.binary_cross_entropy_with_logits(x, y.sigmoid()), [(4, 3), (4, 3)]),
    "bce_with_logits_pos": (lambda x, w: F.binary_cross_entropy_with_logits(
        x, (T_INT.view(4, 1) > 1).double().expand(4, 3), pos_weight=w.exp()), [(4, 3), (3,)]),
    "bce": (lambda x, y: F.binary_cross_entropy(x.sigmoid(), y.sigmoid()), [(4, 3), (4, 3)]),
    "kl_div": (lambda x, y: F.kl_div(x.log_softmax(-1), y.softmax(-1), reduction="batchmean"), [(4, 3), (4, 3)]),
    "kl_div_log_target": (lambda x, y: F.kl_div(x.log_softmax(-1), y.log_softmax(-1), log_target=True),
                          [(4, 3), (4, 3)]),
    "cosine_embedding": (lambda x, y: F.cosine_embedding_loss(x, y, torch.tensor([1, -1, 1, -1])), [(4, 3), (4, 3)]),
    "margin_ranking": (lambda x, y: F.margin_ranking_loss(x[:, 0], y[:, 0], torch.tensor([1, -1, 1, -1]),
                                                          margin=0.1), [(4, 3), (4, 3)]),
    "soft_margin": (lambda x: F.soft_margin_loss(x, torch.tensor([1.0, -1.0, 1.0]).double()), [(4, 3)]),
    "poisson_nll": (lambda x, y: F.poisson_nll_loss(x, y.exp()), [(4, 3), (4, 3)]),
    "gaussian_nll": (lambda x, y, v: F.gaussian_nll_loss(x, y, v.exp()), [(4, 3), (4, 3), (4, 3)]),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss(name):
    f, shapes = LOSSES[name]
    check(f, [R(*s, seed=i) for i, s in enumerate(shapes)])


def test_conv_bn_relu_maxpool_train():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2))
    check(model_fn(m, True), [R(2, 1, 6, 6)])
