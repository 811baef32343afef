"""One sample: the LC run against ``torch.func.jvp``, with one-sided finite differences where they
differ (:func:`check_sample`)."""

from __future__ import annotations

import math
import warnings

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

import torchlc

from .spec import ATOL, FD_ATOL, FD_RTOL, FD_STEP, RTOL


def _is_float(t) -> bool:
    """A leaf to lift: floating (or, in the complex samples of ops without float64, complex)."""
    return isinstance(t, torch.Tensor) and (t.dtype.is_floating_point or t.is_complex()) and t.layout == torch.strided


class _Sample:
    """One OpInfo sample with its floating leaves identified and tangents drawn.

    ``transform`` (optional) maps the sample's flattened leaves to new ones before anything else: the
    zero-size samples narrow a dimension to 0 this way. ``layout`` is how the lifted leaves are laid
    out in memory: ``"contiguous"`` (as OpInfo made them), or ``"non-contiguous"``: every lifted leaf
    of dimension ≥ 2 is a transposed view (``.mT`` of a contiguous tensor) and every 1-dim one a
    strided view (every other element of a longer tensor), both for the LC input and for the plain
    tensors that ``torch.func.jvp`` and the finite differences see.
    """

    def __init__(self, op, sample, gen, input_only, *, transform=None, layout="contiguous"):
        self.op = op
        self.sample = sample
        self.layout = layout
        tree = (sample.input, tuple(sample.args), dict(sample.kwargs))
        self.leaves, self.spec = tree_flatten(tree)
        n_in = len(tree_flatten(sample.input)[0])
        if transform is not None:
            self.leaves = transform(self.leaves, n_in)
        self.idx = [
            i for i, t in enumerate(self.leaves) if _is_float(t) and (not input_only or i < n_in)
        ]
        self.primals = tuple(self.leaves[i].detach().clone() for i in self.idx)
        self.tangents = tuple(
            torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in self.primals
        )

    def plain(self, t):
        """A fresh plain tensor equal to ``t``, laid out as this sample's lifted leaves are."""
        if self.layout == "contiguous" or t.dim() == 0:
            return t.clone()
        if t.dim() >= 2:
            return t.mT.contiguous().mT
        return torch.stack([t, torch.full_like(t, 7.0)], -1)[..., 0]

    def lift(self, order=1):
        """The LC inputs ``x + v·ε`` (truncation ``order``), laid out as :meth:`plain` lays out plain
        ones."""
        if self.layout == "contiguous":
            return tuple(p.clone().nonstd(v, order=order) for p, v in zip(self.primals, self.tangents))
        out = []
        for p, v in zip(self.primals, self.tangents):
            if p.dim() == 0:
                out.append(p.clone().nonstd(v, order=order))
            elif p.dim() >= 2:  # a transposed view of an LC tensor
                out.append(p.mT.contiguous().nonstd(v.mT.contiguous(), order=order).mT)
            else:  # every other element of an LC tensor twice as long
                pad = torch.full_like(p, 7.0)
                lc = torch.stack([p, pad], -1).nonstd(torch.stack([v, pad], -1), order=order)
                out.append(lc[..., 0])
        return tuple(out)

    def call(self, xs):
        # fresh copies of every plain tensor leaf: ops that update arguments in place (running
        # statistics, out-like args) must not leak state from one run into the next
        leaves = [t.clone() if isinstance(t, torch.Tensor) else t for t in self.leaves]
        for i, x in zip(self.idx, xs):
            leaves[i] = x
        inp, args, kwargs = tree_unflatten(leaves, self.spec)
        op = self.op
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = op.gradcheck_wrapper(op.get_op(), inp, *args, **kwargs)
            return self.sample.output_process_fn_grad(out)

    def seeded(self, xs, seed):
        torch.manual_seed(seed)
        return self.call(xs)

    def describe(self) -> str:
        def fmt(x):
            if isinstance(x, torch.Tensor):
                return f"tensor{tuple(x.shape)}"
            if isinstance(x, (list, tuple)):
                inner = ", ".join(fmt(y) for y in x)
                return f"[{inner}]" if isinstance(x, list) else f"({inner})"
            return repr(x)

        inp, args, kwargs = tree_unflatten(self.leaves, self.spec)
        parts = [fmt(inp)] + [fmt(a) for a in args]
        parts += [f"{k}={fmt(v)}" for k, v in kwargs.items()]
        if self.layout != "contiguous":
            parts.append(f"# lifted inputs {self.layout}")
        return ", ".join(parts)


class _Mismatch(Exception):
    pass


def _plane(out, q):
    return torchlc.coeff(out, q)


def _singular_mask(out):
    """Elements of an LC output with a nonzero coefficient of a negative power (infinite elements)."""
    if not torchlc.is_lc(out):
        return None
    mask = None
    for q, c in torchlc.terms(out).items():
        if q < 0:
            m = c != 0
            mask = m if mask is None else mask | m
    return mask


def _close_mask(a, b, rtol, atol):
    """Elementwise assert_close criterion (NaN == NaN, inf == inf); complex numbers compare their
    real and imaginary parts."""
    if a.is_complex() or b.is_complex():
        a = torch.view_as_real(a.to(torch.complex128).resolve_conj())
        b = torch.view_as_real(b.to(torch.complex128).resolve_conj())
        return _close_mask(a, b, rtol, atol).all(-1)
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    both_nan = torch.isnan(a) & torch.isnan(b)
    eq = a == b
    with torch.no_grad():
        diff = (a - b).abs()
        ok = diff <= atol + rtol * b.abs()
    ok = torch.where(torch.isfinite(a) & torch.isfinite(b), ok, eq)
    return ok | both_nan | eq


def check_sample(s: _Sample, ref_primal, ref_tangent, seed, allowed=None, order=1):
    """Run the LC version of sample ``s`` (inputs lifted at truncation ``order``) and compare it with
    the jvp reference.

    Returns ``"pass"``, ``"kink"`` (a one-sided difference was accepted) or ``"allowed"`` (an
    ``allowed`` = (reason, mask) difference was accepted); raises :class:`_Mismatch` with a description, or whatever the
    LC computation raised.
    """
    lifted = s.lift(order)
    lc_out = s.seeded(lifted, seed)
    lc_leaves, lc_spec = tree_flatten(lc_out)
    p_leaves, p_spec = tree_flatten(ref_primal)
    t_leaves, _ = tree_flatten(ref_tangent)
    if len(lc_leaves) != len(p_leaves):
        raise _Mismatch(f"output structure {lc_spec} vs reference {p_spec}")
    fd = None  # one-sided finite-difference values, computed lazily
    kink = False
    jvp_off = False
    allow = False
    for k, (got, exp, tan) in enumerate(zip(lc_leaves, p_leaves, t_leaves)):
        where = f"output {k}" if len(p_leaves) > 1 else "output"
        if not isinstance(exp, torch.Tensor):
            g = got
            if isinstance(got, torch.Tensor):
                g = _plane(got, 0).item() if got.numel() == 1 else got
            if g != exp and not (isinstance(exp, float) and math.isnan(exp) and math.isnan(g)):
                raise _Mismatch(f"{where}: {g!r} vs {exp!r}")
            continue
        if not isinstance(got, torch.Tensor):
            raise _Mismatch(f"{where}: got {type(got).__name__}, expected a tensor")
        if tuple(got.shape) != tuple(exp.shape):
            raise _Mismatch(f"{where}: shape {tuple(got.shape)} vs {tuple(exp.shape)}")
        if got.dtype != exp.dtype:
            raise _Mismatch(f"{where}: dtype {got.dtype} vs {exp.dtype}")
        p0 = _plane(got, 0)
        if not exp.dtype.is_floating_point and not exp.is_complex():
            if not torch.equal(p0, exp):
                bad = (p0 != exp).nonzero()[:3].tolist()
                raise _Mismatch(f"{where}: integer/bool values differ at {bad}")
            continue
        p1 = _plane(got, 1)
        ok0 = _close_mask(p0, exp, RTOL, ATOL)
        # where torch's value is ±inf/NaN the ε¹ coefficient is meaningless: compare ε⁰ only
        ok1 = _close_mask(p1, tan, RTOL, ATOL) | ~torch.isfinite(exp)
        bad = ~(ok0 & ok1)
        if not bad.any():
            continue
        if allowed is not None:
            excused = allowed[1](s.primals, k, p0, exp)
            if (bad & excused).any():
                allow = True
                bad = bad & ~excused
                if not bad.any():
                    continue
        # infinite LC elements where torch's value is not finite
        sing = _singular_mask(got)
        if sing is not None:
            excused = sing & ~(torch.isfinite(exp) & torch.isfinite(tan))
            bad = bad & ~excused
            if not bad.any():
                kink = True
                continue
        # one-sided limits along the tangent: f(x + t v), t -> 0+
        if fd is None:
            fd = _one_sided(s, seed)
        if fd is not None:
            (r1, r2), (l1, l2) = fd
            lim0, lim1 = _limits(r1, r2, k, FD_STEP)
            okfd = _close_mask(p0, lim0, FD_RTOL, FD_ATOL) & _close_mask(p1, lim1, FD_RTOL, FD_ATOL)
            if not (bad & ~okfd).any():
                # continuous and smooth there (ε⁰ matches and the left-sided limits agree too)? then
                # jvp itself disagrees with finite differences, typically because it treats an
                # argument or output as non-differentiable
                smooth = False
                if l1 is not None and not (bad & ~ok0).any():
                    left0, left1 = _limits(l1, l2, k, -FD_STEP)
                    okl = _close_mask(p0, left0, FD_RTOL, FD_ATOL) & _close_mask(
                        p1, left1, FD_RTOL, FD_ATOL
                    )
                    smooth = not (bad & ~okl).any()
                if smooth:
                    jvp_off = True
                else:
                    kink = True
                continue
        i = bad.nonzero()[0].tolist() if bad.dim() else []
        idx = tuple(i)
        which = "ε⁰" if not ok0[idx] else "ε¹"
        expv = exp[idx].item() if which == "ε⁰" else tan[idx].item()
        gotv = p0[idx].item() if which == "ε⁰" else p1[idx].item()
        raise _Mismatch(
            f"{where}: {which} plane differs at {int(bad.sum())}/{bad.numel()} elements, "
            f"e.g. index {list(idx)}: expected {_num(expv)}, got {_num(gotv)}"
        )
    if allow:
        return "allowed"
    if jvp_off:
        return "jvp-off"
    return "kink" if kink else "pass"


def _num(x) -> str:
    if isinstance(x, complex):
        return f"{x.real:.6g}{x.imag:+.6g}j"
    return f"{x:.6g}"


def _limits(a, b, k, h):
    """Limit value and derivative of t ↦ f(x + t v) at 0 from f(x + h v) = a, f(x + 2 h v) = b."""
    a = tree_flatten(a)[0][k]
    b = tree_flatten(b)[0][k]
    return 2 * a - b, (b - a) / h


def _one_sided(s: _Sample, seed):
    """((f(x + h v), f(x + 2 h v)), (f(x - h v), f(x - 2 h v))) with plain tensors.

    None if the right side fails; the left pair is (None, None) if it fails.
    """
    h = FD_STEP

    def at(t):
        with torch.no_grad():
            return s.seeded(tuple(s.plain(p + t * v) for p, v in zip(s.primals, s.tangents)), seed)

    try:
        right = (at(h), at(2 * h))
    except Exception:
        return None
    try:
        left = (at(-h), at(-2 * h))
    except Exception:
        left = (None, None)
    return right, left


def _reference(s: _Sample, seed):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        primals = tuple(s.plain(p) for p in s.primals)
        tangents = tuple(s.plain(v) for v in s.tangents)
        return torch.func.jvp(lambda *xs: s.call(xs), primals, tangents)
