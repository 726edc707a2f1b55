"""``sgd-minima smallnet``: real SGD on the exact digits network against the stationary laws.

Modules: ``run`` (the measurement and :func:`run_smallnet`; plain SGD or heavy ball),
``plan`` (burn-in and window from H's spectrum and the momentum), ``measure`` (one setting's real and linearised chains, run
until they settle), ``stability`` (ρ of linearised SGD's second-moment map by
Rayleigh–Ritz, the linear and real edges), ``accounting`` (the observed excess split into
tr Σ, discrete time, state-dependent noise and nonlinearity), ``report`` (scores,
verdict, tables and figures, redrawn from ``smallnet.json``) and ``cache`` (a
re-verified on-disk cache of θ* and H).  It may import :mod:`theory`, :mod:`dnn.exact`
and ``dnn``'s shared modules, and ``validation._io``; jax is imported only when a run
starts.
"""

from . import accounting as _accounting
from . import measure as _measure
from . import plan as _plan
from . import report as _report
from .accounting import *  # noqa: F401,F403
from .measure import *  # noqa: F401,F403
from .run import SmallnetConfig, run_smallnet, sketched_trace_wk, smallnet_results
from .plan import *  # noqa: F401,F403
from .report import *  # noqa: F401,F403

__all__ = ["SmallnetConfig", "run_smallnet", "smallnet_results", "sketched_trace_wk",
           *_plan.__all__, *_report.__all__, *_accounting.__all__, *_measure.__all__]
