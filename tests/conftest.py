"""Test-wide settings: hypothesis profiles and headless plotting."""

import os

import matplotlib
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")

# "ci" is derandomised with no deadline, so a slow shared runner cannot fail a
# property test and every run explores the same examples.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
