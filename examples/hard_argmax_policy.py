"""A policy that acts through a hard argmax, trained three ways under the same budget.

Environment (plain torch): a contextual bandit. A context x ∈ R⁸ arrives, the policy picks one of 6
arms by a *hard* argmax of its logits, and receives reward r = μ(x)[a] + noise, where the mean-reward
map μ (a fixed random two-layer tanh net) is unknown to the learner. Actions enter the reward as a
one-hot vector, r = ⟨onehot(a), μ(x) + noise⟩, so the environment is differentiable in the action.

Methods (same policy net, optimiser, learning rate, contexts per step and number of steps):

* ``smooth``    — ``torchlc.nn.HardArgmaxOneHot(smoothing=h)``: the deterministic hard-argmax policy
  itself, with the smoothed derivative of the one-hot (semantics §6); pathwise gradient;
* ``gumbel``    — straight-through Gumbel-softmax (``F.gumbel_softmax(hard=True)``, τ = 1); pathwise;
* ``reinforce`` — score-function gradient of a softmax policy with a running-mean baseline; needs
  only the sampled reward (bandit feedback), not the environment's derivative;
* ``exact``     — the hard argmax with its exact derivative (zero almost everywhere): does not learn.

The pathwise methods use more information (the derivative of the reward w.r.t. the one-hot action,
i.e. the rewards of the other arms at this context) than REINFORCE does: compare them with that in
mind. Evaluation is always greedy (hard argmax): mean of μ(x)[argmax] on 4,096 held-out contexts,
as a fraction of the optimum's.

    python examples/hard_argmax_policy.py                      # writes ./torchlc_outputs/hard_argmax_policy/
    python examples/hard_argmax_policy.py --out-dir docs/img   # regenerates the figure of docs/training.md
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from torchlc.nn import HardArgmaxOneHot

D, K = 8, 6
METHODS = ("smooth", "gumbel", "reinforce", "exact")
OUT_DIR = os.path.join("torchlc_outputs", "hard_argmax_policy")  # relative to the working directory


def environment(seed=1234):
    g = torch.Generator().manual_seed(seed)
    W1, W2 = torch.randn(32, D, generator=g), torch.randn(K, 32, generator=g) / 32 ** 0.5

    def mu(x):  # mean reward of every arm
        return torch.tanh(x @ W1.T) @ W2.T

    return mu


def policy():
    return nn.Sequential(nn.Linear(D, 64), nn.Tanh(), nn.Linear(64, K))


def run(method, seed, args, mu, xeval):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    pi = policy()
    opt = torch.optim.Adam(pi.parameters(), lr=args.lr)
    hard = HardArgmaxOneHot(smoothing=args.width if method == "smooth" else False)
    best = mu(xeval).max(-1).values.mean()
    base = 0.0
    curve = []
    t0 = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0:
            with torch.no_grad():
                a = pi(xeval).argmax(-1)
                curve.append((mu(xeval).gather(-1, a[:, None]).mean() / best).item())
        if step == args.steps:
            break
        x = torch.randn(args.batch, D, generator=g)
        noise = args.noise * torch.randn(args.batch, K, generator=g)
        rvec = mu(x) + noise  # the reward each arm would give (only the chosen one is "paid")
        logits = pi(x)
        if method in ("smooth", "exact"):
            r = (hard(logits) * rvec).sum(-1)
            loss = -r.mean()
        elif method == "gumbel":
            y = F.gumbel_softmax(logits, tau=args.tau, hard=True)
            loss = -(y * rvec).sum(-1).mean()
        else:  # REINFORCE with a running-mean baseline
            logp = F.log_softmax(logits, -1)
            a = torch.multinomial(logp.exp(), 1, generator=g).squeeze(-1)
            r = rvec.gather(-1, a[:, None]).squeeze(-1)
            loss = -((r - base).detach() * logp.gather(-1, a[:, None]).squeeze(-1)).mean()
            base = 0.9 * base + 0.1 * r.mean().item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return curve, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--width", type=float, default=0.3, help="Gaussian σ of the smoothed one-hot")
    ap.add_argument("--tau", type=float, default=1.0, help="Gumbel-softmax temperature")
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out-dir", "--out", dest="out_dir", default=OUT_DIR,
                    help=f"folder for the plot and the results, created if missing (default: {OUT_DIR})")
    ap.add_argument("--no-plot", action="store_true", help="write nothing")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    mu = environment()
    xeval = torch.randn(4096, D, generator=torch.Generator().manual_seed(99))
    res = {}
    for m in METHODS:
        res[m] = [run(m, s, args, mu, xeval) for s in args.seeds]
        finals = torch.tensor([c[-1] for c, _ in res[m]])
        print(f"{m:9s}: greedy reward {100 * finals.mean():.1f} ± {100 * finals.std():.1f} % of optimal "
              f"({sum(t for _, t in res[m]) / len(res[m]):.1f} s per run)", flush=True)
    lines = ["| method | greedy reward, % of optimal (mean ± std, 3 seeds) | after 1/3 of the budget | time per run |",
             "|---|---|---|---|"]
    for m in METHODS:
        c = torch.tensor([cv for cv, _ in res[m]]) * 100
        third = c[:, c.shape[1] // 3]
        lines.append(f"| {m} | {c[:, -1].mean():.1f} ± {c[:, -1].std():.1f} | {third.mean():.1f} ± {third.std():.1f} | "
                     f"{sum(t for _, t in res[m]) / len(res[m]):.1f} s |")
    table = "\n".join(lines)
    print(table)
    if args.no_plot:
        return res
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "train_bandit_results.json")
    settings = {k: v for k, v in vars(args).items() if k != "out_dir"}  # no paths in the results
    with open(path, "w") as f:
        json.dump({"args": settings, "curves": {m: [c for c, _ in r] for m, r in res.items()},
                   "table": table}, f)
    print("wrote", path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m in METHODS:
        c = torch.tensor([cv for cv, _ in res[m]]) * 100
        st = torch.arange(c.shape[1]) * args.eval_every
        ax.plot(st, c.mean(0), label=m)
        ax.fill_between(st, c.mean(0) - c.std(0), c.mean(0) + c.std(0), alpha=0.2)
    ax.set_xlabel(f"training step ({args.batch} contexts each)")
    ax.set_ylabel("greedy reward, % of optimal")
    ax.set_title("contextual bandit, policy = hard argmax")
    ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    path = os.path.join(args.out_dir, "train_bandit.png")
    fig.savefig(path, dpi=110)
    print("wrote", path)
    return res


if __name__ == "__main__":
    main()
