"""scikit-learn style estimator: :class:`GeoSparseRegressor` (scikit-learn is an optional extra).

With scikit-learn installed the estimator derives from ``BaseEstimator`` and ``RegressorMixin``
and works in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``; without it, a minimal
``get_params``/``set_params``/``score`` implementation is used.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from .model import GeoSparseConfig, GeoSparseNet
from .train import Data, TrainConfig, fit
from .utils import seed_all

__all__ = ["GeoSparseRegressor"]

try:  # optional dependency
    from sklearn.base import BaseEstimator, RegressorMixin

    _HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    _HAVE_SKLEARN = False

    class BaseEstimator:  # minimal stand-in
        def get_params(self, deep=True):
            names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
            return {n: getattr(self, n) for n in names}

        def set_params(self, **params):
            for k, v in params.items():
                setattr(self, k, v)
            return self

    class RegressorMixin:
        def score(self, X, y, sample_weight=None):
            y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
            p = np.asarray(self.predict(X), dtype=np.float64).reshape(len(y), -1)
            ss_res = ((y - p) ** 2).sum(0)
            ss_tot = ((y - y.mean(0)) ** 2).sum(0)
            return float(np.mean(1 - ss_res / np.maximum(ss_tot, 1e-30)))


def _near_square(n: int) -> tuple[int, int]:
    h = int(np.floor(np.sqrt(n)))
    while h > 1 and n % h:
        h -= 1
    return (h, n // h)


class GeoSparseRegressor(RegressorMixin, BaseEstimator):
    """Regressor wrapping :class:`GeoSparseNet` with standardised inputs and targets.

    ``shape=None`` uses the input grid when the number of features factors into a near-square
    grid with both sides ≥ 2 (``(…, H·W)`` features, row-major), else an 8×8 neuron grid fed by a
    dense stem.  Training: AdamW, MSE, fixed epochs with early stopping on a validation split
    (``validation_fraction``), mini-batch order seeded by ``random_state``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(256, 16)); y = X[:, :4].sum(1)
        >>> est = GeoSparseRegressor(depth=1, k=4, epochs=100, lr=1e-2, random_state=0).fit(X, y)
        >>> est.predict(X[:3]).shape, est.score(X, y) > 0.8
        ((3,), True)
    """

    def __init__(self, shape=None, depth: int = 2, k: int = 8, pattern: str = "local", activation: str = "relu",
                 activation_config=None, norm: str = "rms", residual_alpha_init: float = 0.1,
                 drop_path_max: float = 0.0, epochs: int = 100, batch_size: int = 64, lr: float = 3e-3,
                 weight_decay: float = 0.0, patience: int = 20, validation_fraction: float = 0.1,
                 standardize: bool = True, random_state: int = 0, device: str = "cpu", verbose: bool = False):
        self.shape = shape
        self.depth = depth
        self.k = k
        self.pattern = pattern
        self.activation = activation
        self.activation_config = activation_config
        self.norm = norm
        self.residual_alpha_init = residual_alpha_init
        self.drop_path_max = drop_path_max
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.standardize = standardize
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _grid(self, n_features: int) -> tuple[int, int]:
        if self.shape is not None:
            return tuple(int(s) for s in self.shape)
        h, w = _near_square(n_features)
        return (h, w) if min(h, w) >= 2 else (8, 8)

    def fit(self, X, y):
        """Fit on ``X`` of shape ``(N, F)`` (or ``(N, H, W)``) and ``y`` of shape ``(N,)`` or ``(N, T)``.

        Example:
            >>> X = np.random.default_rng(1).normal(size=(64, 9)); y = X.sum(1)
            >>> GeoSparseRegressor(depth=1, k=4, epochs=2).fit(X, y).n_features_in_
            9
        """
        X = np.asarray(X, dtype=np.float32)
        X = X.reshape(X.shape[0], -1)
        y = np.asarray(y, dtype=np.float32)
        self._y_1d = y.ndim == 1
        y = y.reshape(y.shape[0], -1)
        if X.shape[0] != y.shape[0]:
            raise ValueError("X and y have different numbers of samples")
        self.n_features_in_ = X.shape[1]
        if self.standardize:
            self.x_mean_, self.x_std_ = X.mean(0), X.std(0) + 1e-8
            self.y_mean_, self.y_std_ = y.mean(0), y.std(0) + 1e-8
        else:
            self.x_mean_, self.x_std_ = np.zeros(X.shape[1], np.float32), np.ones(X.shape[1], np.float32)
            self.y_mean_, self.y_std_ = np.zeros(y.shape[1], np.float32), np.ones(y.shape[1], np.float32)
        Xs = torch.from_numpy((X - self.x_mean_) / self.x_std_)
        ys = torch.from_numpy((y - self.y_mean_) / self.y_std_)
        g = torch.Generator().manual_seed(int(self.random_state))
        perm = torch.randperm(Xs.shape[0], generator=g)
        n_val = int(round(self.validation_fraction * Xs.shape[0])) if Xs.shape[0] >= 20 else 0
        va, tr = perm[:n_val], perm[n_val:]
        if n_val == 0:
            va = tr
        data = Data(Xs[tr], ys[tr], Xs[va], ys[va], Xs[va], ys[va])
        cfg = GeoSparseConfig(shape=self._grid(X.shape[1]), depth=self.depth, k=self.k, pattern=self.pattern,
                              activation=self.activation, activation_config=self.activation_config,
                              norm=self.norm, residual_alpha_init=self.residual_alpha_init,
                              drop_path_max=self.drop_path_max, seed=int(self.random_state))
        seed_all(int(self.random_state))
        self.model_ = GeoSparseNet(X.shape[1], y.shape[1], cfg)
        bs = max(1, min(self.batch_size, len(tr)))
        tcfg = TrainConfig(epochs=self.epochs, batch_size=bs, lr=self.lr, weight_decay=self.weight_decay,
                           patience=self.patience, seed=int(self.random_state), device=self.device)
        progress = (lambda e, tl, vl: print(f"epoch {e}: train {tl:.4f} val {vl:.4f}")) if self.verbose else None
        self.train_result_ = fit(self.model_, data, tcfg, progress)
        self.model_.eval()
        return self

    def predict(self, X):
        """Predictions in the original target units: ``(N,)`` or ``(N, T)`` like the fitted ``y``."""
        if not hasattr(self, "model_"):
            raise RuntimeError("GeoSparseRegressor is not fitted yet; call fit first")
        X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, expected {self.n_features_in_}")
        Xs = torch.from_numpy((X - self.x_mean_) / self.x_std_).to(self.device)
        with torch.no_grad():
            out = self.model_(Xs).float().cpu().numpy()
        out = out * self.y_std_ + self.y_mean_
        return out[:, 0] if self._y_1d else out
