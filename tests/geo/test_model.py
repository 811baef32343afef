import pytest
import torch

from torchlc_geo import (
    GeoSparseConfig,
    GeoSparseNet,
    Heaviside,
    MixedActivation,
    PSANNActivation,
    build_activation,
)


def test_shapes_and_input_conventions():
    net = GeoSparseNet(64, 3, GeoSparseConfig(shape=(8, 8), depth=2, k=8))
    x = torch.randn(4, 64)
    y = net(x)
    assert y.shape == (4, 3)
    torch.testing.assert_close(net(x.reshape(4, 8, 8)), y)
    torch.testing.assert_close(net(x.reshape(2, 2, 64)), y.reshape(2, 2, 3))
    with pytest.raises(ValueError, match="input must have shape"):
        net(torch.randn(4, 63))


def test_block_matches_literal_formula_for_all_norms():
    torch.manual_seed(0)
    for norm in ("rms", "layer", "none"):
        net = GeoSparseNet(16, 2, GeoSparseConfig(shape=(4, 4), depth=2, k=4, norm=norm)).double()
        for p in net.parameters():
            torch.nn.init.normal_(p)
        x = torch.randn(5, 16, dtype=torch.float64)
        h = x.t()
        for b in net.blocks:
            h = h + b.alpha * b.fc2.forward_fm(b.act(b.fc1.forward_fm(b.norm(h))))
        torch.testing.assert_close(net(x), net.head(h.t()))


def test_alpha_init_and_drop_path_schedule():
    net = GeoSparseNet(16, 1, shape=(4, 4), depth=5, k=4, drop_path_max=0.4, residual_alpha_init=0.0)
    assert [b.drop_path.p for b in net.blocks] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert all(float(b.alpha) == 0.0 for b in net.blocks)
    # α = 0: blocks are the identity, the net is stem + head
    x = torch.randn(3, 16)
    torch.testing.assert_close(net.eval()(x), net.head(x))


def test_stems_dense_and_resampling():
    net = GeoSparseNet(10, 1, shape=(4, 4), depth=1, k=4)
    assert isinstance(net.stem, torch.nn.Linear)
    net = GeoSparseNet(64, 1, shape=(4, 4), depth=1, k=4, input_shape=(8, 8))
    assert net.stem.idx.shape == (16, 4) and int(net.stem.idx.max()) < 64
    assert net(torch.randn(2, 8, 8)).shape == (2, 1)


def test_connectivity_buffers_differ_per_block_for_random_patterns():
    net = GeoSparseNet(64, 1, shape=(8, 8), depth=2, k=4, pattern="hash", radius=2)
    idxs = [net.blocks[i].fc1.idx for i in range(2)] + [net.blocks[0].fc2.idx]
    assert not torch.equal(idxs[0], idxs[1]) and not torch.equal(idxs[0], idxs[2])
    assert all(i.dtype == torch.int32 for i in idxs)


def test_psann_activation_values_and_config():
    act = PSANNActivation(3, {"amp_init": 2.0, "freq_init": 3.0, "damp_init": 0.5, "decay_mode": "relu"}, dim=-1)
    z = torch.tensor([[-1.0, 0.3, 2.0]])
    expect = 2.0 * torch.exp(-0.5 * torch.relu(z)) * torch.sin(3.0 * z)
    torch.testing.assert_close(act(z), expect, atol=1e-5, rtol=1e-5)
    ph = build_activation("phase_psann", 3, {"phase_init": 0.7, "decay_mode": "none"}, dim=-1)
    torch.testing.assert_close(ph(z), torch.sin(z + 0.7), atol=1e-5, rtol=1e-5)
    frozen = PSANNActivation(4, {"learnable": ["frequency"]})
    assert sum(p.numel() for p in frozen.parameters()) == 4
    bounded = PSANNActivation(2, {"amp_init": 5.0, "bounds": {"amplitude": (0.0, 1.5)}}, dim=-1)
    assert float(bounded(torch.tensor([[1.0, 1.0]])).max()) <= 1.5
    ranged = PSANNActivation(100, {"freq_range": (1.0, 2.0), "seed": 1})
    f = torch.nn.functional.softplus(ranged.raw_frequency)
    assert 1.0 <= float(f.min()) < 1.2 and 1.8 < float(f.max()) <= 2.0
    with pytest.raises(ValueError, match="unknown activation_config key"):
        PSANNActivation(2, {"amplitude": 1.0})


def test_heaviside_threshold_convention():
    assert Heaviside()(torch.tensor([-0.0, 0.0, 1e-30, -1e-30])).tolist() == [0.5, 0.5, 1.0, 0.0]


def test_mixed_activation_assigns_neurons_and_params():
    act = MixedActivation(10, ["relu", "psann"], [0.3, 0.7], mix_layout="random", mix_seed=3, dim=0)
    assert act.counts == [3, 7]
    assert sum(p.numel() for p in act.parameters()) == 3 * 7
    z = torch.linspace(-2, 2, 10)[:, None].repeat(1, 2)
    y = act(z)
    relu_rows = act.sel0
    torch.testing.assert_close(y[relu_rows], torch.relu(z[relu_rows]))
    ps_rows = act.sel1
    torch.testing.assert_close(y[ps_rows], torch.exp(-0.1 * z[ps_rows].abs()) * torch.sin(z[ps_rows]),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="sum to 1"):
        MixedActivation(4, ["relu", "tanh"], [0.5, 0.6])


@pytest.mark.parametrize("activation", ["relu", "tanh", "heaviside", "psann", "phase_psann", "mixed"])
def test_every_activation_trains_a_step(activation):
    cfg = GeoSparseConfig(shape=(4, 4), depth=2, k=4, activation=activation,
                          activation_config={"types": ["relu", "phase_psann"]} if activation == "mixed" else None)
    torch.manual_seed(0)
    net = GeoSparseNet(16, 1, cfg)
    x, y = torch.randn(32, 16), torch.randn(32, 1)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_bf16_autocast_forward_backward():
    net = GeoSparseNet(64, 1, shape=(8, 8), depth=2, k=8)
    x = torch.randn(8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    y.float().sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("norm", ["rms", "none"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_block_matches_generic_path(norm, activation, bias):
    from torchlc_geo import GeoSparseLinear

    torch.manual_seed(0)
    cfg = GeoSparseConfig(shape=(6, 5), depth=2, k=8, norm=norm, activation=activation, bias=bias,
                          pattern="hash", residual_alpha_init=0.5)
    net = GeoSparseNet(30, 2, cfg).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(7, 30, dtype=torch.float64)
    assert net.blocks[0]._fused_ok(x.t().contiguous())
    y = net(x)
    g = torch.autograd.grad(y.pow(2).sum(), list(net.parameters()))
    for m in net.modules():
        if isinstance(m, GeoSparseLinear):
            m.compute_mode = "gather"
    assert not net.blocks[0]._fused_ok(x.t().contiguous())
    y2 = net(x)
    g2 = torch.autograd.grad(y2.pow(2).sum(), list(net.parameters()))
    torch.testing.assert_close(y, y2)
    for a, b in zip(g, g2):
        torch.testing.assert_close(a, b)
