import pytest
import torch
from _geo_ref import dense_forward
from hypothesis import given
from hypothesis import strategies as st

from torchlc_geo import (
    COMPUTE_MODES,
    DropPath,
    GeoSparseLinear,
    Norm,
    build_connectivity,
    geo_sparse_linear_fm,
)

MODES = [m for m in COMPUTE_MODES if m not in ("auto", "triton")]


@given(n_in=st.integers(1, 40), n_out=st.integers(1, 40), k=st.integers(1, 6), B=st.integers(1, 9),
       bias=st.booleans(), seed=st.integers(0, 10**6), mode=st.sampled_from(MODES))
def test_modes_match_dense_reference_values_and_grads(n_in, n_out, k, B, bias, seed, mode):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n_in, (n_out, k), generator=g, dtype=torch.int32)  # repeats allowed
    layer = GeoSparseLinear(n_in, n_out, idx, bias=bias, compute_mode=mode).double()
    x = torch.randn(B, n_in, generator=g, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True) if bias else None
    x2 = x.detach().clone().requires_grad_(True)
    ref = dense_forward(x2, idx, w, b, n_in)
    torch.testing.assert_close(y, ref)
    gy = torch.randn(B, n_out, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(y, [x, layer.weight] + ([layer.bias] if bias else []), gy)
    exp = torch.autograd.grad(ref, [x2, w] + ([b] if bias else []), gy)
    for a, e in zip(got, exp):
        torch.testing.assert_close(a, e)


def test_init_range_param_count_and_int32_buffer():
    layer = GeoSparseLinear(64, 64, build_connectivity((8, 8), 8))
    assert layer.idx.dtype == torch.int32
    assert "idx" in layer.state_dict()
    assert sum(p.numel() for p in layer.parameters()) == 64 * 8 + 64
    bound = 8 ** -0.5
    assert float(layer.weight.abs().max()) <= bound and float(layer.bias.abs().max()) <= bound
    assert float(layer.weight.std()) > 0.5 * bound / 3 ** 0.5  # actually spread over the range


def test_leading_dims_and_feature_major_agree():
    layer = GeoSparseLinear(12, 5, torch.randint(0, 12, (5, 3)))
    x = torch.randn(2, 3, 12)
    y = layer(x)
    assert y.shape == (2, 3, 5)
    torch.testing.assert_close(layer.forward_fm(x.reshape(-1, 12).t()).t().reshape(2, 3, 5), y)


def test_auto_mode_resolution():
    layer = GeoSparseLinear(4, 2, torch.tensor([[0, 1], [2, 3]]))
    x = torch.randn(4, 3)
    assert layer.resolved_mode(x) == "fused"
    seen = []

    def f(v):
        seen.append(layer.resolved_mode(v))
        return layer.forward_fm(v)

    torch.func.jvp(f, (x,), (torch.ones_like(x),))
    assert seen == ["gather"]


def test_jvp_and_double_backward_on_gather_path():
    layer = GeoSparseLinear(6, 4, torch.randint(0, 6, (4, 3))).double()
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.randn(6, 2, dtype=torch.float64)
    y, yt = torch.func.jvp(layer.forward_fm, (x,), (t,))
    # linear in x: the tangent is the layer without bias applied to t
    torch.testing.assert_close(yt, geo_sparse_linear_fm(t, layer.idx, layer.weight.detach()))
    layer.compute_mode = "gather"
    xr = x.clone().requires_grad_(True)
    gx = torch.autograd.grad(layer.forward_fm(xr).pow(2).sum(), xr, create_graph=True)[0]
    assert gx.requires_grad


def test_fused_rejects_double_backward():
    layer = GeoSparseLinear(6, 4, torch.randint(0, 6, (4, 3)), compute_mode="fused")
    x = torch.randn(6, 2, requires_grad=True)
    gx = torch.autograd.grad(layer.forward_fm(x).pow(2).sum(), x, create_graph=True)[0]
    with pytest.raises(RuntimeError):
        gx.sum().backward()


def test_bad_idx_rejected():
    with pytest.raises(ValueError):
        GeoSparseLinear(4, 2, torch.tensor([[0, 4], [1, 2]]))
    with pytest.raises(ValueError):
        GeoSparseLinear(4, 3, torch.tensor([[0, 1], [1, 2]]))


def test_bf16_fused_close_to_fp32():
    torch.manual_seed(0)
    layer = GeoSparseLinear(64, 64, build_connectivity((8, 8), 8))
    x = torch.randn(16, 64)
    ref = layer(x)
    got = layer.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    torch.testing.assert_close(got, ref, atol=3e-2, rtol=3e-2)


def test_droppath_drops_whole_samples_and_rescales():
    torch.manual_seed(0)
    dp = DropPath(0.5).train()
    y = dp(torch.ones(7, 1000))
    cols = y[0]
    assert set(torch.unique(y).tolist()) <= {0.0, 2.0}
    assert bool((y == cols).all())  # same decision for every feature of a sample
    assert 0.35 < float((cols > 0).float().mean()) < 0.65


@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_norm_feature_major_matches_torch(kind):
    x = torch.randn(10, 6, dtype=torch.float64)
    nrm = Norm(10, kind, dim=0).double()
    with torch.no_grad():
        nrm.weight.uniform_(0.5, 2)
        if kind == "layer":
            nrm.bias.normal_()
    if kind == "rms":
        ref = torch.nn.functional.rms_norm(x.t(), (10,), nrm.weight, 1e-6).t()
    else:
        ref = torch.nn.functional.layer_norm(x.t(), (10,), nrm.weight, nrm.bias, 1e-6).t()
    torch.testing.assert_close(nrm(x), ref)


def test_loading_other_connectivity_rebuilds_backward_tables():
    a = GeoSparseLinear(16, 16, build_connectivity((4, 4), 4, "hash", seed=1), compute_mode="fused")
    b = GeoSparseLinear(16, 16, build_connectivity((4, 4), 4, "hash", seed=2), compute_mode="fused")
    b.load_state_dict(a.state_dict())
    x = torch.randn(16, 3, requires_grad=True)
    gx_a = torch.autograd.grad(a.forward_fm(x).sum(), x)[0]
    gx_b = torch.autograd.grad(b.forward_fm(x).sum(), x)[0]
    torch.testing.assert_close(gx_a, gx_b)
