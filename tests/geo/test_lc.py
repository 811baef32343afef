"""GeoSparseNet on Levi-Civita inputs (torchlc core contract, docs/api.md).

Skips cleanly while ``torchlc`` (or a needed part of its API) is not importable.
"""

from fractions import Fraction

import pytest
import torch

torchlc = pytest.importorskip("torchlc")
for _name in ("nonstd", "coeff", "ngrad", "LCTensor"):
    if not hasattr(torchlc, _name):
        pytest.skip(f"torchlc.{_name} not available yet", allow_module_level=True)

from torchlc_geo import GeoSparseConfig, GeoSparseNet  # noqa: E402


def _net(activation, compute_mode="auto", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = GeoSparseConfig(shape=(4, 4), depth=2, k=4, activation=activation, compute_mode=compute_mode, **kw)
    net = GeoSparseNet(16, 2, cfg).double()
    with torch.no_grad():
        for b in net.blocks:
            b.alpha.fill_(0.7)  # make the blocks matter
    return net


def _lc_modes():
    modes = ["auto", "gather", "embedding_bag", "scatter"]
    if hasattr(torchlc, "register_linear_op"):
        from torchlc_geo.kernels.ops import LC_RULE_REGISTERED  # noqa: F401

        modes.append("triton")
    return modes


@pytest.mark.parametrize("activation", ["tanh", "psann", "phase_psann", "relu"])
@pytest.mark.parametrize("mode", _lc_modes())
def test_nonstd_planes_match_jvp(activation, mode):
    if mode == "triton":
        from torchlc_geo.kernels import ops

        if not ops.LC_RULE_REGISTERED:
            pytest.skip("torchlc.register_linear_op exists but the rule did not register")
    net = _net(activation, mode)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 16, generator=g, dtype=torch.float64)
    v = torch.randn(3, 16, generator=g, dtype=torch.float64)
    y = net(x.nonstd(v))
    assert isinstance(y, torchlc.LCTensor)
    net_plain = _net(activation, "gather")
    net_plain.load_state_dict(net.state_dict())
    ref, tangent = torch.func.jvp(net_plain, (x,), (v,))
    torch.testing.assert_close(torchlc.coeff(y, 0).detach(), ref.detach())
    torch.testing.assert_close(torchlc.coeff(y, 1).detach(), tangent.detach())


def test_nonstd_with_norm_layer_and_mixed_activation():
    net = _net("mixed", norm="layer", activation_config={"types": ["tanh", "psann"]})
    x = torch.randn(2, 16, dtype=torch.float64)
    v = torch.randn(2, 16, dtype=torch.float64)
    y = net(x.nonstd(v))
    ref, tangent = torch.func.jvp(net, (x,), (v,))
    torch.testing.assert_close(torchlc.coeff(y, 0).detach(), ref.detach())
    torch.testing.assert_close(torchlc.coeff(y, 1).detach(), tangent.detach())


def test_heaviside_ngrad_on_threshold_shows_dirac_mass():
    net = _net("heaviside", norm="none")
    with torch.no_grad():
        for b in net.blocks:
            b.fc1.bias.zero_()
    x = torch.zeros(1, 16, dtype=torch.float64)  # every first-layer pre-activation is exactly 0
    v = torch.ones(1, 16, dtype=torch.float64)
    d = torchlc.ngrad(net, x, v)
    c_inf = torchlc.coeff(d, -1)
    assert float(c_inf.detach().abs().max()) > 1e-3  # the jump of H at 0, divided by ε
    # the jump equals f(x + εv) − f(x) evaluated by the step's one-sided limit
    with torch.no_grad():
        ypos = net(x + 1e-9 * v)
        y0 = net(x)
    torch.testing.assert_close(c_inf.detach(), (ypos - y0), atol=1e-6, rtol=1e-6)
    # off the threshold the same net has no ε⁻¹ part (up to rounding: the plain f(x) runs the fused
    # kernel, the LC evaluation the gather path, which sum in a different order)
    x_off = torch.full((1, 16), 0.3, dtype=torch.float64)
    d_off = torchlc.ngrad(net, x_off, v)
    assert float(torchlc.coeff(d_off, Fraction(-1)).detach().abs().max()) < 1e-12
