"""Input checks shared by the public sim entry points.

Checks run once, at the public boundary, in a fixed order: finite, square,
matching shapes, symmetric, positive (semi)definite, stable.  Messages name the
argument and show the offending value.  The matrix checks are theory's (sim depends
on theory, never the reverse), so both packages word their errors alike.
"""

from __future__ import annotations

import numbers

import numpy as np

from theory._validate import check_psd, finite_array, flag, momentum
from theory._validate import square_symmetric as symmetric

# re-exported for sim's modules
__all__ = ["check_psd", "finite_array", "flag", "momentum", "symmetric"]


def spd_eigh(a: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition A = U diag(h) Uᵀ of a symmetric matrix that must be positive definite."""
    h, u = np.linalg.eigh(a)
    if h[0] <= 0:
        raise ValueError(f"{name} must be positive definite; smallest eigenvalue is {h[0]:.3g}")
    return h, u


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
