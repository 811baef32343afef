"""The compiled Triton kernels on a real GPU (skipped without CUDA + triton)."""

import importlib.util

import pytest
import torch

from torchlc_geo import GeoSparseConfig, GeoSparseLinear, GeoSparseNet, build_connectivity

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
                       reason="needs a CUDA device and triton"),
]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("shape,B", [((16, 16), 256), ((64, 64), 100), ((7, 9), 3)])
def test_triton_matches_gather_on_cuda(dtype, tol, shape, B):
    n = shape[0] * shape[1]
    idx = build_connectivity(shape, 8, "hash", seed=1)
    ref = GeoSparseLinear(n, n, idx, compute_mode="gather").cuda().to(dtype)
    tri = GeoSparseLinear(n, n, idx, compute_mode="triton").cuda().to(dtype)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(B, n, device="cuda", dtype=dtype)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = ref(xa), tri(xb)
    torch.testing.assert_close(yb.float(), ya.float(), atol=tol, rtol=tol)
    gy = torch.randn_like(ya)
    ga = torch.autograd.grad(ya, [xa, ref.weight, ref.bias], gy)
    gb = torch.autograd.grad(yb, [xb, tri.weight, tri.bias], gy)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(b.float(), a.float(), atol=tol * 10, rtol=tol * 10)


@pytest.mark.parametrize("autocast", [False, True])
def test_auto_mode_is_triton_on_cuda_and_net_runs_graphed(autocast):
    net = GeoSparseNet(256, 1, GeoSparseConfig(shape=(16, 16), depth=2, k=8)).cuda()
    x = torch.randn(64, 256, device="cuda")
    assert net.blocks[0].fc1.resolved_mode(x.t()) == "triton"
    params = list(net.parameters())
    with torch.autocast("cuda", torch.bfloat16, enabled=autocast, cache_enabled=False):
        y = net(x)
        gref = torch.autograd.grad(y.float().sum(), params)
    # The eager autograd graph must not outlive this point: its AccumulateGrad nodes belong to the
    # default stream, and a capture whose backward meets them fails ("operation would make the
    # legacy stream depend on a capturing blocking stream"); this test used to keep `y` alive.
    y = y.detach()
    with torch.autocast("cuda", torch.bfloat16, enabled=autocast, cache_enabled=False):
        g = torch.cuda.make_graphed_callables(net, (x,))
        out = g(x)
        got = torch.autograd.grad(out.float().sum(), params)
    # the same kernels run eagerly and replayed: equal up to fp32 reassociation in the dense head
    torch.testing.assert_close(out, y, atol=1e-5, rtol=1e-5)
    for a, b in zip(got, gref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
