"""Input checks shared by the public theory functions.

Checks run once, at the public boundary, in a fixed order: finite, square,
matching shapes, symmetric, positive (semi)definite, stable. Messages name the
argument and show the offending value.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

__all__ = ["StabilityError"]

# Relative asymmetry tolerated in a "symmetric" input: float64 products such as
# U diag(h) U^T are symmetric to ~1e-15, so 1e-8 only rejects real asymmetry.
_SYMMETRY_RTOL = 1e-8
# Condition number past which Gamma's small eigen-directions lose most digits.
_ILL_CONDITIONED = 1e12


class StabilityError(ValueError):
    """No stationary law exists: the linear recursion or ODE is unstable."""


def flag(value, name: str) -> bool:
    """A real ``bool`` (numpy's ``bool_`` too).

    Strings and integers are refused rather than coerced: ``bool("False")`` is True,
    so ``replacement="False"`` would silently select the opposite formula.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__})")


def finite_array(value, name: str, *, ndim: int | None = None) -> np.ndarray:
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):
        raw = np.asarray(value, dtype=object)
    # Only real numbers: bools, strings ("3") and objects would otherwise be coerced.
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers; got {value!r}")
    arr = raw.astype(float, copy=False)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].ravel()[0]
        raise ValueError(f"{name} must be finite; it contains {bad}")
    return arr


def square_symmetric(value, name: str) -> np.ndarray:
    a = finite_array(value, name, ndim=2)
    if a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix; got shape {a.shape}")
    scale = max(float(np.max(np.abs(a))), np.finfo(float).tiny)
    asym = float(np.max(np.abs(a - a.T)))
    if asym > _SYMMETRY_RTOL * scale:
        raise ValueError(f"{name} must be symmetric; max |A - A^T| is {asym:.3g} "
                         f"(relative {asym / scale:.3g})")
    return 0.5 * (a + a.T)


def hessian_and_grad_cov(hessian, grad_cov):
    """Validate (H, Sigma); return (H, Sigma, h, U) with H = U diag(h) U^T, h > 0."""
    h_mat = square_symmetric(hessian, "hessian")
    s_mat = square_symmetric(grad_cov, "grad_cov")
    if h_mat.shape != s_mat.shape:
        raise ValueError(f"hessian and grad_cov must have the same shape; got "
                         f"{h_mat.shape} and {s_mat.shape}")
    h, u = np.linalg.eigh(h_mat)
    if h[0] <= 0:
        raise ValueError(f"hessian must be positive definite; smallest eigenvalue is {h[0]:.3g}")
    if h[-1] / h[0] > _ILL_CONDITIONED:
        warnings.warn(f"hessian is ill-conditioned (condition number {h[-1] / h[0]:.3g}); "
                      "results in its flattest directions are inaccurate",
                      RuntimeWarning, stacklevel=3)
    check_psd(s_mat, "grad_cov")
    return h_mat, s_mat, h, u


def check_psd(a: np.ndarray, name: str) -> None:
    # Cholesky of a slightly shifted matrix is ~10x cheaper than eigvalsh; only
    # the error path pays for the eigenvalue that goes into the message.
    scale = max(float(np.max(np.abs(np.diag(a)))), np.finfo(float).tiny)
    shift = 1e-10 * scale * a.shape[0]
    try:
        np.linalg.cholesky(a + shift * np.eye(a.shape[0]))
    except np.linalg.LinAlgError:
        lam = float(np.linalg.eigvalsh(a)[0])
        raise ValueError(f"{name} must be positive semidefinite; smallest eigenvalue "
                         f"is {lam:.3g}") from None


def positive(value, name: str) -> np.ndarray:
    arr = finite_array(value, name)
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0; got {_first(arr, arr <= 0)}")
    return arr


def nonnegative(value, name: str) -> np.ndarray:
    arr = finite_array(value, name)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0; got {_first(arr, arr < 0)}")
    return arr


def batch_and_data(batch_size, n_data):
    """Validate batch_size (integer >= 1) and n_data (integer >= batch_size, or None)."""
    s = finite_array(batch_size, "batch_size")
    if np.any(s < 1) or np.any(s != np.round(s)):
        bad = s[(s < 1) | (s != np.round(s))] if s.ndim else s
        raise ValueError(f"batch_size must be an integer >= 1; got {np.ravel(bad)[0]:g}")
    if n_data is None:
        return s, None
    n = finite_array(n_data, "n_data")
    if np.any(n < 1) or np.any(n != np.round(n)):
        raise ValueError(f"n_data must be an integer >= 1; got {np.ravel(n)[0]:g}")
    too_big = np.broadcast_to(s > n, np.broadcast_shapes(s.shape, n.shape))
    if np.any(too_big):
        ss, nn = np.broadcast_arrays(s, n)
        raise ValueError(f"batch_size must be <= n_data; got batch_size={ss[too_big][0]:g} "
                         f"> n_data={nn[too_big][0]:g}")
    return s, n


def scalar_lr(lr) -> float:
    arr = positive(lr, "lr")
    if arr.ndim != 0:
        raise ValueError(f"lr must be a scalar here; got shape {arr.shape}")
    return float(arr)


def momentum(value) -> float:
    """Heavy-ball momentum β: a finite real number with 0 <= β < 1.

    Bools and strings are refused rather than coerced (``True`` would read as β = 1,
    ``"0.5"`` is a typo for a number).  β = 1 has no stationary law: the velocity
    then never forgets its past.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"momentum must be a real number in [0, 1); got {value!r}")
    beta = float(value)
    if not math.isfinite(beta) or not 0.0 <= beta < 1.0:
        raise ValueError(f"momentum must be finite and in [0, 1); got {beta}")
    return beta


def stable(lr: float, h_max: float, momentum: float = 0.0) -> None:
    """Raise StabilityError unless η·h_max < 2(1 + β) (every 2×2 heavy-ball block contracts)."""
    if momentum == 0.0:
        if lr * h_max >= 2:
            raise StabilityError(f"lr is unstable: lr*h_max = {lr * h_max:.4g} >= 2 "
                                 f"(lr={lr:g}, largest Hessian eigenvalue {h_max:.4g}); "
                                 "discrete SGD has no stationary law")
        return
    bound = 2.0 * (1.0 + momentum)
    if lr * h_max >= bound:
        raise StabilityError(f"lr is unstable: lr*h_max = {lr * h_max:.4g} >= 2(1+momentum) = "
                             f"{bound:.4g} (lr={lr:g}, momentum={momentum:g}, largest Hessian "
                             f"eigenvalue {h_max:.4g}); heavy-ball SGD has no stationary law")


def _first(arr: np.ndarray, mask: np.ndarray):
    return arr[mask].ravel()[0] if arr.ndim else float(arr)
