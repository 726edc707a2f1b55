r"""Exact Ornstein–Uhlenbeck transition of the SGD SDE: no discretisation bias at any step.

For dδ = −Hδ dt + sqrt(η c_S) σ dB (time t = kη) the law of δ_{t+h} given δ_t is

.. math::  δ_{t+h} = e^{−Hh} δ_t + N(0, Q_h),\qquad
           Q_h = η c_S \int_0^h e^{−Hs} Σ e^{−Hs}\,ds,

and in H's eigenbasis

.. math::  \tilde Q_{ij} = η c_S \tilde Σ_{ij}\,\frac{1 − e^{−(h_i + h_j)h}}{h_i + h_j}.

Its stationary covariance is exactly η c_S Γ with HΓ + ΓH = Σ (Wang Eq. 11), so
E L − L* = (η c_S/4) tr Σ (Eq. 12) for every h.
"""

from __future__ import annotations

import numpy as np

from ._linear import LinearGaussian

__all__ = ["exact_ou", "ou_transition_cov"]


def ou_transition_cov(eigvals: np.ndarray, grad_cov_eig: np.ndarray, lr: float,
                      noise_factor: float, step: float) -> np.ndarray:
    """Q̃_h in H's eigenbasis (see module docstring); expm1 keeps small h·h_i accurate."""
    s = eigvals[:, None] + eigvals[None, :]
    return lr * noise_factor * grad_cov_eig * (-np.expm1(-s * step) / s)


def exact_ou(problem, lr: float, noise_factor: float, step: float) -> LinearGaussian:
    r"""Exact OU stepper: x ← e^{−h·h_i} ⊙ x + N(0, Q̃_h); stable for every h > 0."""
    h = problem.eigvals
    q = ou_transition_cov(h, problem.grad_cov_eig, lr, noise_factor, step)
    return LinearGaussian(np.exp(-step * h), q, "ou", step, noise_factor)
