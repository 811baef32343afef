import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from torchlc_geo.sklearn import GeoSparseRegressor  # noqa: E402


def _data(n=240, f=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    y = np.tanh(X[:, 0] + X[:, 1]) + 0.5 * X[:, 5]
    return X, y


def test_fit_predict_score_learns():
    X, y = _data()
    est = GeoSparseRegressor(depth=2, k=9, epochs=80, lr=1e-2, random_state=0).fit(X, y)
    assert est.predict(X).shape == (240,)
    assert est.score(X, y) > 0.8
    assert est.model_.cfg.shape == (4, 4)


def test_params_roundtrip_clone_and_determinism():
    est = GeoSparseRegressor(depth=1, k=4, epochs=3, lr=1e-2)
    assert est.get_params()["lr"] == 1e-2
    est.set_params(k=8)
    assert clone(est).get_params()["k"] == 8
    X, y = _data(80)
    a = GeoSparseRegressor(depth=1, k=4, epochs=3, random_state=1).fit(X, y).predict(X)
    b = GeoSparseRegressor(depth=1, k=4, epochs=3, random_state=1).fit(X, y).predict(X)
    np.testing.assert_allclose(a, b)


def test_pipeline_and_cross_val_score_multioutput():
    X, y = _data(150)
    pipe = make_pipeline(StandardScaler(), GeoSparseRegressor(depth=1, k=4, epochs=20, standardize=False))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    Y = np.stack([y, -2 * y], 1)
    est = GeoSparseRegressor(depth=1, k=4, epochs=20).fit(X, Y)
    assert est.predict(X).shape == (150, 2)


def test_predict_before_fit_and_wrong_width():
    with pytest.raises(RuntimeError, match="not fitted"):
        GeoSparseRegressor().predict(np.zeros((2, 4)))
    X, y = _data(40, 9)
    est = GeoSparseRegressor(depth=1, k=4, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(np.zeros((2, 8)))
