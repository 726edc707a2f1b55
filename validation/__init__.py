"""Experiments that compare theory with simulations and trained networks, reports, and the CLI.

Importing this package imports neither keras nor a backend; DNN experiments load
them when they run.
"""

from .cli import main
from .quick import QUICK_CASES, QuickConfig, quick_results, run_quick
from .simulate import SimulateConfig, run_simulate, simulate_result

__all__ = [
    "main",
    "QuickConfig",
    "QUICK_CASES",
    "quick_results",
    "run_quick",
    "SimulateConfig",
    "simulate_result",
    "run_simulate",
]
