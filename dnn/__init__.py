"""ResNet-on-CIFAR-10 training and curvature/noise measurement with Keras 3 (JAX or TensorFlow).

``import dnn`` is cheap: it imports neither keras nor a backend. Each public name
is loaded from its submodule on first access (PEP 562 ``__getattr__``), and
keras itself is imported only when a model is built or trained. Choose the
backend first, in a fresh process: ``dnn.set_backend("tensorflow")`` (default:
``$KERAS_BACKEND``, else ``"jax"``).

``dnn.train``, ``dnn.resnet`` and ``dnn.measure`` are the *functions*, although
submodules of the same names exist: the package refuses to let the import system
rebind those attributes to the submodules. Reach a submodule with
``from dnn.train import TrainConfig`` or ``importlib.import_module("dnn.train")``.
"""

from __future__ import annotations

import importlib
import sys
import types

# public name -> submodule that defines it
_EXPORTS = {
    "set_backend": "backend",
    "resnet": "resnet",
    "load_cifar10": "data",
    "synthetic_cifar": "data",
    "DataError": "data",
    "RunFileError": "_runio",
    "LOSSES": "losses",
    "get_loss": "losses",
    "TrainConfig": "train",
    "train": "train",
    "load_run": "train",
    "LoadedRun": "train",
    "measure": "measure",
    "estimate_run": "measure",
    "hutchinson_trace": "estimators",
    "grad_cov_trace": "estimators",
    "two_batch_noise": "estimators",
    "top_hessian_eigenvalue": "estimators",
    "stationary_phase": "stationary",
    "load_digits": "digits",
    "Digits": "digits",
    "MLP": "mlp",
    "MLPConfig": "mlp",
    "find_minimum": "minimum",
    "NotAMinimumError": "minimum",
    "Minimum": "minimum",
    "exact_quantities": "exact",
    "run_sgd_chains": "chains",
    "ChainStats": "chains",
    "state_dependent_trace": "state_noise",
    "state_dependent_correction_estimate": "state_noise",
    "probe_inputs": "state_noise",
    "StateNoiseTrace": "state_noise",
}

__all__ = sorted(_EXPORTS)


# Functions named like the submodule that defines them.
_SHADOWED = frozenset(name for name, module in _EXPORTS.items() if name == module)


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        # Importing dnn.train binds the submodule as attribute "train" of the package;
        # keep the public function there instead (the module stays in sys.modules).
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # cache: later lookups bypass __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
