"""In-place updates: fresh results may grow their support; views write through to their base."""

import pytest
import torch

import torchlc


def test_inplace_on_fresh_results_may_widen_the_support():
    x = torch.tensor([1.5, 2.5]).nonstd()
    h = torch.floor(x)  # real-valued result (support {0})
    h += x
    assert torchlc.coeff(h, 0).tolist() == [2.5, 4.5] and torchlc.coeff(h, 1).tolist() == [1.0, 1.0]
    z = torch.sign(x)
    z.mul_(x)
    assert torchlc.coeff(z, 1).tolist() == [1.0, 1.0]


def test_writes_through_views_reach_the_base():
    x = torch.tensor([1.5, 2.5]).nonstd()
    b = torch.zeros(3, 2).nonstd()
    b[0] = x * 3
    b[1:, 0].add_(1.0)
    assert torchlc.coeff(b, 0).tolist() == [[4.5, 7.5], [1.0, 0.0], [1.0, 0.0]]
    assert torchlc.coeff(b, 1).tolist() == [[3.0, 3.0], [1.0, 1.0], [1.0, 1.0]]


def test_a_view_cannot_grow_its_support():
    e = torch.zeros(2).nonstd()
    with pytest.raises(RuntimeError, match="view"):
        e[0] = 1 / torchlc.eps()
    assert torchlc.support(e) == (0, 1)


def test_inplace_writes_are_recorded_by_autograd():
    # ATen's linear on a non-contiguous 3-D input ends in ``output.add_(bias)``: the write into the
    # planes must be on the autograd tape, or bias.grad is silently missing
    f64 = torch.float64
    w = torch.randn(4, 3, dtype=f64, requires_grad=True)
    b = torch.randn(4, dtype=f64, requires_grad=True)
    x = torch.randn(2, 5, 3, dtype=f64)
    y = torch.nn.functional.linear(x.nonstd(x).transpose(0, 1), w, b)
    gw, gb = torch.autograd.grad(torchlc.coeff(y, 0).sum(), [w, b])
    assert gb.tolist() == [10.0] * 4
    torch.testing.assert_close(gw, x.sum((0, 1)).expand(4, 3))
    z = torch.ones(3, dtype=f64).nonstd()
    z.add_(b[:3])
    assert torch.autograd.grad(torchlc.coeff(z, 0).sum(), b)[0].tolist() == [1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("op", ["relu_", "add_"])
def test_first_order_in_place_updates_planes_where_they_are(op):
    # relu_ and a residual add_ on exact first-order tensors write into the planes themselves: no new
    # planes and no copy back; a view taken before sees the result; values equal the functional op
    g = torch.Generator().manual_seed(0)
    x0, x1, y0, y1 = (torch.randn(4, 5, generator=g, dtype=torch.float64) for _ in range(4))
    x0[0, :3] = 0.0  # ties decided by the ε¹ plane
    fn = (lambda a, b: torch.relu(a)) if op == "relu_" else (lambda a, b: a + b)
    with torch.no_grad():
        x, y = x0.nonstd(x1), y0.nonstd(y1)
        want = fn(x, y)
        ptr = x.lc_planes().data_ptr()
        view = x[1:3]
        with torch.profiler.profile() as prof:
            res = x.relu_() if op == "relu_" else x.add_(y)
    assert res is x and x.lc_planes().data_ptr() == ptr
    direct = [e.name for e in prof.events() if e.cpu_parent is not None and e.cpu_parent.name == "PythonSubclass"]
    assert not {"aten::copy_", "aten::clone", "aten::stack", "aten::cat"} & set(direct), direct
    assert torch.equal(x.lc_planes(), want.lc_planes())
    assert torch.equal(view.lc_planes(), want.lc_planes()[:, 1:3])
    # with autograd recording, the functional path: gradients reach the planes that made x
    x1g = x1.clone().requires_grad_()
    x = x0.nonstd(x1g) * 1.0
    (x.relu_() if op == "relu_" else x.add_(y0.nonstd(y1)))
    torchlc.coeff(x, 1).sum().backward()
    assert x1g.grad is not None


def test_first_order_residual_add_broadcasts_like_torch():
    # a += b on first-order tensors: b may broadcast into a (in place, the sum's value); a result
    # of another shape is refused as torch refuses it, naming the tensors' own shapes (not the planes')
    with torch.no_grad():
        a, b = torch.randn(2, 8).nonstd(torch.randn(2, 8)), torch.randn(8).nonstd(torch.randn(8))
        want = a + b
        assert a.add_(b) is a and torch.equal(torchlc.coeffs(a), torchlc.coeffs(want))
        s = torch.randn(2, 1).nonstd(torch.randn(2, 1))
        with pytest.raises(RuntimeError, match=r"\(2, 1\) to \(2, 8\)"):
            s.add_(torch.randn(2, 8).nonstd(torch.randn(2, 8)))
