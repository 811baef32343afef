"""Recurrent layers (RNN tanh/relu, GRU, LSTM and their cells) on LC tensors.

PyTorch's C++ recurrent composites cannot run on LCTensors: with autograd on they add an LC gate in
place into a plain zero hidden state (``linear_hh(h).add_(linear_ih(x))``), and LSTM picks backend
kernels (``mkldnn_rnn_layer`` on CPU, ``_cudnn_rnn`` on CUDA). torch's own Python decompositions skip
the dropout between layers. So the entry points (``torch._VF.rnn_tanh``/``rnn_relu``/``gru``/``lstm``,
both the padded-input and the packed-sequence overloads, and the four ``*_cell`` functions) are
replaced, whenever an argument is an LCTensor, by the implementation below: the aten ops are
composites (``torchlc._dispatch.composite``), whose LC calls a kernel at the PythonTLSSnapshot key
sends past the autograd keys to the rule in every grad mode; plain calls never reach that key and run
PyTorch's own composite at no cost. Routing at the aten level, rather than through
``LCTensor.__torch_function__``, keeps every other op free of the torch-function protocol and keeps
PyTorch's fused transformer fast path available to LC inputs. Packed sequences work:
``_pack_padded_sequence`` has an aten rule, and ``_pad_packed_sequence`` (whose C++ composite copies
into a plain tensor) is overridden like the layers.

It is made of ordinary torch ops (linear, sigmoid, tanh, chunk, cat, dropout), so the LC rules apply
to every step: value and every ε-plane are exact (a relu recurrence at a kink follows the field's
order like any relu), and autograd records on the planes. Loops run over time steps, directions and
layers only; each layer's input projection is one GEMM over the whole sequence. The math follows
ATen's RNN.cpp: the gate order (i, f, g, o for LSTM; r, z, n for GRU, with the reset gate applied to
``W_hn h + b_hn``), the parameter layout (per layer and direction: w_ih, w_hh, [b_ih, b_hh], [w_hr]),
final hidden states ordered (layer, direction), and ``dropout(p, train=True)`` on each layer's output
but the last when training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _algebra as A
from .. import _support as S
from .._algebra import Series
from .._dispatch import composite, implements
from .._tensor import series
from ._util import out

aten = torch.ops.aten

# -- one time step ---------------------------------------------------------------------------------
# ``gi`` is the input projection W_ih x + b_ih for this step, ``p`` the (w_hh, b_hh, w_hr) of the
# layer; a step maps the state (h, or (h, c) for LSTM) to the next state.


def _tanh_step(gi, h, p):
    return torch.tanh(gi + F.linear(h, p[0], p[1]))


def _relu_step(gi, h, p):
    return torch.relu(gi + F.linear(h, p[0], p[1]))


def _gru_step(gi, h, p):
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = F.linear(h, p[0], p[1]).chunk(3, -1)
    r = torch.sigmoid(h_r + i_r)
    z = torch.sigmoid(h_z + i_z)
    n = torch.tanh(i_n + h_n * r)
    return (h - n) * z + n


def _lstm_step(gi, state, p):
    h, c = state
    i, f, g, o = (F.linear(h, p[0], p[1]) + gi).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    if p[2] is not None:
        h = F.linear(h, p[2])
    return h, c


_STEPS = {"rnn_tanh": _tanh_step, "rnn_relu": _relu_step, "gru": _gru_step, "lstm": _lstm_step}


# -- states: a tensor h, or a pair (h, c) -------------------------------------------------------------


def _output(state):
    return state[0] if isinstance(state, tuple) else state


def _rows(state, start, stop):
    if isinstance(state, tuple):
        return tuple(s[start:stop] for s in state)
    return state[start:stop]


def _cat_rows(states):
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, 0) for parts in zip(*states))
    return torch.cat(states, 0)


# -- one layer, one direction --------------------------------------------------------------------------


def _layer(x, state, w, step, reverse, batch_sizes, time_dim=0):
    """Run one direction of one layer. ``x``: (T, B, I) (time in ``time_dim``), or packed data (N, I)
    with ``batch_sizes`` (a list of ints, non-increasing). ``state``: initial h (B, H) or (h, c).
    Returns (outputs (T, B, H) or (N, H), final state)."""
    w_ih, w_hh, b_ih, b_hh, w_hr = w
    p = (w_hh, b_hh, w_hr)
    proj = F.linear(x, w_ih, b_ih)  # the whole sequence's input projection: one GEMM
    if batch_sizes is None:
        steps = proj.unbind(time_dim)
        outs = [None] * len(steps)
        for t in reversed(range(len(steps))) if reverse else range(len(steps)):
            state = step(steps[t], state, p)
            outs[t] = _output(state)
        return torch.stack(outs, 0), state

    # packed: step t holds the first batch_sizes[t] sequences (sorted by decreasing length)
    steps = proj.split(batch_sizes, 0)
    outs = [None] * len(steps)
    if not reverse:
        done, b_prev = [], batch_sizes[0]
        for t, b in enumerate(batch_sizes):
            if b < b_prev:  # sequences b..b_prev-1 ended at step t-1: their final states
                done.append(_rows(state, b, b_prev))
                state = _rows(state, 0, b)
            state = step(steps[t], state, p)
            outs[t] = _output(state)
            b_prev = b
        done.append(state)
        return torch.cat(outs, 0), _cat_rows(done[::-1])
    initial, b_prev = state, batch_sizes[-1]
    state = _rows(initial, 0, b_prev)
    for t in reversed(range(len(batch_sizes))):
        b = batch_sizes[t]
        if b > b_prev:  # sequences b_prev..b-1 start (from their last element) here
            state = _cat_rows([state, _rows(initial, b_prev, b)])
        state = step(steps[t], state, p)
        outs[t] = _output(state)
        b_prev = b
    return torch.cat(outs, 0), state


# -- the layer stack -----------------------------------------------------------------------------------


def _weights(params, has_biases, has_proj, count):
    """Split the flat parameter list into ``count`` (w_ih, w_hh, b_ih, b_hh, w_hr) groups."""
    params = list(params)
    per = 2 + 2 * bool(has_biases) + bool(has_proj)
    if len(params) != per * count:
        raise ValueError(f"torchlc rnn: expected {per * count} parameters, got {len(params)}")
    groups = []
    for k in range(count):
        g = params[k * per : (k + 1) * per]
        b_ih, b_hh = (g[2], g[3]) if has_biases else (None, None)
        groups.append((g[0], g[1], b_ih, b_hh, g[-1] if has_proj else None))
    return groups


def _stack(
    kind,
    x,
    batch_sizes,
    hx,
    params,
    has_biases,
    num_layers,
    dropout,
    train,
    bidirectional,
    batch_first,
):
    dirs = 2 if bidirectional else 1
    if kind == "lstm":
        h0, c0 = hx
        has_proj = h0.shape[-1] != c0.shape[-1]
        states = list(zip(h0.unbind(0), c0.unbind(0)))
    else:
        has_proj = False
        states = list(hx.unbind(0))
    if len(states) != num_layers * dirs:
        raise ValueError(
            f"torchlc rnn: hidden state has {len(states)} layers×directions, expected {num_layers * dirs}"
        )
    weights = _weights(params, has_biases, has_proj, num_layers * dirs)
    step = _STEPS[kind]
    if batch_sizes is not None:
        batch_sizes = [int(b) for b in batch_sizes.tolist()]
    # batch-first input: the first layer projects it as it is and reads the steps along dim 1; the
    # layers' outputs are sequence-first
    time_dim = 1 if batch_first and batch_sizes is None else 0
    finals = []
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            o, s = _layer(
                x, states[k], weights[k], step, d == 1, batch_sizes, time_dim if layer == 0 else 0
            )
            outs.append(o)
            finals.append(s)
        x = outs[0] if dirs == 1 else torch.cat(outs, -1)
        if dropout != 0 and train and layer < num_layers - 1:
            x = torch.dropout(x, dropout, True)
    if batch_sizes is None and batch_first:
        x = x.transpose(0, 1)
    if kind == "lstm":
        hs, cs = zip(*finals)
        return x, torch.stack(hs, 0), torch.stack(cs, 0)
    return x, torch.stack(finals, 0)


def _is_packed_call(kind, args, kwargs):
    """Tell the packed-sequence overload ``(data, batch_sizes, hx, params, ...)`` from the padded one
    ``(input, hx, params, has_biases, ...)``."""
    if "batch_sizes" in kwargs:
        return True
    if kind == "lstm":  # hx is a list of two tensors, batch_sizes a tensor
        return len(args) > 1 and isinstance(args[1], torch.Tensor)
    return len(args) > 3 and isinstance(args[3], (list, tuple))


def _padded(
    kind, input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
):
    flags = (has_biases, num_layers, dropout, train, bidirectional, batch_first)
    return _stack(kind, input, None, hx, params, *flags)


def _packed(
    kind, data, batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidirectional
):
    flags = (has_biases, num_layers, dropout, train, bidirectional, False)
    return _stack(kind, data, batch_sizes, hx, params, *flags)


def _entry(kind):
    def run(*args, **kwargs):
        impl = _packed if _is_packed_call(kind, args, kwargs) else _padded
        return impl(kind, *args, **kwargs)

    run.__name__ = f"lc_{kind}"
    return run


# -- cells ---------------------------------------------------------------------------------------------


def rnn_tanh_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return _tanh_step(F.linear(input, w_ih, b_ih), hx, (w_hh, b_hh, None))


def rnn_relu_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return _relu_step(F.linear(input, w_ih, b_ih), hx, (w_hh, b_hh, None))


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return _gru_step(F.linear(input, w_ih, b_ih), hx, (w_hh, b_hh, None))


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    h, c = hx
    return _lstm_step(F.linear(input, w_ih, b_ih), (h, c), (w_hh, b_hh, None))


_CELLS = {
    "rnn_tanh_cell": rnn_tanh_cell,
    "rnn_relu_cell": rnn_relu_cell,
    "gru_cell": gru_cell,
    "lstm_cell": lstm_cell,
}

# -- packing and unpacking LC sequences (row rearrangements: the planes ride along as a feature dim) ----


@implements([aten._pack_padded_sequence.default])
def pack_padded_sequence(func, input, lengths, batch_first):
    s = series(input)
    data, batch_sizes = func(s.planes.movedim(0, -1), lengths, batch_first)
    return out(Series(data.movedim(-1, 0), s.support, s.order, s.exact)), batch_sizes


def pad_packed_sequence(data, batch_sizes, batch_first, padding_value, total_length):
    """``torch._VF._pad_packed_sequence`` on LC data (its C++ composite copies into a plain tensor):
    one ``index_copy`` of all planes into the padded layout; the padding value is real (ε⁰ plane)."""
    s = series(data)
    sizes = batch_sizes.to(device="cpu", dtype=torch.long)
    steps, batch = sizes.numel(), int(sizes[0])
    length = steps
    if total_length is not None and total_length > 0:
        if total_length < steps:
            raise ValueError(
                f"total_length {total_length} is shorter than the longest sequence ({steps})"
            )
        length = int(total_length)
    # packed row k holds time step t[k], batch entry k - starts[t[k]]: its row in the (length × batch) grid
    t = torch.repeat_interleave(torch.arange(steps), sizes)
    starts = torch.cumsum(sizes, 0) - sizes
    row = (t * batch + torch.arange(t.numel()) - starts[t]).to(s.planes.device)
    planes = s.planes.new_zeros((s.planes.shape[0], length * batch, *s.shape[1:]))
    planes = planes.index_copy(1, row, s.planes)
    res = Series(planes, s.support, s.order, s.exact)
    if padding_value != 0:
        fill = s.planes.new_full((length * batch, *s.shape[1:]), float(padding_value))
        fill = fill.index_fill(0, row, 0.0)
        res = A.add(res, Series(fill.unsqueeze(0), (S.ZERO,)))
    planes = res.planes.reshape(-1, length, batch, *s.shape[1:])
    if batch_first:
        planes = planes.transpose(1, 2)
    res = Series(planes, res.support, res.order, res.exact)
    lengths = (sizes.unsqueeze(1) > torch.arange(batch)).sum(0)
    return out(res), lengths


# -- registration -------------------------------------------------------------------------------------
# With autograd on, the dispatcher runs these CompositeImplicitAutograd ops' C++ decompositions at the
# autograd keys, before an LCTensor's Python key is reached: they are composites, whose LC calls are
# routed past those keys to the rule (torchlc._dispatch.composite); plain calls never see torchlc.


def _as_rule(fn):
    def rule(func, *args, **kwargs):
        return fn(*args, **kwargs)

    return rule


# (their C++ decompositions cannot run on LC arguments, see above: complex coefficients raise the
# TypeError naming the layer's op rather than one of its pieces')
for _kind in _STEPS:
    composite([getattr(aten, _kind).input, getattr(aten, _kind).data],
              complex_decomposes=False)(_as_rule(_entry(_kind)))
for _name, _fn in _CELLS.items():
    composite([getattr(aten, _name).default], complex_decomposes=False)(_as_rule(_fn))
composite([aten._pad_packed_sequence.default], complex_decomposes=False)(_as_rule(pad_packed_sequence))
