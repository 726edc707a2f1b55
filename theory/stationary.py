"""Stationary moments of SGD near a minimum: covariance, excess loss, gradient norm, distance.

Continuous (OU/SDE, η → 0) and exact discrete-time (additive noise) versions.
All take Σ as the per-example gradient covariance (centred, dividing by N) and
the noise factor c_S from :func:`theory.noise_factor`.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from .lyapunov import _solve_in_eigenbasis
from .sampling import noise_factor

__all__ = [
    "sgd_covariance",
    "expected_loss_wang",
    "expected_loss_jastrzebski",
    "expected_loss_discrete",
    "expected_grad_sqnorm",
    "expected_sq_distance",
]


def _setup(hessian, grad_cov, lr, batch_size, n_data, replacement, discrete):
    """Validate once; return (Σ, h, U, η, c_S, d_i) with d_i the eigen-denominator factor."""
    discrete = v.flag(discrete, "discrete")
    replacement = v.flag(replacement, "replacement")
    _, s_mat, h, u = v.hessian_and_grad_cov(hessian, grad_cov)
    lr = v.scalar_lr(lr)
    c = noise_factor(batch_size, n_data, replacement)
    if np.ndim(c) != 0:
        raise ValueError(f"batch_size must be a scalar here; got shape {np.shape(c)}")
    if discrete:
        v.stable(lr, h[-1])
    # Per-eigendirection factor 2 - ηh (discrete) or 2 (continuous): both
    # closed forms in theory.md read (η c_S) tr[f(H) (2I - ηH)^{-1} Σ].
    two = 2.0 - lr * h if discrete else np.full_like(h, 2.0)
    return s_mat, h, u, lr, float(c), two


def _sigma_diag(s_mat, u):
    """diag(Uᵀ Σ U) without forming the full product."""
    return np.einsum("ij,ik,kj->j", u, s_mat, u)


def sgd_covariance(hessian, grad_cov, lr, batch_size, *, n_data=None, replacement=True,
                   discrete=False):
    r"""Stationary covariance of SGD iterates, Cov(θ − θ*).

    Continuous (``discrete=False``): η c_S Γ with H Γ + Γ H = Σ (paper Eq. 11).

    Discrete (``discrete=True``), exact for θ_{k+1} = θ_k − η(H(θ_k − θ*) + ξ_k),
    Cov ξ = c_S Σ (additive noise):

    .. math:: H C + C H - \eta H C H = \eta c_S \Sigma,\qquad
              \tilde C_{ij} = \frac{\eta c_S \tilde\Sigma_{ij}}{h_i + h_j - \eta h_i h_j}.

    Parameters
    ----------
    hessian : (d, d) array_like
        H, symmetric positive definite.
    grad_cov : (d, d) array_like
        Σ, symmetric positive semidefinite.
    lr : float
        η > 0.
    batch_size : int
        S >= 1.
    n_data : int, optional
        N, needed for sampling without replacement.
    replacement : bool
        Batch sampling with (c_S = 1/S) or without replacement.
    discrete : bool
        Exact discrete-time solution instead of the SDE limit.

    Returns
    -------
    (d, d) ndarray
        C = Cov(θ − θ*).

    Raises
    ------
    ValueError
        Bad matrices, lr <= 0, batch_size < 1 or > n_data.
    StabilityError
        ``discrete=True`` and η h_max >= 2 (no stationary law).

    References
    ----------
    Luo & Wang Eq. (11); theory.md "Discrete time: the exact correction";
    Ziyin et al. (ICLR 2022) Thm. 1 at zero momentum.

    Examples
    --------
    >>> C = sgd_covariance([[2.0]], [[3.0]], 0.1, 5)
    >>> round(float(C[0, 0]), 6)
    0.015
    >>> round(float(sgd_covariance([[2.0]], [[3.0]], 0.1, 5, discrete=True)[0, 0]), 7)
    0.0166667
    """
    s_mat, h, u, lr, c, _ = _setup(hessian, grad_cov, lr, batch_size, n_data, replacement,
                                   discrete)
    denom = h[:, None] + h[None, :]
    if discrete:
        denom = denom - lr * h[:, None] * h[None, :]
    return lr * c * _solve_in_eigenbasis(s_mat, h, u, denom)


def expected_loss_wang(grad_cov_trace, lr, batch_size, *, n_data=None, replacement=True):
    r"""Wang's four-factor stationary excess loss, (η c_S / 4) tr Σ.

    .. math:: \mathbb{E}[L(\theta)] - L(\theta^*) = \tfrac12 \mathrm{tr}(H\,\mathrm{Cov}\,\theta)
              = \frac{\eta c_S}{4}\,\mathrm{tr}\,\Sigma,

    exact in the SDE limit for any SPD H (trace identity tr HΓ = ½ tr Σ).  With
    c_S = 1/S this is the paper's η/(4S) tr Σ.

    Parameters
    ----------
    grad_cov_trace : float or array_like
        tr Σ >= 0 (centred, dividing by N); estimated traces may be fed directly.
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
        Negative or non-finite trace, lr <= 0, bad batch_size or n_data.

    References
    ----------
    Luo & Wang Eq. (12); Wang (2019) Eq. (4.45).

    Examples
    --------
    >>> round(expected_loss_wang(3.0, 0.1, 5), 12)
    0.015
    >>> expected_loss_wang([3.0, 6.0], 0.1, 5).round(4).tolist()
    [0.015, 0.03]
    """
    tr = v.nonnegative(grad_cov_trace, "grad_cov_trace")
    lr = v.positive(lr, "lr")
    out = lr * noise_factor(batch_size, n_data, replacement) * tr / 4.0
    return float(out) if np.ndim(out) == 0 else out


def expected_loss_jastrzebski(hessian_trace, lr, batch_size, *, n_data=None, replacement=True):
    r"""Jastrzębski et al.'s three-factor stationary excess loss, (η c_S / 4) tr H.

    This is :func:`expected_loss_wang` under the assumption Σ = H (Fisher equals
    Hessian), which holds at the minimiser of a well-specified likelihood but not
    in general.

    Parameters
    ----------
    hessian_trace : float or array_like
        tr H > 0.
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

    Raises
    ------
    ValueError
        Non-positive or non-finite trace, lr <= 0, bad batch_size or n_data.

    References
    ----------
    Luo & Wang Eq. (6); Jastrzębski et al. (2018) Eq. (9).

    Examples
    --------
    >>> round(expected_loss_jastrzebski(2.0, 0.1, 5), 12)
    0.01
    """
    tr = v.positive(hessian_trace, "hessian_trace")
    lr = v.positive(lr, "lr")
    out = lr * noise_factor(batch_size, n_data, replacement) * tr / 4.0
    return float(out) if np.ndim(out) == 0 else out


def expected_loss_discrete(hessian, grad_cov, lr, batch_size, *, n_data=None, replacement=True):
    r"""Exact stationary excess loss of discrete SGD with additive noise, ½ tr(H C).

    .. math:: \mathbb{E}[L] - L^* = \frac{\eta c_S}{2}\,\mathrm{tr}[(2I - \eta H)^{-1}\Sigma],

    which tends to Eq. (12) as η → 0; per eigendirection the relative correction
    is +ηh/2 + O(η²h²).

    Parameters
    ----------
    hessian, grad_cov : (d, d) array_like
        H (SPD) and Σ (PSD).
    lr : float
        η > 0 with η h_max < 2.
    batch_size : int
        S >= 1.
    n_data : int, optional
        N, for sampling without replacement.
    replacement : bool
        With (c_S = 1/S) or without replacement.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Bad matrices or hyperparameters.
    StabilityError
        η h_max >= 2.

    References
    ----------
    theory.md "Discrete time: the exact correction" (derived); consistent with
    Ziyin et al. (ICLR 2022) Thm. 1.

    Examples
    --------
    >>> H = np.diag([1.0, 3.0]); S = np.array([[2.0, 1.0], [1.0, 1.0]])
    >>> round(expected_loss_discrete(H, S, 0.1, 10), 7)
    0.0082043
    """
    s_mat, h, u, lr, c, two = _setup(hessian, grad_cov, lr, batch_size, n_data, replacement,
                                     True)
    return float(lr * c / 2.0 * np.sum(_sigma_diag(s_mat, u) / two))


def expected_grad_sqnorm(hessian, grad_cov, lr, batch_size, *, discrete=False, n_data=None,
                         replacement=True):
    r"""Stationary mean squared full-batch gradient norm, E‖∇L(θ)‖² = tr(H² C).

    Continuous: (η c_S / 2) tr(H Σ) (Eq. 13, derived from tr(H²Γ) = ½ tr(HΣ)).
    Discrete:   η c_S tr[H (2I − ηH)⁻¹ Σ].

    Parameters
    ----------
    hessian, grad_cov : (d, d) array_like
        H (SPD) and Σ (PSD).
    lr : float
        η > 0.
    batch_size : int
        S >= 1.
    discrete : bool
        Exact discrete-time value (requires η h_max < 2).
    n_data : int, optional
        N, for sampling without replacement.
    replacement : bool
        With or without replacement.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Bad matrices or hyperparameters.
    StabilityError
        ``discrete=True`` and η h_max >= 2.

    References
    ----------
    Luo & Wang Eq. (13); Wang (2019) Eq. (4.49); theory.md.

    Examples
    --------
    >>> round(expected_grad_sqnorm([[2.0]], [[3.0]], 0.1, 5), 12)
    0.06
    >>> H = np.diag([1.0, 3.0]); S = np.array([[2.0, 1.0], [1.0, 1.0]])
    >>> round(expected_grad_sqnorm(H, S, 0.1, 10, discrete=True), 7)
    0.0281734
    """
    s_mat, h, u, lr, c, two = _setup(hessian, grad_cov, lr, batch_size, n_data, replacement,
                                     discrete)
    return float(lr * c * np.sum(h * _sigma_diag(s_mat, u) / two))


def expected_sq_distance(hessian, grad_cov, lr, batch_size, *, discrete=False, n_data=None,
                         replacement=True):
    r"""Stationary mean squared distance to the minimiser, E‖θ − θ*‖² = tr C.

    Continuous: (η c_S / 2) tr(H⁻¹ Σ).  Discrete: η c_S tr[(H(2I − ηH))⁻¹ Σ].

    Parameters
    ----------
    hessian, grad_cov : (d, d) array_like
        H (SPD) and Σ (PSD).
    lr : float
        η > 0.
    batch_size : int
        S >= 1.
    discrete : bool
        Exact discrete-time value (requires η h_max < 2).
    n_data : int, optional
        N, for sampling without replacement.
    replacement : bool
        With or without replacement.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Bad matrices or hyperparameters.
    StabilityError
        ``discrete=True`` and η h_max >= 2.

    References
    ----------
    theory.md, "Trace identity" and "Discrete time".

    Examples
    --------
    >>> H = np.diag([1.0, 3.0]); S = np.array([[2.0, 1.0], [1.0, 1.0]])
    >>> round(expected_sq_distance(H, S, 1.0, 1), 6)  # = tr Γ = 7/6
    1.166667
    """
    s_mat, h, u, lr, c, two = _setup(hessian, grad_cov, lr, batch_size, n_data, replacement,
                                     discrete)
    return float(lr * c * np.sum(_sigma_diag(s_mat, u) / (h * two)))
