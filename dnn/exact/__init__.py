"""A small network checked exactly: a float64 JAX MLP on scikit-learn's digits.

Modules: ``digits`` (the data), ``mlp`` (the model and its float64 context),
``minimum`` (a strict minimum θ* by L-BFGS and Newton-CG), ``hessian`` (exact H,
Σ and per-example operators at a point), ``chains`` (vectorised SGD chains: one driver
over steppers), ``linear_chains`` (linearised SGD at θ* on the same minibatches),
``second_moment`` (linearised SGD's second-moment map compressed onto a subspace: ρ and
the mean-square edge), ``state_noise`` (the state-dependent noise probes) and ``_checks``.
It may import :mod:`theory` and ``dnn``'s shared modules (``_validate``,
``_runio``), never :mod:`dnn.convnet` or ``validation``; inside it, ``minimum``
imports ``hessian`` and never the reverse.  Importing this package imports no jax;
the public names are re-exported, lazily, by :mod:`dnn`.
"""
