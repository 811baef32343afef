"""Section ``jet``: higher-order Taylor jets on CPU float64 against JAX's jitted ``jax.experimental.jet``.

For K = 1…6 the input x + t·v is seeded as ``x.nonstd(v, order=K)``; its ε^k coefficient is
d^k/dt^k f(x + t·v) / k!. JAX's ``jet(f, (x,), ([v, 0, …, 0],))`` returns the derivatives d^k/dt^k
themselves (its series are derivative coefficients, not Taylor coefficients), so torchlc's ε^k
plane times k! is compared with jet's k-th term (the ``max rel diff`` column: max |lc·k! − jet| over
max |jet|, worst order). Both compute every derivative 1…K of the same program: equal work.

Programs: the elementwise ``exp(sin(x)) * tanh(x)**2`` on 10⁶ elements and an MLP of three
``Linear(256, 256) + tanh`` layers on a (4096, 256) batch (10⁶ activations per layer). JAX is an
optional extra (``pip install "torchlc[jax]"``); without it the section prints one skip line.
Nested ``torch.func.jvp`` (the K-th derivative by K nested jvps: 2^K primal evaluations) is timed
where it is cheap (K ≤ 3 at full size).
"""

from __future__ import annotations

import math
import os
import sys

import torch

import torchlc

from .config import Config
from .measure import time_many
from .report import _ms, _ratio, _reason, md_table

BAR = 1.5
ORDERS = (1, 2, 3, 4, 5, 6)
MLP_LAYERS, MLP_WIDTH, MLP_BATCH = 3, 256, 4096
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
SKIP = 'JAX is not installed: `pip install "torchlc[jax]"` to run this section (jax, jaxlib)'


def _elementwise_torch(x):
    return torch.exp(torch.sin(x)) * torch.tanh(x) ** 2


def _mlp_torch(params):
    def f(x):
        for w, b in params:
            x = torch.tanh(torch.nn.functional.linear(x, w, b))
        return x

    return f


def _nested_jvp(f, x, v, K):
    """The K-th derivative of t ↦ f(x + t·v) at 0 by K nested torch.func.jvp."""
    g = f
    for _ in range(K):
        g = (lambda h: lambda y: torch.func.jvp(h, (y,), (v,))[1])(g)
    return g(x)


def _coeff_planes(y, K):
    """torchlc's ε^0…ε^K planes of y (zeros where a plane is absent), as derivatives (× k!)."""
    return [torchlc.coeff(y, k) * math.factorial(k) for k in range(K + 1)]


def _max_rel_diff(lc, ref):
    worst = 0.0
    for a, b in zip(lc, ref):
        scale = float(b.abs().max())
        if scale > 0:
            worst = max(worst, float((a - b).abs().max()) / scale)
    return worst


def _programs(cfg: Config):
    quick = cfg.quick
    n = cfg.n_core
    width, batch = (8, 16) if quick else (MLP_WIDTH, MLP_BATCH)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    v = torch.randn(n, generator=g, dtype=torch.float64)
    params = []
    for _ in range(MLP_LAYERS):
        w = torch.randn(width, width, generator=g, dtype=torch.float64) / math.sqrt(width)
        b = torch.randn(width, generator=g, dtype=torch.float64) * 0.1
        params.append((w, b))
    xm = torch.randn(batch, width, generator=g, dtype=torch.float64)
    vm = torch.randn(batch, width, generator=g, dtype=torch.float64)
    return [
        ("exp(sin(x))·tanh(x)²", f"{n} elements", _elementwise_torch, x, v, None),
        (f"MLP {MLP_LAYERS}×(Linear {width} + tanh)", f"batch {batch}", _mlp_torch(params), xm, vm, params),
    ]


def _jax_program(jnp, params):
    """(f(x, p), p): the program and its weights, which the jitted function takes as arguments (as
    closure constants XLA would spend minutes constant-folding the jet's zero terms through them)."""
    if params is None:
        return (lambda x, p: jnp.exp(jnp.sin(x)) * jnp.tanh(x) ** 2), ()

    def f(x, p):
        for w, b in p:
            x = jnp.tanh(x @ w.T + b)
        return x

    return f, tuple((jnp.asarray(w.numpy()), jnp.asarray(b.numpy())) for w, b in params)


def _measure(jax, jjet, cfg, K, lc, jx):
    """(LC s, jet s, nested-jvp s or "—", max rel diff) for one program at order K."""
    f, x, v = lc
    fj, pj, xj, vj = jx
    zeros = [jax.numpy.zeros_like(vj)] * (K - 1)
    jf = jax.jit(lambda a, b, p: jjet.jet(lambda y: fj(y, p), (a,), ([b] + zeros,)))

    def run_jax():
        return jax.block_until_ready(jf(xj, vj, pj))

    def run_lc():
        return f(x.nonstd(v, order=K))

    fns = [run_lc, run_jax]
    jvp_cheap = K <= 3 or cfg.quick
    if jvp_cheap:
        fns.append(lambda: _nested_jvp(f, x, v, K))
    compiled = "—"
    with torch.no_grad():
        if cfg.compile:  # the one-line fused path: torchlc.compile (Inductor's C++ loops on CPU)
            fc = torchlc.compile(f)
            try:
                fc(x.nonstd(v, order=K))  # traced and compiled here, outside the timing
                fns.append(lambda: fc(x.nonstd(v, order=K)))
                compiled = None
            except Exception as e:  # a failure is a result, not a crash
                compiled = _reason(e)
        times = time_many(fns, cfg)
        if compiled is None:
            compiled = times[-1]
        try:
            p0, terms = run_jax()
            ref = [torch.from_numpy(jax.device_get(t).copy()) for t in (p0, *terms)]
            diff = f"{_max_rel_diff(_coeff_planes(run_lc(), K), ref):.1e}"
        except Exception as e:  # a failure is a result, not a crash
            diff = _reason(e)
    return times[0], times[1], (times[2] if jvp_cheap else "—"), diff, compiled


def bench_jet(cfg: Config, log=print):
    if cfg.device != "cpu":
        return "The jet section runs on CPU (float64) only.", []
    if torch.get_num_threads() == 1 and "XLA_FLAGS" not in os.environ and "jax" not in sys.modules:
        # matched threads: with --threads 1, XLA runs single-threaded too (read when JAX starts)
        os.environ["XLA_FLAGS"] = SINGLE_THREAD_XLA
    try:
        import jax
        import jax.numpy as jnp
        from jax.experimental import jet as jjet
    except ImportError:
        return SKIP, []
    jax.config.update("jax_enable_x64", True)
    orders = (1, 6) if cfg.quick else ORDERS
    rows, data = [], []
    for name, size, f, x, v, params in _programs(cfg):
        fj, pj = _jax_program(jnp, params)
        xj, vj = jnp.asarray(x.numpy()), jnp.asarray(v.numpy())
        for K in orders:
            t_lc, t_jet, t_jvp, diff, t_cmp = _measure(jax, jjet, cfg, K, (f, x, v), (fj, pj, xj, vj))
            ratio = t_lc / t_jet if isinstance(t_lc, float) and isinstance(t_jet, float) else None
            verdict = "n/a" if ratio is None else ("pass" if ratio <= BAR else "miss")
            log(f"  {name} K={K}: LC {_ms(t_lc)} ms, jet {_ms(t_jet)} ms, jvp {_ms(t_jvp)} ms, rel diff {diff}")
            rows.append((name, size, K, _ms(t_lc), _ms(t_jet), _ratio(t_lc, t_jet), f"≤ {BAR:g}×", verdict,
                         _ms(t_jvp), _ratio(t_lc, t_jvp) if isinstance(t_jvp, float) else "—", diff,
                         _ms(t_cmp), _ratio(t_cmp, t_jet) if isinstance(t_cmp, float) else "—"))
            data.append(dict(program=name, K=K, lc_s=t_lc if isinstance(t_lc, float) else None,
                             jet_s=t_jet if isinstance(t_jet, float) else None,
                             jvp_s=t_jvp if isinstance(t_jvp, float) else None, ratio=ratio, rel_diff=diff,
                             compiled_s=t_cmp if isinstance(t_cmp, float) else None))
    head = ["program", "size", "K", "LC ms", "jet ms", "LC/jet", "bar", "result", "nested jvp ms", "LC/jvp",
            "max rel diff", "LC compiled ms", "compiled/jet"]
    note = (
        f"CPU float64. LC: `f(x.nonstd(v, order=K))` (building the input included). jet: "
        f"`jax.jit(lambda x, v, p: jet(lambda y: f(y, p), (x,), ([v, 0, …],)))` with the MLP's weights p "
        f"as arguments, warm, `block_until_ready` (jax "
        f"{jax.__version__}, XLA's own CPU threads; torch threads {torch.get_num_threads()}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', 'unset')}). nested jvp: the K-th derivative alone by K "
        "nested `torch.func.jvp` (2^K evaluations), timed for K ≤ 3. `max rel diff`: torchlc's ε^k "
        "coefficient × k! against jet's k-th derivative term, max |difference| / max |jet| over the "
        "worst order. LC compiled: `torchlc.compile(f)` on the same input (Inductor; traced and compiled "
        "before timing; `—` with `--no-compile`), the one-line path that fuses the program into one loop "
        f"as XLA does. Bar: LC/jet ≤ {BAR:g}× (issue 16, item 4)."
    )
    return note + "\n\n" + md_table(head, rows), data
