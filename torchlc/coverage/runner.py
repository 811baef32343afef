"""The OpInfo database (:func:`load_ops`) and the per-op run (:func:`check_op`, :func:`run`): samples,
deadlines and the classification of failures."""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import re
import signal
import time
import traceback
import warnings
from fractions import Fraction

import torch
from torch.utils._pytree import tree_flatten

from torchlc.errors import TruncationError

from .compare import _Mismatch, _reference, _Sample, check_sample
from .spec import ALLOWED, COMPLEX_DTYPE, DTYPE, RANDOM_OPS, OpResult


class MissingDependencyError(ImportError):
    """A package the coverage tool needs is not installed; the message says what to install."""


EXPECTTEST_HINT = ("the coverage tool needs expecttest: pip install 'torchlc[dev]' (or only what the tool "
                   "needs: pip install 'torchlc[coverage]')")


def _op_db():
    """PyTorch's OpInfo database. Its module imports ``expecttest`` (a test-only package that torch
    does not install): without it, :class:`MissingDependencyError` names the extra to install."""
    frozen = torch.backends.flags_frozen()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.testing._internal.common_methods_invocations import op_db
    except ModuleNotFoundError as e:
        if e.name == "expecttest":
            raise MissingDependencyError(EXPECTTEST_HINT, name=e.name) from e
        raise
    finally:
        # PyTorch's test utilities freeze torch.backends' flags on import (its own test suites set
        # them through a context manager); the caller's process keeps what it had
        if not frozen and torch.backends.flags_frozen():
            torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
    return op_db


def load_ops(names=None):
    """OpInfos with ``supports_forward_ad`` (optionally only those whose full name is in ``names``)."""
    op_db = _op_db()
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


_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep  # this tool's own frames are not the cause


def _raised_at(e: BaseException) -> str:
    """file:line of the innermost torchlc frame of the traceback (or the innermost frame)."""
    tb = traceback.extract_tb(e.__traceback__)
    mine = [
        f
        for f in tb
        if os.sep + "torchlc" + os.sep in f.filename and not f.filename.startswith(_HERE)
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


def _needs_skip(t, complex_ok=False) -> str | None:
    if isinstance(t, torch.Tensor):
        if t.is_complex() and not complex_ok:
            return "complex tensor"
        if t.layout != torch.strided:
            return f"{t.layout} tensor"
    return None


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


# Zero-size samples: a dimension of a sample's input narrowed to 0, alone or together with every other
# tensor argument whose dimension (aligned from the right, as broadcasting aligns) has the same size,
# or every dimension of the input's first size in every argument (square matrices); the first variant
# the plain op (its jvp) accepts is compared. At most this many variants are tried.
ZERO_SIZE_TRIES = 12
# How many samples past max_samples the extra samples may derive from.
EXTRA_POOL = 8


def _first_input(leaves, n_in):
    """Index of the sample's first tensor input leaf of dimension ≥ 1 (None if it has none)."""
    for i in range(n_in):
        t = leaves[i]
        if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.dim() >= 1:
            return i
    return None


def _narrow_to_zero(r, with_matching):
    """A leaves transform: dimension ``r`` (negative: counted from the right) of the first input
    narrowed to size 0, and (``with_matching``) that of every tensor argument of the same size."""

    def transform(leaves, n_in):
        i0 = _first_input(leaves, n_in)
        size = leaves[i0].shape[r]
        out = list(leaves)
        for i, t in enumerate(leaves):
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
                continue
            if i == i0 or (with_matching and t.dim() >= -r and t.shape[r] == size):
                out[i] = t.narrow(r, 0, 0)
        return out

    return transform


def _narrow_size_to_zero(size):
    """A leaves transform: every dimension of size ``size`` of every tensor argument narrowed to 0
    (a square matrix and the right-hand sides that match it, say)."""

    def transform(leaves, n_in):
        out = list(leaves)
        for i, t in enumerate(leaves):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                for d in range(t.dim()):
                    if t.shape[d] == size:
                        t = t.narrow(d, 0, 0)
                out[i] = t
        return out

    return transform


def _zero_size_variants(samples):
    """Leaves transforms that give zero-size variants of the first samples, most natural first: the
    batch (first) dimension, then the last, then the others; with the matching arguments, then alone."""
    variants = []
    used = 0
    for sample in samples:
        leaves = tree_flatten((sample.input, tuple(sample.args), dict(sample.kwargs)))[0]
        n_in = len(tree_flatten(sample.input)[0])
        i0 = _first_input(leaves, n_in)
        if i0 is None:
            continue
        used += 1
        if used > 2:
            break
        n = leaves[i0].dim()
        dims = [-n] + ([-1] if n > 1 else []) + list(range(-n + 1, -1))
        for r in dims:
            for matching in (True, False):
                variants.append((sample, _narrow_to_zero(r, matching)))
        variants.append((sample, _narrow_size_to_zero(leaves[i0].shape[0])))
    return variants[:ZERO_SIZE_TRIES]


def _prepare(op, sample, gen, seed, *, transform=None, layout="contiguous"):
    """(sample, reference, None) for the first of all-floating-leaves / input-only that the jvp
    reference accepts, else (None, None, why)."""
    ref_err = None
    for input_only in (False, True):
        try:
            cand = _Sample(op, sample, gen, input_only, transform=transform, layout=layout)
        except (RuntimeError, IndexError, ValueError) as e:  # the transform does not apply
            return None, None, f"{type(e).__name__}: {_first_line(e, 80)}"
        if not cand.primals:
            ref_err = ref_err or "no floating tensor input"
            continue
        try:
            return cand, _reference(cand, seed), None
        except _Timeout:
            raise
        except Exception as e:
            ref_err = f"jvp reference fails: {type(e).__name__}: {_first_line(e, 80)}"
    return None, None, ref_err


def _noncontig_candidate(samples):
    """The sample for the non-contiguous variant: the first with a floating tensor leaf of ≥ 2 rows
    and columns (it becomes a transposed view), else the first with one of ≥ 2 elements (a strided
    view)."""
    def floats(sample):
        leaves = tree_flatten((sample.input, tuple(sample.args), dict(sample.kwargs)))[0]
        return [t for t in leaves if isinstance(t, torch.Tensor) and (t.dtype.is_floating_point or t.is_complex())]

    for sample in samples:
        if any(t.dim() >= 2 and t.shape[-1] >= 2 and t.shape[-2] >= 2 for t in floats(sample)):
            return sample
    for sample in samples:
        if any(t.dim() >= 1 and t.numel() >= 2 for t in floats(sample)):
            return sample
    return None


# A TruncationError says which truncation order would make the result exact ("x.nonstd(order=q)"):
# the sample is then rerun at that order, or at least one order higher (at most MAX_ORDER), as the
# contract tells a user to do.
MAX_ORDER = 4
_NEEDED = re.compile(r"nonstd\(order=(\d+(?:/\d+)?)\)")


def _check_at_needed_order(s, ref, seed, allowed, res):
    order = Fraction(1)
    while True:
        try:
            outcome = check_sample(s, ref[0], ref[1], seed, allowed, order=order)
        except TruncationError as e:
            m = _NEEDED.search(str(e))
            # at least one more order: the order a message names may creep up (3/2, 7/4, 15/8, …)
            need = max(Fraction(m.group(1)) if m else order, order + 1)
            if need > MAX_ORDER:
                raise
            order = need
            continue
        if order > 1:
            res.reordered += 1
        return outcome


def _check_op(op, res: OpResult, max_samples, seed):
    name = full_name(op)
    if name in RANDOM_OPS or op.name in RANDOM_OPS:
        res.note = "random op: outputs are draws, not comparable with jvp"
        return
    supported = op.supported_dtypes("cpu")
    # float64 samples; an op without float64 support runs complex128 samples (complex LC inputs)
    dtype = DTYPE if DTYPE in supported else COMPLEX_DTYPE if COMPLEX_DTYPE in supported else None
    if dtype is None:
        res.note = "no float64 or complex128 CPU support"
        return

    def skip_why(leaves):
        return next((w for w in (_needs_skip(t, dtype.is_complex) for t in leaves) if w), None)

    gen = torch.Generator().manual_seed(seed)
    # OpInfo draws its samples from the global generator: seeded per op, every op's samples (and so
    # its result) are the same in a full run, in a run of that op alone and in any worker process
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pool = list(itertools.islice(op.sample_inputs("cpu", dtype, requires_grad=False), max_samples + EXTRA_POOL))
    samples = pool[:max_samples]
    # the extra samples derive from the first samples that suit them, also beyond max_samples
    pool = [x for x in pool if not skip_why(tree_flatten((x.input, x.args, x.kwargs))[0])]
    failures = []  # (status, note, cause, repro)
    skip_reasons = collections.Counter()

    def compare(j, s, ref, label=""):
        """Compare one prepared sample; True if it passed."""
        try:
            outcome = _check_at_needed_order(s, ref, seed + j, ALLOWED.get(name), res)
        except _Timeout:
            raise
        except _Mismatch as m:
            failures.append(("wrong", f"{label}sample {j}: {m}", "", _repro(op, s, str(m))))
            return False
        except Exception as e:
            st = _classify_exception(e)
            failures.append(
                (
                    st,
                    f"{label}{type(e).__name__}: {_first_line(e)}",
                    _cause(e),
                    f"{op.name}({s.describe()})  # raised at {_raised_at(e)}",
                )
            )
            return False
        res.passed += 1
        if outcome == "kink":
            res.kinks += 1
        elif outcome == "jvp-off":
            res.jvp_off += 1
        elif outcome == "allowed":
            res.allowed += 1
        return True

    for j, sample in enumerate(samples):
        res.samples += 1
        leaves = tree_flatten((sample.input, sample.args, sample.kwargs))[0]
        why = skip_why(leaves)
        if why:
            res.skipped += 1
            skip_reasons[why] += 1
            continue
        s, ref, ref_err = _prepare(op, sample, gen, seed + j)
        if s is None:
            res.skipped += 1
            skip_reasons[ref_err] += 1
            continue
        compare(j, s, ref)
    if not res.passed and not failures:  # nothing comparable: no extra samples either
        res.zero_size = res.noncontig = ""
        _finish(res, failures, skip_reasons, name)
        return

    # a zero-size variant: the LC run must not fail where the plain op runs
    j = len(samples)
    res.zero_size = "n/a"
    for sample, transform in _zero_size_variants(pool):
        s, ref, _ = _prepare(op, sample, gen, seed + j, transform=transform)
        if s is not None:
            res.samples += 1
            res.zero_size = "pass" if compare(j, s, ref, "zero-size ") else "fail"
            break

    # a non-contiguous variant: the lifted inputs are transposed / strided views
    j += 1
    res.noncontig = "n/a"
    sample = _noncontig_candidate(pool)
    if sample is not None:
        s, ref, _ = _prepare(op, sample, gen, seed + j, layout="non-contiguous")
        if s is not None:
            res.samples += 1
            res.noncontig = "pass" if compare(j, s, ref, "non-contiguous ") else "fail"
    _finish(res, failures, skip_reasons, name)


def _finish(res, failures, skip_reasons, name):
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
        if res.reordered:
            notes.append(
                f"{res.reordered} recomputed at a higher truncation order (at order 1 their ε¹ "
                "coefficient is not exact: TruncationError naming the order needed)"
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
def run(names=None, max_samples=4, timeout=10.0, seed=0, progress=None, jobs=1) -> list[OpResult]:
    """Check every forward-AD OpInfo (or those named); returns one :class:`OpResult` per op, in
    op_db's order. ``jobs`` > 1 checks the ops in that many worker processes (one thread each); every
    op is seeded on its own, so the results are the same as in one process."""
    ops = load_ops(names)
    if jobs <= 1 or len(ops) <= 1:
        results = []
        for op in ops:
            r = check_op(op, max_samples=max_samples, timeout=timeout, seed=seed)
            results.append(r)
            if progress:
                progress(r)
        return results
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork of a process that has run torch
    by_name = {}
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init) as ex:
        futures = [ex.submit(_check_by_name, full_name(op), max_samples, timeout, seed) for op in ops]
        for f in concurrent.futures.as_completed(futures):
            r = f.result()
            by_name[r.name] = r
            if progress:
                progress(r)
    return [by_name[full_name(op)] for op in ops]


_WORKER_OPS = None


def _worker_init():
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")


def _check_by_name(name, max_samples, timeout, seed):
    global _WORKER_OPS
    if _WORKER_OPS is None:
        _WORKER_OPS = {full_name(op): op for op in load_ops()}
    return check_op(_WORKER_OPS[name], max_samples=max_samples, timeout=timeout, seed=seed)
