r"""SGD steppers: θ ← θ − η ĝ(θ), vectorised over chains, in H's eigenbasis.

- :func:`gaussian_sgd`: additive noise, ĝ = Hδ + ξ with ξ ~ N(0, c_S Σ); in the
  eigenbasis x ← (1 − ηh) ⊙ x + N(0, η² c_S Σ̃), a :class:`~sim._linear.LinearGaussian`.
- :class:`MinibatchSGD`: finite-sum least squares with real minibatches,
  ĝ = (1/S) Σ_{i∈B} x_i (x_iᵀθ − y_i), so the noise depends on θ.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np

from theory import StabilityError

from ._linear import LinearGaussian
from .problems import LeastSquares

__all__ = ["gaussian_sgd", "MinibatchSGD", "second_moment_radius"]


def check_stable(lr: float, h_max: float, what: str = "lr") -> None:
    """Raise StabilityError unless η·h_max < 2 (|1 − ηh| < 1 for every eigenvalue)."""
    if lr * h_max >= 2:
        raise StabilityError(f"{what} is unstable: {what}*h_max = {lr * h_max:.4g} >= 2 "
                             f"({what}={lr:g}, largest Hessian eigenvalue {h_max:.4g})")


def gaussian_sgd(problem, lr: float, noise_factor: float) -> LinearGaussian:
    r"""SGD with additive Gaussian minibatch noise as a linear-Gaussian recursion.

    .. math::  δ̃_{k+1} = (I − η\,\mathrm{diag}(h)) δ̃_k − η ξ̃_k,\qquad
               ξ̃_k \sim N(0, c_S Σ̃),

    whose stationary covariance solves HC + CH − ηHCH = η c_S Σ (theory.md, discrete).

    Raises
    ------
    StabilityError
        If η·h_max >= 2.
    """
    h = problem.eigvals
    check_stable(lr, h[-1])
    return LinearGaussian(1.0 - lr * h, lr * lr * noise_factor * problem.grad_cov_eig,
                          "sgd", lr, noise_factor)


def second_moment_radius(problem: LeastSquares, lr: float, noise_factor: float) -> float:
    r"""Spectral radius ρ of the second-moment map of least-squares SGD.

    .. math::  T(C) = ACA + η^2 c_S\Big[\frac1N\sum_i x_i x_iᵀ C x_i x_iᵀ − HCH\Big],
               \quad A = I − ηH,

    so that E δδᵀ evolves as C ← T(C) + η² c_S Σ.  T is symmetric in the Frobenius
    inner product and maps PSD matrices to PSD matrices, so ρ is its largest
    eigenvalue (found densely for d <= 14, else by Lanczos on the matrix-free map).
    """
    x = problem.X @ problem.eigvecs
    h = problem.eigvals
    n, d = x.shape
    a = 1.0 - lr * h
    c2 = lr * lr * noise_factor
    diag = (np.outer(a, a) - c2 * np.outer(h, h)).ravel()
    if d <= 14:
        k = np.einsum("ni,nj->nij", x, x).reshape(n, d * d)
        return float(np.linalg.eigvalsh(np.diag(diag) + (c2 / n) * (k.T @ k))[-1])

    from scipy.sparse.linalg import LinearOperator, eigsh   # only needed for d > 14

    def matvec(vec):
        cm = np.asarray(vec).reshape(d, d)
        q = np.einsum("ni,ij,nj->n", x, cm, x)
        return diag * cm.ravel() + (c2 / n) * ((x.T * q) @ x).ravel()

    op = LinearOperator((d * d, d * d), matvec=matvec, dtype=float)
    return float(eigsh(op, k=1, which="LA", v0=np.eye(d).ravel(), tol=1e-10,
                       return_eigenvectors=False)[0])


@dataclass(frozen=True, eq=False)
class MinibatchSGD:
    r"""SGD on :class:`~sim.problems.LeastSquares` with minibatches drawn from the data.

    In eigenbasis coordinates x̃_i = Uᵀx_i and δ̃ = Uᵀ(θ − θ*),

    .. math::  δ̃ ← δ̃ − \frac{η}{S}\sum_{i∈B} x̃_i\,(x̃_iᵀ δ̃ + r_i),\qquad
               r_i = x_iᵀθ^* − y_i,

    with batch indices B from ``sampler`` (see :mod:`sim.samplers`).
    """

    problem: LeastSquares
    lr: float
    sampler: object
    noise_factor: float
    method: str = "sgd"

    def __post_init__(self):
        check_stable(self.lr, self.problem.eigvals[-1])
        rho = second_moment_radius(self.problem, self.lr, self.noise_factor)
        if rho >= 1.0:
            raise StabilityError(f"lr={self.lr:g} with batch_size={self.sampler.batch_size} has "
                                 f"no stationary law: second-moment spectral radius "
                                 f"{rho:.4g} >= 1")
        object.__setattr__(self, "_rho", rho)
        object.__setattr__(self, "_x", self.problem.X @ self.problem.eigvecs)

    @property
    def step(self) -> float:
        """Time per step in SGD-time units (t = kη)."""
        return self.lr

    def relaxation_steps(self) -> float:
        """τ = −1/log ρ(T): steps per e-fold of the slowest second-moment mode."""
        if self._rho <= 0.0:
            return 0.0
        # ρ rounds to 1 when η·h is below ~1e-16: the relaxation is then infinitely slow
        # in floating point (and log(1) = 0 would divide by zero).
        return math.inf if self._rho >= 1.0 else -1.0 / math.log(self._rho)

    def init(self, source, x0):
        """State: (eigenbasis coordinates (n_chains, d), sampler state)."""
        x0 = np.array(x0, dtype=float)
        return x0, self.sampler.init(source.rng, x0.shape[0])

    def advance(self, state, source, out):
        """Fill ``out`` (K, n_chains, d) with the next K states; return the new state.

        Batch indices come from ``source.rng`` (a :class:`~sim.noise.NormalSource`).
        """
        x, sstate = state
        idx, sstate = self.sampler.draw(sstate, source.rng, out.shape[0])
        r = self.problem.residuals
        scale = self.lr / self.sampler.batch_size
        for k in range(out.shape[0]):
            xb = self._x[idx[k]]                                  # (c, S, d)
            res = np.matmul(xb, x[:, :, None])[:, :, 0] + r[idx[k]]
            g = np.matmul(res[:, None, :], xb)[:, 0, :]
            x = x - scale * g
            out[k] = x
        return x, sstate
