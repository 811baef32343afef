"""LCTensors that cross a ``torch.inference_mode()`` boundary behave as plain tensors do.

Built outside and used inside (the common ``x = x.nonstd(v); with torch.inference_mode(): model(x)``):
every op works, views stay normal tensors aliasing their base, in-place updates are allowed and leave
the tensor normal, and the values equal a ``torch.no_grad()`` run exactly. Built inside and used
outside: reading works, in-place updates raise PyTorch's own "Inplace update to inference tensor
outside InferenceMode" error, exactly where plain tensors raise it.
"""

import copy

import pytest
import torch
import torch.nn as nn
from test_models import MODULES, R, _module_params

import torchlc

f64 = torch.float64


def lc(*shape, seed=0):
    return R(*shape, seed=seed).nonstd(R(*shape, seed=seed + 100))


def equal(a, b):
    """Same shape, support and coefficients, bit for bit (NaNs alike)."""
    assert torchlc.is_lc(a) and torchlc.is_lc(b)
    assert a.shape == b.shape and torchlc.support(a) == torchlc.support(b)
    assert torch.equal(torchlc.coeffs(a), torchlc.coeffs(b)), (torchlc.coeffs(a), torchlc.coeffs(b))


def _first(r):
    return r[0] if isinstance(r, (tuple, list)) else r


def _all(r):
    return list(r) if isinstance(r, (tuple, list)) else [r]


# -- views and data movement on a normal LCTensor, inside inference_mode ------------------------------

OPS = {
    "view": lambda x: x.view(12),
    "view_as": lambda x: x.view_as(torch.empty(2, 6)),
    "reshape": lambda x: x.reshape(2, 6),
    "reshape_copy": lambda x: x.t().reshape(12),
    "flatten": lambda x: x.flatten(),
    "unflatten": lambda x: x.unflatten(1, (2, 2)),
    "ravel": lambda x: x.ravel(),
    "t": lambda x: x.t(),
    "T": lambda x: x.T,
    "mT": lambda x: x.mT,
    "transpose": lambda x: x.transpose(0, 1),
    "swapaxes": lambda x: x.swapaxes(0, 1),
    "permute": lambda x: x.permute(1, 0),
    "movedim": lambda x: x.movedim(0, 1),
    "expand": lambda x: x[None].expand(2, 3, 4),
    "expand_as": lambda x: x.expand_as(torch.empty(2, 3, 4)),
    "broadcast_to": lambda x: x.broadcast_to(2, 3, 4),
    "unsqueeze": lambda x: x.unsqueeze(1),
    "none_index": lambda x: x[..., None],
    "squeeze": lambda x: x[None].squeeze(0),
    "squeeze_all": lambda x: x[:, None, :1].squeeze(),
    "select": lambda x: x[1],
    "select_neg": lambda x: x[:, -1],
    "slice": lambda x: x[:, 1:3],
    "slice_step": lambda x: x[::2],
    "narrow": lambda x: x.narrow(1, 1, 2),
    "split": lambda x: x.split(3, 1),
    "split_sizes": lambda x: x.split([1, 3], 1),
    "chunk": lambda x: x.chunk(2, 1),
    "tensor_split": lambda x: x.tensor_split(3, 1),
    "hsplit": lambda x: x.hsplit(2),
    "unbind": lambda x: x.unbind(0),
    "diagonal": lambda x: x.diagonal(1),
    "unfold": lambda x: x.unfold(1, 2, 1),
    "detach": lambda x: x.detach(),
    "alias": lambda x: torch.ops.aten.alias(x),
    "unsafe_view": lambda x: torch.ops.aten._unsafe_view(x, [12]),
    "contiguous": lambda x: x.contiguous(),
    "contiguous_copy": lambda x: x.t().contiguous(),
    "adv_index": lambda x: x[[0, 2]],
    "bool_index": lambda x: x[torch.tensor([True, False, True])],
    "index_select": lambda x: x.index_select(1, torch.tensor([3, 0])),
    "gather": lambda x: x.gather(1, torch.tensor([[0], [3], [1]])),
    "clone": lambda x: x.clone(),
    "flip": lambda x: x.flip(0),
    "roll": lambda x: x.roll(1),
    "repeat": lambda x: x.repeat(2, 1),
    "cat": lambda x: torch.cat([x, x[:1]]),
    "stack": lambda x: torch.stack([x, x]),
    "add": lambda x: x + 1,
    "mul": lambda x: x * x,
    "sin": lambda x: x.sin(),
    "sum": lambda x: x.sum(0),
    "matmul": lambda x: x @ R(4, 2, seed=7),
    "linear": lambda x: nn.functional.linear(x, R(2, 4, seed=7), R(2, seed=8)),
    "softmax": lambda x: x.softmax(-1),
    "layer_norm": lambda x: nn.functional.layer_norm(x, (4,)),
    "where": lambda x: torch.where(x > 0, x, -x),
    "sort": lambda x: x.sort(-1).values,
}


@pytest.mark.parametrize("name", list(OPS))
def test_ops_on_normal_lc_inside_inference_mode(name):
    f = OPS[name]
    x, p = lc(3, 4), R(3, 4)
    with torch.no_grad():
        ref = f(x)
    with torch.inference_mode():
        got, plain = f(x), f(p)
    for g, r, q in zip(_all(got), _all(ref), _all(plain)):
        equal(g, r)
        # the wrapper's mode is a plain tensor's: a view of a normal tensor is normal, a fresh result
        # is an inference tensor
        assert g.is_inference() == q.is_inference(), (g.is_inference(), q.is_inference())
        assert g._is_view() == q._is_view()


@pytest.mark.parametrize("layout", ["planes", "boxed", "csr"])
def test_views_of_every_layout_inside_inference_mode(layout):
    m = (torch.arange(12).reshape(3, 4) % 3 == 0).float()  # one term per element: boxable
    with torchlc.layouts.force(layout):
        x = torchlc.from_terms({-1: R(3, 4, seed=1).float() * m, 2: R(3, 4, seed=2).float() * (1 - m)}, order=3)
    assert torchlc.layout(x) == layout
    ref = [f(x) for f in (OPS["view"], OPS["t"], OPS["select"], OPS["chunk"], OPS["detach"])]
    with torch.inference_mode():
        got = [f(x) for f in (OPS["view"], OPS["t"], OPS["select"], OPS["chunk"], OPS["detach"])]
        y = x * 2
    for g, r in zip(got, ref):
        for a, b in zip(_all(g), _all(r)):
            equal(a, b)
            assert not a.is_inference()
    # planes decoded inside the region are cached on x: they must stay usable outside it, with autograd
    assert y.is_inference()
    w = torch.randn(4, requires_grad=True)
    torchlc.coeff(x * w, 2).sum().backward()
    torch.testing.assert_close(w.grad, torchlc.coeff(x, 2).sum(0))
    x.add_(1)
    assert torch.equal(torchlc.coeff(x, 0), torch.ones(3, 4))


def test_views_alias_their_base_inside_inference_mode():
    x = lc(3, 4)
    with torch.inference_mode():
        v = x.view(12)
        v[:4].mul_(0.0)
        x[2, 1:3] = 7.0
        c = x.clone()
    assert not v.is_inference() and v._is_view() and v._base is x
    assert torch.equal(torchlc.coeffs(x)[:, 0], torch.zeros(2, 4, dtype=f64))
    assert torchlc.coeffs(v)[:, 9].tolist() == [7.0, 0.0]
    assert c.is_inference() and not c._is_view()
    # the version counter is shared with the base, as for plain views
    assert v._version == x._version and x._version > 0


# -- whole models: input built outside, run inside --------------------------------------------------


@pytest.mark.parametrize("name,train", list(_module_params()))
def test_model_on_an_outside_input_equals_no_grad(name, train):
    make, shapes = MODULES[name]
    torch.manual_seed(0)
    m = make().double().train(train)
    xs = [lc(*s, seed=i) for i, s in enumerate(shapes)]

    def run(ctx):
        mm = copy.deepcopy(m)  # train-mode buffers must not leak between runs
        torch.manual_seed(1)
        with ctx():
            return mm(*xs)

    ref, got = run(torch.no_grad), run(torch.inference_mode)
    ref, got = _all(ref), _all(got)
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        for a, b in zip(_all(g), _all(r)):  # RNNs return (output, h) or (output, (h, c))
            equal(a, b)


# -- in-place updates on a normal LCTensor inside inference_mode ---------------------------------------


def test_inplace_on_normal_lc_inside_inference_mode_mirrors_torch():
    x, p = lc(3, 4), R(3, 4)
    ref = x.clone()
    with torch.no_grad():
        for t in (ref, p.clone()):
            t.add_(1).mul_(2)
            t[0] = 5.0
            t.t_()
            t.unsqueeze_(0).squeeze_(0)
    v0 = x._version
    with torch.inference_mode():
        x.add_(1).mul_(2)
        x[0] = 5.0
        x.t_()
        x.unsqueeze_(0).squeeze_(0)
    equal(x, ref)
    assert x.shape == (4, 3) and not x.is_inference() and x._version > v0
    # still a normal tensor afterwards: in-place and autograd outside the region work
    x.add_(1)
    w = torch.randn(3, dtype=f64, requires_grad=True)
    torchlc.coeff(x * w, 1).sum().backward()
    torch.testing.assert_close(w.grad, torchlc.coeff(x, 1).sum(0))


def test_inplace_growing_the_support_inside_inference_mode_keeps_the_tensor_normal():
    x = lc(3, 4)
    h = torch.floor(x)  # real-valued: support {0}
    assert torchlc.support(h) == (0,)
    with torch.inference_mode():
        h.add_(x)  # new storage with an ε¹ plane
    assert torchlc.support(h) == (0, 1)
    assert not h.is_inference() and not any(t.is_inference() for t in h._inner)
    ref = torch.floor(x) + x
    equal(h, ref)
    h.mul_(2)  # outside the region: allowed, as for a plain normal tensor
    w = torch.randn(4, dtype=f64, requires_grad=True)
    torchlc.coeff(h * w, 1).sum().backward()
    torch.testing.assert_close(w.grad, torchlc.coeff(h, 1).sum(0))


# -- the reverse: built inside inference_mode, used outside -------------------------------------------


def test_inference_lc_outside_the_region_reads_like_a_plain_inference_tensor():
    with torch.inference_mode():
        x, p = lc(3, 4), R(3, 4)
        ref = [f(x) for f in OPS.values()]
    assert x.is_inference() and p.is_inference()
    for (name, f), r in zip(OPS.items(), ref):
        got, plain = f(x), f(p)
        for g, rr, q in zip(_all(got), _all(r), _all(plain)):
            equal(g, rr)
            assert g.is_inference() == q.is_inference(), (name, g.is_inference(), q.is_inference())
    # modules read it under no_grad; with grad enabled torch refuses to save it for backward
    lin = nn.Linear(4, 2).double()
    with torch.no_grad():
        y, ref = lin(x), torchlc.coeff(x, 1) @ lin.weight.T
    torch.testing.assert_close(torchlc.coeff(y, 1), ref)
    for t in (p, x):
        with pytest.raises(RuntimeError, match="Inference tensors cannot be saved for backward"):
            lin(t)


INPLACE = {
    "add_": lambda t: t.add_(1),
    "mul_": lambda t: t.mul_(t),
    "setitem": lambda t: t.__setitem__(0, 1.0),
    "copy_": lambda t: t.copy_(t + 1),
    "zero_": lambda t: t.zero_(),
    "view_add_": lambda t: t.view(12).add_(1),
    "select_mul_": lambda t: t[1].mul_(2),
    "t_": lambda t: t.t_(),
}


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_on_inference_lc_outside_raises_as_torch_does(name):
    f = INPLACE[name]
    with torch.inference_mode():
        x, p = lc(3, 4), R(3, 4)
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor outside InferenceMode"):
        f(p)
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor outside InferenceMode"):
        f(x)
    with torch.inference_mode():  # inside the region it is allowed again
        x2, p2 = lc(3, 4), R(3, 4)
        f(x2)
        f(p2)
        assert torch.equal(torchlc.coeff(x2, 0), p2) or name == "mul_"


def test_no_grad_is_unaffected():
    x = lc(3, 4)
    with torch.no_grad():
        v = x.view(12)
        y = x.t() + 1
        x[0].add_(1)
    assert not v.is_inference() and not y.is_inference() and v._base is x
    assert torch.equal(torchlc.coeffs(v)[:, :4], torchlc.coeffs(x)[:, 0])


def test_views_of_inference_lcs_are_views_too():
    # inference tensors keep no view metadata (_is_view() is False on their views): an LCTensor view
    # must still know it aliases its base, and refuse to grow its support instead of silently
    # detaching from the base
    with torch.inference_mode():
        e = torch.zeros(2, 3).nonstd()
        v = e[0]
        with pytest.raises(RuntimeError, match="view of an LCTensor"):
            v.add_(1 / torchlc.eps())
        v.add_(1.0)
        e.t()[2].mul_(5.0)
    assert torchlc.coeff(e, 0).tolist() == [[1.0, 1.0, 5.0], [0.0, 0.0, 0.0]]
    assert torchlc.support(e) == (0, 1)
