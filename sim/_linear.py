r"""The linear-Gaussian recursion shared by SGD (Gaussian noise), Euler–Maruyama and exact OU.

In H's eigenbasis all three are

.. math::  x_{k+1} = a \odot x_k + F z_k,\qquad z_k \sim N(0, I_r),

with a diagonal drift factor ``a`` (d,) and a noise factor F (d, r), F Fᵀ = Q the
per-step noise covariance.  Only the coefficients differ (see sgd.py, sde.py, ou.py).
Noise for a block of K steps is drawn at once and transformed by one in-place
triangular BLAS product (F is the Cholesky factor when Q is positive definite).
"""

from __future__ import annotations

import math

from dataclasses import dataclass, replace

import numpy as np
from scipy.linalg import blas

_TRMM = {np.dtype(dt): blas.get_blas_funcs("trmm", dtype=dt) for dt in (np.float64, np.float32)}
PRECISIONS = ("float64", "float32")


def noise_factor_matrix(cov: np.ndarray) -> tuple[np.ndarray, bool]:
    """Return (F, lower) with F Fᵀ = cov: Cholesky if cov is PD, else V sqrt(λ⁺) of rank r."""
    try:
        return np.asfortranarray(np.linalg.cholesky(cov)), True
    except np.linalg.LinAlgError:
        lam, vec = np.linalg.eigh(cov)
        keep = lam > 1e-14 * max(lam[-1], 0.0)
        return vec[:, keep] * np.sqrt(lam[keep]), False


def recurse(a: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """In place: out[k] ← a ⊙ out[k−1] + out[k], with out[−1] ≡ x (out holds the noise on entry)."""
    tmp = np.empty_like(x)
    prev = x
    for k in range(out.shape[0]):
        np.multiply(prev, a, out=tmp)
        out[k] += tmp
        prev = out[k]


@dataclass(frozen=True, eq=False)
class LinearGaussian:
    """x ← a ⊙ x + F z, vectorised over chains (leading axis); see module docstring.

    ``method``, ``step`` (time step in SGD-time units, t = kη) and ``noise_factor``
    (c_S) are carried for the driver's bookkeeping.  ``dtype`` is the precision of
    the states and noise ("float32" roughly halves the cost of a step; statistics
    are still accumulated in float64, see :func:`sim.simulate`).
    """

    a: np.ndarray
    cov: np.ndarray              # per-step noise covariance Q = F Fᵀ (eigenbasis)
    method: str
    step: float
    noise_factor: float
    dtype: str = "float64"

    def __post_init__(self):
        if self.dtype not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.dtype!r}")
        factor, lower = noise_factor_matrix(self.cov)
        object.__setattr__(self, "_factor", np.asfortranarray(factor, dtype=self.dtype))
        object.__setattr__(self, "_lower", lower)
        object.__setattr__(self, "_a", np.asarray(self.a, dtype=self.dtype))

    def astype(self, dtype: str) -> "LinearGaussian":
        """The same recursion with states and noise in ``dtype``."""
        return replace(self, dtype=dtype)

    def relaxation_steps(self) -> float:
        """τ = −1/log max_i a_i²: steps per e-fold of the second moments' slowest mode."""
        rho = float(np.max(self.a ** 2))
        if rho <= 0.0:
            return 0.0
        # ρ rounds to 1 when η·h is below ~1e-16: the relaxation is then infinitely slow
        # in floating point (and log(1) = 0 would divide by zero).
        return math.inf if rho >= 1.0 else -1.0 / math.log(rho)

    def init(self, source, x0: np.ndarray):
        """State: the (n_chains, d) array of eigenbasis coordinates."""
        return np.array(x0, dtype=self.dtype)

    def advance(self, state, source, out: np.ndarray):
        """Fill ``out`` (K, n_chains, d) with the next K states; return the new state.

        ``source`` is a :class:`~sim.noise.NormalSource`.
        """
        self.noise(source, out)
        recurse(self._a, state, out)
        return out[-1].copy()

    def noise(self, source, out: np.ndarray) -> None:
        """Fill the C-contiguous ``out`` (..., d) with independent N(0, Q) draws."""
        fill_noise(source, out, self._factor, self._lower)


def fill_noise(source, out: np.ndarray, factor: np.ndarray, lower: bool) -> None:
    """Fill the C-contiguous ``out`` (..., d) with N(0, F Fᵀ) draws (F from noise_factor_matrix).

    ``factor`` is Fortran-ordered in ``out``'s dtype; ``lower`` says it is triangular.
    """
    d = out.shape[-1]
    if factor.shape[1] == 0:
        out[...] = 0.0
    elif lower:
        source.standard_normal(out)
        # (K·c, d) C-order is (d, K·c) Fortran-order: trmm overwrites it with F Z.
        res = _TRMM[out.dtype](1.0, factor, out.reshape(-1, d).T, side=0, lower=1,
                               overwrite_b=1)
        if not np.shares_memory(res, out):              # pragma: no cover - BLAS copied
            out.reshape(-1, d)[...] = res.T
    else:
        z = np.empty((out.size // d, factor.shape[1]), dtype=out.dtype)
        source.standard_normal(z)
        np.matmul(z, factor.T, out=out.reshape(-1, d))
