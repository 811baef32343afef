import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "geo", max_examples=int(os.environ.get("GEO_HYPOTHESIS_EXAMPLES", "25")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow], derandomize=True,
)
settings.load_profile("geo")


@pytest.fixture(autouse=True)
def _one_thread():
    # the geo tests use tiny tensors: one intra-op thread is fastest and robust on loaded machines
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
