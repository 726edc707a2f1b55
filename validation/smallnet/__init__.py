"""``sgd-minima smallnet``: real SGD on the exact digits network against the stationary laws.

Modules: ``run`` (the measurement and :func:`run_smallnet`), ``plan`` (burn-in and
window from H's spectrum), ``report`` (scores, verdict, tables and figure, redrawn
from ``smallnet.json``) and ``cache`` (a re-verified on-disk cache of θ* and H).
It may import :mod:`theory`, :mod:`dnn.exact` and ``dnn``'s shared modules, and
``validation._io``; jax is imported only when a run starts.
"""

from . import plan as _plan
from . import report as _report
from .run import SmallnetConfig, run_smallnet, sketched_trace_wk, smallnet_results
from .plan import *  # noqa: F401,F403
from .report import *  # noqa: F401,F403

__all__ = ["SmallnetConfig", "run_smallnet", "smallnet_results", "sketched_trace_wk",
           *_plan.__all__, *_report.__all__]
