"""First-order state-dependent minibatch noise: the correction ΔE₁ to the discrete law.

Linearising the per-example gradients about θ*, g_i(θ* + δ) ≈ g_i + H_i δ, makes the
minibatch noise covariance c_S [Σ + K(C)] on average over the stationary law, with

    K(C) = (1/N) Σ_i H_i C H_i − H̄ C H̄ = (1/N) Σ_i (H_i − H̄) C (H_i − H̄),   H̄ = mean H_i.

The stationary covariance then solves H C + C H − η H C H = η c_S [Σ + K(C)]; its
Neumann series C = C₀ + C₁ + … starts from the additive-noise law C₀.  This module
gives C₁ and the excess loss it adds, ΔE₁ = ½ tr(H C₁) (theory.md, "General networks:
state-dependent noise to first order", derived).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _validate as v
from ._second_moment import k_operator_of_stack, per_example_stack
from .lyapunov import _solve_in_eigenbasis
from .sampling import noise_factor

__all__ = [
    "state_dependent_correction",
    "state_dependent_covariance_first_order",
    "state_dependent_correction_from_trace",
]


def state_dependent_correction(hessian, grad_cov, lr, batch_size, *, per_example_hessians=None,
                               k_operator=None, n_data=None, replacement=True) -> float:
    r"""First-order state-dependent correction ΔE₁ to the discrete stationary excess loss.

    With C₀ the exact discrete additive-noise covariance
    (:func:`theory.sgd_covariance` with ``discrete=True``),

    .. math::
        H C_0 + C_0 H - \eta H C_0 H = \eta c_S \Sigma,\qquad
        K(C) = \frac1N \sum_i H_i C H_i - \bar H C \bar H,

    the first Neumann term C₁ of the state-dependent law solves
    H C₁ + C₁ H − η H C₁ H = η c_S K(C₀), and the excess loss it adds is

    .. math::
        \Delta E_1 = \tfrac12 \operatorname{tr}(H C_1)
                   = \frac{\eta c_S}{2}\,\operatorname{tr}\big[(2I - \eta H)^{-1} K(C_0)\big].

    C₀ ∝ c_S, so ΔE₁ ∝ c_S²: the term matters at small batches and large η.  It is
    >= 0 because K(C) = (1/N) Σ_i (H_i − H̄) C (H_i − H̄) is positive semidefinite.
    E L − L* ≈ :func:`theory.expected_loss_discrete` + ΔE₁.

    ``hessian`` is the H that SGD sees (it may include an L2 term 2λI);
    H̄ in K is the mean of the per-example Hessians.  K is unchanged by a common
    shift H_i → H_i + A, so per-example Hessians of the data loss and of the
    regularised loss give the same answer.

    Parameters
    ----------
    hessian : (d, d) array_like
        H, symmetric positive definite.
    grad_cov : (d, d) array_like
        Σ, per-example gradient covariance (centred, dividing by N), PSD.
    lr : float
        η > 0 with η h_max < 2.
    batch_size : int
        S >= 1.
    per_example_hessians : (n, d, d) array_like, optional
        The H_i of all n = N examples (small d).  Exactly one of this and
        ``k_operator``.
    k_operator : callable, optional
        ``k_operator(C) -> K(C)``, a symmetric (d, d) array for symmetric (d, d) C
        (large d, or structured H_i).
    n_data : int, optional
        N, needed without replacement with ``k_operator``; with the stack it
        defaults to (and must equal) its n.
    replacement : bool
        With (c_S = 1/S) or without replacement (c_S = (N−S)/(S(N−1))).

    Returns
    -------
    float
        ΔE₁.

    Raises
    ------
    ValueError
        Bad matrices or hyperparameters; neither or both of ``per_example_hessians``
        and ``k_operator``; a stack of the wrong shape or asymmetric; ``n_data``
        differing from the stack's n; ``k_operator`` returning a bad matrix.
    TypeError
        ``k_operator`` not callable, or ``replacement`` not a bool.
    StabilityError
        η h_max >= 2.  (The full state-dependent law may lose stability earlier;
        see :func:`theory.least_squares_stationary`.)

    References
    ----------
    theory.md, "General networks: state-dependent noise to first order" (derived);
    Ziyin et al., "Strength of Minibatch Noise in SGD" (ICLR 2022), whose exact
    least-squares law this expands to first order in the fourth-moment term.

    Examples
    --------
    One dimension, H = 2, Σ = 3, per-example curvatures 1 and 3 (H̄ = 2, K(C) = C):
    C₀ = η c_S Σ / (h(2 − ηh)) and ΔE₁ = (η c_S / 2) C₀ / (2 − ηh).

    >>> d1 = state_dependent_correction([[2.0]], [[3.0]], 0.1, 5,
    ...                                 per_example_hessians=[[[1.0]], [[3.0]]])
    >>> c0 = 0.1 * 0.2 * 3.0 / (2.0 * 1.8)
    >>> bool(np.isclose(d1, 0.1 * 0.2 / 2 * c0 / 1.8, rtol=1e-14))
    True
    """
    s_mat, h, u, lr, c, k_of = _setup(hessian, grad_cov, lr, batch_size, per_example_hessians,
                                      k_operator, n_data, replacement)
    c0 = _discrete_covariance(h, u, lr, c, s_mat)
    q = k_of(c0)
    q_diag = np.einsum("ij,ik,kj->j", u, q, u)      # diag(Uᵀ K(C₀) U)
    return float(lr * c / 2.0 * np.sum(q_diag / (2.0 - lr * h)))


def state_dependent_covariance_first_order(hessian, grad_cov, lr, batch_size, *,
                                           per_example_hessians=None, k_operator=None,
                                           n_data=None, replacement=True) -> np.ndarray:
    r"""First Neumann term C₁ of the state-dependent stationary covariance.

    .. math::
        H C_1 + C_1 H - \eta H C_1 H = \eta c_S K(C_0),\qquad
        \tilde C_{1,ij} = \frac{\eta c_S \tilde Q_{ij}}{h_i + h_j - \eta h_i h_j},\quad
        \tilde Q = U^\top K(C_0) U,

    with H = U diag(h) Uᵀ and C₀, K as in :func:`state_dependent_correction`, whose
    value is ½ tr(H C₁).  Cov(θ − θ*) ≈ C₀ + C₁.

    Parameters
    ----------
    hessian, grad_cov, lr, batch_size, per_example_hessians, k_operator, n_data, replacement
        As in :func:`state_dependent_correction`.

    Returns
    -------
    (d, d) ndarray
        C₁, symmetric positive semidefinite.

    Raises
    ------
    ValueError, TypeError, StabilityError
        As in :func:`state_dependent_correction`.

    References
    ----------
    theory.md, "General networks: state-dependent noise to first order" (derived).

    Examples
    --------
    >>> H = np.diag([1.0, 3.0]); S = np.array([[2.0, 1.0], [1.0, 1.0]])
    >>> Hi = [np.diag([0.5, 2.0]), np.diag([1.5, 4.0])]
    >>> C1 = state_dependent_covariance_first_order(H, S, 0.1, 10, per_example_hessians=Hi)
    >>> from theory import sgd_covariance
    >>> C0 = sgd_covariance(H, S, 0.1, 10, discrete=True)
    >>> K0 = sum(A @ C0 @ A for A in Hi) / 2 - H @ C0 @ H
    >>> bool(np.allclose(H @ C1 + C1 @ H - 0.1 * H @ C1 @ H, 0.1 / 10 * K0, rtol=1e-12))
    True
    """
    s_mat, h, u, lr, c, k_of = _setup(hessian, grad_cov, lr, batch_size, per_example_hessians,
                                      k_operator, n_data, replacement)
    c0 = _discrete_covariance(h, u, lr, c, s_mat)
    return _discrete_covariance(h, u, lr, c, k_of(c0))


def state_dependent_correction_from_trace(trace_wk, lr, batch_size, *, n_data=None,
                                          replacement=True):
    r"""ΔE₁ from an estimate of tr[W K(C₀)], W = (2I − ηH)⁻¹:  (η c_S / 2)·tr[W K(C₀)].

    The trace must be taken with C₀ at the same η and S (C₀ ∝ c_S), e.g. by
    ``dnn.state_noise.state_dependent_trace``.  The map is linear, so a standard
    error converts the same way.

    Parameters
    ----------
    trace_wk : float or array_like
        tr[(2I − ηH)⁻¹ K(C₀)], finite (an estimate may be fed directly).
    lr : float or array_like
        η > 0.
    batch_size : int or array_like of int
        S >= 1.
    n_data : int or array_like, optional
        N, for sampling without replacement.
    replacement : bool
        With (c_S = 1/S) or without replacement.

    Returns
    -------
    float or ndarray
        Broadcast over the inputs.

    Raises
    ------
    ValueError
        Non-finite trace, lr <= 0, bad batch_size or n_data.

    References
    ----------
    theory.md, "General networks: state-dependent noise to first order".

    Examples
    --------
    >>> state_dependent_correction_from_trace(2.0, 0.1, 4)
    0.025
    """
    tr = v.finite_array(trace_wk, "trace_wk")
    lr = v.positive(lr, "lr")
    out = lr * noise_factor(batch_size, n_data, replacement) * tr / 2.0
    return float(out) if np.ndim(out) == 0 else out


# -------------------------------------------------------------------------- helpers

def _setup(hessian, grad_cov, lr, batch_size, per_example_hessians, k_operator, n_data,
           replacement):
    """Validate in the fixed order; return (Σ, h, U, η, c_S, K) with H = U diag(h) Uᵀ."""
    replacement = v.flag(replacement, "replacement")
    _, s_mat, h, u = v.hessian_and_grad_cov(hessian, grad_cov)
    d = h.size
    if (per_example_hessians is None) == (k_operator is None):
        raise ValueError("give exactly one of per_example_hessians and k_operator; got "
                         + ("neither" if k_operator is None else "both"))
    if per_example_hessians is not None:
        stack = per_example_stack(per_example_hessians, d)
        n = stack.shape[0]
        if n_data is not None and (np.shape(n_data) != ()
                                   or float(v.finite_array(n_data, "n_data")) != n):
            raise ValueError(f"n_data must equal the number of per_example_hessians ({n}); "
                             f"got {n_data!r}")
        if not replacement:
            # With replacement c_S = 1/S needs no N, and S > N is a legitimate draw.
            n_data = n
        k_of = k_operator_of_stack(stack)
    else:
        k_of = _checked_operator(k_operator, d)
    lr = v.scalar_lr(lr)
    c = noise_factor(batch_size, n_data, replacement)
    if np.ndim(c) != 0:
        raise ValueError(f"batch_size must be a scalar here; got shape {np.shape(c)}")
    v.stable(lr, h[-1])
    return s_mat, h, u, lr, float(c), k_of


def _discrete_covariance(h, u, lr, c, rhs):
    """X solving H X + X H − η H X H = η c_S · rhs, in the eigenbasis of H."""
    denom = h[:, None] + h[None, :] - lr * h[:, None] * h[None, :]
    return lr * c * _solve_in_eigenbasis(rhs, h, u, denom)


def _checked_operator(k_operator, d: int) -> Callable[[np.ndarray], np.ndarray]:
    if not callable(k_operator):
        raise TypeError(f"k_operator must be callable, C -> K(C); got {k_operator!r}")

    def k_of(c):
        out = v.finite_array(k_operator(c), "k_operator(C)")
        if out.shape != (d, d):
            raise ValueError(f"k_operator(C) must return a ({d}, {d}) matrix; got shape "
                             f"{out.shape}")
        return v.square_symmetric(out, "k_operator(C)")
    return k_of
