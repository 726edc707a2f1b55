r"""Euler–Maruyama for the SGD SDE, vectorised, plus an sdeint reference for single paths.

The SDE (theory.md, continuous time; time t = kη):

.. math::  dθ = −H(θ − θ^*)\,dt + \sqrt{η c_S}\,σ\,dB,\qquad σσᵀ = Σ.

Euler–Maruyama with step h is the linear recursion

.. math::  δ_{n+1} = (I − hH)δ_n + \sqrt{η c_S}\,σ\,ΔW_n,\qquad ΔW_n \sim N(0, hI),

whose stationary covariance solves HC + CH − hHCH = η c_S Σ: the discrete SGD formula
with η → h in the drift but the noise strength η c_S kept, i.e.
C_EM(h) = (η/h)·C_SGD(lr=h).  With h = η it coincides with SGD with Gaussian noise.

:func:`euler_maruyama_path` and :func:`sdeint_path` take the same increments ΔW, so
our recursion can be compared with ``sdeint.itoEuler`` path by path.
"""

from __future__ import annotations

import numpy as np

from ._linear import LinearGaussian, noise_factor_matrix, recurse
from .sgd import check_stable

__all__ = ["euler_maruyama", "diffusion_matrix", "euler_maruyama_path", "sdeint_path"]


def euler_maruyama(problem, lr: float, noise_factor: float, step: float) -> LinearGaussian:
    r"""Vectorised EM stepper: x ← (1 − h·h_i) ⊙ x + N(0, h η c_S Σ̃) in H's eigenbasis.

    Raises
    ------
    StabilityError
        If h·h_max >= 2 (EM on the linear drift is unstable).
    """
    h = problem.eigvals
    check_stable(step, h[-1], what="step")
    return LinearGaussian(1.0 - step * h, step * lr * noise_factor * problem.grad_cov_eig,
                          "em", step, noise_factor)


def diffusion_matrix(problem, lr: float, noise_factor: float) -> np.ndarray:
    """G = sqrt(η c_S) σ with σσᵀ = Σ (Cholesky, or V sqrt(λ⁺) if Σ is singular); shape (d, m)."""
    sigma, _ = noise_factor_matrix(problem.grad_cov)
    return np.sqrt(lr * noise_factor) * np.ascontiguousarray(sigma)


def _checked(problem, theta0, dw, step):
    theta0 = np.asarray(theta0, dtype=float)
    dw = np.asarray(dw, dtype=float)
    if theta0.shape != (problem.dim,):
        raise ValueError(f"theta0 must have shape ({problem.dim},); got {theta0.shape}")
    if dw.ndim != 2:
        raise ValueError(f"dW must have shape (n_steps, m); got {dw.shape}")
    if not (np.all(np.isfinite(theta0)) and np.all(np.isfinite(dw))):
        raise ValueError("theta0 and dW must be finite")
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"step must be finite and > 0; got {step}")
    return theta0, dw


def euler_maruyama_path(problem, theta0, dW, *, lr, noise_factor, step) -> np.ndarray:
    r"""One EM path driven by given Wiener increments, through the vectorised recursion.

    .. math::  θ_{n+1} = θ_n − hH(θ_n − θ^*) + G\,ΔW_n,\qquad G = \sqrt{η c_S}\,σ.

    Parameters
    ----------
    problem : GaussianQuadratic or LeastSquares
    theta0 : (d,) array_like
    dW : (n_steps, m) array_like
        Increments ΔW_n ~ N(0, h I_m), m = ``diffusion_matrix(...).shape[1]``.
    lr, noise_factor, step : float
        η, c_S and h.

    Returns
    -------
    (n_steps + 1, d) ndarray
        θ_0, …, θ_n (first row is ``theta0``).

    Raises
    ------
    ValueError
        Mis-shaped or non-finite ``theta0``/``dW``; StabilityError if h·h_max >= 2.
    """
    theta0, dw = _checked(problem, theta0, dW, step)
    g = diffusion_matrix(problem, lr, noise_factor)
    if dw.shape[1] != g.shape[1]:
        raise ValueError(f"dW must have {g.shape[1]} columns; got {dw.shape[1]}")
    stepper = euler_maruyama(problem, lr, noise_factor, step)   # the driver's coefficients
    u = problem.eigvecs
    out = ((dw @ g.T) @ u)[:, None, :]          # noise in eigen coordinates, one chain
    recurse(stepper.a, ((theta0 - problem.minimizer) @ u)[None], out)
    path = problem.minimizer + out[:, 0, :] @ u.T
    return np.vstack([theta0, path])


def sdeint_path(problem, theta0, dW, *, lr, noise_factor, step, scheme="itoEuler") -> np.ndarray:
    r"""The same SDE integrated by sdeint (reference implementation, one path).

    ``scheme="itoEuler"`` is Euler–Maruyama; ``"itoSRI2"`` is Rößler's order-1.0 strong
    scheme, which for this additive-noise linear SDE reduces to
    δ_{n+1} = (I − hH + h²H²/2)δ_n + GΔW_n.  Its repeated Itô integrals multiply
    differences of the constant G and cancel, so they are passed as zeros
    (no hidden randomness).

    Returns
    -------
    (n_steps + 1, d) ndarray
    """
    import sdeint

    theta0, dw = _checked(problem, theta0, dW, step)
    h_mat, star = problem.hessian, problem.minimizer
    g = diffusion_matrix(problem, lr, noise_factor)
    tspan = step * np.arange(dw.shape[0] + 1)

    def drift(y, t):
        return -h_mat @ (y - star)

    def diffusion(y, t):
        return g

    if scheme == "itoEuler":
        return sdeint.itoEuler(drift, diffusion, theta0, tspan, dW=dw)
    if scheme == "itoSRI2":
        zeros = np.zeros((dw.shape[0], dw.shape[1], dw.shape[1]))
        return sdeint.itoSRI2(drift, diffusion, theta0, tspan, dW=dw, I=zeros)
    raise ValueError(f"unknown scheme {scheme!r}; expected 'itoEuler' or 'itoSRI2'")
