"""Argument checks shared by the exact network's modules (model, data, a point θ).

They live apart from ``minimum`` and ``hessian`` so that neither has to import the
other for them: the one import between those two runs one way, minimum → hessian.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_model_data", "check_point"]


def check_model_data(model, data) -> None:
    """Raise unless ``model`` is an :class:`~dnn.exact.mlp.MLP` and ``data`` fits its input."""
    from .mlp import MLP

    if not isinstance(model, MLP):
        raise TypeError(f"model must be a dnn.MLP; got {type(model).__name__}")
    x, y = getattr(data, "x", None), getattr(data, "y", None)
    if x is None or y is None:
        raise TypeError(f"data must have arrays x and y (e.g. dnn.Digits); got {type(data).__name__}")
    if np.ndim(x) != 2 or np.shape(x)[1] != model.n_inputs:
        raise ValueError(f"data.x must have shape (N, {model.n_inputs}); got {np.shape(x)}")
    if np.shape(y) != (np.shape(x)[0],):
        raise ValueError(f"data.y must have shape ({np.shape(x)[0]},); got {np.shape(y)}")


def check_point(model, data, theta) -> np.ndarray:
    """Check model and data, and return θ as a finite float64 vector of the model's size."""
    check_model_data(model, data)
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (model.n_params,):
        raise ValueError(f"theta must have shape ({model.n_params},); got {theta.shape}")
    if not np.all(np.isfinite(theta)):
        raise ValueError("theta must be finite; it holds NaN or inf")
    return theta
