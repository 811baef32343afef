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
    assert "4 passed" in r.stdout, r.stdout[-2000:]


@pytest.fixture
def interpret():
    if not IN_INTERPRETER:
        pytest.skip("runs in the TRITON_INTERPRET=1 subprocess (test_kernels_in_interpreter_subprocess)")
    from torchlc_geo.kernels import triton_available

    assert triton_available("cpu")


@pytest.mark.parametrize("shape,k,B,pattern", [((3, 4), 8, 66, "local"), ((3, 3), 3, 5, "hash")])
def test_triton_layer_matches_reference(interpret, shape, k, B, pattern):
    n = shape[0] * shape[1]
    idx = build_connectivity(shape, k, pattern, seed=1)
    layer = GeoSparseLinear(n, n, idx, compute_mode="triton")
    x = torch.randn(B, n, requires_grad=True)
    y = layer(x)
    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    ref = dense_forward(x2, idx, w, b, n)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    gy = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, layer.weight, layer.bias], gy)
    exp = torch.autograd.grad(ref, [x2, w, b], gy)
    for a, e in zip(got, exp):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


def test_triton_ops_padding_and_bf16(interpret):
    from torchlc_geo.kernels import gather_fm, wgrad_fm

    xT = torch.randn(5, 3)
    idx = torch.tensor([[0, -1], [4, 4]], dtype=torch.int32)
    y = gather_fm(xT, idx, torch.tensor([[2.0, 9.0], [1.0, 1.0]]), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(y, torch.stack([2 * xT[0] + 1, 2 * xT[4]]))
    gw = wgrad_fm(xT, idx.clamp(min=0), torch.ones(2, 3))
    torch.testing.assert_close(gw, torch.stack([xT[[0, 0]].sum(1), xT[[4, 4]].sum(1)]))
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
