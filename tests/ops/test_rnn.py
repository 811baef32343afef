"""Recurrent layers on ``x.nonstd(v)``: nn.RNN (tanh, relu), nn.GRU, nn.LSTM (with and without
proj_size) and the three cell modules, with grad enabled, under no_grad and under inference_mode, in
train (dropout between layers) and eval mode. The ε⁰ plane is the plain output and the ε¹ plane
``torch.func.jvp``'s tangent (float64, rtol 1e-10); gradients of a loss on the ε¹ plane equal a
double-backward reference through ``torch.func.jvp``; a relu recurrence at a kink gives the one-sided
derivative, a step of the output a Dirac mass."""

import contextlib

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call, jvp
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.testing import assert_close

import torchlc
from tests.test_models import TOL, R, check, model_fn

f64 = torch.float64

KINDS = {
    "rnn_tanh": lambda **kw: nn.RNN(3, 4, **kw),
    "rnn_relu": lambda **kw: nn.RNN(3, 4, nonlinearity="relu", **kw),
    "gru": lambda **kw: nn.GRU(3, 4, **kw),
    "lstm": lambda **kw: nn.LSTM(3, 4, **kw),
    "lstm_proj": lambda **kw: nn.LSTM(3, 4, proj_size=2, **kw),
}

# name: (module kwargs, input shape for batch_first=False (T, B, I), initial state: None / "lc" / "plain")
CONFIGS = {
    "2layers": (dict(num_layers=2, dropout=0.4), (5, 2, 3), None),
    "2layers_bidir_batchfirst_hx": (
        dict(num_layers=2, bidirectional=True, batch_first=True, dropout=0.3),
        (4, 3, 3),
        "lc",
    ),
    "bidir_plain_hx_nobias": (dict(bidirectional=True, bias=False), (3, 2, 3), "plain"),
    "unbatched_2layers": (dict(num_layers=2, dropout=0.5), (4, 3), None),
    "unbatched_bidir_hx": (dict(bidirectional=True), (3, 3), "lc"),
}


def _hidden_shapes(kind, kw, batched_shape):
    layers = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    batch = () if len(batched_shape) == 2 else (batched_shape[1],)
    h = (layers, *batch, 2 if kind == "lstm_proj" else 4)
    return [h, (layers, *batch, 4)] if kind.startswith("lstm") else [h]


def _case(kind, config):
    kw, shape, hx = CONFIGS[config]
    if kw.get("batch_first") and len(shape) == 3:
        shape = (shape[1], shape[0], shape[2])
    torch.manual_seed(0)
    m = KINDS[kind](**kw)
    xs = [R(*shape, seed=1)]
    if hx is not None:
        xs += [
            R(*s, seed=2 + i) for i, s in enumerate(_hidden_shapes(kind, kw, CONFIGS[config][1]))
        ]
    return m, xs, hx


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_module_value_and_tangent(kind, config, train):
    m, xs, hx = _case(kind, config)
    run = model_fn(m, train)
    f = lambda x, *h: _call_fresh(run, kind, x, *h)
    vs = [R(*x.shape, seed=10 + i) for i, x in enumerate(xs)]
    if hx == "plain":
        vs[1:] = [None] * (len(xs) - 1)
    check(f, xs, vs)


def _call_fresh(run, kind, x, *h):
    # run(*args) deep-copies the module and calls it; LSTM takes its state as a tuple
    if kind.startswith("lstm") and h:
        return run(x, tuple(h))
    return run(x, *h)


def test_dropout_between_layers_is_applied():
    # the LC path must draw dropout masks like the C++ layer stack (torch's python decomposition skips
    # them): train and eval outputs differ, and the train output matches the plain train output
    torch.manual_seed(0)
    m = nn.GRU(3, 4, num_layers=2, dropout=0.5).double().train()
    x, v = R(5, 2, 3), R(5, 2, 3, seed=1)
    torch.manual_seed(7)
    ref = m(x)[0]
    torch.manual_seed(7)
    y = m(x.nonstd(v))[0]
    assert_close(torchlc.coeff(y, 0), ref, **TOL)
    with torch.no_grad():
        assert not torch.allclose(torchlc.coeff(y, 0), m.eval()(x)[0])


# -- cells -------------------------------------------------------------------------------------------

CELLS = {
    "rnncell_tanh": lambda: nn.RNNCell(3, 4),
    "rnncell_relu": lambda: nn.RNNCell(3, 4, nonlinearity="relu", bias=False),
    "grucell": lambda: nn.GRUCell(3, 4),
    "lstmcell": lambda: nn.LSTMCell(3, 4),
}


@pytest.mark.parametrize("state", ["none", "lc", "plain"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("name", list(CELLS))
def test_cells(name, batched, state):
    torch.manual_seed(0)
    m = CELLS[name]()
    batch = (2,) if batched else ()
    xs = [R(*batch, 3, seed=1)]
    if state != "none":
        xs += [R(*batch, 4, seed=2 + i) for i in range(2 if name == "lstmcell" else 1)]
    vs = [R(*x.shape, seed=10 + i) for i, x in enumerate(xs)]
    if state == "plain":
        vs[1:] = [None] * (len(xs) - 1)
    run = model_fn(m, False)
    f = lambda x, *h: run(x, tuple(h)) if name == "lstmcell" and h else run(x, *h)
    check(f, xs, vs)


def test_cell_sequence_equals_layer():
    # a python loop of LSTMCell steps on an LC input is the LSTM layer with the same weights
    torch.manual_seed(0)
    cell = nn.LSTMCell(3, 4).double()
    layer = nn.LSTM(3, 4).double()
    for a, b in zip(layer.parameters(), cell.parameters()):
        a.data.copy_(b.data)
    x = R(4, 2, 3).nonstd(R(4, 2, 3, seed=1))
    h = c = None
    outs = []
    for t in range(4):
        h, c = cell(x[t], None if h is None else (h, c))
        outs.append(h)
    y = layer(x)[0]
    assert_close(torchlc.coeffs(torch.stack(outs)), torchlc.coeffs(y), **TOL)


# -- gradients of a loss on the ε¹ plane ---------------------------------------------------------------


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_gradients_through_tangent_loss(kind, train):
    torch.manual_seed(0)
    m = (
        KINDS[kind](num_layers=2, bidirectional=True, batch_first=True, dropout=0.3)
        .double()
        .train(train)
    )
    params = dict(m.named_parameters())
    x, v = R(2, 4, 3, seed=1), R(2, 4, 3, seed=2)

    def loss_of(out, hid):
        val, tan = out
        return (tan**2).sum() + (val * tan).sum() + (hid[1] ** 3).sum()

    torch.manual_seed(5)
    y, hn = m(x.nonstd(v))
    hn = hn[0] if kind.startswith("lstm") else hn
    loss = loss_of(
        (torchlc.coeff(y, 0), torchlc.coeff(y, 1)), (torchlc.coeff(hn, 0), torchlc.coeff(hn, 1))
    )
    got = torch.autograd.grad(loss, list(params.values()))

    def f(x):
        torch.manual_seed(5)
        y, hn = functional_call(m, params, (x,))
        return y, (hn[0] if kind.startswith("lstm") else hn)

    (y0, h0), (y1, h1) = jvp(f, (x,), (v,))
    want = torch.autograd.grad(loss_of((y0, y1), (h0, h1)), list(params.values()))
    assert len(got) == len(want) > 0
    for name, g, w in zip(params, got, want):
        assert g.abs().sum() > 0, name
        assert_close(g, w, **TOL, msg=lambda msg, name=name: f"{name}: {msg}")


def test_tangent_direction_requires_grad():
    # gradients reach v too (ε¹ is linear in v: d/dv sum(ε¹) = J^T 1)
    torch.manual_seed(0)
    m = nn.LSTM(3, 4, num_layers=2).double()
    x, v = R(3, 2, 3), R(3, 2, 3, seed=1).requires_grad_()
    torchlc.coeff(m(x.nonstd(v))[0], 1).sum().backward()
    ref = torch.func.vjp(lambda x: m(x)[0], x)[1](torch.ones(3, 2, 4, dtype=f64))[0]
    assert_close(v.grad, ref, **TOL)


# -- packed sequences ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "lstm", "lstm_proj"])
def test_packed_sequences(kind, bidirectional):
    # reference: each sequence on its own, unpacked (_pack_padded_sequence has no forward AD)
    torch.manual_seed(0)
    m = KINDS[kind](num_layers=2, bidirectional=bidirectional, batch_first=True).double()
    lengths = [2, 4, 1]
    x, v = R(3, 4, 3), R(3, 4, 3, seed=1)
    lstm = kind.startswith("lstm")
    pad = -1.5 if bidirectional else 0.0  # a real padding value sits on the ε⁰ plane only

    def packed(x):
        out, hn = m(
            pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        )
        y = pad_packed_sequence(out, batch_first=True, padding_value=pad, total_length=5)[0]
        return (y, *(hn if lstm else (hn,)))

    def one_by_one(x):
        ys, hs = [], []
        for i, n in enumerate(lengths):
            y, hn = m(x[i : i + 1, :n])
            ys.append(torch.nn.functional.pad(y, (0, 0, 0, 5 - n), value=pad))
            hs.append(hn if lstm else (hn,))
        return (torch.cat(ys, 0), *(torch.cat(h, 1) for h in zip(*hs)))

    refs = jvp(one_by_one, (x,), (v,))
    for mode in (contextlib.nullcontext, torch.no_grad, torch.inference_mode):
        with mode():
            got = packed(x.nonstd(v))
        assert len(got) == len(refs[0]) == (3 if lstm else 2)
        for g, val, tan in zip(got, *refs):
            assert_close(torchlc.coeff(g, 0), val, **TOL)
            assert_close(torchlc.coeff(g, 1), tan, **TOL)


# -- undecomposed aten ops (inference_mode / direct calls) ---------------------------------------------


def test_aten_ops_under_inference_mode():
    torch.manual_seed(0)
    m = nn.LSTM(3, 4, num_layers=2, proj_size=2).double()
    x, v = R(3, 2, 3), R(3, 2, 3, seed=1)
    h0, c0 = R(2, 2, 2, seed=2), R(2, 2, 4, seed=3)
    args = ([h0, c0], m._flat_weights, True, 2, 0.0, False, False, False)
    with torch.inference_mode():
        y, hn, cn = torch.ops.aten.lstm.input(
            x.nonstd(v), [h0.nonstd(torch.zeros_like(h0)), c0], *args[1:]
        )
    val, tan = jvp(lambda x: torch.ops.aten.lstm.input(x, [h0, c0], *args[1:])[0], (x,), (v,))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)
    assert torchlc.is_lc(hn) and torchlc.is_lc(cn)


# -- kinks and jumps -----------------------------------------------------------------------------------


def test_relu_recurrence_at_a_kink_is_the_one_sided_derivative():
    # all pre-activations start at exactly 0 (zero input, no bias): relu(0 + εa) = ε·max(a, 0) is the
    # right-sided slope, which jvp at x (relu'(0) = 0) misses; the relu RNN is piecewise linear, so the
    # slope equals jvp at a point just inside the side the direction points to
    torch.manual_seed(0)
    m = nn.RNN(3, 5, nonlinearity="relu", bias=False, num_layers=2).double()
    x = torch.zeros(4, 2, 3, dtype=f64)
    x[2:] = R(2, 2, 3)
    v = R(4, 2, 3, seed=1)
    for mode in (contextlib.nullcontext, torch.no_grad, torch.inference_mode):
        with mode():
            y = m(x.nonstd(v))[0]
        assert_close(torchlc.coeff(y, 0), m(x)[0].detach(), **TOL)
        side = jvp(lambda z: m(z)[0], (x + 1e-9 * v,), (v,))[1]
        assert_close(torchlc.coeff(y, 1), side, **TOL)
    at_x = jvp(lambda z: m(z)[0], (x,), (v,))[1]
    assert not torch.allclose(torchlc.coeff(y, 1), at_x)  # the kink matters in this example
    assert (torchlc.coeff(y, 1)[0] > 0).any()  # ... already at the first step


def test_step_of_the_output_sits_on_its_jump():
    # H(gru(x) - c) with c the output at x: every element sits exactly on the jump, and x + εv decides
    # it by the tangent's sign, so the standard part is the right limit [tangent > 0] while H(0) = 0:
    # the jump (the ε⁻¹ term of D₊) is [tangent > 0]. c is taken from the LC run itself: the decision
    # is exact against the LC value (which equals torch's output only up to rounding).
    torch.manual_seed(0)
    m = nn.GRU(3, 4, batch_first=True).double()
    x, v = R(2, 3, 3), R(2, 3, 3, seed=1)
    tan = jvp(lambda z: m(z)[0], (x,), (v,))[1]
    for mode in (contextlib.nullcontext, torch.no_grad, torch.inference_mode):
        with mode():
            y = m(x.nonstd(v))[0]
            c = torchlc.coeff(y, 0)
            step = torch.heaviside(y - c, torch.zeros((), dtype=f64))
        assert torchlc.support(step) == (0,)
        assert_close(torchlc.coeff(step, 0), (tan > 0).to(f64), rtol=0, atol=0)
    assert 0 < (tan > 0).sum() < tan.numel()


# -- other entry points: torchlc.compile traces the python implementation ------------------------------


def test_torchlc_compile_of_an_lstm_matches_eager():
    torch.manual_seed(0)
    m = nn.LSTM(3, 4, batch_first=True).double()
    x, v = R(2, 3, 3), R(2, 3, 3, seed=1)
    fn = lambda z: m(z)[0]
    compiled = torchlc.compile(fn, backend="aot_eager")
    grads = []
    for g in (compiled, fn):
        m.zero_grad()
        y = g(x.nonstd(v))
        (torchlc.coeff(y, 1) ** 2).sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    assert_close(torchlc.coeffs(compiled(x.nonstd(v))), torchlc.coeffs(fn(x.nonstd(v))), **TOL)
    for a, b in zip(*grads):
        assert_close(a, b, **TOL)


def test_plain_inputs_are_untouched():
    # no LCTensor argument: torch's own kernels run and results stay plain
    torch.manual_seed(0)
    m = nn.GRU(3, 4).double()
    y, h = m(R(3, 2, 3))
    assert type(y) is torch.Tensor and type(h) is torch.Tensor
    assert y.grad_fn is not None


def test_plain_recurrent_calls_are_unchanged_by_the_routing():
    # plain calls never reach torchlc's routing kernel (PythonTLSSnapshot): they must still run
    # PyTorch's C++ composite (bit for bit, including the dropout between layers), not a different
    # decomposition
    aten = torch.ops.aten
    cia = torch._C.DispatchKey.CompositeImplicitAutograd
    for cls, op in [(torch.nn.RNN, aten.rnn_tanh.input), (torch.nn.GRU, aten.gru.input), (torch.nn.LSTM, aten.lstm.input)]:
        torch.manual_seed(0)
        m = cls(4, 5, num_layers=2, dropout=0.5).double().train()
        x = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
        torch.manual_seed(1)
        y = m(x)[0]
        hx = torch.zeros(2, 2, 5, dtype=torch.float64)
        hx = [hx, hx] if cls is torch.nn.LSTM else hx
        torch.manual_seed(1)
        ref = op._op_dk(cia, x, hx, m._flat_weights, True, 2, 0.5, True, False, False)[0]
        assert torch.equal(y, ref)
        assert y.grad_fn is not None


@pytest.mark.parametrize("cls", [nn.RNN, nn.GRU, nn.LSTM])
def test_complex_coefficients_raise_naming_the_layer(cls):
    # the layers' C++ decompositions cannot run on LC arguments: a complex LC input is refused by the
    # layer's op itself, as for any op that needs real coefficients
    m = cls(3, 4).to(torch.complex128)
    x = torch.randn(5, 2, 3, dtype=torch.complex128)
    op = {nn.RNN: "rnn_tanh", nn.GRU: "gru", nn.LSTM: "lstm"}[cls]
    with pytest.raises(TypeError, match=f"aten::{op}.input on an LCTensor with complex coefficients"):
        m(x.nonstd(torch.ones_like(x)))
