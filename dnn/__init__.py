"""Measure where SGD settles on real networks: the Keras ResNet pipeline and an exact small network.

Two rooms, and what they share:

* :mod:`dnn.convnet`: the Keras 3 ResNet pipeline (CIFAR-10, Fashion-MNIST, synthetic images):
  backend, layers, model, losses, data, training, run files, curvature/noise
  measurement, the stationary phase, and the TF/JAX autodiff primitives.
* :mod:`dnn.exact`: the float64 JAX MLP on scikit-learn's digits, with a strict
  minimum θ*, exact H and Σ, SGD chains and state-dependent noise probes.
* Shared and framework-free: :mod:`dnn.estimators` (estimator maths over
  callables), :mod:`dnn.stationary_stats` and :mod:`dnn.stationary_summary` (the
  statistics and record of a stationary phase), ``dnn._runio`` (atomic run files
  and provenance) and ``dnn._validate``.

``dnn`` imports only :mod:`theory` of ours.  ``import dnn`` is cheap: it imports
neither keras nor a backend.  Each public name is loaded from its submodule on
first access (PEP 562 ``__getattr__``), and keras itself is imported only when a
model is built or trained.  Choose the backend first, in a fresh process:
``dnn.set_backend("tensorflow")`` (default: ``$KERAS_BACKEND``, else ``"jax"``).
Reach a submodule by its path, e.g. ``from dnn.convnet.train import TrainConfig``.
"""

from __future__ import annotations

import importlib

# public name -> submodule that defines it
_EXPORTS = {
    "set_backend": "convnet.backend",
    "resnet": "convnet.resnet",
    "load_cifar10": "convnet.data",
    "load_fashion_mnist": "convnet.fashion",
    "synthetic_cifar": "convnet.data",
    "DataError": "convnet.data",
    "RunFileError": "_runio",
    "LOSSES": "convnet.losses",
    "get_loss": "convnet.losses",
    "TrainConfig": "convnet.train",
    "train": "convnet.train",
    "load_run": "convnet.train",
    "LoadedRun": "convnet.train",
    "measure": "convnet.measure",
    "estimate_run": "convnet.measure",
    "hutchinson_trace": "estimators",
    "grad_cov_trace": "estimators",
    "two_batch_noise": "estimators",
    "top_hessian_eigenvalue": "estimators",
    "stationary_phase": "convnet.stationary",
    "load_digits": "exact.digits",
    "Digits": "exact.digits",
    "MLP": "exact.mlp",
    "MLPConfig": "exact.mlp",
    "find_minimum": "exact.minimum",
    "NotAMinimumError": "exact.minimum",
    "Minimum": "exact.minimum",
    "exact_quantities": "exact.hessian",
    "run_sgd_chains": "exact.chains",
    "ChainStats": "exact.chains",
    "state_dependent_trace": "exact.state_noise",
    "state_dependent_correction_estimate": "exact.state_noise",
    "probe_inputs": "exact.state_noise",
    "StateNoiseTrace": "exact.state_noise",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # cache: later lookups bypass __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
