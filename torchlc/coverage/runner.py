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

import torch
from torch.utils._pytree import tree_flatten

from .compare import _Mismatch, _reference, _Sample, check_sample
from .spec import ALLOWED, DTYPE, RANDOM_OPS, OpResult


class MissingDependencyError(ImportError):
    """A package the coverage tool needs is not installed; the message says what to install."""


EXPECTTEST_HINT = ("the coverage tool needs expecttest: pip install 'torchlc[dev]' (or only what the tool "
                   "needs: pip install 'torchlc[coverage]')")


def _op_db():
    """PyTorch's OpInfo database. Its module imports ``expecttest`` (a test-only package that torch
    does not install): without it, :class:`MissingDependencyError` names the extra to install."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.testing._internal.common_methods_invocations import op_db
    except ModuleNotFoundError as e:
        if e.name == "expecttest":
            raise MissingDependencyError(EXPECTTEST_HINT, name=e.name) from e
        raise
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


def _needs_skip(t) -> str | None:
    if isinstance(t, torch.Tensor):
        if t.is_complex():
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
