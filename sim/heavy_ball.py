r"""Heavy-ball SGD steppers: θ ← θ + β(θ − θ₋) − η ĝ(θ), vectorised over chains, in H's eigenbasis.

The state is (x, v): x = δ̃ₜ = Uᵀ(θₜ − θ*) and the velocity v = xₜ − xₜ₋₁, so one step is

.. math::  v ← β v − η\,ĝ(x),\qquad x ← x + v,

which is the two-step recursion θₜ₊₁ = θₜ + β(θₜ − θₜ₋₁) − ηĝₜ.  Steppers write only
x into the block ``out``: recorders, covariances and the excess loss are of θ, never
of the stacked state.

- :class:`HeavyBallGaussian`: additive noise, ĝ = h ⊙ x + ξ̃ with ξ̃ ~ N(0, c_S Σ̃);
  stationary law :func:`theory.heavy_ball_covariance` (exact).
- :class:`MinibatchHeavyBall`: finite-sum least squares with real minibatches from any
  sampler; stationary law :func:`theory.least_squares_stationary` with ``momentum``.

Relaxation: the eigenvalues of each 2×2 block [[1+β−ηhᵢ, −β], [1, 0]] have largest
modulus rᵢ (√β when underdamped), so second moments relax like max rᵢ²ᵗ; with
state-dependent noise, like ρ(T)ᵗ for the stacked second-moment map T
(:func:`theory.momentum.stacked_radius`).  Nesterov momentum is not implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from theory import StabilityError
from theory._validate import stable
from theory.momentum import MAX_DIM as MAX_DIM_MOMENTUM
from theory.momentum import block_radius, stacked_radius, state_dependent_operator

from ._linear import PRECISIONS, fill_noise, noise_factor_matrix
from .problems import LeastSquares

__all__ = ["HeavyBallGaussian", "MinibatchHeavyBall"]


def _tau(rho: float) -> float:
    """−1/log ρ: steps per e-fold of a second moment that decays like ρᵗ."""
    if rho <= 0.0:
        return 0.0
    # ρ rounds to 1 when η·h is below ~1e-16: the relaxation is then infinitely slow
    # in floating point (and log(1) = 0 would divide by zero).
    return math.inf if rho >= 1.0 else -1.0 / math.log(rho)


def _split(x0, dim):
    """(x, v) from a stacked start of shape (n_chains, 2d)."""
    x0 = np.asarray(x0, dtype=float)
    if x0.ndim != 2 or x0.shape[1] != 2 * dim:
        raise ValueError(f"a heavy-ball start must have shape (n_chains, {2 * dim}) "
                         f"(position, velocity); got {x0.shape}")
    return x0[:, :dim], x0[:, dim:]


@dataclass(frozen=True, eq=False)
class HeavyBallGaussian:
    r"""Heavy ball with additive Gaussian minibatch noise, in H's eigenbasis.

    .. math::  v ← βv − η\,h ⊙ x + ζ,\quad x ← x + v,\qquad ζ \sim N(0, η^2 c_S Σ̃),

    whose stationary Cov x is Eq. (M6) of :mod:`theory.momentum`.

    Parameters
    ----------
    eigvals : (d,) ndarray
        h, the Hessian eigenvalues.
    cov : (d, d) ndarray
        η² c_S Σ̃, the per-step noise covariance (eigenbasis).
    lr, momentum, noise_factor : float
        η, β (0 < β < 1) and c_S.
    dtype : {"float64", "float32"}
        Precision of the states and noise.

    Raises
    ------
    StabilityError
        η h_max >= 2(1 + β).
    """

    eigvals: np.ndarray
    cov: np.ndarray
    lr: float
    momentum: float
    noise_factor: float
    dtype: str = "float64"
    method: str = "sgd"

    def __post_init__(self):
        if self.dtype not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {self.dtype!r}")
        stable(self.lr, float(self.eigvals[-1]), self.momentum)
        factor, lower = noise_factor_matrix(self.cov)
        object.__setattr__(self, "_factor", np.asfortranarray(factor, dtype=self.dtype))
        object.__setattr__(self, "_lower", lower)
        object.__setattr__(self, "_eta_h", np.asarray(self.lr * self.eigvals, dtype=self.dtype))
        object.__setattr__(self, "_beta", np.asarray(self.momentum, dtype=self.dtype)[()])

    @property
    def step(self) -> float:
        """Time per step in SGD-time units (t = kη)."""
        return self.lr

    def astype(self, dtype: str) -> "HeavyBallGaussian":
        """The same recursion with states and noise in ``dtype``."""
        return replace(self, dtype=dtype)

    def relaxation_steps(self) -> float:
        """τ = −1/log max rᵢ²: steps per e-fold of the slowest second-moment mode."""
        return _tau(float(np.max(block_radius(self.lr * self.eigvals, self.momentum))) ** 2)

    def init(self, source, x0):
        """State (x, v) from the stacked start (n_chains, 2d)."""
        x, v = _split(x0, len(self.eigvals))
        return np.array(x, dtype=self.dtype), np.array(v, dtype=self.dtype)

    def advance(self, state, source, out):
        """Fill ``out`` (K, n_chains, d) with the next K positions x; return the new state."""
        x, v = state
        fill_noise(source, out, self._factor, self._lower)
        tmp = np.empty_like(v)
        for k in range(out.shape[0]):
            np.multiply(v, self._beta, out=v)
            np.multiply(x, self._eta_h, out=tmp)
            v -= tmp
            v += out[k]
            np.add(x, v, out=out[k])
            x = out[k]
        return out[-1].copy(), v


@dataclass(frozen=True, eq=False)
class MinibatchHeavyBall:
    r"""Heavy ball on :class:`~sim.problems.LeastSquares` with minibatches drawn from the data.

    In eigenbasis coordinates x̃ᵢ = Uᵀxᵢ,

    .. math::  v ← βv − \frac{η}{S}\sum_{i∈B} x̃_i\,(x̃_iᵀ x + r_i),\qquad x ← x + v,

    with batch indices B from ``sampler`` (see :mod:`sim.samplers`).

    Raises
    ------
    StabilityError
        η h_max >= 2(1 + β), or the stacked second-moment map has spectral radius >= 1.
    ValueError
        d > 32 (the spectral radius is found by dense d² × d² solves).
    """

    problem: LeastSquares
    lr: float
    sampler: object
    noise_factor: float
    momentum: float
    method: str = "sgd"

    def __post_init__(self):
        p = self.problem
        if p.dim > MAX_DIM_MOMENTUM:
            raise ValueError(f"momentum on a LeastSquares problem supports d <= "
                             f"{MAX_DIM_MOMENTUM}; got d={p.dim}")
        stable(self.lr, float(p.eigvals[-1]), self.momentum)
        x = p.X @ p.eigvecs
        rho = stacked_radius(state_dependent_operator(x, p.eigvals), p.eigvals, self.lr,
                             self.noise_factor, self.momentum)
        if rho >= 1.0:
            raise StabilityError(f"lr={self.lr:g} with batch_size={self.sampler.batch_size} and "
                                 f"momentum={self.momentum:g} has no stationary law: "
                                 f"second-moment spectral radius {rho:.4g} >= 1")
        object.__setattr__(self, "_rho", rho)
        object.__setattr__(self, "_x", x)

    @property
    def step(self) -> float:
        """Time per step in SGD-time units (t = kη)."""
        return self.lr

    def relaxation_steps(self) -> float:
        """τ = −1/log ρ(T) of the stacked second-moment map (state-dependent noise included)."""
        return _tau(self._rho)

    def init(self, source, x0):
        """State (x, v, sampler state) from the stacked start (n_chains, 2d)."""
        x, v = _split(x0, self.problem.dim)
        return np.array(x), np.array(v), self.sampler.init(source.rng, x.shape[0])

    def advance(self, state, source, out):
        """Fill ``out`` (K, n_chains, d) with the next K positions x; return the new state."""
        x, v, sstate = state
        idx, sstate = self.sampler.draw(sstate, source.rng, out.shape[0])
        r = self.problem.residuals
        scale = self.lr / self.sampler.batch_size
        for k in range(out.shape[0]):
            xb = self._x[idx[k]]                                  # (c, S, d)
            res = np.matmul(xb, x[:, :, None])[:, :, 0] + r[idx[k]]
            g = np.matmul(res[:, None, :], xb)[:, 0, :]
            v = self.momentum * v - scale * g
            x = x + v
            out[k] = x
        return x, v, sstate
