"""The dispatch layer: one registration API, one rule per op, the fallback chain's errors."""

from __future__ import annotations

import pytest
import torch

import torchlc
from torchlc import _dispatch

aten = torch.ops.aten


def test_every_rule_has_a_known_kind():
    ops = _dispatch.registered()
    assert len(ops) > 250
    for op in ops:
        assert _dispatch.kind_of(op) in _dispatch.KINDS, op


def test_registering_an_op_twice_raises_naming_both_rules():
    def other(func, *args, **kwargs):
        raise AssertionError("never called")

    with pytest.raises(_dispatch.RegistrationError, match=r"aten\.sin\.default already has a rule"):
        _dispatch.register([aten.sin.default], other)
    with pytest.raises(_dispatch.RegistrationError):
        _dispatch.implements([aten.add.Tensor])(other)
    # the original rule is untouched
    y = torch.sin(torch.tensor(0.0).nonstd())
    assert torchlc.coeff(y, 1).item() == 1.0


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown rule kind"):
        _dispatch.register([aten.sin.default], lambda *a: None, kind="magic")


def test_register_linear_op_refuses_a_second_registration_unless_replace():
    lib = torch.library.Library("torchlc_test_dispatch", "DEF")
    lib.define("triple(Tensor x) -> Tensor")
    lib.impl("triple", lambda x: 3 * x, "CompositeExplicitAutograd")
    op = torch.ops.torchlc_test_dispatch.triple.default
    torchlc.register_linear_op(op)
    with pytest.raises(_dispatch.RegistrationError, match="replace=True"):
        torchlc.register_linear_op(op)
    torchlc.register_linear_op(op, replace=True)
    y = op(torch.tensor([1.0, 2.0]).nonstd())
    assert torchlc.coeff(y, 0).tolist() == [3.0, 6.0]
    assert torchlc.coeff(y, 1).tolist() == [3.0, 3.0]
    assert _dispatch.kind_of(op) == "per_plane"


def test_missing_rule_names_the_op_once():
    x = torch.tensor([1.0, 2.0]).nonstd()
    with pytest.raises(NotImplementedError) as info:
        torch.ops.aten.histc(x)
    msg = str(info.value)
    assert "aten::histc" in msg and "aten.aten::" not in msg


def test_recurrent_ops_are_composites_and_plain_calls_reach_no_torchlc_kernel():
    """The recurrent layers are composites like F.linear: torchlc registers kernels only at the
    PythonTLSSnapshot key, which plain calls never reach (a kernel at the autograd keys, as these ops
    had before, ran Python on every plain LSTM call: +30% on a small one)."""
    assert _dispatch.kind_of(aten.lstm.input) == "composite"
    assert _dispatch.kind_of(aten._softmax.default) == "jet"
    composites = _dispatch.registered("composite")
    assert aten.lstm.data in composites and aten.gru_cell.default in composites
    for op in composites:
        name = op._schema.name + ("" if op._overloadname == "default" else "." + op._overloadname)
        ours = [line for line in torch._C._dispatch_dump(name).splitlines()
                if "torchlc" in line and not line.startswith("debug")]
        assert ours and all(line.startswith("PythonTLSSnapshot:") for line in ours), (name, ours)


def test_rule_hash_covers_rule_code_only():
    from torchlc import _rulehash

    files = {p.relative_to(_rulehash._ROOT).as_posix() for p in _rulehash._files()}
    assert {"ops/arithmetic.py", "_algebra.py", "_dispatch.py", "layouts/boxed.py"} <= files
    assert not [f for f in files if f.startswith(("bench", "coverage")) or f in ("api.py", "__main__.py")]
    assert torchlc.ops.RULES_HASH == _rulehash.RULES_HASH


def _pickled_program():
    """The program whose result tests/data holds, as 0.1.0 computed it: its division was the product
    with the reciprocal (today's first-order division rounds as the plain one, a₀/b₀)."""
    x = torch.tensor([0.5, -1.0, 2.0]).nonstd(torch.tensor([1.0, 0.0, 2.0]))
    return torch.sin(x) * (1 + x * x) ** -1


def test_pickles_written_by_0_1_0_still_load():
    """tests/data holds files written by torchlc 0.1.0 (commit 14af904): they name
    torchlc.ops._rebuild, which must keep loading."""
    import pathlib
    import pickle

    data = pathlib.Path(__file__).parent / "data"
    ref = _pickled_program()
    with open(data / "lctensor_0.1.0.pickle", "rb") as f:
        y = pickle.load(f)
    assert torchlc.support(y) == torchlc.support(ref)
    assert torch.equal(torchlc.coeffs(y), torchlc.coeffs(ref))
    saved = torch.load(data / "lctensor_0.1.0.pt", weights_only=False)
    assert torch.equal(torchlc.coeffs(saved["tensor"]), torchlc.coeffs(ref))
    assert torch.equal(torchlc.coeffs(saved["state_dict"]["lc"]), torchlc.coeffs(ref))
    assert torchlc.coeff(saved["boxed"], 1).tolist() == [1.0, 2.0]


def test_decomposed_registration_needs_a_torch_decomposition():
    with pytest.raises(_dispatch.RegistrationError, match="no torch._decomp decomposition"):
        _dispatch.decomposed([aten.histc.default])
    assert _dispatch.kind_of(aten.histc.default) is None  # nothing was registered
