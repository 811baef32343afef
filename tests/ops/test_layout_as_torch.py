"""LC results are laid out in memory as torch lays out its results, so that stride-dependent code
(``.view`` after ``bmm``, ``.is_contiguous(memory_format=...)`` checks, channels-last pipelines)
behaves on LC inputs as on plain ones.

Two properties: over PyTorch's OpInfo samples, an LC result is contiguous wherever torch's is (torch's
linalg results are column-major where LC's are row-major: that direction is not claimed; the
interleaved planes of the first-order ``bmm`` and attention jets were not, and a ``.view`` that works
on torch's ``bmm`` result failed on LC's); and the memory-format arguments of ``clone``,
``contiguous``, ``to`` and the ``*_like`` factories give torch's strides (they were ignored: channels
last requests came out row-major)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils._pytree import tree_leaves, tree_map

import torchlc

pytest.importorskip("expecttest", reason="PyTorch's OpInfo database needs expecttest (the dev extra)")

def _lift(t):
    if isinstance(t, torch.Tensor) and t.dtype.is_floating_point and t.numel() > 0 and t.layout == torch.strided:
        return t.clone().nonstd(torch.ones_like(t))
    return t


# Transposes of linalg results: torch's LAPACK results are column-major and LC's row-major (the
# direction the property does not claim), so their transposes differ the other way round
_TRANSPOSED_LINALG = {"svd_lowrank", "pca_lowrank"}  # V = Vh.mH of linalg.svd


def _ops():
    from torchlc.coverage.runner import full_name, load_ops

    return [pytest.param(op, id=full_name(op)) for op in load_ops() if full_name(op) not in _TRANSPOSED_LINALG]


@pytest.mark.parametrize("op", _ops())
def test_lc_results_are_contiguous_where_torchs_are(op):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            samples = list(op.sample_inputs("cpu", torch.float64))[:4]
        except Exception:
            pytest.skip("no float64 CPU samples")
        checked = 0
        for si in samples:
            try:
                with torch.no_grad():
                    ref = op.op(si.input, *si.args, **si.kwargs)
                    got = op.op(_lift(si.input), *tree_map(_lift, si.args), **tree_map(_lift, si.kwargs))
            except Exception:  # the coverage page's business (docs/coverage.md)
                continue
            for r, g in zip(tree_leaves(ref), tree_leaves(got)):
                if isinstance(r, torch.Tensor) and isinstance(g, torch.Tensor) and r.numel() > 1:
                    assert tuple(g.shape) == tuple(r.shape) and g.dtype == r.dtype
                    if r.is_contiguous():
                        assert g.is_contiguous(), (r.stride(), g.stride())
                    checked += 1
    if not checked:
        pytest.skip("no sample ran on LC inputs")


_LAYOUTS = {  # how the input is laid out: applied to the plain tensor and to the LC one alike
    "contiguous": lambda t: t,
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
    "permuted": lambda t: t.permute(0, 2, 3, 1),
    "channels_last_3d": lambda t: t.unsqueeze(2).expand(2, 3, 2, 4, 5).contiguous(
        memory_format=torch.channels_last_3d),
    "sliced": lambda t: t[:, :, ::2],
}


def _input(layout):
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lay = _LAYOUTS[layout]
    plain, lc = lay(x), lay(x.nonstd(torch.ones_like(x)))
    assert lc.stride() == plain.stride()
    return plain, lc


_FORMATS = {"preserve": torch.preserve_format, "contiguous": torch.contiguous_format,
            "channels_last": torch.channels_last, "channels_last_3d": torch.channels_last_3d}
_OPS = {
    "clone": lambda t, f: t.clone(memory_format=f),
    "contiguous": lambda t, f: t.contiguous(memory_format=f),
    "to": lambda t, f: t.to(memory_format=f),
    "to_float32": lambda t, f: t.to(torch.float32, memory_format=f),
    "zeros_like": lambda t, f: torch.zeros_like(t, memory_format=f),
    "empty_like": lambda t, f: torch.empty_like(t, memory_format=f),
    "full_like": lambda t, f: torch.full_like(t, 2.0, memory_format=f),
    "randn_like": lambda t, f: torch.randn_like(t, memory_format=f),
}


@pytest.mark.parametrize("fmt", sorted(_FORMATS))
@pytest.mark.parametrize("name", sorted(_OPS))
@pytest.mark.parametrize("layout", sorted(_LAYOUTS))
def test_memory_format_arguments_give_torchs_strides(name, fmt, layout):
    x, lx = _input(layout)
    f, memory_format = _OPS[name], _FORMATS[fmt]
    torch.manual_seed(0)
    try:
        ref = f(x, memory_format)
    except RuntimeError as e:  # a rank torch refuses for the format (or contiguous(preserve)): so does LC
        with pytest.raises(RuntimeError, match=str(e).split("\n")[0][:40]):
            f(lx, memory_format)
        return
    torch.manual_seed(0)
    got = f(lx, memory_format)
    assert got.stride() == ref.stride()
    if name != "empty_like":  # LC's empty_like is zeros: uninitialised planes would be garbage terms
        assert torch.equal(torchlc.coeff(got, 0), ref)


def test_bmm_result_views_as_torchs():
    a, b = torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 5, 6, dtype=torch.float64)
    y = torch.bmm(a.nonstd(torch.ones_like(a)), b.nonstd(torch.ones_like(b)))
    assert y.stride() == torch.bmm(a, b).stride()
    assert y.view(12, 6).shape == (12, 6)
    torch.testing.assert_close(torchlc.coeff(y, 1), torch.bmm(a, torch.ones_like(b)) + torch.bmm(torch.ones_like(a), b))
