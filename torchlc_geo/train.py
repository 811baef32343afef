"""A small, fair training harness shared by the example, the sweep and the regressor.

Every model trained through :func:`fit` with the same :class:`TrainConfig` sees the same data split,
the same seed, the same optimizer settings, dtype, batch size and epoch budget, the same
mini-batch order and the same stopping rule (best validation loss with patience).  Inside the timed
steps there is no host synchronisation: the running loss stays on the device and is read once per
epoch, and step time is taken from CUDA events (on CUDA) read at the end of each epoch; wall clock is
reported separately, and so is the first step (warm-up, including ``torch.compile``).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .utils import seed_all

__all__ = ["Data", "TrainConfig", "fit", "local_field_task", "r2_score"]


@dataclass
class Data:
    """Train/validation/test tensors (inputs ``x_*``, targets ``y_*`` of shape ``(N, out)``).

    Example:
        >>> d = Data(*(torch.zeros(2, 1) for _ in range(6)))
        >>> d.to("cpu").x_test.shape
        torch.Size([2, 1])
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, device) -> Data:
        return Data(*(t.to(device) for t in asdict(self).values()))


def local_field_task(shape=(8, 8), n_samples: int = 4096, noise: float = 0.05, seed: int = 0,
                     val_frac: float = 0.15, test_frac: float = 0.15) -> Data:
    """A regression task with geometric structure on an ``H×W`` grid.

    Inputs ``x ~ N(0, 1)`` on the grid; the target is a sum of smooth local interactions
    ``y = Σ_c a_c · tanh(x_c + x_right(c) − ½·x_down(c)) / √n`` (periodic neighbours, fixed random
    ``a_c``) plus Gaussian noise of std ``noise``.  Split into train/validation/test.

    Example:
        >>> d = local_field_task((4, 4), 100)
        >>> d.x_train.shape[1], d.y_train.shape[1], d.x_train.shape[0] + d.x_val.shape[0] + d.x_test.shape[0]
        (16, 1, 100)
    """
    g = torch.Generator().manual_seed(int(seed))
    H, W = shape
    x = torch.randn(n_samples, H, W, generator=g)
    a = torch.randn(H, W, generator=g)
    z = torch.tanh(x + torch.roll(x, -1, dims=2) - 0.5 * torch.roll(x, -1, dims=1))
    y = (a * z).sum((1, 2)) / math.sqrt(H * W)
    y = y + noise * torch.randn(n_samples, generator=g)
    x = x.reshape(n_samples, H * W)
    y = y[:, None]
    n_val, n_test = int(val_frac * n_samples), int(test_frac * n_samples)
    n_tr = n_samples - n_val - n_test
    return Data(x[:n_tr], y[:n_tr], x[n_tr:n_tr + n_val], y[n_tr:n_tr + n_val], x[n_tr + n_val:], y[n_tr + n_val:])


def r2_score(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Coefficient of determination ``1 − SS_res/SS_tot`` (averaged over output columns).

    Example:
        >>> r2_score(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [2.0], [3.0]]))
        1.0
    """
    y_true, y_pred = y_true.double(), y_pred.double()
    ss_res = ((y_true - y_pred) ** 2).sum(0)
    ss_tot = ((y_true - y_true.mean(0)) ** 2).sum(0).clamp(min=1e-30)
    return float((1 - ss_res / ss_tot).mean())


@dataclass
class TrainConfig:
    """Settings shared by every model of a comparison.

    Example:
        >>> TrainConfig(epochs=3).batch_size
        128
    """

    epochs: int = 60
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    patience: int = 15
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    compile: bool = False
    compile_mode: str | None = None
    tf32: bool = False
    cosine: bool = True


def _evaluate(model, x, y, bs, amp, device):
    model.eval()
    preds = []
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for i in range(0, x.shape[0], bs):
            preds.append(model(x[i:i + bs]).float())
    model.train()
    p = torch.cat(preds) if preds else y[:0]
    return float(F.mse_loss(p, y)), p


def fit(model: nn.Module, data: Data, cfg: TrainConfig, progress=None) -> dict:
    """Train ``model`` on ``data`` (MSE) with ``cfg``; returns metrics and timings.

    Keys: ``test_r2``, ``test_mse``, ``best_val_mse``, ``epochs_run``, ``best_epoch``,
    ``train_wall_s`` (all epochs, excluding evaluation), ``step_ms`` (median over epochs of the
    mean step time; CUDA events on CUDA), ``warmup_s`` (first step, incl. compilation),
    ``params``.  The model is left with its best-validation weights.

    Example:
        >>> from torchlc_geo import GeoSparseNet
        >>> d = local_field_task((4, 4), 256)
        >>> r = fit(GeoSparseNet(16, 1, shape=(4, 4), depth=1, k=4), d, TrainConfig(epochs=2))
        >>> r["epochs_run"], r["test_r2"] <= 1.0
        (2, True)
    """
    device = torch.device(cfg.device)
    seed_all(cfg.seed)
    torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
    torch.backends.cudnn.allow_tf32 = cfg.tf32
    model = model.to(device)
    data = data.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[cfg.optimizer]
    opt = opt_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = data.x_train.shape[0]
    steps_per_epoch = max(1, n // cfg.batch_size)  # drop the ragged batch: static shapes
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * steps_per_epoch) if cfg.cosine else None
    fwd = torch.compile(model, mode=cfg.compile_mode) if cfg.compile else model
    cuda = device.type == "cuda"
    amp = bool(cfg.bf16)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = fwd(xb)
        loss = F.mse_loss(out.float(), yb)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        return loss.detach()

    g = torch.Generator().manual_seed(cfg.seed)
    best = (math.inf, -1, None)
    step_ms, wall, warmup_s = [], 0.0, None
    epochs_run = 0
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g).to(device)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        run_loss = torch.zeros((), device=device)
        start = 0
        if warmup_s is None:  # first step: warm-up / compilation, timed on its own
            idx = perm[:cfg.batch_size]
            run_loss += step(data.x_train[idx], data.y_train[idx])
            if cuda:
                torch.cuda.synchronize()
            warmup_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            start = 1
        if cuda:
            ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev0.record()
        for s in range(start, steps_per_epoch):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            run_loss += step(data.x_train[idx], data.y_train[idx])
        nsteps = steps_per_epoch - start
        if cuda:
            ev1.record()
            torch.cuda.synchronize()
            if nsteps:
                step_ms.append(ev0.elapsed_time(ev1) / nsteps)
        dt = time.perf_counter() - t0
        wall += dt
        if not cuda and nsteps:
            step_ms.append(1e3 * dt / nsteps)
        epochs_run += 1
        val, _ = _evaluate(model, data.x_val, data.y_val, 4 * cfg.batch_size, amp, device)
        if not math.isfinite(val):
            break
        if val < best[0]:
            best = (val, epoch, copy.deepcopy(model.state_dict()))
        if progress is not None:
            progress(epoch, float(run_loss) / steps_per_epoch, val)
        if epoch - best[1] >= cfg.patience:
            break
    if best[2] is not None:
        model.load_state_dict(best[2])
    test_mse, pred = _evaluate(model, data.x_test, data.y_test, 4 * cfg.batch_size, amp, device)
    return {
        "test_r2": r2_score(data.y_test.cpu(), pred.cpu()),
        "test_mse": test_mse,
        "best_val_mse": best[0],
        "best_epoch": best[1],
        "epochs_run": epochs_run,
        "train_wall_s": wall,
        "step_ms": statistics.median(step_ms) if step_ms else None,
        "warmup_s": warmup_s,
        "params": sum(p.numel() for p in model.parameters()),
        "train_config": asdict(cfg),
    }
