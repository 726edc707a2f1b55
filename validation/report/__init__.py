"""Table 1, Figures 2-4, the curve distance and ``report.md``, from saved run folders only.

Modules: ``runs`` (reading run folders back, naming what could not be used),
``tables`` (Table 1 and the per-run stationary rows), ``curves`` (learning-curve
groups and the curve distance), ``claims`` (the paper's three claims as numbers
and verdicts), ``figures`` (the plots) and ``build``
(:func:`build_report`: ``report.md`` and every file beside it).
It reads saved JSON only: it may import ``dnn``'s framework-free modules
(``dnn._runio``, ``dnn.stationary_summary``) and ``validation._io`` and
``validation.stationary``, never keras, a model or the grid.
"""

from .build import build_report
from .curves import curve_distance, learning_curve_groups
from .figures import learning_curve_file, make_figures
from .runs import RunScan, load_runs, scan_runs
from .tables import (STATIONARY_COLUMNS, TABLE1_COLUMNS, stationary_rows, table1_markdown,
                     table1_rows)

__all__ = [
    "TABLE1_COLUMNS",
    "STATIONARY_COLUMNS",
    "RunScan",
    "scan_runs",
    "load_runs",
    "table1_rows",
    "table1_markdown",
    "learning_curve_groups",
    "curve_distance",
    "stationary_rows",
    "make_figures",
    "learning_curve_file",
    "build_report",
]
