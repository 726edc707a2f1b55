"""Input checks shared by the public sim entry points.

Checks run once, at the public boundary, in a fixed order: finite, square,
matching shapes, symmetric, positive (semi)definite, stable.  Messages name the
argument and show the offending value.  (theory keeps its own private checks;
the two packages agree on messages but do not share private modules.)
"""

from __future__ import annotations

import numbers

import numpy as np

# float64 products such as U diag(h) Uᵀ are symmetric to ~1e-15 relative, so
# 1e-8 only rejects real asymmetry.
_SYMMETRY_RTOL = 1e-8
# Eigenvalues above -1e-10·max|λ| count as round-off zeros of a PSD matrix.
_PSD_RTOL = 1e-10


def finite_array(value, name: str, *, ndim: int | None = None) -> np.ndarray:
    """Coerce to float64 and check the number of dimensions and finiteness."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric; got {value!r}") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].ravel()[0]
        raise ValueError(f"{name} must be finite; it contains {bad}")
    return arr


def symmetric(value, name: str) -> np.ndarray:
    """Finite, non-empty, square and symmetric (to a relative tolerance); returns (A+Aᵀ)/2."""
    a = finite_array(value, name, ndim=2)
    if a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix; got shape {a.shape}")
    scale = max(float(np.max(np.abs(a))), np.finfo(float).tiny)
    asym = float(np.max(np.abs(a - a.T)))
    if asym > _SYMMETRY_RTOL * scale:
        raise ValueError(f"{name} must be symmetric; max |A - A^T| is {asym:.3g}")
    return 0.5 * (a + a.T)


def spd_eigh(a: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition A = U diag(h) Uᵀ of a symmetric matrix that must be positive definite."""
    h, u = np.linalg.eigh(a)
    if h[0] <= 0:
        raise ValueError(f"{name} must be positive definite; smallest eigenvalue is {h[0]:.3g}")
    return h, u


def check_psd(a: np.ndarray, name: str) -> None:
    """Raise unless the symmetric matrix ``a`` is positive semidefinite (round-off allowed)."""
    lam = np.linalg.eigvalsh(a)
    if lam[0] < -_PSD_RTOL * max(abs(lam[-1]), abs(lam[0]), np.finfo(float).tiny):
        raise ValueError(f"{name} must be positive semidefinite; smallest eigenvalue "
                         f"is {lam[0]:.3g}")


def positive_float(value, name: str) -> float:
    """A finite real scalar > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number > 0; got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be finite and > 0; got {v}")
    return v


def integer(value, name: str, *, minimum: int, maximum: int | None = None) -> int:
    """An integer in [minimum, maximum]; bools and non-integral floats are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer; got {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {v}")
    return v


def choice(value, name: str, options) -> str:
    """One of a fixed set of names."""
    if value not in options:
        expected = ", ".join(map(repr, options))
        raise ValueError(f"unknown {name} {value!r}; expected one of {expected}")
    return value


def generator(rng) -> np.random.Generator:
    """A numpy Generator from a Generator, an int seed or a SeedSequence."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (numbers.Integral, np.random.SeedSequence)) and not isinstance(rng, bool):
        if isinstance(rng, numbers.Integral) and rng < 0:
            raise ValueError(f"rng seed must be >= 0; got {rng}")
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be a numpy Generator or an int seed; got {rng!r}")
