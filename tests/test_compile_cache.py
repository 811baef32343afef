"""torchlc.compile is never stale and never unbounded: what a trace bakes in (module training flags,
parameter and buffer identity, closure values, pow exponent values, every torchlc mode) keys or guards
its graph, strict mode raises DomainError as eager does, and the cache is an LRU that warns once past
the recompile limit. Every compiled result is compared with eager. Models are tiny and the backend is
aot_eager wherever the point is the cache key (CPU compiles are slow)."""

import copy
import warnings

import pytest
import torch

import torchlc
from torchlc import _compile

f64 = torch.float64


class _Counting:
    """A torch.compile backend that counts the graphs it compiles and runs them as they are."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def _same(y, ref):
    assert torchlc.support(y) == torchlc.support(ref)
    torch.testing.assert_close(torchlc.coeffs(y), torchlc.coeffs(ref), rtol=1e-12, atol=1e-12, equal_nan=True)


def _lc(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=f64, generator=g).nonstd(torch.randn(*shape, dtype=f64, generator=g))


def test_batchnorm_train_then_eval():
    """A module first called in train mode (batch statistics, running statistics updated once per call)
    then in eval mode (running statistics) gives eager's results and state in both."""
    m = torch.nn.BatchNorm1d(3).double()
    ref = copy.deepcopy(m)
    f = torchlc.compile(m, backend="aot_eager")
    with torch.no_grad():
        for seed in (1, 2):  # the trace's call and a cached call: the statistics move once per call
            x = _lc(5, 3, seed=seed)
            _same(f(x), ref(x))
            for a, b in zip(m.state_dict().values(), ref.state_dict().values()):
                assert torch.equal(a, b)
        m.eval()
        ref.eval()
        x = _lc(5, 3, seed=3)
        _same(f(x), ref(x))
        for mode in (True, False):  # a training epoch, then validation again: both graphs reused
            m.train(mode)
            ref.train(mode)
            _same(f(x), ref(x))
    assert f.cache_info()[:2] == (2, 2)


def test_reassigned_buffer_and_parameter():
    """Reassigning a buffer or a parameter traces again; in-place updates (optimizer steps, running
    statistics) are read by the same graph; gradients reach the parameter that is there now."""
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(3).double().eval()
    backend = _Counting()
    f = torchlc.compile(bn, backend=backend)
    x = _lc(4, 3)
    with torch.no_grad():
        _same(f(x), bn(x))
        bn.running_mean = torch.full((3,), 0.5, dtype=f64)  # reassigned buffer
        _same(f(x), bn(x))
        assert backend.graphs == 2
        bn.running_var.mul_(4.0)  # in place: a graph input, read at run time
        _same(f(x), bn(x))
        assert backend.graphs == 2

    lin = torch.nn.Linear(3, 2).double()
    backend = _Counting()
    g = torchlc.compile(lambda z: torch.tanh(lin(z)), backend=backend)

    def grads(fn):
        lin.zero_grad()
        y = fn(x)
        torchlc.coeff(y, 1).sum().backward()
        return y, [None if p.grad is None else p.grad.clone() for p in (lin.weight, lin.bias)]

    _same(grads(g)[0], grads(lambda z: torch.tanh(lin(z)))[0])
    old = lin.weight
    old.grad = None
    lin.weight = torch.nn.Parameter(torch.linspace(-1, 1, 6, dtype=f64).reshape(2, 3))  # reassigned
    (y, gc), (ref, ge) = grads(g), grads(lambda z: torch.tanh(lin(z)))
    _same(y, ref)
    for a, b in zip(gc, ge):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert old.grad is None
    with torch.no_grad():
        lin.weight.mul_(0.5)  # an optimizer step: same graph
    _same(grads(g)[0], grads(lambda z: torch.tanh(lin(z)))[0])
    assert backend.graphs == 2
    lin.weight.requires_grad_(False)  # frozen: traced again, the gradient stops there as in eager
    (y, gc), (ref, ge) = grads(g), grads(lambda z: torch.tanh(lin(z)))
    _same(y, ref)
    assert gc[0] is None and ge[0] is None
    torch.testing.assert_close(gc[1], ge[1], rtol=1e-12, atol=1e-12)
    assert backend.graphs == 3


_GLOBAL_SCALE = 2.0


def _scaled_by_global(z):
    return z * _GLOBAL_SCALE


def test_closure_scalar_default_and_global():
    """Python scalars that reach the trace through a closure, a default or a global key the graph."""
    global _GLOBAL_SCALE
    x = _lc(3)
    scale = 2.0
    f = torchlc.compile(lambda z: torch.sin(z) * scale, backend="aot_eager")

    def with_default(z, power=2):
        return z**power

    g = torchlc.compile(with_default, backend="aot_eager")
    h = torchlc.compile(_scaled_by_global, backend="aot_eager")
    with torch.no_grad():
        for s in (2.0, 3.0, 2.0):
            scale = s
            _same(f(x), torch.sin(x) * s)
        assert f.cache_info()[:2] == (2, 2)
        _same(g(x), x**2)
        with_default.__defaults__ = (3,)
        _same(g(x), x**3)
        _same(h(x), x * 2.0)
        _GLOBAL_SCALE = 5.0
        try:
            _same(h(x), x * 5.0)
        finally:
            _GLOBAL_SCALE = 2.0


def test_closure_tensor_read_on_the_host_is_version_guarded():
    """A captured tensor whose value the trace reads on the host (float(t)) bakes it in: an in-place
    change traces again."""
    t = torch.tensor(2.0, dtype=f64)
    f = torchlc.compile(lambda z: z * float(t), backend="aot_eager")
    x = _lc(3)
    with torch.no_grad():
        _same(f(x), x * 2.0)
        t.fill_(-1.5)
        _same(f(x), x * -1.5)
    assert f.cache_info()[1] == 2


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_pow_exponent_tensor(backend):
    """The values of a plain exponent tensor fix the support of x ** e (ε^{-1} for a negative power
    at a zero base): a captured exponent changed in place or reassigned traces again; with inductor
    too, whose constant folding must not keep the old exponent."""
    e = torch.tensor([2.0, 3.0], dtype=f64)
    f = torchlc.compile(lambda z: z**e, backend=backend)
    x = torch.tensor([0.0, 2.0], dtype=f64).nonstd()
    with torch.no_grad():
        _same(f(x), x**e)
        e.copy_(torch.tensor([-1.0, 0.5], dtype=f64))  # in place: 0 ** -1 gives ε^-1
        _same(f(x), x**e)
        assert torchlc.support(f(x))[0] == -1
        if backend == "inductor":
            return  # (one compile per case is slow on the CPU; reassignment is the same key on aot_eager)
        e = torch.tensor([3.0, 3.0], dtype=f64)  # reassigned
        _same(f(x), x**e)


def test_pow_exponent_argument_is_speculated():
    """An exponent passed as an argument (or computed) is a graph input: its values are speculated, and
    other values run that call eagerly."""
    backend = _Counting()
    f = torchlc.compile(lambda z, p: z ** (p * 1), backend=backend)
    x = torch.tensor([0.0, 2.0], dtype=f64).nonstd()
    with torch.no_grad():
        for p in ([2.0, 3.0], [-1.0, 0.5], [2.0, 3.0], [2.0]):
            p = torch.tensor(p, dtype=f64)
            _same(f(x, p), x**p)
    assert (backend.graphs, f.cache_info()[1]) == (2, 2)  # the last call has another shape


def test_smoothing_entered_and_left_between_calls():
    """Smoothing (width and kernel) changes the ε-part of a jump: each configuration has its graph, and
    leaving the block gives the exact derivative again."""
    f = torchlc.compile(lambda z: torch.heaviside(z, torch.tensor(0.0, dtype=f64)), backend="aot_eager")
    x = torch.tensor([0.0, 0.1], dtype=f64).nonstd()

    def ref():
        return torch.heaviside(x, torch.tensor(0.0, dtype=f64))

    with torch.no_grad():
        exact = f(x)
        _same(exact, ref())
        for cfg in (torchlc.smoothing(0.5), torchlc.smoothing(0.5, "logistic"), torchlc.smoothing(0.25)):
            with cfg:
                y = f(x)
                _same(y, ref())
            assert not torch.equal(torchlc.coeffs(y), torchlc.coeffs(exact))
            _same(f(x), ref())
    assert f.cache_info()[:2] == (4, 4)


def test_strict_raises_domain_error_as_eager_does():
    """Inside torchlc.strict() a compiled call runs eagerly: DomainError where eager raises it, with
    eager's message, and eager's result otherwise; outside, the graph (NaN as eager)."""
    backend = _Counting()
    f = torchlc.compile(lambda z: torch.log(z), backend=backend)
    bad = torchlc.eps() * torch.ones(2, dtype=f64)  # log of an infinitesimal: outside the field
    good = torch.tensor([1.0, 2.0], dtype=f64).nonstd()
    with torch.no_grad():
        _same(f(bad), torch.log(bad))  # NaN, compiled
        with torchlc.strict():
            with pytest.raises(torchlc.DomainError) as compiled_error:
                f(bad)
            with pytest.raises(torchlc.DomainError) as eager_error:
                torch.log(bad)
            _same(f(good), torch.log(good))
        assert str(compiled_error.value) == str(eager_error.value)
    assert backend.graphs == 1


def test_cache_is_an_lru_and_warns_past_the_recompile_limit(monkeypatch):
    """cache_size bounds the graphs kept (least recently used evicted first); past RECOMPILE_LIMIT
    traces it warns once, naming what changed."""
    monkeypatch.setattr(_compile, "RECOMPILE_LIMIT", 3)
    f = torchlc.compile(lambda z: z * 2, backend="aot_eager", cache_size=2)
    xs = {n: torch.ones(n, dtype=f64).nonstd() for n in (1, 2, 3)}
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in (1, 2, 1, 3):  # 1 is used again before 3 comes: 2 is evicted
            _same(f(xs[n]), xs[n] * 2)
        assert f.cache_info() == (2, 3, 2)
        _same(f(xs[1]), xs[1] * 2)
        assert f.cache_info()[1] == 3
        assert not [w for w in caught if "torchlc.compile" in str(w.message)]
        for n in (2, 3, 2):
            _same(f(xs[n]), xs[n] * 2)
    assert f.cache_info() == (2, 5, 2)
    msgs = [str(w.message) for w in caught if "torchlc.compile" in str(w.message)]
    assert len(msgs) == 1
    assert "recompile limit 3" in msgs[0] and "input signature" in msgs[0]
    with pytest.raises(ValueError, match="cache_size"):
        torchlc.compile(lambda z: z, cache_size=0)


def test_recompile_warning_names_the_closure_variable(monkeypatch):
    monkeypatch.setattr(_compile, "RECOMPILE_LIMIT", 1)
    scale = 1.0
    f = torchlc.compile(lambda z: z * scale, backend="aot_eager")
    x = _lc(2)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match=r"module or closure state: .*:scale 1.0 -> 2.0"):
        for scale in (1.0, 2.0):
            _same(f(x), x * scale)


def test_eager_rerun_after_a_failed_speculation_starts_from_the_unmutated_input():
    """A graph that mutates its input and speculated a support: when the speculation fails the input is
    restored before the call runs eagerly, so it is mutated once."""

    def fn(z):
        z.add_(1.0)
        return 1 / z

    f = torchlc.compile(fn, backend="aot_eager")
    for base in (1.0, -1.0):  # traced on 2 + ε; then 0 + ε: 1/ε leads with ε^-1 (speculation fails)
        x = torch.tensor([base, 1.0], dtype=f64).nonstd()
        r = x.detach().clone()
        with torch.no_grad():
            y, ref = f(x), fn(r)
        _same(y, ref)
        _same(x, r)
