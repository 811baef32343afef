import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from torchlc_geo import (
    GeoSparseConfig,
    GeoSparseNet,
    count_params,
    dense_baselines,
    geo_macs,
    geo_param_breakdown,
    geo_param_count,
    mlp_cost,
    residual_mlp_cost,
)

ACTS = st.sampled_from(["relu", "tanh", "heaviside", "psann", "phase_psann", "mixed"])


@given(H=st.integers(1, 6), W=st.integers(1, 6), depth=st.integers(0, 3), k=st.integers(1, 9),
       act=ACTS, norm=st.sampled_from(["rms", "layer", "none"]), bias=st.booleans(),
       input_dim=st.integers(1, 40), output_dim=st.integers(1, 4),
       learn=st.sampled_from([None, ["amplitude"], [], ["decay", "frequency"]]),
       phase_trainable=st.booleans(), ratios=st.sampled_from([None, [0.25, 0.75], [1.0, 0.0]]))
def test_analytic_count_equals_numel(H, W, depth, k, act, norm, bias, input_dim, output_dim, learn,
                                     phase_trainable, ratios):
    acfg = {"phase_trainable": phase_trainable}
    if learn is not None:
        acfg["learnable"] = learn
    if act == "mixed":
        acfg.update(types=["psann", "phase_psann"], ratios=ratios)
    cfg = GeoSparseConfig(shape=(H, W), depth=depth, k=k, activation=act, activation_config=acfg, norm=norm,
                          bias=bias, allow_repeats=True, wrap_mode="wrap")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = GeoSparseNet(input_dim, output_dim, cfg)
    assert geo_param_count(input_dim, output_dim, cfg) == count_params(net)


def test_breakdown_known_values():
    b = geo_param_breakdown(256, 1, GeoSparseConfig(shape=(16, 16), depth=8, k=8, activation="psann"))
    assert b == {"stem": 0, "norm": 8 * 256, "sparse": 8 * 2 * (256 * 8 + 256), "activation": 8 * 3 * 256,
                 "alpha": 8, "head": 257, "total": 2048 + 36864 + 6144 + 8 + 257}


@pytest.mark.parametrize("kind", ["resmlp", "mlp"])
@pytest.mark.parametrize("cfg,input_dim", [
    (GeoSparseConfig(shape=(16, 16), depth=8, k=8), 256),
    (GeoSparseConfig(shape=(8, 8), depth=4, k=16, activation="psann"), 10),
    (GeoSparseConfig(shape=(32, 32), depth=2, k=4), 1024),
    (GeoSparseConfig(shape=(12, 12), depth=6, k=32, norm="layer"), 144),
])
def test_dense_baselines_matched_within_one_percent(kind, cfg, input_dim):
    base = dense_baselines(input_dim, 3, cfg, kind=kind)
    p_geo = geo_param_count(input_dim, 3, cfg)
    m_geo = geo_macs(input_dim, 3, cfg)
    model, info = base["equal_params"]
    assert abs(count_params(model) - p_geo) / p_geo <= 0.01
    model, info = base["equal_flops"]
    macs = (mlp_cost(input_dim, 3, info["widths"], "macs") if kind == "mlp"
            else residual_mlp_cost(input_dim, 3, info["width"], info["hidden"], cfg.norm, "macs"))
    assert abs(macs - m_geo) / m_geo <= 0.01
    model, info = base["equal_neurons"]
    assert (info["widths"] if kind == "mlp" else [info["width"]]) [0] == cfg.n
    for model, info in base.values():
        assert model(torch.randn(2, input_dim)).shape == (2, 3)
        assert info["params"] == count_params(model)
