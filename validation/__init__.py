"""Experiments that compare theory with simulations and trained networks, reports, and the CLI.

Importing this package imports neither keras nor a backend; DNN experiments load
them when they run.
"""

from .cli import main
from .grid import PRESETS, Preset, get_preset, parse_shard, run_grid, run_name
from .quick import QUICK_CASES, QuickConfig, quick_results, run_quick
from .report import build_report
from .simulate import SimulateConfig, run_simulate, simulate_result
from .stationary import run_stationary, summarize_stationary

__all__ = [
    "main",
    "QuickConfig",
    "QUICK_CASES",
    "quick_results",
    "run_quick",
    "SimulateConfig",
    "simulate_result",
    "run_simulate",
    "PRESETS",
    "Preset",
    "get_preset",
    "parse_shard",
    "run_grid",
    "run_name",
    "build_report",
    "run_stationary",
    "summarize_stationary",
]
