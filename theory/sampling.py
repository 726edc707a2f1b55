"""The minibatch noise factor c_S: Cov(minibatch mean gradient) = c_S * Sigma."""

from __future__ import annotations

import numpy as np

from . import _validate as v

__all__ = ["noise_factor"]


def noise_factor(batch_size, n_data=None, replacement=True):
    r"""Minibatch noise factor c_S.

    The minibatch mean gradient over S examples has covariance c_S Σ, where Σ is the
    per-example gradient covariance dividing by N (theory.md, "Symbols").

    .. math::
        c_S = 1/S \quad\text{(with replacement, or N unknown)},\qquad
        c_S = \frac{N - S}{S (N - 1)} \quad\text{(without replacement)}.

    Parameters
    ----------
    batch_size : int or array_like of int
        S >= 1.
    n_data : int or array_like of int, optional
        N >= S. If None, the with-replacement value 1/S is returned.
    replacement : bool
        Whether a batch draws with replacement.

    Returns
    -------
    float or ndarray
        c_S, broadcast over the inputs.

    Raises
    ------
    ValueError
        If S < 1, S is not an integer, S > N, or N = 1 without replacement.
    TypeError
        If ``replacement`` is not a bool (the string ``"False"`` would be truthy).

    References
    ----------
    theory.md, c_S and test case T6 (exact enumeration of batches).

    Examples
    --------
    >>> noise_factor(3, n_data=6, replacement=False)
    0.2
    >>> noise_factor(3, n_data=6)
    0.3333333333333333
    """
    replacement = v.flag(replacement, "replacement")
    s, n = v.batch_and_data(batch_size, n_data)
    if replacement or n is None:
        out = 1.0 / s
    else:
        if np.any(n < 2):
            raise ValueError("n_data must be >= 2 without replacement; got 1")
        out = (n - s) / (s * (n - 1))
    return float(out) if np.ndim(out) == 0 else out
