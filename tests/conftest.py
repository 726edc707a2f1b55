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


def _has_cuda_gpu() -> bool:
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def pytest_collection_modifyitems(config, items):
    import pytest

    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _has_cuda_gpu():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (run scripts/gpu_check.sh on one)")
        for item in gpu_items:
            item.add_marker(skip)
