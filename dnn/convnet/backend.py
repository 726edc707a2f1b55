"""Choose the Keras backend before keras is imported.

Keras 3 reads ``KERAS_BACKEND`` once, when ``keras`` is first imported, and the
choice cannot be changed afterwards in the same process. Every module of
:mod:`dnn` therefore imports keras through :func:`import_keras`, which applies
the default (``$KERAS_BACKEND``, else ``"jax"``) first; Keras' own default
would be TensorFlow.
"""

from __future__ import annotations

import os
import sys

__all__ = ["BACKENDS", "default_backend", "set_backend", "import_keras", "current_backend", "to_numpy"]

#: Backends that :mod:`dnn` supports and tests.
BACKENDS = ("jax", "tensorflow")


def _check(name, source):
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}; got {name!r}")
    return name


def default_backend():
    """The backend used when none is named: ``$KERAS_BACKEND`` if set, else ``"jax"``.

    Raises
    ------
    ValueError
        If ``$KERAS_BACKEND`` names a backend that :mod:`dnn` does not support.
    """
    env = os.environ.get("KERAS_BACKEND")
    if env:
        return _check(env, "environment variable KERAS_BACKEND")
    return "jax"


def current_backend():
    """The backend of the already-imported keras, or ``None`` if keras is not imported yet."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    return keras.config.backend()


def set_backend(name=None):
    """Select the Keras backend for this process; returns the resolved name.

    Parameters
    ----------
    name : {"jax", "tensorflow"} or None
        ``None`` means :func:`default_backend`.

    Returns
    -------
    str
        The backend that keras uses (or will use when first imported).

    Raises
    ------
    ValueError
        If ``name`` is not a supported backend, or keras was already imported
        with a different backend (Keras cannot switch backends in-process; start
        a new process, or set ``KERAS_BACKEND`` before anything imports keras).
    """
    name = default_backend() if name is None else _check(name, "backend")
    current = current_backend()
    if current is not None:
        if current != name:
            raise ValueError(
                f"backend {name!r} requested, but keras is already imported with backend "
                f"{current!r}; set KERAS_BACKEND={name} before keras is imported "
                f"(e.g. in a fresh process)"
            )
        return name
    os.environ["KERAS_BACKEND"] = name
    if name == "tensorflow":
        # TF 2.21's oneDNN CPU kernels corrupt memory in the filter gradient of a
        # stride-2 1x1 conv with few channels at odd batch sizes (reproduced with
        # batch 1, 3, 5, ...); the plain Eigen kernels are correct. GPUs are unaffected.
        # A user who sets the variable keeps their choice.
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    return name


def import_keras():
    """Import and return ``keras``, applying :func:`default_backend` first if keras is not loaded."""
    if "keras" not in sys.modules:
        set_backend(None)
    import keras

    return keras


def to_numpy(x):
    """A numpy copy of a Keras variable or backend tensor, on either backend.

    Avoids ``keras.ops.convert_to_numpy(variable)`` and ``Variable.numpy()``, which go
    through an ``__array__`` without ``copy=`` and warn under numpy 2.
    """
    import numpy as np

    x = getattr(x, "value", x)  # a Keras Variable holds a backend array/variable
    if hasattr(x, "numpy"):  # TensorFlow tensors and variables
        return np.array(x.numpy())
    return np.array(x)  # JAX arrays implement the numpy 2 protocol
