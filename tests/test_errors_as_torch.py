"""Arguments torch refuses are refused on LC inputs too, with torch's own error (never a silent
result): PyTorch's OpInfo error inputs, each with its floating tensors lifted to x.nonstd(1)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils._pytree import tree_leaves, tree_map

import torchlc
from torchlc._tensor import LCTensor

pytest.importorskip("expecttest", reason="PyTorch's OpInfo database needs expecttest (the dev extra)")


def _lift(t):
    if isinstance(t, torch.Tensor) and t.dtype.is_floating_point and t.layout == torch.strided:
        return t.clone().nonstd(torch.ones_like(t))
    return t


def _error_cases():
    from torchlc.coverage.runner import full_name, load_ops

    cases = []
    for op in load_ops():
        if op.error_inputs_func is None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                errors = list(op.error_inputs(torch.device("cpu")))
        except Exception:  # an OpInfo whose error inputs cannot be built here
            continue
        cases += [pytest.param(op, e, id=f"{full_name(op)}-{i}") for i, e in enumerate(errors)]
    return cases


@pytest.mark.parametrize("op, error", _error_cases())
def test_lc_refuses_what_torch_refuses_with_torchs_error(op, error):
    si = error.sample_input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.no_grad():
                op.op(si.input, *si.args, **si.kwargs)
        except Exception as e:
            plain = e
        else:
            pytest.skip("torch accepts this input here (a check for another device)")
        inp, args, kwargs = _lift(si.input), tree_map(_lift, si.args), tree_map(_lift, si.kwargs)
        if not any(isinstance(t, LCTensor) for t in tree_leaves((inp, args, kwargs))):
            pytest.skip("no floating tensor to lift")
        with pytest.raises(Exception) as lc, torch.no_grad():
            op.op(inp, *args, **kwargs)
    assert isinstance(lc.value, type(plain)), (plain, lc.value)


def test_a_rules_internal_failure_becomes_torchs_error():
    """The mechanism, not a case: a rule that crashes (IndexError) on arguments torch refuses gives
    torch's error; on arguments torch accepts, the crash itself."""
    from torchlc import _dispatch

    aten = torch.ops.aten
    rule = _dispatch.find_rule(aten.cumsum.default)

    def crashing(func, *args, **kwargs):
        raise IndexError("a rule's own crash")

    _dispatch.register([aten.cumsum.default], crashing, kind=_dispatch.kind_of(aten.cumsum.default), replace=True)
    try:
        x = torch.randn(3).nonstd(torch.ones(3))
        with pytest.raises(IndexError, match="Dimension out of range"):
            torch.cumsum(x, 5)
        with pytest.raises(IndexError, match="a rule's own crash"):
            torch.cumsum(x, 0)
    finally:
        _dispatch.register([aten.cumsum.default], rule, kind=_dispatch.kind_of(aten.cumsum.default), replace=True)
    y = torch.cumsum(torch.tensor([1.0, 2.0]).nonstd(), 0)
    assert torchlc.coeff(y, 1).tolist() == [1.0, 2.0]


def test_torchlc_errors_pass_through():
    """TruncationError, DomainError and NotImplementedError naming an op are torchlc's answers, not
    torch's: they are never replaced."""
    x = torch.tensor([0.0]).nonstd(torch.tensor([1.0]))
    with pytest.raises(torchlc.TruncationError):  # sin(ε) − ε is 0 through ε¹: its sign was truncated
        torch.sign(torch.sin(x) - x)
    with pytest.raises(NotImplementedError, match="aten::histc"):
        torch.ops.aten.histc(torch.tensor([1.0]).nonstd())


def test_gelu_and_t_refuse_as_torch():
    x = torch.randn(2, 3, 4).nonstd(torch.ones(2, 3, 4))
    with pytest.raises(RuntimeError, match="approximate argument must be either"):
        F.gelu(x, approximate="fast")
    with pytest.raises(RuntimeError, match="expects a tensor with <= 2 dimensions"):
        x.t()


def test_control_flow_exceptions_pass_through():
    """Subclasses of the plain error types are someone's own signal (here a stand-in for checkpointing's
    early stop): never replaced by a stand-in run, which would itself fail in their context."""
    from torchlc import _dispatch

    aten = torch.ops.aten

    class Stop(RuntimeError):
        pass

    rule = _dispatch.find_rule(aten.cumsum.default)

    def stopping(func, *args, **kwargs):
        raise Stop("stop here")

    _dispatch.register([aten.cumsum.default], stopping, kind=_dispatch.kind_of(aten.cumsum.default), replace=True)
    try:
        with pytest.raises(Stop):
            torch.cumsum(torch.randn(3).nonstd(torch.ones(3)), 5)  # torch would refuse dim 5
    finally:
        _dispatch.register([aten.cumsum.default], rule, kind=_dispatch.kind_of(aten.cumsum.default), replace=True)


_POOL_CALLS = {
    "max_pool2d padding past half the window": lambda x: F.max_pool2d(x, 2, padding=4),
    "max_pool2d negative padding": lambda x: F.max_pool2d(x, 2, padding=-1),
    "max_pool2d padding past the dilated window": lambda x: F.max_pool2d(x, 3, dilation=2, padding=2),
    "max_pool2d stride 0": lambda x: F.max_pool2d(x, 2, stride=0),
    "max_pool3d padding past half the window": lambda x: F.max_pool3d(x.unsqueeze(2), 2, padding=(0, 4, 4)),
    "adaptive_max_pool2d one size": lambda x: torch.ops.aten.adaptive_max_pool2d(x, [3]),
    "fractional_max_pool2d output past the input": lambda x: F.fractional_max_pool2d(
        x, 2, output_size=(9, 9), _random_samples=torch.rand(1, 1, 2)),
    "fractional_max_pool2d window past the input": lambda x: F.fractional_max_pool2d(
        x, 9, output_size=(2, 2), _random_samples=torch.rand(1, 1, 2)),
}


@pytest.mark.parametrize("call", sorted(_POOL_CALLS))
def test_pooling_refuses_what_torch_refuses_on_nonempty_inputs(call):
    """The max-pooling rules compute their windows from the arguments: torch's checks run first (its
    meta kernel, once per call signature), so arguments torch refuses raise its error on LC inputs
    too. Before, a padding past half the window or a fractional output larger than the input gave a
    result, and stride 0 a ZeroDivisionError."""
    x = torch.randn(1, 1, 8, 8)
    with pytest.raises(RuntimeError) as plain:
        _POOL_CALLS[call](x)
    with pytest.raises(RuntimeError) as lc:
        _POOL_CALLS[call](x.nonstd(torch.ones_like(x)))
    assert str(lc.value).splitlines()[0] == str(plain.value).splitlines()[0]


def test_adaptive_max_pool_of_output_size_zero_is_empty_as_torch():
    x = torch.randn(1, 2, 8, 8)
    y, i = torch.ops.aten.adaptive_max_pool2d(x.nonstd(torch.ones_like(x)), [0, 0])
    want, wi = torch.ops.aten.adaptive_max_pool2d(x, [0, 0])
    assert y.shape == want.shape and i.shape == wi.shape and i.dtype == wi.dtype
