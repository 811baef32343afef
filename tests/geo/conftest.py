import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "geo", max_examples=int(os.environ.get("GEO_HYPOTHESIS_EXAMPLES", "25")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow], derandomize=True,
)
settings.load_profile("geo")
