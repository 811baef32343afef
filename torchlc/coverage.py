"""Op coverage report against PyTorch's OpInfo database.

``python -m torchlc.coverage`` runs every OpInfo op that declares forward-AD support on (at most
``--max-samples``) of its float64 CPU sample inputs, lifted to ``x.nonstd(v)`` with a random tangent
``v``, and compares the result with :func:`torch.func.jvp` of the same op along the same tangents:

* the ε⁰ plane must equal the primal output and the ε¹ plane the jvp tangent (float64,
  ``rtol=atol=1e-7``, NaNs equal); integer/bool outputs must equal the plain op exactly;
* where they differ, the element is accepted only if torchlc's answer is the *one-sided* limit along
  ``v`` — the value and derivative of ``t ↦ f(x + t·v)`` as ``t → 0⁺`` (checked with one-sided finite
  differences) — which is what a Levi-Civita number computes at a kink, a jump or a tie, where
  ``torch.func.jvp`` returns a conventional (almost-everywhere) derivative instead;
* or where torchlc's element is infinite (nonzero ε⁻¹·… terms) and the reference is not finite.

Each op is classified ``pass`` (every sample matches), ``not-implemented`` (torchlc raised a clear
NotImplementedError/TypeError naming what is missing), ``wrong`` (numbers differ), ``error`` (any other
exception) or ``skipped`` (no float64 sample with a floating tensor, the jvp reference itself fails,
or the op is random). The report is written to ``docs/coverage.md``.

Usage::

    python -m torchlc.coverage                     # full run, writes docs/coverage.md
    python -m torchlc.coverage --ops sin,add,cat   # a subset, prints the table
    python -m torchlc.coverage --json results.json # also dump machine-readable results
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import itertools
import json
import math
import os
import re
import signal
import sys
import time
import traceback
import warnings

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

import torchlc

__all__ = ["OpResult", "load_ops", "check_op", "run", "render_markdown", "main"]

STATUSES = ("pass", "not-implemented", "wrong", "error", "skipped")
DTYPE = torch.float64
RTOL = 1e-7
ATOL = 1e-7
FD_STEP = 1e-6
FD_RTOL = 1e-3
FD_ATOL = 1e-4

# Ops whose outputs are random draws: the LC run and the jvp reference consume the generator
# differently (or the op draws per element), so their numbers cannot be compared sample by sample.
RANDOM_OPS = {
    "bernoulli",
    "multinomial",
    "normal",
    "normal.number_mean",
    "rand_like",
    "randn_like",
    "randint_like",
    "randint",
    "nn.functional.dropout",
    "nn.functional.dropout2d",
    "nn.functional.dropout3d",
    "nn.functional.alpha_dropout",
    "nn.functional.feature_alpha_dropout",
    "nn.functional.rrelu",
    "uniform",
    "empty_like",
    "empty",
    "empty_permuted",
    "new_empty",
    "new_empty_strided",
    "empty_strided",
}


# Known, legitimate differences from torch, op by op: (reason, mask of excused output elements).
# Each mask is computed from the sample's primals, the output index k, torchlc's ε⁰ plane and
# torch's primal output, and must be as narrow as the reason.
def _entr_at_zero(primals, k, p0, exp):
    x = primals[0]
    return (
        (x == 0) & torch.isnan(p0)
        if x.shape == p0.shape
        else torch.zeros_like(p0, dtype=torch.bool)
    )


ALLOWED = {
    "special.entr": (
        "at x = 0: entr(vε) = −vε·log(vε) is outside the Levi-Civita field, so torchlc gives NaN "
        "(DomainError under torchlc.strict()) where torch gives entr(0) = 0",
        _entr_at_zero,
    ),
}


@dataclasses.dataclass
class OpResult:
    name: str  # OpInfo full name (name.variant)
    status: str
    note: str = ""
    samples: int = 0  # samples compared (pass) or attempted
    passed: int = 0
    skipped: int = 0
    kinks: int = 0  # samples where a one-sided (kink/jump/tie) difference was accepted
    jvp_off: int = (
        0  # samples where jvp disagreed with two-sided finite differences; torchlc agreed
    )
    allowed: int = 0  # samples where an ALLOWED difference was accepted
    seconds: float = 0.0
    cause: str = ""  # root-cause key for not-implemented / error
    repro: str = ""  # for wrong: a snippet


# --------------------------------------------------------------------------------------------------
def load_ops(names=None):
    """OpInfos with ``supports_forward_ad`` (optionally only those whose full name is in ``names``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.testing._internal.common_methods_invocations import op_db
    ops = [op for op in op_db if op.supports_forward_ad]
    if names is not None:
        names = set(names)
        ops = [op for op in ops if full_name(op) in names]
    return ops


def full_name(op) -> str:
    return op.name + ("." + op.variant_test_name if op.variant_test_name else "")


class _Timeout(BaseException):
    pass


@contextlib.contextmanager
def _deadline(seconds):
    """Raise _Timeout in the main thread after ``seconds`` (no-op off the main thread / on Windows)."""
    usable = hasattr(signal, "setitimer") and _is_main_thread()
    if not usable or not seconds:
        yield
        return

    def handler(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _is_main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


# --------------------------------------------------------------------------------------------------
def _first_line(e: BaseException, limit=160) -> str:
    msg = str(e).strip().splitlines()
    line = msg[0] if msg else ""
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    return line


def _raised_at(e: BaseException) -> str:
    """file:line of the innermost torchlc frame of the traceback (or the innermost frame)."""
    tb = traceback.extract_tb(e.__traceback__)
    mine = [
        f
        for f in tb
        if os.sep + "torchlc" + os.sep in f.filename and not f.filename.endswith("coverage.py")
    ]
    f = (mine or tb or [None])[-1]
    if f is None:
        return ""
    return f"{os.path.relpath(f.filename)}:{f.lineno}"


_ATEN = re.compile(r"(?:aten\.)?(aten|prims)(?:::|\.)([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)")


def _cause(e: BaseException) -> str:
    """A short root-cause key to group failures by."""
    msg = str(e)
    m = _ATEN.search(msg)
    op = f"{m.group(1)}.{m.group(2)}" if m else "?"
    if isinstance(e, NotImplementedError) and m and "has no rule" in msg:
        return f"{op} has no rule"
    if m and "in-place/out=" in msg:
        return f"in-place/out= {op} on an LCTensor"
    if m and "Multiple dispatch failed" in msg:
        return f"a rule returned NotImplemented for {op}"
    if "would write LCTensor values into a plain tensor" in msg:
        return "write LC into plain tensor: " + msg.split(" would")[0].replace("torchlc: ", "")
    line = _first_line(e, 100)
    line = re.sub(r"0x[0-9a-f]+", "0x…", line)
    line = re.sub(r"\d+", "N", line)
    return f"{type(e).__name__}: {line}"


def _classify_exception(e: BaseException) -> str:
    msg = str(e)
    if isinstance(e, (NotImplementedError, TypeError)) and msg.startswith("torchlc"):
        return "not-implemented"
    return "error"


def _is_float(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype.is_floating_point and t.layout == torch.strided


def _needs_skip(t) -> str | None:
    if isinstance(t, torch.Tensor):
        if t.is_complex():
            return "complex tensor"
        if t.layout != torch.strided:
            return f"{t.layout} tensor"
    return None


# --------------------------------------------------------------------------------------------------
class _Sample:
    """One OpInfo sample with its floating leaves identified and tangents drawn."""

    def __init__(self, op, sample, gen, input_only):
        self.op = op
        self.sample = sample
        tree = (sample.input, tuple(sample.args), dict(sample.kwargs))
        self.leaves, self.spec = tree_flatten(tree)
        n_in = len(tree_flatten(sample.input)[0])
        self.idx = [
            i for i, t in enumerate(self.leaves) if _is_float(t) and (not input_only or i < n_in)
        ]
        self.primals = tuple(self.leaves[i].detach().clone() for i in self.idx)
        self.tangents = tuple(
            torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in self.primals
        )

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

        s = self.sample
        parts = [fmt(s.input)] + [fmt(a) for a in s.args]
        parts += [f"{k}={fmt(v)}" for k, v in s.kwargs.items()]
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
    """Elementwise assert_close criterion (NaN == NaN, inf == inf)."""
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    both_nan = torch.isnan(a) & torch.isnan(b)
    eq = a == b
    with torch.no_grad():
        diff = (a - b).abs()
        ok = diff <= atol + rtol * b.abs()
    ok = torch.where(torch.isfinite(a) & torch.isfinite(b), ok, eq)
    return ok | both_nan | eq


def check_sample(s: _Sample, ref_primal, ref_tangent, seed, allowed=None):
    """Run the LC version of sample ``s`` and compare it with the jvp reference.

    Returns ``"pass"``, ``"kink"`` (a one-sided difference was accepted) or ``"allowed"`` (an
    ``allowed`` = (reason, mask) difference was accepted); raises :class:`_Mismatch` with a description, or whatever the
    LC computation raised.
    """
    lifted = tuple(p.clone().nonstd(v) for p, v in zip(s.primals, s.tangents))
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
            f"e.g. index {list(idx)}: expected {expv:.6g}, got {gotv:.6g}"
        )
    if allow:
        return "allowed"
    if jvp_off:
        return "jvp-off"
    return "kink" if kink else "pass"


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
            return s.seeded(tuple(p + t * v for p, v in zip(s.primals, s.tangents)), seed)

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
        primals = tuple(p.clone() for p in s.primals)
        return torch.func.jvp(lambda *xs: s.call(xs), primals, s.tangents)


def _repro(op, s: _Sample, msg: str) -> str:
    name = op.name
    lifted = ", ".join(f"x{i}" for i in range(len(s.primals)))
    return (
        f"# OpInfo '{full_name(op)}', sample: {name}({s.describe()})\n"
        f"# lifted leaves: {len(s.primals)} ({lifted}); compared with torch.func.jvp\n"
        f"# {msg}"
    )


def check_op(op, max_samples=4, timeout=10.0, seed=0) -> OpResult:
    """Run one OpInfo and classify it (see the module docstring)."""
    res = OpResult(full_name(op), "skipped")
    t0 = time.perf_counter()
    try:
        with _deadline(timeout):
            _check_op(op, res, max_samples, seed)
    except _Timeout:
        if res.passed and res.status in ("pass", "skipped"):
            res.status = "pass"
            res.note = (
                res.note + "; " if res.note else ""
            ) + f"timed out after {res.passed} samples"
        elif res.status in ("pass", "skipped"):
            res.status = "skipped"
            res.note = f"timed out (> {timeout:g} s) before any sample completed"
    except Exception as e:  # a failure outside any sample (sample generation, ...)
        res.status = "skipped"
        res.note = f"sample generation failed: {type(e).__name__}: {_first_line(e)}"
    res.seconds = time.perf_counter() - t0
    return res


def _check_op(op, res: OpResult, max_samples, seed):
    name = full_name(op)
    if name in RANDOM_OPS or op.name in RANDOM_OPS:
        res.note = "random op: outputs are draws, not comparable with jvp"
        return
    if DTYPE not in op.supported_dtypes("cpu"):
        res.note = "no float64 CPU support"
        return
    gen = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = op.sample_inputs("cpu", DTYPE, requires_grad=False)
    failures = []  # (status, note, cause, repro)
    skip_reasons = collections.Counter()
    for j, sample in enumerate(itertools.islice(samples, max_samples)):
        res.samples += 1
        leaves = tree_flatten((sample.input, sample.args, sample.kwargs))[0]
        why = next((w for w in map(_needs_skip, leaves) if w), None)
        if why:
            res.skipped += 1
            skip_reasons[why] += 1
            continue
        s = None
        ref = None
        ref_err = None
        for input_only in (False, True):
            cand = _Sample(op, sample, gen, input_only)
            if not cand.primals:
                ref_err = ref_err or "no floating tensor input"
                continue
            try:
                ref = _reference(cand, seed + j)
                s = cand
                break
            except _Timeout:
                raise
            except Exception as e:
                ref_err = f"jvp reference fails: {type(e).__name__}: {_first_line(e, 80)}"
        if s is None:
            res.skipped += 1
            skip_reasons[ref_err] += 1
            continue
        try:
            outcome = check_sample(s, ref[0], ref[1], seed + j, ALLOWED.get(name))
        except _Timeout:
            raise
        except _Mismatch as m:
            failures.append(("wrong", f"sample {j}: {m}", "", _repro(op, s, str(m))))
            continue
        except Exception as e:
            st = _classify_exception(e)
            failures.append(
                (
                    st,
                    f"{type(e).__name__}: {_first_line(e)}",
                    _cause(e),
                    f"{op.name}({s.describe()})  # raised at {_raised_at(e)}",
                )
            )
            continue
        res.passed += 1
        if outcome == "kink":
            res.kinks += 1
        elif outcome == "jvp-off":
            res.jvp_off += 1
        elif outcome == "allowed":
            res.allowed += 1
    for st in ("wrong", "error", "not-implemented"):
        hits = [f for f in failures if f[0] == st]
        if hits:
            res.status = st
            res.note = hits[0][1]
            res.cause = hits[0][2]
            res.repro = hits[0][3]
            if len(failures) > 1 or res.passed:
                res.note += f" ({len(failures)} of {res.samples} samples fail)"
            return
    if res.passed:
        res.status = "pass"
        notes = [f"{res.passed} sample{'s' if res.passed > 1 else ''}"]
        if res.kinks:
            notes.append(
                f"{res.kinks} at a kink/jump/tie (incl. lifted labels): torchlc gives the one-sided "
                "limit along v, jvp an a.e. value"
            )
        if res.jvp_off:
            notes.append(
                f"{res.jvp_off} where torch.func.jvp disagrees with finite differences (it treats an "
                "argument or output as non-differentiable) and torchlc agrees with them"
            )
        if res.allowed:
            notes.append(f"{res.allowed} with a known difference: {ALLOWED[name][0]}")
        if res.skipped:
            notes.append(f"{res.skipped} skipped ({', '.join(skip_reasons)})")
        res.note = "; ".join(notes)
        return
    res.status = "skipped"
    res.note = "; ".join(sorted(skip_reasons)) or "no samples"


# --------------------------------------------------------------------------------------------------
def run(names=None, max_samples=4, timeout=10.0, seed=0, progress=None) -> list[OpResult]:
    """Check every forward-AD OpInfo (or those named); returns one :class:`OpResult` per op."""
    results = []
    for op in load_ops(names):
        r = check_op(op, max_samples=max_samples, timeout=timeout, seed=seed)
        results.append(r)
        if progress:
            progress(r)
    return results


def totals(results):
    c = collections.Counter(r.status for r in results)
    return {s: c.get(s, 0) for s in STATUSES}


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(results, *, elapsed=None, max_samples=4, timeout=10.0) -> str:
    t = totals(results)
    n = len(results)
    pct = 100.0 * t["pass"] / n if n else 0.0
    tested = n - t["skipped"]
    pct_tested = 100.0 * t["pass"] / tested if tested else 0.0
    date = datetime.date.today().isoformat()
    lines = [
        "# Op coverage against PyTorch's OpInfo database",
        "",
        "Generated by `python -m torchlc.coverage` — do not edit by hand; rerun it to regenerate.",
        "",
        f"- torch {torch.__version__}, torchlc {getattr(torchlc, '__version__', '?')}, "
        f"generated {date}" + (f" in {elapsed:.0f} s" if elapsed is not None else ""),
        f"- ops: every entry of `torch.testing._internal.common_methods_invocations.op_db` with "
        f"`supports_forward_ad=True` ({n} ops); up to {max_samples} float64 CPU samples each; "
        f"{timeout:g} s per op",
        "- method: the floating tensors of each sample are lifted to `x.nonstd(v)` with a random "
        "tangent `v`; the ε⁰ plane is compared with the primal output and the ε¹ plane with "
        "`torch.func.jvp`'s tangent along the same `v` (rtol = atol = 1e-7, NaNs equal); "
        "integer/bool outputs must be exactly equal. Where an element differs, torchlc's answer is "
        "accepted only if it is the one-sided limit of f(x + t·v), t → 0⁺ (checked by one-sided "
        "finite differences): at a kink, jump or tie a Levi-Civita number gives that value, "
        "while jvp gives a conventional a.e. derivative (lifted labels, e.g. a ±1 target, count "
        "as jumps too). Where the ε⁰ plane matches and finite differences from both sides agree "
        "with torchlc but not with jvp, jvp is the odd one out: it treats an argument or output as "
        "non-differentiable (nll_loss's weight, batch norm's saved statistics). Such samples pass "
        "and the note says so.",
        "",
        "## Totals",
        "",
        "| status | ops |",
        "|---|---:|",
    ]
    for s in STATUSES:
        lines.append(f"| {s} | {t[s]} |")
    lines += [
        f"| **total** | {n} |",
        "",
        f"**Pass rate: {pct:.1f}%** of the {n} ops with forward-AD support "
        f"({pct_tested:.1f}% of the {tested} that were not skipped).",
        "",
        "Statuses: *pass* — every compared sample matched; *not-implemented* — torchlc raised a "
        "clear NotImplementedError/TypeError naming what is missing; *wrong* — numbers differ; "
        "*error* — another exception; *skipped* — no comparable sample (complex/sparse inputs, "
        "no floating input, the jvp reference itself fails, or a random op).",
        "",
    ]
    groups = collections.defaultdict(list)
    for r in results:
        if r.status in ("not-implemented", "error"):
            groups[(r.status, r.cause)].append(r.name)
    if groups:
        lines += ["## Failures by root cause", "", "| status | cause | ops |", "|---|---|---|"]
        for (st, cause), names in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            lines.append(
                f"| {st} | {_md_escape(cause)} | {len(names)}: {_md_escape(', '.join(names))} |"
            )
        lines.append("")
    wrong = [r for r in results if r.status == "wrong"]
    if wrong:
        lines += ["## Wrong ops", ""]
        for r in wrong:
            lines += [f"### {r.name}", "", "```", r.repro, "```", ""]
    lines += ["## Per op", "", "| op | status | note |", "|---|---|---|"]
    for r in sorted(results, key=lambda r: r.name):
        lines.append(f"| `{r.name}` | {r.status} | {_md_escape(r.note)} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m torchlc.coverage", description=__doc__.split("\n")[0]
    )
    p.add_argument("--ops", help="comma-separated OpInfo names (default: all with forward AD)")
    p.add_argument("--max-samples", type=int, default=4)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per op")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", default=None, help="markdown output (default docs/coverage.md on a full run)"
    )
    p.add_argument("--json", default=None, help="also write results as JSON here")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    names = a.ops.split(",") if a.ops else None
    torch.set_num_threads(min(torch.get_num_threads(), 2))

    def progress(r):
        if not a.quiet:
            print(f"{r.status:16s} {r.seconds:6.2f}s {r.name}: {r.note}", flush=True)

    t0 = time.perf_counter()
    results = run(names, a.max_samples, a.timeout, a.seed, progress)
    elapsed = time.perf_counter() - t0
    md = render_markdown(results, elapsed=elapsed, max_samples=a.max_samples, timeout=a.timeout)
    out = a.out
    if out is None and names is None:
        out = os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "coverage.md"
        )
    if out:
        with open(out, "w") as f:
            f.write(md)
        print(f"wrote {out}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump([dataclasses.asdict(r) for r in results], f, indent=1)
    t = totals(results)
    n = len(results)
    print(
        " ".join(f"{k}={v}" for k, v in t.items()),
        f"pass%={100.0 * t['pass'] / max(n, 1):.1f}",
        f"elapsed={elapsed:.0f}s",
    )
    return 1 if t["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
