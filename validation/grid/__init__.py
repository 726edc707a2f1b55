"""The grid: the paper's (loss, BS, LR, seed) runs, each trained, estimated and measured.

Modules: ``presets`` (configurations, run names, shards), ``run`` (:func:`run_grid`
and its summary), ``stages`` (the three stages of one run and their files),
``locking`` (per-run OS file locks) and ``executors`` (local or Ray).
It may import ``dnn`` (keras only inside a stage), ``validation._io`` and
``validation.stationary``, never the CLI or the report.
"""

from . import presets, run
from .presets import (PRESETS, EstimateSettings, Preset, RunSpec, StationarySettings, get_preset,
                      grid_runs, parse_shard, run_name, shard_runs, train_config)
from .run import GRID_FILE, LOG_DIR, format_summary, run_grid

__all__ = [*presets.__all__, *run.__all__]
