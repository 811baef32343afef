"""Layouts are objects in a registry: a new layout is one class and one register() call, and the
tensor class, wrap and the rules work with it unchanged."""

from __future__ import annotations

import pickle

import pytest
import torch

import torchlc
from torchlc import layouts
from torchlc.layouts import Layout


class ElementMajor(Layout):
    """A test layout: the planes stored element-major, (*shape, T) contiguous. Data-movement ops
    cannot run on this storage directly (the term dimension is last), so rules see decoded planes."""

    name = "test-element-major"
    inner_names = ("_t0",)

    def encode(self, planes, support):
        return (planes.movedim(0, -1).contiguous(),)

    def decode(self, inner, support, shape, dtype):
        return inner[0].movedim(-1, 0)


ELEMENT_MAJOR = layouts.register(ElementMajor())


def test_registry_lists_the_built_in_layouts():
    assert {"planes", "boxed", "csr"} <= set(layouts.names())
    assert layouts.get("planes") is layouts.PLANES
    with pytest.raises(ValueError, match="unknown layout 'nope'"):
        layouts.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        layouts.register(ElementMajor())


def _program(x):
    y = torch.sin(x) * x + x.flip(0) / (2 + x)
    return torch.cat([y, y[:2] * 3]).reshape(2, -1).sum(0)


def test_a_fourth_layout_gives_the_same_numbers():
    x = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    v = torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=torch.float64)
    ref = _program(x.nonstd(v, order=2))
    with layouts.force("test-element-major"):
        lc = x.nonstd(v, order=2)
        assert torchlc.layout(lc) == "test-element-major"
        res = _program(lc)
        assert torchlc.layout(res) == "test-element-major"
    assert torchlc.support(res) == torchlc.support(ref)
    assert torch.equal(torchlc.coeffs(res), torchlc.coeffs(ref))
    # pickles through the planes, loads back by policy
    back = pickle.loads(pickle.dumps(res))
    assert torch.equal(torchlc.coeffs(back), torchlc.coeffs(ref))


def test_forcing_an_unknown_layout_names_the_choices():
    with pytest.raises(ValueError, match="choose one of"), layouts.force("sparse-ish"):
        pass
