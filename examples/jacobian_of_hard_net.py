"""Exact Jacobians of a trained hard-step network: Dirac masses exactly on the unit thresholds.

A 2-32-32-1 network with hard Heaviside units is trained (torchlc smoothing) to classify points inside
a circle. Its first layer is then snapped to a dyadic grid (multiples of 1/16), so that points of the
input lattice (multiples of 1/16) land *exactly* on first-layer thresholds w·x + b = 0 — in floating
point, not approximately. ``torchlc.njacfwd`` (``torch.func.vmap`` of ``ngrad`` over the input
directions) then gives the exact non-standard Jacobian there:

* off every threshold: the ε⁻¹ part is 0 and the ε⁰ part is 0 (a step network is locally constant);
* on a threshold: the ε⁻¹ coefficient is the jump of the output met when moving along +e_i: a Dirac
  mass, checked against f(x + δe_i) − f(x) for a tiny δ.

Under ``torchlc.smoothing`` the same call returns the smoothed derivative (no ε⁻¹ part, a finite
density); the plot shows both along a line through a threshold.

    python examples/jacobian_of_hard_net.py                     # writes ./torchlc_outputs/jacobian_of_hard_net/
    python examples/jacobian_of_hard_net.py --out-dir docs/img  # regenerates the figure of docs/training.md
"""

from __future__ import annotations

import argparse
import os

import torch
from torch import nn

import torchlc
from torchlc import smoothing
from torchlc.nn import Heaviside

Q = 16.0  # dyadic grid of the snapped first layer and of the input lattice
OUT_DIR = os.path.join("torchlc_outputs", "jacobian_of_hard_net")  # relative to the working directory


def make_net(width=0.3):
    sm = smoothing(width)
    return nn.Sequential(nn.Linear(2, 32), Heaviside(value=0.0, smoothing=sm), nn.Linear(32, 32),
                         Heaviside(value=0.0, smoothing=sm), nn.Linear(32, 1))


def data(n, g):
    x = torch.rand(n, 2, generator=g) * 4 - 2
    y = ((x ** 2).sum(1) < 1.5).double()
    return x, y


def train(steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        x, y = data(512, g)
        loss = nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # snap layer 1 to the dyadic grid
        net[0].weight.copy_(torch.round(net[0].weight * Q) / Q)
        net[0].bias.copy_(torch.round(net[0].bias * Q) / Q)
        for m in (net[1], net[3]):
            m.smoothing = None  # from here on: exact, unless a smoothing context is active
    x, y = data(4000, g)
    acc = ((net(x).squeeze(-1) > 0).double() == y).double().mean().item()
    return net, acc


def on_threshold_points(net, k=400):
    """Input-lattice points where some first-layer pre-activation is exactly 0."""
    t = torch.arange(-2 * Q, 2 * Q + 1) / Q
    grid = torch.cartesian_prod(t, t)
    z = net[0](grid)
    hit = (z == 0).any(1)
    return grid[hit][:k], grid[~hit]


def main(argv=None):
    torch.set_default_dtype(torch.float64)  # the whole example computes in float64
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--out-dir", "--out", dest="out_dir", default=OUT_DIR,
                    help=f"folder for the plot, created if missing (default: {OUT_DIR})")
    ap.add_argument("--no-plot", action="store_true", help="write nothing")
    args = ap.parse_args(argv)
    net, acc = train(args.steps)
    for p in net.parameters():
        p.requires_grad_(False)
    print(f"trained hard-step net, test accuracy {100 * acc:.1f}% (hard steps, snapped first layer)")
    f = lambda x: net(x).squeeze(-1)  # noqa: E731
    on, off = on_threshold_points(net)
    delta = 1e-9
    with torch.no_grad():
        jumps = torch.stack([f(on + delta * e) - f(on) for e in torch.eye(2)], -1)
    moves = (jumps != 0).any(-1)
    print(f"{len(on)} lattice points lie exactly on a first-layer threshold; at {int(moves.sum())} of them "
          "the output jumps when moving along +e_0 or +e_1 (elsewhere the second hard layer absorbs the flip)")
    hidden = torchlc.njacfwd(lambda x: net[1](net[0](x)))(on[~moves][0])
    print(f"  e.g. at {on[~moves][0].tolist()} the output does not jump, but the first hidden layer does: "
          f"{int((torchlc.coeff(hidden, -1) != 0).sum())} Dirac entries in its Jacobian")
    on = on[moves]
    jac = torchlc.njacfwd(f)
    rows = []
    for name, pts in (("off", off[:: max(1, len(off) // 5)][:5]), ("on", on[:5])):
        for x in pts:
            J = jac(x)  # LC Jacobian, shape (2,): vmap of ngrad over the two input directions
            dirac = torchlc.coeff(J, -1)
            slope = torchlc.coeff(J, 0)
            fd = torch.stack([f(x + delta * e) - f(x) for e in torch.eye(2)])
            rows.append((name, x.tolist(), dirac.tolist(), slope.tolist(), fd.tolist()))
            print(f"{name:3s} x={x.tolist()}: ε⁻¹ (Dirac) {dirac.tolist()}, ε⁰ {slope.tolist()}, "
                  f"f(x+δe_i)−f(x) {fd.tolist()}")
            assert torch.allclose(dirac, fd, atol=1e-12), "Dirac mass must equal the jump met along +e_i"
            if name == "off":
                assert torch.all(dirac == 0) and torch.all(slope == 0)
    with smoothing(0.1):
        Js = jac(on[0])
    print(f"under smoothing(0.1) at {on[0].tolist()}: {Js}")
    if not args.no_plot:
        plot(net, f, on, args.out_dir)


def plot(net, f, on, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.5))
    t = torch.linspace(-2, 2, 401)
    X, Y = torch.meshgrid(t, t, indexing="xy")
    with torch.no_grad():
        Z = f(torch.stack([X, Y], -1).reshape(-1, 2)).reshape(X.shape)
    ax[0].contourf(X, Y, Z, levels=30, cmap="RdBu_r")
    W, b = net[0].weight.detach(), net[0].bias.detach()
    for w, c in zip(W, b):
        if w[1] != 0:
            ax[0].plot(t, -(c + w[0] * t) / w[1], color="k", lw=0.4, alpha=0.5)
    ax[0].scatter(on[:, 0], on[:, 1], s=6, color="yellow", edgecolor="k", lw=0.3,
                  label="lattice points exactly on a threshold")
    ax[0].set_xlim(-2, 2), ax[0].set_ylim(-2, 2), ax[0].set_aspect("equal")
    ax[0].set_title("hard-step net output; first-layer thresholds")
    ax[0].legend(loc="lower left", fontsize=8)
    # a horizontal line through an on-threshold point whose output jumps along +e_0
    with torch.no_grad():
        j0 = f(on + 1e-9 * torch.tensor([1.0, 0.0])) - f(on)
    x0 = on[(j0 != 0).nonzero()[0, 0]] if (j0 != 0).any() else on[0]
    s = torch.linspace(-0.25, 0.25, 1001)
    line = torch.stack([x0[0] + s, x0[1].expand_as(s)], -1)
    with torch.no_grad():
        fl = f(line)
    ax[1].plot(s, fl, color="k", lw=1, label="f along x₀ + s·e₀ (hard)")
    # exact non-standard derivative at the lattice points of this line (Dirac masses as stems)
    jac = torchlc.njacfwd(f)
    lat = torch.arange(-4, 5) / Q
    fl = fl.detach()
    for si in lat:
        J = jac(torch.stack([x0[0] + si, x0[1]]))
        m = torchlc.coeff(J, -1)[0].item()
        if m != 0:
            ax[1].annotate("", xy=(si, fl[(s - si).abs().argmin()] + m), xytext=(si, fl[(s - si).abs().argmin()]),
                           arrowprops=dict(arrowstyle="->", color="C3", lw=2))
    ax[1].plot([], [], color="C3", lw=2, label="ε⁻¹ coeff. of njacfwd at lattice points (Dirac mass)")
    ax[1].set_ylabel("f")
    ax2 = ax[1].twinx()
    for h, c in ((0.02, "C0"), (0.08, "C2")):
        with smoothing(h), torch.no_grad():
            ds = torch.stack([torchlc.coeff(torchlc.ngrad(f, p, torch.tensor([1.0, 0.0])), 0) for p in line[::5]])
        ax2.plot(s[::5], ds, color=c, lw=1, label=f"∂f/∂x₀ under smoothing(h = {h})")
    ax2.set_ylabel("smoothed derivative")
    ax[1].set_xlabel(f"s  (x = {x0.tolist()} + s·e₀)"), ax[1].grid(alpha=0.3)
    h1, l1 = ax[1].get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax[1].legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    ax[1].set_title("exact Dirac masses vs smoothed density")
    fig.tight_layout()
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "train_jacobian_hard_net.png")
    fig.savefig(path, dpi=110)
    print("wrote", path)


if __name__ == "__main__":
    main()
