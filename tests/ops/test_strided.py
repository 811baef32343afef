"""Strided views (as_strided, as_strided_, as_strided_scatter) and fresh results of the selection
reductions (topk, sort, kthvalue, max, min, ...).

as_strided acts on every plane alike, in element coordinates counted from the tensor's first element:
each plane of the result is torch.as_strided of the same plane of the base, and the result aliases its
base. Results of selections are fresh tensors, so in-place ops on them work under grad as on plain
tensors (mixture-of-experts routing normalises topk's values in place)."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torchlc
from torchlc.layouts import force

f64 = torch.float64

A = torch.arange(12, dtype=f64).reshape(3, 4)
V = 100 + torch.arange(12, dtype=f64).reshape(3, 4)

# (base view of the (3, 4) tensor, size, stride, storage_offset relative to the view's first element)
BASES = {
    "whole": lambda t: t,
    "row_slice": lambda t: t[1:],
    "column_slice": lambda t: t[:, 1:],
    "transposed": lambda t: t.t(),
    "row": lambda t: t[1],
}
CASES = [
    ((2, 2), (1, 2), 0),
    ((2, 3), (4, 1), 1),
    ((3,), (2,), None),
    ((2, 2, 2), (0, 1, 3), 2),  # overlapping (stride 0): a read-only view, as in torch
    ((0, 5), (1, 1), 0),
    ((), (), 3),
]


def _fits(ref, size, stride, off):
    room = ref.untyped_storage().nbytes() // ref.element_size() - ref.storage_offset()
    n = 0 if 0 in size else 1 + sum((s - 1) * st for s, st in zip(size, stride))
    return not n or (off or 0) + n <= room


def _ref_as_strided(ref, size, stride, off):
    """torch.as_strided of a plain tensor with the offset counted from ref's first element."""
    return torch.as_strided(ref, size, stride, ref.storage_offset() + (off or 0))


@pytest.mark.parametrize("base", list(BASES))
@pytest.mark.parametrize("size,stride,off", CASES)
def test_as_strided_each_plane_is_torch_as_strided(base, size, stride, off):
    a, v = A.clone(), V.clone()
    pa, pv = BASES[base](a), BASES[base](v)
    x = BASES[base](a.nonstd(v))
    if not _fits(pa, size, stride, off):
        with pytest.raises(RuntimeError, match="out of bounds"):
            torch.as_strided(x, size, stride, off)
        return
    y = torch.as_strided(x, size, stride, off)
    assert isinstance(y, torchlc.LCTensor) and y.shape == torch.Size(size)
    assert y.stride() == _ref_as_strided(pa, size, stride, off).stride()
    assert torch.equal(torchlc.coeff(y, 0), _ref_as_strided(pa, size, stride, off))
    assert torch.equal(torchlc.coeff(y, 1), _ref_as_strided(pv, size, stride, off))
    # literally: every plane of the result is torch.as_strided of that plane of the base
    for p, q in zip(x.lc_planes(), y.lc_planes()):
        assert torch.equal(q, _ref_as_strided(p, size, stride, off))
        assert q.untyped_storage().data_ptr() == p.untyped_storage().data_ptr()  # aliased
    assert y.lc_view


def test_as_strided_method_and_default_offset():
    x = A.nonstd(V)
    y = x.as_strided((4,), (3,))
    assert torch.equal(torchlc.coeff(y, 0), A.as_strided((4,), (3,)))
    assert torch.equal(torchlc.coeff(y, 1), V.as_strided((4,), (3,)))
    assert x.storage_offset() == 0 and y.storage_offset() == 0


def test_as_strided_aliases_its_base_both_ways():
    a, v = A.clone(), V.clone()
    x = a.clone().nonstd(v.clone())
    y = x.as_strided((2, 2), (1, 4), 1)  # elements 1, 5 / 2, 6
    ry = a.as_strided((2, 2), (1, 4), 1)
    # write through the view, read the base
    y.mul_(2)
    ry.mul_(2)
    v.as_strided((2, 2), (1, 4), 1).mul_(2)
    assert torch.equal(torchlc.coeff(x, 0), a) and torch.equal(torchlc.coeff(x, 1), v)
    # write into the base, read the view
    x[0, 2] = torchlc.from_terms({0: torch.tensor(-7.0, dtype=f64), 1: torch.tensor(3.0, dtype=f64)})
    assert torchlc.coeff(y, 0)[1, 0] == -7 and torchlc.coeff(y, 1)[1, 0] == 3
    # a view of a view: offsets add up, still aliased
    z = y.as_strided((2,), (4,), 1)  # from y's first element (x's element 1): x's 2 and 6
    z.zero_()
    assert torchlc.coeff(x, 0).flatten()[[2, 6]].eq(0).all() and torchlc.coeff(x, 1).flatten()[[2, 6]].eq(0).all()


def test_as_strided_validates_like_torch():
    x = A.nonstd(V)
    with pytest.raises(RuntimeError, match="out of bounds"):
        x.as_strided((13,), (1,))
    with pytest.raises(RuntimeError, match="out of bounds"):
        x.as_strided((2, 2), (6, 6), 0)
    with pytest.raises(RuntimeError, match="out of bounds"):
        x[1:].as_strided((9,), (1,))  # would read the next plane's first coefficients
    with pytest.raises(RuntimeError, match="out of bounds"):
        x.as_strided((2,), (1,), 11)
    with pytest.raises(RuntimeError, match="(?i)negative strides"):
        x.as_strided((2,), (-1,))
    with pytest.raises(RuntimeError, match="length of strides"):
        x.as_strided((2, 2), (1,))
    with pytest.raises(RuntimeError, match="storage offset"):
        x.as_strided((2,), (1,), -1)
    # the plain tensor agrees about each of the first four
    for size, stride, off, t in [((13,), (1,), None, A), ((2, 2), (6, 6), 0, A), ((9,), (1,), None, A[1:]),
                                 ((2,), (1,), 11, A)]:
        with pytest.raises(RuntimeError):
            t.as_strided(size, stride, off if off is None else t.storage_offset() + off)
    assert x.as_strided((12,), (1,)).shape == (12,)  # the whole storage is fine
    assert x[1:].as_strided((8,), (1,)).shape == (8,)


def test_as_strided_inplace_restrides_and_stays_aliased():
    a, v = A.clone(), V.clone()
    base = a.clone().nonstd(v.clone())
    x = base[1]  # (4,), a view of base
    ret = x.as_strided_((2, 2), (1, 2), 1)  # elements 5, 7 / 6, 8 of the base
    assert ret is x and x.shape == (2, 2) and x.stride() == (1, 2)
    assert torch.equal(torchlc.coeff(x, 0), a[1].as_strided((2, 2), (1, 2), a[1].storage_offset() + 1))
    assert torch.equal(torchlc.coeff(x, 1), v[1].as_strided((2, 2), (1, 2), v[1].storage_offset() + 1))
    x.add_(1000)
    assert torch.equal(torchlc.coeff(base, 0).flatten()[5:9], a.flatten()[5:9] + 1000)
    # the same shape with other strides restrides too (a copy would permute the values)
    y = A.clone().nonstd(V.clone())[:, :2]
    y.as_strided_((3, 2), (1, 3))
    assert torch.equal(torchlc.coeff(y, 0), A.as_strided((3, 2), (1, 3)))
    # beyond the tensor's own extent, within its storage (the wrapper's storage grows)
    z = A.clone().nonstd(V.clone())[0, :2]
    z.as_strided_((3, 4), (4, 1))
    assert z.shape == (3, 4) and torch.equal(torchlc.coeff(z, 1), V)
    with pytest.raises(RuntimeError, match="out of bounds"):
        z.as_strided_((13,), (1,))


def _adaptive_cl(x):
    return F.adaptive_avg_pool2d(x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2), 1)


@pytest.mark.parametrize("grad", [False, True])
def test_channels_last_adaptive_avg_pool_matches_jvp(grad):
    """PyTorch's 1x1 adaptive_avg_pool2d restrides its output with as_strided_ on channels-last input
    (torchvision convnext_tiny, swin_t)."""
    torch.manual_seed(0)
    x, v = torch.randn(2, 3, 4, 5, dtype=f64), torch.randn(2, 3, 4, 5, dtype=f64)
    with torch.set_grad_enabled(grad):
        y = _adaptive_cl(x.nonstd(v))
    val, tan = torch.func.jvp(_adaptive_cl, (x,), (v,))
    assert y.shape == val.shape and y.stride() == val.stride()
    torch.testing.assert_close(torchlc.coeff(y, 0), val, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(y, 1), tan, rtol=1e-12, atol=1e-12)


def test_channels_last_pool_head_gradients_match_jvp():
    """A channels-last conv → adaptive pool → linear head: gradients of a loss on the ε¹ plane."""
    torch.manual_seed(1)
    conv, head = nn.Conv2d(3, 4, 3).double(), nn.Linear(4, 2).double()
    x, v = torch.randn(2, 3, 6, 6, dtype=f64), torch.randn(2, 3, 6, 6, dtype=f64)

    def f(t):
        return head(_adaptive_cl(conv(t)).flatten(1))

    params = [conv.weight, conv.bias, head.weight]  # (head.bias leaves the ε¹ plane alone)
    loss = torchlc.coeff(f(x.nonstd(v)), 1).pow(2).sum()
    grads = torch.autograd.grad(loss, params)
    _, tan = torch.func.jvp(f, (x,), (v,))
    ref = torch.autograd.grad(tan.pow(2).sum(), params)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_as_strided_gradients_through_planes():
    torch.manual_seed(2)
    w = torch.randn(3, 4, dtype=f64, requires_grad=True)
    x, v = torch.randn(3, 4, dtype=f64), torch.randn(3, 4, dtype=f64)

    def f(t):
        return torch.sin((t * w).as_strided((2, 3), (1, 4), 2))

    loss = torchlc.coeff(f(x.nonstd(v)), 1).sum()
    (g,) = torch.autograd.grad(loss, w)
    _, tan = torch.func.jvp(f, (x,), (v,))
    (r,) = torch.autograd.grad(tan.sum(), w)
    torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("base", list(BASES) + ["expanded"])
@pytest.mark.parametrize("size,stride,off", [((2, 2), (1, 3), 1), ((3,), (4,), None), ((12,), (1,), 0),
                                             ((2,), (1,), 0), ((2, 3), (3, 1), 5)])
def test_as_strided_scatter_each_plane_is_torch(base, size, stride, off):
    """torch copies x's storage keeping x's strides (a plain copy when x overlaps itself) and writes
    src into the strided view of the copy; offsets count from x's first element."""
    view = BASES.get(base, lambda t: t[1].expand(3, 4))
    x = view(A.nonstd(V))
    a, v = view(A), view(V)
    overlap = base == "expanded"
    toff = None if off is None else (off if overlap else a.storage_offset() + off)
    n = math.prod(size)
    sa, sv = -torch.arange(n, dtype=f64).reshape(size), torch.full(size, 0.5, dtype=f64)
    src = torchlc.from_terms({0: sa, 1: sv, 2: sv + 1})  # a term x lacks: the result's support is the union
    try:
        ra = torch.as_strided_scatter(a, sa, size, stride, toff)
    except RuntimeError:
        with pytest.raises(RuntimeError, match="out of bounds"):
            torch.as_strided_scatter(x, src, size, stride, off)
        return
    y = torch.as_strided_scatter(x, src, size, stride, off)
    assert torch.equal(torchlc.coeff(y, 0), ra)
    assert torch.equal(torchlc.coeff(y, 1), torch.as_strided_scatter(v, sv, size, stride, toff))
    za = view(torch.zeros(3, 4, dtype=f64))  # x lacks ε²: zeros of x's geometry
    assert torch.equal(torchlc.coeff(y, 2), torch.as_strided_scatter(za, sv + 1, size, stride, toff))
    assert y.stride() == ra.stride()
    assert not y.lc_view and torch.equal(torchlc.coeff(x, 0), a)  # x untouched
    # a plain src is a real value
    y = torch.as_strided_scatter(x, sa, size, stride, off)
    assert torch.equal(torchlc.coeff(y, 1), torch.as_strided_scatter(v, torch.zeros_like(sa), size, stride, toff))
    with pytest.raises(RuntimeError, match="size equal"):
        torch.as_strided_scatter(x, src.reshape(-1)[:1], size, stride, off)


def test_as_strided_scatter_into_plain_tensor_uses_its_storage():
    a = A[1:, 1:]  # offset 5 in a 12-element storage
    src = torch.ones(2, dtype=f64).nonstd(torch.ones(2, dtype=f64))
    for off in (None, 0, 6, 10):
        y = torch.as_strided_scatter(a, src, (2,), (1,), off)
        assert torch.equal(torchlc.coeff(y, 0), torch.as_strided_scatter(a, torch.ones(2, dtype=f64), (2,), (1,), off))
        za = torch.zeros(3, 4, dtype=f64)[1:, 1:]
        assert torch.equal(torchlc.coeff(y, 1), torch.as_strided_scatter(za, torch.ones(2, dtype=f64), (2,), (1,), off))
    with pytest.raises(RuntimeError, match="out of bounds"):
        torch.as_strided_scatter(a, src, (2,), (1,), 11)


def test_as_strided_scatter_gradients():
    torch.manual_seed(3)
    w = torch.randn(3, 4, dtype=f64, requires_grad=True)
    x, v = torch.randn(3, 4, dtype=f64), torch.randn(3, 4, dtype=f64)
    s, sv = torch.randn(2, 2, dtype=f64), torch.randn(2, 2, dtype=f64)

    def f(t, u):
        return torch.as_strided_scatter(torch.exp(t * w), u * u, (2, 2), (1, 4), 1).sum(0)

    def f_index(t, u):  # the same program with index_put (element (i, j) of the view is 1 + i + 4j)
        uu = (u * u).t().reshape(-1)
        return torch.exp(t * w).reshape(-1).index_put((torch.tensor([1, 2, 5, 6]),), uu).reshape(3, 4).sum(0)

    y = f(x.nonstd(v), s.nonstd(sv))
    val, tan = torch.func.jvp(f, (x, s), (v, sv))
    torch.testing.assert_close(torchlc.coeff(y, 0), val, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(y, 1), tan, rtol=1e-12, atol=1e-12)
    (g,) = torch.autograd.grad(torchlc.coeff(y, 1).pow(2).sum(), w)
    # reverse mode over torch.func.jvp of as_strided_scatter itself gives wrong gradients in torch
    # 2.13, so the oracle is the index_put program
    _, tan = torch.func.jvp(f_index, (x, s), (v, sv))
    (r,) = torch.autograd.grad(tan.pow(2).sum(), w)
    torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def test_as_strided_copy():
    x = A.nonstd(V)
    y = torch.ops.aten.as_strided_copy(x, (2, 3), (1, 4), 1)
    assert torch.equal(torchlc.coeff(y, 1), V.as_strided((2, 3), (1, 4), 1)) and y.is_contiguous()
    assert not y.lc_view


def _monomial():
    """A monomial float32 tensor (boxable): every element holds one term."""
    a = torch.tensor([[1.0, 0.0, 3.0, 0.0], [0.0, 5.0, 0.0, 7.0], [8.0, 0.0, 0.0, 11.0]])
    return torchlc.from_terms({0: a, 1: torch.where(a == 0, torch.full_like(a, 2.0), torch.zeros_like(a))})


@pytest.mark.parametrize("layout", ["boxed", "csr"])
def test_as_strided_on_other_layouts(layout):
    with force(layout):
        x = _monomial() if layout == "boxed" else A.nonstd(V)
        assert torchlc.layout(x) == layout
        ys = [x.as_strided((2, 2), (1, 4), 1), x.t().as_strided((3,), (5,)), x[1:].as_strided((2, 4), (4, 1)),
              torch.as_strided_scatter(x, x[0, :2] * 0, (2,), (4,), 2),
              _adaptive_cl(x.reshape(1, 1, 3, 4).expand(2, 3, 3, 4))]
        with pytest.raises(RuntimeError, match="out of bounds"):
            x[1:].as_strided((9,), (1,))
        xt_stride = x.t().stride()
    with force("planes"):
        p = torchlc.from_terms({q: torchlc.coeff(x, q) for q in torchlc.support(x)})
        # CSR stores x.t() afresh (contiguous strides, as it reports): its view is of that storage
        pt = p.t() if layout == "boxed" else p.t().contiguous()
        refs = [p.as_strided((2, 2), (1, 4), 1), pt.as_strided((3,), (5,)), p[1:].as_strided((2, 4), (4, 1)),
                torch.as_strided_scatter(p, p[0, :2] * 0, (2,), (4,), 2),
                _adaptive_cl(p.reshape(1, 1, 3, 4).expand(2, 3, 3, 4))]
    assert xt_stride == pt.stride()
    for y, r in zip(ys, refs):
        assert y.shape == r.shape
        for q in torchlc.support(r):
            assert torch.equal(torchlc.coeff(y, q), torchlc.coeff(r, q))
    if layout == "boxed":
        assert torchlc.layout(ys[0]) == "boxed"  # the words were viewed directly
    z = x.clone()
    z.as_strided_((2, 3), (1, 4), 1)
    assert torch.equal(torchlc.coeff(z, 0), torchlc.coeff(p, 0).as_strided((2, 3), (1, 4), 1))


# -- selections return fresh tensors ----------------------------------------------------------------


def test_topk_values_in_place_under_grad_match_jvp():
    torch.manual_seed(0)
    w = torch.randn(8, 4, requires_grad=True)
    x0, v = torch.randn(5, 8), torch.randn(5, 8)
    y = torch.topk(x0.nonstd(v) @ w, 2, -1)[0].div_(2.0)
    torchlc.coeff(y, 1).pow(2).sum().backward()
    g_inplace = w.grad.clone()
    w.grad = None
    y = torch.topk(x0.nonstd(v) @ w, 2, -1)[0] / 2.0
    torchlc.coeff(y, 1).pow(2).sum().backward()
    assert torch.equal(w.grad, g_inplace)
    _, tan = torch.func.jvp(lambda t: torch.topk(t @ w, 2, -1)[0] / 2.0, (x0,), (v,))
    (r,) = torch.autograd.grad(tan.pow(2).sum(), w)
    torch.testing.assert_close(g_inplace, r)


SELECTIONS = {
    "topk": lambda t: torch.topk(t, 2, -1),
    "topk_smallest": lambda t: torch.topk(t, 3, 0, largest=False),
    "sort": lambda t: torch.sort(t, -1, descending=True),
    "kthvalue": lambda t: torch.kthvalue(t, 2, -1),
    "max_dim": lambda t: torch.max(t, -1),
    "min_dim": lambda t: torch.min(t, 0, keepdim=True),
    "median_dim": lambda t: torch.median(t, -1),
    "nanmedian_dim": lambda t: torch.nanmedian(t, 0),
    "mode": lambda t: torch.mode(t.round(), -1),
    "cummax": lambda t: torch.cummax(t, -1),
    "cummin": lambda t: torch.cummin(t, 0),
    "amax": lambda t: (torch.amax(t, -1),),
    "max_all": lambda t: (torch.max(t),),
    "median_all": lambda t: (torch.median(t),),
    "msort": lambda t: (torch.msort(t),),
    "topk_0d": lambda t: torch.topk(t[1, 2], 1),
    "sort_0d": lambda t: torch.sort(t[1, 2]),
    "kthvalue_0d": lambda t: torch.kthvalue(t[1, 2], 1),
    "max_0d": lambda t: torch.max(t[1, 2], 0),
    "max_all_0d": lambda t: (torch.max(t[1, 2]),),
    "median_0d": lambda t: torch.median(t[1, 2], 0),
    "mode_0d": lambda t: torch.mode(t[1, 2], 0),
    "cummax_0d": lambda t: torch.cummax(t[1, 2], 0),
    "amax_0d": lambda t: (torch.amax(t[1, 2], 0),),
}


@pytest.mark.parametrize("name", list(SELECTIONS))
def test_selection_results_take_in_place_ops_under_grad(name):
    op = SELECTIONS[name]
    torch.manual_seed(4)
    w = torch.randn(8, 6, dtype=f64, requires_grad=True)
    x0, v = torch.randn(5, 8, dtype=f64), torch.randn(5, 8, dtype=f64)

    def program(inplace):
        h = x0.nonstd(v) @ w
        res = op(h)
        vals = res[0]
        vals = vals.mul_(3.0) if inplace else vals * 3.0
        loss = torchlc.coeff(vals, 1).pow(2).sum() + torchlc.coeff(vals, 0).sum()
        (g,) = torch.autograd.grad(loss, w)
        return g, h

    g_inplace, h = program(True)
    g_plain, _ = program(False)
    torch.testing.assert_close(g_inplace, g_plain, rtol=0, atol=0)
    # the result is never the input itself: writing into it leaves the input alone
    before = torchlc.coeffs(h).clone()
    with torch.no_grad():
        res = op(h)
        res[0].mul_(0.0)
    assert torch.equal(torchlc.coeffs(h), before)


# -- a Mixtral-style sparse mixture-of-experts block -----------------------------------------------------


class SparseMoE(nn.Module):
    """Mixtral's routing (transformers' MixtralSparseMoeBlock, written with torch.nn only): softmax over
    the router logits, top-2, in-place renormalisation, experts run on the tokens routed to them and
    index_add_-ed back."""

    def __init__(self, d=6, hidden=10, n_experts=4, top_k=2, inplace=True):
        super().__init__()
        self.top_k, self.n_experts, self.inplace = top_k, n_experts, inplace
        self.gate = nn.Linear(d, n_experts, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(d, hidden, bias=False), nn.SiLU(), nn.Linear(hidden, d, bias=False))
            for _ in range(n_experts)
        )

    def forward(self, h):
        b, s, d = h.shape
        h = h.view(-1, d)
        routing = F.softmax(self.gate(h), dim=1)
        routing, selected = torch.topk(routing, self.top_k, dim=-1)
        if self.inplace:
            routing /= routing.sum(dim=-1, keepdim=True)
        else:
            routing = routing / routing.sum(dim=-1, keepdim=True)
        final = torch.zeros_like(h)
        mask = F.one_hot(selected, num_classes=self.n_experts).permute(2, 1, 0)
        for e, expert in enumerate(self.experts):
            idx, top = torch.where(mask[e])
            cur = expert(h[None, top].reshape(-1, d)) * routing[top, idx, None]
            final.index_add_(0, top, cur)
        return final.reshape(b, s, d)


@pytest.mark.parametrize("inplace", [True, False])
def test_mixtral_routing_block_under_grad_matches_jvp(inplace):
    torch.manual_seed(5)
    moe = SparseMoE(inplace=inplace).double()
    x, v = torch.randn(2, 5, 6, dtype=f64), torch.randn(2, 5, 6, dtype=f64)
    y = moe(x.nonstd(v))
    val, tan = torch.func.jvp(moe, (x,), (v,))
    torch.testing.assert_close(torchlc.coeff(y, 0), val, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torchlc.coeff(y, 1), tan, rtol=1e-12, atol=1e-12)
    params = list(moe.parameters())
    grads = torch.autograd.grad(torchlc.coeff(y, 1).pow(2).sum(), params, allow_unused=True)
    refs = torch.autograd.grad(tan.pow(2).sum(), params, allow_unused=True)
    for g, r in zip(grads, refs):
        if r is None:
            assert g is None or not g.any()
        else:
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
