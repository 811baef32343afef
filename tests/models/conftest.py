"""The third-party model tier: torchvision, timm and transformers models on ``x.nonstd(v)``.

Each library is optional (the ``models`` extra); its test module skips when it is absent. Importing
``helpers`` sets the offline switches of the Hugging Face libraries (nothing is ever downloaded), and
the torchvision shim (``ensure_torchvision_importable`` in ``torchlc/bench/_thirdparty.py``) runs
before any of the three libraries is imported, since timm and transformers import torchvision when it
is installed.
"""

import pytest
import torch

from tests.models.helpers import ensure_torchvision_importable

ensure_torchvision_importable()


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these models are small (a few ms per op), and on a busy 2-core machine
    OpenMP's second thread turns float64 convolutions from 0.05 s into 10 s (threads spinning on
    cores that another process holds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
