"""Triton kernels under the interpreter (CPU, TRITON_INTERPRET=1) at small shapes.

The interpreter must be switched on before ``triton`` is first imported (its standard library is
decorated at import time), so unless this process already runs with ``TRITON_INTERPRET=1`` the
tests below are run by one subprocess pytest call with the variable set.
"""

import importlib.util
import os
import subprocess
import sys

import pytest
import torch
from _geo_ref import dense_forward

from torchlc_geo import GeoSparseLinear, build_connectivity, reverse_connectivity

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="triton is not installed (pip install --no-deps triton)")


IN_INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"


@pytest.mark.skipif(IN_INTERPRETER, reason="already inside the interpreter run")
def test_kernels_in_interpreter_subprocess():
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "9 passed" in r.stdout, r.stdout[-2000:]


@pytest.fixture
def interpret():
    if not IN_INTERPRETER:
        pytest.skip("runs in the TRITON_INTERPRET=1 subprocess (test_kernels_in_interpreter_subprocess)")
    from torchlc_geo.kernels import triton_available

    assert triton_available("cpu")


def _assert_matches_dense(layer, x, idx, n):
    """The layer's output and its gradients (input, weight, bias) against the dense reference."""
    y = layer(x)
    x2 = x.detach().clone().requires_grad_(True)
    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    ref = dense_forward(x2, idx, w, b, n)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    gy = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, layer.weight, layer.bias], gy)
    exp = torch.autograd.grad(ref, [x2, w, b], gy)
    for a, e in zip(got, exp):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape,k,B,pattern", [((3, 4), 8, 66, "local"), ((3, 3), 3, 5, "hash")])
def test_triton_layer_matches_reference(interpret, shape, k, B, pattern):
    n = shape[0] * shape[1]
    idx = build_connectivity(shape, k, pattern, seed=1)
    layer = GeoSparseLinear(n, n, idx, compute_mode="triton")
    x = torch.randn(B, n, requires_grad=True)
    _assert_matches_dense(layer, x, idx, n)


def test_triton_ops_padding_and_bf16(interpret):
    from torchlc_geo.kernels import gather_fm, wbgrad_fm, wgrad_fm

    xT = torch.randn(5, 3)
    idx = torch.tensor([[0, -1], [4, 4]], dtype=torch.int32)
    y = gather_fm(xT, idx, torch.tensor([[2.0, 9.0], [1.0, 1.0]]), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(y, torch.stack([2 * xT[0] + 1, 2 * xT[4]]))
    gw = wgrad_fm(xT, idx.clamp(min=0), torch.ones(2, 3))
    torch.testing.assert_close(gw, torch.stack([xT[[0, 0]].sum(1), xT[[4, 4]].sum(1)]))
    gy = torch.randn(2, 3)
    gw2, gb2 = wbgrad_fm(xT, idx.clamp(min=0), gy)
    torch.testing.assert_close(gw2, wgrad_fm(xT, idx.clamp(min=0), gy), atol=0, rtol=0)
    torch.testing.assert_close(gb2, gy.sum(1))
    # weights read through an edge-id table (the input-gradient form); eid of a padded slot unused
    eid = torch.tensor([[3, 0], [1, 2]], dtype=torch.int32)
    w = torch.tensor([[2.0, 3.0], [5.0, 7.0]])
    y = gather_fm(xT, idx, w, None, eid)
    torch.testing.assert_close(y, torch.stack([7 * xT[0], 3 * xT[4] + 5 * xT[4]]))
    yb = gather_fm(xT.bfloat16(), idx, torch.ones(2, 2).bfloat16(), None)
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb.float(), torch.stack([xT[0], 2 * xT[4]]), atol=3e-2, rtol=3e-2)


def test_custom_op_registration_and_opcheck(interpret):
    from torchlc_geo.kernels import geo_sparse_fm

    idx = build_connectivity((3, 3), 4)
    ro, re = reverse_connectivity(idx, 9)
    args = (torch.randn(9, 4, requires_grad=True), idx, torch.randn(9, 4, requires_grad=True),
            torch.randn(9, requires_grad=True), ro, re)
    assert geo_sparse_fm(*args).shape == (9, 4)
    torch.library.opcheck(torch.ops.torchlc_geo.geo_sparse_fm.default, args,
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    bargs = (torch.randn(9, 4), args[0].detach(), idx, ro, re, args[2].detach(), True)
    torch.library.opcheck(torch.ops.torchlc_geo.bwd_fm.default, bargs, test_utils=("test_schema", "test_faketensor"))
    gx, gw, gb = torch.ops.torchlc_geo.bwd_fm(*bargs)
    y = geo_sparse_fm(*args)
    exp = torch.autograd.grad(y, [args[0], args[2], args[3]], bargs[0])
    for a, e in zip((gx, gw, gb), exp):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)


def _custom_vs_eager(x, layer, gy):
    from torchlc_geo.kernels import geo_sparse_fm, geo_sparse_fm_eager

    outs = []
    for fn in (geo_sparse_fm, geo_sparse_fm_eager):
        xx = x.detach().clone().requires_grad_(True)
        w = layer.weight.detach().clone().requires_grad_(True)
        b = layer.bias.detach().clone().requires_grad_(True)
        y = fn(xx, layer.idx, w, b, layer.rev_idx, layer.rev_eid)
        outs.append((y, *torch.autograd.grad(y, [xx, w, b], gy)))
    return outs


def test_eager_path_equals_custom_op_and_reference(interpret):
    # both entry points launch the same kernels: bitwise equal; and equal to the dense reference
    shape, B = (5, 7), 37
    n = shape[0] * shape[1]
    idx = build_connectivity(shape, 8, "hash", seed=3)
    layer = GeoSparseLinear(n, n, idx, compute_mode="triton")
    xT = torch.randn(n, B)
    gy = torch.randn(n, B)
    (a, *ga), (b, *gb) = _custom_vs_eager(xT, layer, gy)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, atol=0, rtol=0)
    x2 = xT.t().clone().requires_grad_(True)
    w = layer.weight.detach().clone().requires_grad_(True)
    bb = layer.bias.detach().clone().requires_grad_(True)
    ref = dense_forward(x2, idx, w, bb, n)
    torch.testing.assert_close(a.t(), ref, atol=1e-5, rtol=1e-5)
    exp = torch.autograd.grad(ref, [x2, w, bb], gy.t())
    torch.testing.assert_close(ga[0].t(), exp[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ga[1], exp[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ga[2], exp[2], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fwd,wgrad,fused", [((16, 16, 4), (16, 16, 4, 3), None),
                                             ((64, 32, 4), (32, 64, 4, 1), (8, 32, 4)),
                                             ((16, 128, 4), (16, 16, 4, 5), None),
                                             ((16, 16, 4), (16, 16, 4, 1), (64, 16, 4))])
def test_launch_configs_and_batch_splits(interpret, fwd, wgrad, fused, monkeypatch):
    # every tile shape / split count computes the same function (masks at ragged edges, split-K
    # weight gradient reduced afterwards, one-launch backward or two kernels)
    from torchlc_geo.kernels import ops

    over = {"fwd": fwd, "bwd": fwd, "wgrad": wgrad}
    if fused is not None:
        over["fused_bwd"] = fused
    monkeypatch.setattr(ops, "LAUNCH_OVERRIDE", over)
    assert (ops.bwd_config(30, 30, 75, 5) is None) == (wgrad[3] > 1 and fused is None)
    shape, B = (6, 5), 75
    n = shape[0] * shape[1]
    idx = build_connectivity(shape, 5, "random", seed=2)
    layer = GeoSparseLinear(n, n, idx, compute_mode="triton")
    x = torch.randn(B, n, requires_grad=True)
    _assert_matches_dense(layer, x, idx, n)
