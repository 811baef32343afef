"""Modes are context-local (torchlc._context): threads, generators closed out of order, asyncio tasks.

Every mode — ``torchlc.strict()``, ``torchlc.layouts.force(...)``, ``torchlc.smoothing(...)`` — is an
entry on a context-local stack; a block's exit removes exactly its own entry. Smoothing also needs a
torch function mode for plain tensors (thread-local in torch): it is installed per thread while a
block of that thread is open and removed by identity when the last one exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import BaseTorchFunctionMode

import torchlc
from torchlc import _context
from torchlc._smoothing import mode as smoothing_mode
from torchlc.nn import Heaviside

F64 = torch.float64
PHI0 = 1 / math.sqrt(2 * math.pi)  # gaussian kernel peak: smoothed heaviside' at 0 is PHI0 / width


def step(x):
    return torch.heaviside(x, torch.zeros((), dtype=x.dtype))


def ngrad_step():
    """(ε⁻¹, ε⁰) coefficients of ngrad(heaviside) at 0: (1, 0) exact, (0, φ(0)/h) smoothed."""
    d = torchlc.ngrad(step, torch.tensor(0.0, dtype=F64))
    return torchlc.coeff(d, -1).item(), torchlc.coeff(d, 0).item()


def plain_grads():
    """Gradients of plain-tensor jump ops at points off their jumps (exact: all zero)."""
    x = torch.tensor([0.3, -0.2], dtype=F64, requires_grad=True)
    y = torch.round(x) + torch.sign(x) + torch.floor(x) + Heaviside()(x)
    y = y + (x > 0.1).to(F64)  # exact: a comparison has no grad; smoothed: its soft companion
    (g,) = torch.autograd.grad(y.sum(), x)
    return g


def smoothed_expected(width):
    return (0.0, PHI0 / width)


def assert_exact_everywhere():
    assert _context.smoothing() is None and torchlc.smoothing.current() is None
    assert not _context.is_strict() and _context.forced_layout() is None
    assert not smoothing_mode.installed()
    assert ngrad_step() == (1.0, 0.0)
    assert torch.equal(plain_grads(), torch.zeros(2, dtype=F64))


@pytest.fixture(autouse=True)
def _clean():
    depth = torch._C._len_torch_function_stack()
    yield
    assert torch._C._len_torch_function_stack() == depth  # no mode left behind
    assert _context.smoothing() is None


# -- (a, e) threads ------------------------------------------------------------------------------------


def run_threads(hold, check_a, check_b, runs=150):
    """Thread A sits inside ``hold()`` (checking ``check_a`` in a loop) while thread B runs
    ``check_b`` ``runs`` times; returns the errors of both."""
    entered, release = threading.Event(), threading.Event()
    errors: list = []

    def a():
        try:
            with hold():
                entered.set()
                while not release.is_set():
                    check_a()
        except BaseException as e:  # noqa: BLE001  (reported by the main thread)
            errors.append(("A", e))
            entered.set()

    def b():
        try:
            assert entered.wait(30)
            for _ in range(runs):
                check_b()
        except BaseException as e:  # noqa: BLE001
            errors.append(("B", e))
        finally:
            release.set()

    ta, tb = threading.Thread(target=a), threading.Thread(target=b)
    ta.start()
    tb.start()
    tb.join(120)
    release.set()
    ta.join(120)
    assert not ta.is_alive() and not tb.is_alive()
    return errors


def test_thread_keeps_its_exact_dirac_mass_while_another_is_smoothed():
    results: list = []

    def in_a():
        assert ngrad_step() == pytest.approx(smoothed_expected(0.5))
        x = torch.tensor(0.0, dtype=F64, requires_grad=True)
        (g,) = torch.autograd.grad(step(x), x)
        assert g.item() == pytest.approx(PHI0 / 0.5)

    def in_b():
        results.append(ngrad_step())
        assert _context.smoothing() is None and not smoothing_mode.installed()

    errors = run_threads(lambda: torchlc.smoothing(0.5), in_a, in_b)
    assert not errors, errors
    assert len(results) == 150 and all(r == (1.0, 0.0) for r in results)  # every Dirac mass kept
    assert_exact_everywhere()


def test_thread_plain_autograd_stays_exact_while_another_is_smoothed():
    def in_a():
        assert plain_grads().abs().sum().item() > 0  # smoothed: a signal through the jumps

    def in_b():
        assert torch.equal(plain_grads(), torch.zeros(2, dtype=F64))
        x = torch.tensor([0.0, 0.4], requires_grad=True)
        assert not (x > 0).requires_grad and torchlc.smoothing.soft(x > 0) is None

    errors = run_threads(lambda: torchlc.smoothing(0.5), in_a, in_b, runs=100)
    assert not errors, errors
    assert_exact_everywhere()


def test_thread_strict_is_its_own():
    def in_a():
        assert torchlc.is_strict()
        with pytest.raises(torchlc.DomainError):
            torchlc.eps(dtype=F64).log()

    def in_b():
        assert not torchlc.is_strict()
        assert torch.isnan(torchlc.coeff(torchlc.eps(dtype=F64).log(), 0)).all()

    errors = run_threads(torchlc.strict, in_a, in_b, runs=100)
    assert not errors, errors
    assert_exact_everywhere()


def test_thread_forced_layout_is_its_own():
    def y():
        return torch.tensor([1.0, 2.0]).nonstd() * 3

    def in_a():
        assert torchlc.layout(y()) == "csr"

    def in_b():
        assert _context.forced_layout() is None
        assert torchlc.layout(y()) == "planes"

    errors = run_threads(lambda: torchlc.layouts.force("csr"), in_a, in_b, runs=100)
    assert not errors, errors
    assert_exact_everywhere()


# -- (b) generators closed out of order ----------------------------------------------------------------


def smoothed_gen(width):
    with torchlc.smoothing(width) as cfg:
        while True:
            yield cfg


def test_generators_closed_out_of_order():
    g1, g2 = smoothed_gen(0.5), smoothed_gen(0.25)
    c1 = next(g1)
    assert _context.smoothing() is c1 and ngrad_step() == pytest.approx(smoothed_expected(0.5))
    c2 = next(g2)
    assert _context.smoothing() is c2 and ngrad_step() == pytest.approx(smoothed_expected(0.25))
    g1.close()  # the outer block exits first: the inner one stays in effect
    assert _context.smoothing() is c2 and ngrad_step() == pytest.approx(smoothed_expected(0.25))
    assert smoothing_mode.installed()
    assert plain_grads().abs().sum().item() > 0
    g2.close()
    assert_exact_everywhere()


def test_generators_reopened_after_out_of_order_close():
    g1, g2 = smoothed_gen(0.5), smoothed_gen(0.25)
    next(g1), next(g2)
    g1.close()
    g3 = smoothed_gen(1.0)
    c3 = next(g3)
    assert _context.smoothing() is c3
    g2.close()
    assert _context.smoothing() is c3 and ngrad_step() == pytest.approx(smoothed_expected(1.0))
    g3.close()
    assert_exact_everywhere()


def test_exit_removes_its_own_mode_not_one_pushed_above():
    cfg = torchlc.smoothing(0.5)
    cfg.__enter__()
    ours = torch._C._get_function_stack_at(torch._C._len_torch_function_stack() - 1)
    other = BaseTorchFunctionMode()
    other.__enter__()  # another library's mode, pushed above ours
    cfg.__exit__(None, None, None)
    top = torch._C._get_function_stack_at(torch._C._len_torch_function_stack() - 1)
    assert top is other  # still there, on top
    assert all(torch._C._get_function_stack_at(i) is not ours
               for i in range(torch._C._len_torch_function_stack()))
    other.__exit__(None, None, None)
    assert_exact_everywhere()


def test_one_mode_per_thread_however_deep():
    depth = torch._C._len_torch_function_stack()
    with torchlc.smoothing(1.0), torchlc.smoothing(0.5), torchlc.smoothing(0.25):
        assert torch._C._len_torch_function_stack() == depth + 1
    assert torch._C._len_torch_function_stack() == depth


def test_decorator_and_reentrant_instance():
    cfg = torchlc.smoothing(0.5)

    @cfg
    def inner():
        return ngrad_step()

    with cfg:
        with cfg:
            assert inner() == pytest.approx(smoothed_expected(0.5))
        assert _context.smoothing() is cfg
    assert_exact_everywhere()
    assert torchlc.smoothing(0.25)(ngrad_step)() == pytest.approx(smoothed_expected(0.25))
    assert_exact_everywhere()


def test_cache_key_and_snapshot():
    assert torchlc.smoothing(0.5, "normal").cache_key() == torchlc.smoothing(0.5).cache_key() == (0.5, "gaussian")
    assert torchlc.smoothing(0.5, "sigmoid").cache_key() == (0.5, "logistic")
    g = torchlc.smoothing.KERNELS["gaussian"]
    custom = torchlc.smoothing.Kernel("gaussian", g.density, g.derivs, 4.0, g.peak)  # same name, not registered
    key = torchlc.smoothing(0.5, custom).cache_key()
    assert key != (0.5, "gaussian")
    hash(key)  # hashable
    base = _context.snapshot()
    with torchlc.smoothing(0.5, "triangle"):
        assert _context.snapshot() == (base[0], base[1], (0.5, "triangle"))
    assert _context.snapshot() == base


def test_exception_inside_a_block():
    with pytest.raises(RuntimeError), torchlc.smoothing(0.5):
        raise RuntimeError("boom")
    assert_exact_everywhere()


# -- (c) asyncio -------------------------------------------------------------------------------------


def test_asyncio_tasks_smoothed_and_exact_interleaved():
    seen = {"smooth": [], "exact": []}

    async def smoothed():
        with torchlc.smoothing(0.5):
            for _ in range(20):
                seen["smooth"].append((ngrad_step(), plain_grads().abs().sum().item() > 0))
                await asyncio.sleep(0)

    async def exact():
        for _ in range(20):
            seen["exact"].append((ngrad_step(), bool(torch.equal(plain_grads(), torch.zeros(2, dtype=F64)))))
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(smoothed(), exact())

    asyncio.run(main())
    assert all(r == pytest.approx(smoothed_expected(0.5)) and sig for r, sig in seen["smooth"])
    assert all(r == (1.0, 0.0) and zero for r, zero in seen["exact"])
    assert_exact_everywhere()


def test_asyncio_task_exiting_first_leaves_the_other_smoothed():
    order = []

    async def block(width, n):
        with torchlc.smoothing(width):
            for _ in range(n):
                await asyncio.sleep(0)
                order.append(width)
                assert ngrad_step() == pytest.approx(smoothed_expected(width))
                assert plain_grads().abs().sum().item() > 0

    async def main():
        await asyncio.gather(block(0.5, 3), block(0.25, 8))

    asyncio.run(main())
    assert order.count(0.5) == 3 and order[-1] == 0.25
    assert_exact_everywhere()


# -- (d) random nesting and exit orders -------------------------------------------------------------

KINDS = ("strict", "layout", "smoothing")


def _block(kind, value):
    if kind == "strict":
        cm = torchlc.strict(value)
    elif kind == "layout":
        cm = torchlc.layouts.force(value)
    else:
        cm = value
    with cm:
        yield


def _current():
    return {"strict": _context.is_strict(), "layout": _context.forced_layout(),
            "smoothing": _context.smoothing()}


_DEFAULT = {"strict": False, "layout": None, "smoothing": None}
_VALUES = {"strict": (True, False), "layout": ("csr", "planes", None), "smoothing": (0.25, 0.5, 1.0)}

events = st.lists(
    st.one_of(
        st.tuples(st.just("enter"), st.sampled_from(KINDS), st.integers(0, 2)),
        st.tuples(st.just("exit"), st.just(""), st.integers(0, 31)),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(events, st.booleans())
def test_random_nesting_and_exit_orders(evs, close_lifo):
    depth = torch._C._len_torch_function_stack()
    active: list = []  # (kind, value, generator), in entry order
    for op, kind, k in evs:
        if op == "enter":
            value = _VALUES[kind][k % len(_VALUES[kind])]
            if kind == "smoothing":
                value = torchlc.smoothing(value)  # one object per block
            gen = _block(kind, value)
            next(gen)
            active.append((kind, value, gen))
        elif active:
            kind, value, gen = active.pop(k % len(active))
            gen.close()
        cur = _current()
        for kd in KINDS:
            inner = [v for kk, v, _ in active if kk == kd]
            want = inner[-1] if inner else _DEFAULT[kd]
            assert cur[kd] is want or cur[kd] == want, (kd, cur[kd], want)
        has_smoothing = any(kk == "smoothing" for kk, _, _ in active)
        assert smoothing_mode.installed() == has_smoothing
        assert torch._C._len_torch_function_stack() == depth + has_smoothing
    for _, _, gen in (reversed(active) if close_lifo else list(active)):
        gen.close()
    assert _current() == _DEFAULT
    assert torch._C._len_torch_function_stack() == depth and not smoothing_mode.installed()


def test_exit_stack_and_an_open_generator():
    with contextlib.ExitStack() as es:
        es.enter_context(torchlc.smoothing(0.5))
        es.enter_context(torchlc.strict())
        g = smoothed_gen(0.25)
        next(g)
    g.close()
    assert_exact_everywhere()
