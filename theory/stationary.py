"""Stationary moments of SGD near a minimum: covariance, excess loss, gradient norm, distance.

Continuous (OU/SDE, η → 0) and exact discrete-time (additive noise) versions.
All take Σ as the per-example gradient covariance (centred, dividing by N) and
the noise factor c_S from :func:`theory.noise_factor`.

Every function takes ``momentum=β`` (heavy ball, 0 <= β < 1; :mod:`theory.momentum`
derives the laws).  The continuous versions are the SDE limit at the effective rate
η/(1−β) (Mandt, Hoffman & Blei 2017); the discrete ones are exact for heavy ball with
additive noise and are stable iff η h_max < 2(1+β).  β = 0 runs exactly the
plain-SGD code, so its numbers are unchanged to the last bit.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from .lyapunov import _solve_in_eigenbasis
from .momentum import stacked_blocks_eig
from .sampling import noise_factor

__all__ = [
    "sgd_covariance",
    "expected_loss_wang",
    "expected_loss_jastrzebski",
    "expected_loss_discrete",
    "expected_grad_sqnorm",
    "expected_sq_distance",
]


def _setup(hessian, grad_cov, lr, batch_size, n_data, replacement, discrete, momentum=0.0):
    """Validate once; return (Σ, h, U, η, c_S, d_i, β, gain).

    d_i is the eigen-denominator factor and ``gain`` the momentum prefactor of the
    trace formulas (1.0 at β = 0, where callers keep the plain-SGD expressions).
    """
    discrete = v.flag(discrete, "discrete")
    replacement = v.flag(replacement, "replacement")
    beta = v.momentum(momentum)
    _, s_mat, h, u = v.hessian_and_grad_cov(hessian, grad_cov)
    lr = v.scalar_lr(lr)
    c = noise_factor(batch_size, n_data, replacement)
    if np.ndim(c) != 0:
        raise ValueError(f"batch_size must be a scalar here; got shape {np.shape(c)}")
    if discrete:
        v.stable(lr, h[-1], beta)
    if beta == 0.0:
        # Per-eigendirection factor 2 - ηh (discrete) or 2 (continuous): both
        # closed forms in theory.md read (η c_S) tr[f(H) (2I - ηH)^{-1} Σ].
        two = 2.0 - lr * h if discrete else np.full_like(h, 2.0)
        return s_mat, h, u, lr, float(c), two, beta, 1.0
    if discrete:
        # Eq. (M7) of theory.momentum: diagonal of (M6), p_i = η c_S Σ̃_ii (1+β) /
        # ((1−β) h_i (2(1+β) − ηh_i)); every trace formula keeps its β = 0 shape.
        return (s_mat, h, u, lr, float(c), 2.0 * (1.0 + beta) - lr * h, beta,
                (1.0 + beta) / (1.0 - beta))
    # SDE limit at the effective rate η/(1−β).
    return s_mat, h, u, lr, float(c), np.full_like(h, 2.0), beta, 1.0 / (1.0 - beta)


def stationary_gamma(s_mat, h, u):
    """Γ with HΓ + ΓH = Σ, from a validated eigendecomposition."""
    return _solve_in_eigenbasis(s_mat, h, u, h[:, None] + h[None, :])


def _sigma_diag(s_mat, u):
    """diag(Uᵀ Σ U) without forming the full product."""
    return np.einsum("ij,ik,kj->j", u, s_mat, u)


def sgd_covariance(hessian, grad_cov, lr, batch_size, *, n_data=None, replacement=True,
                   discrete=False, momentum=0.0):
    r"""Stationary covariance of SGD iterates, Cov(θ − θ*).

    Continuous (``discrete=False``): η c_S Γ with H Γ + Γ H = Σ (paper Eq. 11); with
    momentum β, η → η/(1−β).

    Discrete (``discrete=True``), exact for θ_{k+1} = θ_k − η(H(θ_k − θ*) + ξ_k),
    Cov ξ = c_S Σ (additive noise):

    .. math:: H C + C H - \eta H C H = \eta c_S \Sigma,\qquad
              \tilde C_{ij} = \frac{\eta c_S \tilde\Sigma_{ij}}{h_i + h_j - \eta h_i h_j}.

    With momentum β (heavy ball, θ_{k+1} = θ_k + β(θ_k − θ_{k−1}) − η ĝ_k) it is the
    top-left block of the stacked Stein equation, Eq. (M6) of :mod:`theory.momentum`:

    .. math:: \tilde C_{ij} = \frac{\eta c_S \tilde\Sigma_{ij}\,(1+\beta)/(1-\beta)}
              {(1+\beta)(h_i+h_j) - \eta h_i h_j + \beta\eta(h_i-h_j)^2/(1-\beta)^2},

    whose η → 0 limit is the OU law at the rate η/(1−β); the (h_i − h_j)² term only
    acts where Σ̃ is off-diagonal, i.e. when H and Σ do not commute.

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
    momentum : float
        Heavy-ball β, 0 <= β < 1 (0: plain SGD).

    Returns
    -------
    (d, d) ndarray
        C = Cov(θ − θ*).

    Raises
    ------
    ValueError
        Bad matrices, lr <= 0, batch_size < 1 or > n_data, momentum outside [0, 1).
    StabilityError
        ``discrete=True`` and η h_max >= 2(1 + β) (no stationary law).

    References
    ----------
    Luo & Wang Eq. (11); theory.md "Discrete time: the exact correction" and
    "Momentum"; Ziyin et al. (ICLR 2022) Thm. 1; Mandt, Hoffman & Blei (2017) for the
    continuous limit with momentum.

    Examples
    --------
    >>> C = sgd_covariance([[2.0]], [[3.0]], 0.1, 5)
    >>> round(float(C[0, 0]), 6)
    0.015
    >>> round(float(sgd_covariance([[2.0]], [[3.0]], 0.1, 5, discrete=True)[0, 0]), 7)
    0.0166667
    >>> # 1-D heavy ball: η c_S s² (1+β) / ((1−β) h (2(1+β) − ηh))
    >>> C = sgd_covariance([[2.0]], [[3.0]], 0.1, 5, discrete=True, momentum=0.5)
    >>> bool(np.isclose(C[0, 0], 0.1 / 5 * 3.0 * 1.5 / (0.5 * 2.0 * (3.0 - 0.2))))
    True
    """
    s_mat, h, u, lr, c, _, beta, gain = _setup(hessian, grad_cov, lr, batch_size, n_data,
                                               replacement, discrete, momentum)
    if beta and discrete:
        cov, _ = stacked_blocks_eig(h, u.T @ s_mat @ u, lr, c, beta)
        out = u @ cov @ u.T
        return 0.5 * (out + out.T)
    if beta:
        return lr * gain * c * stationary_gamma(s_mat, h, u)
    denom = h[:, None] + h[None, :]
    if discrete:
        denom = denom - lr * h[:, None] * h[None, :]
    return lr * c * _solve_in_eigenbasis(s_mat, h, u, denom)


def expected_loss_wang(grad_cov_trace, lr, batch_size, *, n_data=None, replacement=True,
                       momentum=0.0):
    r"""Wang's four-factor stationary excess loss, (η c_S / 4) tr Σ.

    .. math:: \mathbb{E}[L(\theta)] - L(\theta^*) = \tfrac12 \mathrm{tr}(H\,\mathrm{Cov}\,\theta)
              = \frac{\eta c_S}{4}\,\mathrm{tr}\,\Sigma,

    exact in the SDE limit for any SPD H (trace identity tr HΓ = ½ tr Σ).  With
    c_S = 1/S this is the paper's η/(4S) tr Σ.  With heavy-ball momentum β the SDE
    limit holds at the effective rate η/(1−β): (η c_S/(4(1−β))) tr Σ, the η → 0 limit
    of the exact discrete law (:func:`expected_loss_discrete`).

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
    momentum : float
        Heavy-ball β, 0 <= β < 1 (a scalar).

    Returns
    -------
    float or ndarray
        Broadcast over the inputs.

    Raises
    ------
    ValueError
        Negative or non-finite trace, lr <= 0, bad batch_size or n_data, momentum
        outside [0, 1).

    References
    ----------
    Luo & Wang Eq. (12); Wang (2019) Eq. (4.45); Mandt, Hoffman & Blei (2017) for
    the effective rate η/(1−β).

    Examples
    --------
    >>> round(expected_loss_wang(3.0, 0.1, 5), 12)
    0.015
    >>> expected_loss_wang([3.0, 6.0], 0.1, 5).round(4).tolist()
    [0.015, 0.03]
    >>> round(expected_loss_wang(3.0, 0.1, 5, momentum=0.9), 12)   # η/(1−β) = 1
    0.15
    """
    tr = v.nonnegative(grad_cov_trace, "grad_cov_trace")
    lr = v.positive(lr, "lr")
    beta = v.momentum(momentum)
    if beta:
        lr = lr / (1.0 - beta)
    out = lr * noise_factor(batch_size, n_data, replacement) * tr / 4.0
    return float(out) if np.ndim(out) == 0 else out


def expected_loss_jastrzebski(hessian_trace, lr, batch_size, *, n_data=None, replacement=True,
                              momentum=0.0):
    r"""Jastrzębski et al.'s three-factor stationary excess loss, (η c_S / 4) tr H.

    This is :func:`expected_loss_wang` under the assumption Σ = H (Fisher equals
    Hessian), which holds at the minimiser of a well-specified likelihood but not
    in general.  With heavy-ball momentum β: (η c_S/(4(1−β))) tr H.

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
    momentum : float
        Heavy-ball β, 0 <= β < 1 (a scalar).

    Returns
    -------
    float or ndarray

    Raises
    ------
    ValueError
        Non-positive or non-finite trace, lr <= 0, bad batch_size or n_data, momentum
        outside [0, 1).

    References
    ----------
    Luo & Wang Eq. (6); Jastrzębski et al. (2018) Eq. (9); Mandt, Hoffman & Blei
    (2017) for the effective rate η/(1−β).

    Examples
    --------
    >>> round(expected_loss_jastrzebski(2.0, 0.1, 5), 12)
    0.01
    >>> round(expected_loss_jastrzebski(2.0, 0.1, 5, momentum=0.5), 12)
    0.02
    """
    tr = v.positive(hessian_trace, "hessian_trace")
    lr = v.positive(lr, "lr")
    beta = v.momentum(momentum)
    if beta:
        lr = lr / (1.0 - beta)
    out = lr * noise_factor(batch_size, n_data, replacement) * tr / 4.0
    return float(out) if np.ndim(out) == 0 else out


def expected_loss_discrete(hessian, grad_cov, lr, batch_size, *, n_data=None, replacement=True,
                           momentum=0.0):
    r"""Exact stationary excess loss of discrete SGD with additive noise, ½ tr(H C).

    .. math:: \mathbb{E}[L] - L^* = \frac{\eta c_S}{2}\,\mathrm{tr}[(2I - \eta H)^{-1}\Sigma],

    which tends to Eq. (12) as η → 0; per eigendirection the relative correction
    is +ηh/2 + O(η²h²).  With heavy-ball momentum β (Eq. M7 of :mod:`theory.momentum`):

    .. math:: \mathbb{E}[L] - L^* = \frac{\eta c_S (1+\beta)}{2(1-\beta)}\,
              \mathrm{tr}[(2(1+\beta)I - \eta H)^{-1}\Sigma],

    stable for η h_max < 2(1+β), increasing in β, and (η c_S/(4(1−β))) tr Σ as η → 0.

    Parameters
    ----------
    hessian, grad_cov : (d, d) array_like
        H (SPD) and Σ (PSD).
    lr : float
        η > 0 with η h_max < 2(1 + β).
    batch_size : int
        S >= 1.
    n_data : int, optional
        N, for sampling without replacement.
    replacement : bool
        With (c_S = 1/S) or without replacement.
    momentum : float
        Heavy-ball β, 0 <= β < 1 (0: plain SGD).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Bad matrices or hyperparameters, momentum outside [0, 1).
    StabilityError
        η h_max >= 2(1 + β).

    References
    ----------
    theory.md "Discrete time: the exact correction" and "Momentum" (derived);
    consistent with Ziyin et al. (ICLR 2022) Thm. 1.

    Examples
    --------
    >>> H = np.diag([1.0, 3.0]); S = np.array([[2.0, 1.0], [1.0, 1.0]])
    >>> round(expected_loss_discrete(H, S, 0.1, 10), 7)
    0.0082043
    >>> from theory.momentum import heavy_ball_covariance
    >>> Z = heavy_ball_covariance(H, S, 0.1, 10, momentum=0.9)
    >>> bool(np.isclose(expected_loss_discrete(H, S, 0.1, 10, momentum=0.9),
    ...                 0.5 * np.trace(H @ Z[:2, :2]), rtol=1e-12))
    True
    """
    s_mat, h, u, lr, c, two, beta, gain = _setup(hessian, grad_cov, lr, batch_size, n_data,
                                                 replacement, True, momentum)
    if beta:
        return float(lr * c * gain / 2.0 * np.sum(_sigma_diag(s_mat, u) / two))
    return float(lr * c / 2.0 * np.sum(_sigma_diag(s_mat, u) / two))


def expected_grad_sqnorm(hessian, grad_cov, lr, batch_size, *, discrete=False, n_data=None,
                         replacement=True, momentum=0.0):
    r"""Stationary mean squared full-batch gradient norm, E‖∇L(θ)‖² = tr(H² C).

    Continuous: (η c_S / 2) tr(H Σ) (Eq. 13, derived from tr(H²Γ) = ½ tr(HΣ)).
    Discrete:   η c_S tr[H (2I − ηH)⁻¹ Σ].
    With heavy-ball momentum β: continuous η → η/(1−β); discrete (from Eq. M6's
    diagonal) (η c_S (1+β)/(1−β)) tr[H (2(1+β)I − ηH)⁻¹ Σ].

    Parameters
    ----------
    hessian, grad_cov : (d, d) array_like
        H (SPD) and Σ (PSD).
    lr : float
        η > 0.
    batch_size : int
        S >= 1.
    discrete : bool
        Exact discrete-time value (requires η h_max < 2(1 + β)).
    n_data : int, optional
        N, for sampling without replacement.
    replacement : bool
        With or without replacement.
    momentum : float
        Heavy-ball β, 0 <= β < 1 (0: plain SGD).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Bad matrices or hyperparameters, momentum outside [0, 1).
    StabilityError
        ``discrete=True`` and η h_max >= 2(1 + β).

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
    >>> from theory.momentum import heavy_ball_covariance
    >>> Z = heavy_ball_covariance(H, S, 0.1, 10, momentum=0.5)
    >>> bool(np.isclose(expected_grad_sqnorm(H, S, 0.1, 10, discrete=True, momentum=0.5),
    ...                 np.trace(H @ H @ Z[:2, :2]), rtol=1e-12))
    True
    """
    s_mat, h, u, lr, c, two, beta, gain = _setup(hessian, grad_cov, lr, batch_size, n_data,
                                                 replacement, discrete, momentum)
    if beta:
        return float(lr * c * gain * np.sum(h * _sigma_diag(s_mat, u) / two))
    return float(lr * c * np.sum(h * _sigma_diag(s_mat, u) / two))


def expected_sq_distance(hessian, grad_cov, lr, batch_size, *, discrete=False, n_data=None,
                         replacement=True, momentum=0.0):
    r"""Stationary mean squared distance to the minimiser, E‖θ − θ*‖² = tr C.

    Continuous: (η c_S / 2) tr(H⁻¹ Σ).  Discrete: η c_S tr[(H(2I − ηH))⁻¹ Σ].
    With heavy-ball momentum β: continuous η → η/(1−β); discrete
    (η c_S (1+β)/(1−β)) tr[(H(2(1+β)I − ηH))⁻¹ Σ] (the diagonal of Eq. M6).

    Parameters
    ----------
    hessian, grad_cov : (d, d) array_like
        H (SPD) and Σ (PSD).
    lr : float
        η > 0.
    batch_size : int
        S >= 1.
    discrete : bool
        Exact discrete-time value (requires η h_max < 2(1 + β)).
    n_data : int, optional
        N, for sampling without replacement.
    replacement : bool
        With or without replacement.
    momentum : float
        Heavy-ball β, 0 <= β < 1 (0: plain SGD).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Bad matrices or hyperparameters, momentum outside [0, 1).
    StabilityError
        ``discrete=True`` and η h_max >= 2(1 + β).

    References
    ----------
    theory.md, "Trace identity", "Discrete time" and "Momentum".

    Examples
    --------
    >>> H = np.diag([1.0, 3.0]); S = np.array([[2.0, 1.0], [1.0, 1.0]])
    >>> round(expected_sq_distance(H, S, 1.0, 1), 6)  # = tr Γ = 7/6
    1.166667
    >>> round(expected_sq_distance(H, S, 0.5, 1, momentum=0.5), 6)  # η/(1−β) = 1: tr Γ
    1.166667
    """
    s_mat, h, u, lr, c, two, beta, gain = _setup(hessian, grad_cov, lr, batch_size, n_data,
                                                 replacement, discrete, momentum)
    if beta:
        return float(lr * c * gain * np.sum(_sigma_diag(s_mat, u) / (h * two)))
    return float(lr * c * np.sum(_sigma_diag(s_mat, u) / (h * two)))
