"""Views, indexing, joins, scatter/gather, in-place writes, dtype/device moves, clone/detach.

Data movement never combines coefficients, so each test checks that every plane moves exactly as torch
moves the plain tensor (torch.equal on the coefficients)."""

from fractions import Fraction as F

import pytest
import torch
import torch.nn.functional as Fn

import torchlc

f64 = torch.float64

A = torch.arange(6, dtype=f64).reshape(2, 3)
V = 10 * torch.arange(6, dtype=f64).reshape(2, 3) + 1
X = A.nonstd(V)


def planes(y):
    return {q: c.tolist() for q, c in torchlc.terms(y).items()}


def same_as_torch(y, fn, a=A, v=V):
    """y's ε⁰ and ε¹ planes are fn applied to the plain a and v planes."""
    assert isinstance(y, torchlc.LCTensor)
    assert torch.equal(torchlc.coeff(y, 0), fn(a)), "ε⁰ plane"
    assert torch.equal(torchlc.coeff(y, 1), fn(v)), "ε¹ plane"
    assert y.shape == fn(a).shape


VIEWS = {
    "view": lambda t: t.view(3, 2),
    "reshape": lambda t: t.reshape(-1),
    "T": lambda t: t.T,
    "t": lambda t: t.t(),
    "mT": lambda t: t.mT,
    "permute": lambda t: t.permute(1, 0),
    "transpose": lambda t: t.transpose(0, 1),
    "unsqueeze": lambda t: t.unsqueeze(-1),
    "squeeze": lambda t: t[:1].squeeze(0),
    "flatten": lambda t: t.flatten(),
    "unflatten": lambda t: t.flatten().unflatten(0, (3, 2)),
    "expand": lambda t: t[:1].expand(3, 3),
    "broadcast_to": lambda t: t[1].broadcast_to(4, 3),
    "int_slice": lambda t: t[0, 1:],
    "step_slice": lambda t: t[:, ::2],
    "neg_index": lambda t: t[-1],
    "ellipsis_none": lambda t: t[..., None],
    "adv_index": lambda t: t[torch.tensor([1, 0, 1])],
    "adv_index_2d": lambda t: t[torch.tensor([1, 0]), torch.tensor([2, 2])],
    "bool_mask": lambda t: t[A > 2],
    "narrow": lambda t: t.narrow(1, 1, 2),
    "movedim": lambda t: t.movedim(0, 1),
    "flip": lambda t: t.flip(1),
    "roll": lambda t: t.roll(1, 1),
    "roll_flat": lambda t: t.roll(2),
    "repeat": lambda t: t[0].repeat(2, 1),
    "tile": lambda t: t.tile(2),
    "diagonal": lambda t: t.diagonal(),
    "gather": lambda t: t.gather(1, torch.tensor([[2, 0], [1, 1]])),
    "index_select": lambda t: t.index_select(1, torch.tensor([2, 0])),
    "take": lambda t: t.take(torch.tensor([0, 5])),
    "tril": lambda t: t.tril(),
    "triu": lambda t: t.triu(1),
    "unfold": lambda t: t[0].unfold(0, 2, 1),
    "contiguous": lambda t: t.t().contiguous(),
    "clone": lambda t: t.clone(),
    "detach": lambda t: t.detach(),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_view_and_indexing_ops_move_every_plane(name):
    fn = VIEWS[name]
    same_as_torch(fn(X), fn)


def test_split_chunk_unbind():
    for fn in (lambda t: t.split(2, 1), lambda t: t.chunk(3, 1), lambda t: t.unbind(1),
               lambda t: t.split([1, 2], 1), lambda t: torch.tensor_split(t, 2, 1)):
        parts, ref_a, ref_v = fn(X), fn(A), fn(V)
        assert len(parts) == len(ref_a)
        for p, ra, rv in zip(parts, ref_a, ref_v):
            assert torch.equal(torchlc.coeff(p, 0), ra) and torch.equal(torchlc.coeff(p, 1), rv)


def test_cat_stack_with_lc_and_plain():
    y = torch.cat([X, X * 2], 0)
    same_as_torch(y, lambda t: torch.cat([t, t * 2], 0))
    y = torch.stack([X[0], X[1]], 1)
    same_as_torch(y, lambda t: torch.stack([t[0], t[1]], 1))
    y = torch.cat([X, A], 1)          # plain joins as an ε⁰-only block
    assert torch.equal(torchlc.coeff(y, 0), torch.cat([A, A], 1))
    assert torch.equal(torchlc.coeff(y, 1), torch.cat([V, torch.zeros_like(A)], 1))
    y = torch.stack([A[0], X[0]])
    assert torch.equal(torchlc.coeff(y, 1), torch.stack([torch.zeros(3, dtype=f64), V[0]]))


def test_cat_different_supports_takes_union():
    inf = 1 / X[:, :1]                      # contains ε⁻¹ where A == 0
    y = torch.cat([X, inf], 1)
    assert set(torchlc.support(y)) == {F(-1), F(0), F(1)}
    assert torchlc.coeff(y, -1).tolist() == [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    assert torch.equal(torchlc.coeff(y, 0)[:, :3], A)


def test_where_broadcast_and_pad():
    y = torch.where(A > 2, X, A)
    assert torch.equal(torchlc.coeff(y, 0), A)
    assert torch.equal(torchlc.coeff(y, 1), torch.where(A > 2, V, 0.0))
    same_as_torch(Fn.pad(X, (1, 1)), lambda t: Fn.pad(t, (1, 1)))


def test_out_of_place_scatter_family():
    idx = torch.tensor([[0], [2]])
    y = X.scatter(1, idx, 9.0)
    assert torch.equal(torchlc.coeff(y, 0), A.scatter(1, idx, 9.0))
    assert torch.equal(torchlc.coeff(y, 1), V.scatter(1, idx, 0.0))
    src = X[:, :1] * 3
    same_as_torch(X.scatter(1, idx, src), lambda t: t.scatter(1, idx, t[:, :1] * 3))
    same_as_torch(X.scatter_add(1, idx, X[:, :1]), lambda t: t.scatter_add(1, idx, t[:, :1]))
    same_as_torch(X.index_add(1, torch.tensor([0]), X[:, :1]),
                  lambda t: t.index_add(1, torch.tensor([0]), t[:, :1]))
    y = X.index_put((torch.tensor([0]), torch.tensor([1])), torch.tensor(100.0, dtype=f64))
    assert torch.equal(torchlc.coeff(y, 0), A.index_put((torch.tensor([0]), torch.tensor([1])), torch.tensor(100.0, dtype=f64)))
    assert torch.equal(torchlc.coeff(y, 1), V.index_put((torch.tensor([0]), torch.tensor([1])), torch.tensor(0.0, dtype=f64)))
    y = X.index_put((torch.tensor([0]), torch.tensor([1])), torchlc.eps(dtype=f64) * 7)
    assert planes(y)[F(1)][0][1] == 7.0 and planes(y)[F(0)][0][1] == 0.0
    y = X.masked_fill(A > 2, 0.5)
    assert torch.equal(torchlc.coeff(y, 0), A.masked_fill(A > 2, 0.5))
    assert torch.equal(torchlc.coeff(y, 1), V.masked_fill(A > 2, 0.0))
    y = X.index_fill(1, torch.tensor([0]), -1.0)
    assert torch.equal(torchlc.coeff(y, 0), A.index_fill(1, torch.tensor([0]), -1.0))
    assert torch.equal(torchlc.coeff(y, 1), V.index_fill(1, torch.tensor([0]), 0.0))


@pytest.mark.parametrize("case", ["masked_fill_tensor", "fill_tensor", "slice_assign"])
def test_fill_with_tensor_value(case):
    z = X.clone()
    if case == "masked_fill_tensor":
        z = z.masked_fill(A > 2, torch.tensor(0.5, dtype=f64))
        assert torch.equal(torchlc.coeff(z, 0), A.masked_fill(A > 2, 0.5))
    elif case == "fill_tensor":
        z.fill_(torch.tensor(2.0, dtype=f64))
        assert torch.equal(torchlc.coeff(z, 0), torch.full_like(A, 2.0))
    else:
        z[0, 1:2] = 5.0
        assert torchlc.coeff(z, 0)[0, 1].item() == 5.0


# ------------------------------------------------------------------------------ in-place writes
def test_setitem_with_lc_of_same_support():
    z = X.clone()
    z[0, 1] = X[1, 1] * 2
    z[1] = X[0] * 3
    assert planes(z) == {F(0): [[0.0, 8.0, 2.0], [0.0, 3.0, 6.0]], F(1): [[1.0, 82.0, 21.0], [3.0, 33.0, 63.0]]}
    assert planes(X) == {F(0): A.tolist(), F(1): V.tolist()}   # the clone is independent


def test_setitem_mask_and_index_put():
    z = X.clone()
    z[A > 2] = 0.0
    assert torch.equal(torchlc.coeff(z, 0), A.masked_fill(A > 2, 0.0))
    assert torch.equal(torchlc.coeff(z, 1), V.masked_fill(A > 2, 0.0))
    z = X.clone()
    z[torch.tensor([1])] = X[0:1] * 2
    assert torch.equal(torchlc.coeff(z, 0), torch.stack([A[0], 2 * A[0]]))
    z = X.clone()
    r = z.index_put_((torch.tensor([0]), torch.tensor([2])), torch.tensor([9.0], dtype=f64))
    assert r is z
    assert torchlc.coeff(z, 0)[0, 2].item() == 9.0 and torchlc.coeff(z, 1)[0, 2].item() == 0.0


def test_inplace_scatter_masked_fill_index_fill_copy():
    idx = torch.tensor([[0], [2]])
    z = X.clone()
    assert z.scatter_(1, idx, 9.0) is z
    assert torch.equal(torchlc.coeff(z, 0), A.scatter(1, idx, 9.0))
    assert torch.equal(torchlc.coeff(z, 1), V.scatter(1, idx, 0.0))
    z = X.clone()
    z.scatter_(1, idx, X[:, :1] * 3)
    same_as_torch(z, lambda t: t.scatter(1, idx, t[:, :1] * 3))
    z = X.clone()
    z.masked_fill_(A > 2, 0.5)
    assert torch.equal(torchlc.coeff(z, 0), A.masked_fill(A > 2, 0.5))
    z = X.clone()
    z.index_fill_(1, torch.tensor([0]), -1.0)
    assert torch.equal(torchlc.coeff(z, 0), A.index_fill(1, torch.tensor([0]), -1.0))
    z = X.clone()
    z.copy_(X * 2)
    same_as_torch(z, lambda t: t * 2)
    z = X.clone()
    z.copy_(A * 2)                 # plain source: a real-valued result
    assert torch.equal(torchlc.coeff(z, 0), A * 2)
    assert torch.equal(torchlc.coeff(z, 1), torch.zeros_like(A))
    z = X.clone()
    z[0].clamp_(max=1.0)           # in-place through a view reaches the base
    assert torchlc.coeff(z, 0)[0].tolist() == [0.0, 1.0, 1.0]
    assert torchlc.coeff(z, 1)[0].tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("case", ["scalar", "plain_row", "plain_0d", "zero_view"])
def test_setitem_with_plain_or_wider_values_writes_the_base(case):
    z = X.clone()
    if case == "scalar":
        z[0, 1] = 5.0
        want0, want1 = A.index_put((torch.tensor(0), torch.tensor(1)), torch.tensor(5.0, dtype=f64)), None
    elif case == "plain_row":
        z[0] = A[1]
        want0 = torch.stack([A[1], A[1]])
        want1 = None
    elif case == "plain_0d":
        z[0, 1] = torch.tensor(5.0, dtype=f64)
        want0, want1 = A.index_put((torch.tensor(0), torch.tensor(1)), torch.tensor(5.0, dtype=f64)), None
    else:
        z[0].zero_()
        want0 = A.index_fill(0, torch.tensor([0]), 0.0)
        want1 = V.index_fill(0, torch.tensor([0]), 0.0)
    assert torch.equal(torchlc.coeff(z, 0), want0)
    if want1 is not None:
        assert torch.equal(torchlc.coeff(z, 1), want1)


def test_setitem_with_wider_support_raises_instead_of_dropping():
    # a view cannot grow its base's support: writing ε⁻¹ terms must fail loudly, never be dropped
    z = X.clone()
    with pytest.raises(RuntimeError, match="support"):
        z[:, 0] = torchlc.eps(-1, shape=(2,), dtype=f64)
    # the documented workaround: widen the base first
    w = X + 0 * torchlc.eps(-1, dtype=f64)
    w[:, 0] = torchlc.eps(-1, shape=(2,), dtype=f64)
    assert torchlc.coeff(w, -1)[:, 0].tolist() == [1.0, 1.0]
    assert torchlc.coeff(w, 0)[:, 0].tolist() == [0.0, 0.0]
    assert torch.equal(torchlc.coeff(w, 0)[:, 1:], A[:, 1:])


# ------------------------------------------------------------------------------ dtype / device
def test_to_float64_and_back():
    a = torch.tensor([0.1, 2.5, -3.0])
    x = a.nonstd(torch.tensor([1.0, 0.3, -2.0]))
    y = x.to(f64)
    assert isinstance(y, torchlc.LCTensor) and y.dtype == f64
    assert torch.equal(torchlc.coeff(y, 0), a.to(f64))
    assert torch.equal(torchlc.coeff(y, 1), torch.tensor([1.0, 0.3, -2.0]).to(f64))
    assert torchlc.support(y) == torchlc.support(x) and torchlc.order(y) == torchlc.order(x)
    assert x.double().dtype == f64
    z = y.to(torch.float32)
    assert z.dtype == torch.float32 and torch.equal(torchlc.coeffs(z), torchlc.coeffs(x))
    assert y.float().dtype == torch.float32
    assert x.to(torch.bfloat16).dtype == torch.bfloat16


def test_to_cpu_and_same_device():
    for y in (X.to("cpu"), X.cpu(), X.to(torch.device("cpu")), X.to(X)):
        assert isinstance(y, torchlc.LCTensor) and y.device.type == "cpu"
        same_as_torch(y, lambda t: t)


def test_to_integer_dtype_is_refused():
    with pytest.raises(TypeError, match="standard_part"):
        X.to(torch.int64)


def test_clone_is_independent_and_detach_keeps_metadata():
    x = torch.tensor([1.0, 2.0], dtype=f64).nonstd(order=2)
    c = x.clone()
    c.clamp_(max=1.0)
    assert torchlc.coeff(x, 0).tolist() == [1.0, 2.0]
    d = x.detach()
    assert torchlc.order(d) == 2 and torchlc.support(d) == torchlc.support(x)
    assert torch.equal(torchlc.coeffs(d), torchlc.coeffs(x))


def test_exact_through_survives_data_movement():
    x = torch.tensor([[1.0, 2.0]], dtype=f64).nonstd()
    z = x * x / torchlc.eps(dtype=f64)
    for y in (z.t(), z.reshape(-1), z[0], z.clone(), torch.cat([z, z]), z.flip(1), z.to(torch.float32)):
        assert torchlc.exact_through(y) == 0
        assert torchlc.order(y) == 1


def test_torch_equal_between_lc_tensors():
    assert torch.equal(X, X.clone())
    assert not torch.equal(X, X * 2)
