"""Whole torch.nn models on ``x.nonstd(v)``: the ε⁰ plane is the plain output and the ε¹ plane is
``torch.func.jvp``'s tangent, in train and eval mode, with grad enabled, under ``torch.no_grad()`` and
under ``torch.inference_mode()`` (where composite ops arrive undecomposed, and eval-mode transformer
layers take PyTorch's fused fast path)."""

import contextlib
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.testing import assert_close

import torchlc

f64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)

MODES = {
    "grad": contextlib.nullcontext,
    "no_grad": torch.no_grad,
    "inference": torch.inference_mode,
}


def _gen(seed):
    g = torch.Generator().manual_seed(seed)
    return g


def lift(xs, vs):
    return [x.nonstd(v) if v is not None else x for x, v in zip(xs, vs)]


def check(f, xs, vs=None, *, modes=MODES, seed=0, tol=TOL, outputs=None):
    """f(*xs lifted along vs) against jvp(f, xs, vs) in every autograd mode.

    ``vs[i] is None`` keeps input i plain (e.g. integer targets). f may return a tensor or a tuple."""
    xs = list(xs)
    if vs is None:
        vs = [torch.randn(x.shape, dtype=x.dtype, generator=_gen(seed + 1 + i)) if x.is_floating_point() else None
              for i, x in enumerate(xs)]
    idx = [i for i, v in enumerate(vs) if v is not None]

    def g(*ts):
        full = list(xs)
        for i, t in zip(idx, ts):
            full[i] = t
        torch.manual_seed(seed)
        return f(*full)

    # the reference: torch.func.jvp, on the math attention kernel (the fused CPU kernels have no forward AD)
    with sdpa_kernel([SDPBackend.MATH]):
        val, tan = jvp(g, tuple(xs[i] for i in idx), tuple(vs[i] for i in idx))
    for name, ctx in modes.items():
        with ctx():
            torch.manual_seed(seed)
            y = f(*lift(xs, vs))
        ys, vals, tans = _flat(y), _flat(val), _flat(tan)
        assert len(ys) == len(vals)
        for k, (yk, vk, tk) in enumerate(zip(ys, vals, tans)):
            if outputs is not None and k not in outputs:
                continue
            assert torchlc.is_lc(yk), f"{name}: output {k} is not an LCTensor"
            assert yk.shape == vk.shape, name
            assert_close(torchlc.coeff(yk, 0), vk, **tol, msg=lambda m: f"{name} output {k} ε⁰: {m}")
            assert_close(torchlc.coeff(yk, 1), tk, **tol, msg=lambda m: f"{name} output {k} ε¹: {m}")


def _flat(y):
    if isinstance(y, (tuple, list)):
        out = []
        for t in y:
            out += _flat(t)
        return out
    return [y]


def model_fn(m, train):
    m = m.double()
    m.train(train)

    def f(*xs):
        # fresh copy per call: train-mode buffers (BatchNorm running stats) must not leak between runs
        mm = copy.deepcopy(m)
        return mm(*xs)

    return f


def R(*shape, seed=0):
    return torch.randn(*shape, dtype=f64, generator=_gen(seed))
