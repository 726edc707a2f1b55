"""Exact stationary law of discrete SGD on finite-sum least squares (state-dependent noise)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validate as v
from ._second_moment import spectral_radius_on_symmetric
from .momentum import MAX_DIM as _MAX_DIM_MOMENTUM
from .momentum import least_squares_momentum_solve, stacked_radius, state_dependent_operator
from .sampling import noise_factor

__all__ = ["LeastSquaresMoments", "least_squares_moments", "LeastSquaresStationary",
           "least_squares_stationary"]

# d^2 x d^2 dense solve: 40 -> 1600 unknowns, about a second on two cores.
_MAX_DIM = 64


@dataclass(frozen=True)
class LeastSquaresMoments:
    """The quadratic L(θ) = (1/2N)‖Xθ − y‖² at its minimiser."""

    X: np.ndarray                  # (N, d), validated float64
    y: np.ndarray                  # (N,)
    hessian: np.ndarray            # H = XᵀX/N
    eigvals: np.ndarray            # of H, ascending
    eigvecs: np.ndarray            # H = U diag(h) Uᵀ
    minimizer: np.ndarray          # θ*
    residuals: np.ndarray          # r_i = x_iᵀθ* − y_i
    grad_cov: np.ndarray           # Σ of g_i = x_i r_i, centred, dividing by N


def least_squares_moments(X, y) -> LeastSquaresMoments:
    r"""H, θ*, residuals and Σ of L(θ) = (1/2N)‖Xθ − y‖².

    .. math:: H = X^\top X / N,\quad θ^* = H^{-1} X^\top y / N,\quad
              Σ = \frac1N \sum_i g_i g_i^\top - \bar g \bar g^\top,\quad g_i = x_i (x_i^\top θ^* - y_i).

    Raises
    ------
    ValueError
        Non-finite or mis-shaped data, or X without full column rank.

    Examples
    --------
    >>> m = least_squares_moments([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [1.0, 2.0, 2.0])
    >>> bool(np.allclose(m.X.T @ m.residuals, 0))     # normal equations
    True
    """
    x = v.finite_array(X, "X", ndim=2)
    yy = v.finite_array(y, "y", ndim=1)
    n = x.shape[0]
    if yy.shape[0] != n:
        raise ValueError(f"y must have one entry per row of X; got {yy.shape[0]} and {n} rows")
    hess = x.T @ x / n
    lam, u = np.linalg.eigh(hess)
    if lam[0] <= 1e-12 * max(lam[-1], np.finfo(float).tiny):
        raise ValueError(f"X must have full column rank; smallest eigenvalue of X^T X / N "
                         f"is {lam[0]:.3g}")
    theta = np.linalg.solve(hess, x.T @ yy / n)
    resid = x @ theta - yy
    g = x * resid[:, None]
    g_bar = g.mean(axis=0)                      # ~0 up to round-off at the exact minimiser
    sigma = g.T @ g / n - np.outer(g_bar, g_bar)
    return LeastSquaresMoments(x, yy, hess, lam, u, theta, resid, 0.5 * (sigma + sigma.T))


@dataclass(frozen=True)
class LeastSquaresStationary:
    """Stationary moments of SGD on L(θ) = (1/2N)‖Xθ − y‖² (real minibatch noise)."""

    minimizer: np.ndarray          # θ*, (d,)
    loss_star: float               # L(θ*)
    hessian: np.ndarray            # H = XᵀX/N, (d, d)
    grad_cov: np.ndarray           # Σ at θ*, centred, dividing by N, (d, d)
    covariance: np.ndarray         # C = Cov(θ − θ*) at stationarity, (d, d)
    expected_excess_loss: float    # E L(θ) − L(θ*) = ½ tr(HC)
    expected_grad_sqnorm: float    # E‖∇L(θ)‖² = tr(H²C)
    expected_sq_distance: float    # E‖θ − θ*‖² = tr C
    noise_factor: float            # c_S
    spectral_radius: float         # ρ of the second-moment map; < 1 for a stationary law
    momentum: float = 0.0          # heavy-ball β (ρ is then of the stacked (θₜ, θₜ₋₁) map)


def least_squares_stationary(X, y, lr, batch_size, *, replacement=True, momentum=0.0):
    r"""Exact stationary covariance of SGD with real minibatches on least squares.

    For L(θ) = (1/2N) Σ_i (x_iᵀθ − y_i)², per-example gradients at θ = θ* + δ are
    g_i + A_i δ with A_i = x_i x_iᵀ, so the minibatch noise depends on δ.  Averaging
    its covariance over the stationary law gives the *linear* equation

    .. math::
        H C + C H - \eta H C H = \eta c_S\Big[\Sigma + \frac1N\sum_i A_i C A_i - H C H\Big],

    solved by vectorisation (a d² × d² system).  A stationary law exists iff the
    second-moment map C ↦ (I−ηH)C(I−ηH) + η²c_S[(1/N)Σ A_i C A_i − HCH], a positive
    map, has spectral radius < 1; this is checked, and is stricter than η h_max < 2.

    With heavy-ball momentum β (θ' = θ + β(θ − θ₋) − ηĝ) stack z = (δₜ, δₜ₋₁):

    .. math::
        Z = A Z A^\top + \eta^2 c_S\, E_1\Big[\Sigma + \frac1N\sum_i A_i Z_{00} A_i
            - H Z_{00} H\Big] E_1^\top,\qquad
        A = \begin{pmatrix} (1+\beta)I - \eta H & -\beta I \\ I & 0 \end{pmatrix}

    (the noise at step t depends on θₜ only and is uncorrelated with the past).  Given
    Z₀₀ this is the additive-noise Stein equation, whose top-left block is
    η²c_S G ⊙ (noise) in H's eigenbasis (Eq. M4 of :mod:`theory.momentum`), so
    Cov(θ − θ*) = Z₀₀ solves a d² × d² system.  The stacked map's spectral radius ρ is
    found by bisection (:func:`theory.momentum.stacked_radius`); a stationary law
    exists iff ρ < 1, which needs η h_max < 2(1+β) and more.

    Parameters
    ----------
    X : (N, d) array_like
        Design matrix of full column rank, d <= 64.
    y : (N,) array_like
        Targets.
    lr : float
        η > 0.
    batch_size : int
        S, 1 <= S <= N.
    replacement : bool
        i.i.d. draws with replacement (c_S = 1/S) or a uniformly random batch
        without replacement (c_S = (N−S)/(S(N−1))).
    momentum : float
        Heavy-ball β, 0 <= β < 1 (0: plain SGD); β > 0 needs d <= 32.

    Returns
    -------
    LeastSquaresStationary

    Raises
    ------
    ValueError
        Non-finite or mis-shaped data, rank-deficient X, bad lr, batch_size or
        momentum.
    StabilityError
        η h_max >= 2(1+β) with momentum, or no stationary law (spectral radius >= 1).

    References
    ----------
    theory.md, "Real minibatch noise is state-dependent" and "Momentum" (derived).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 3)); y = X @ [1.0, -1.0, 0.5] + rng.normal(size=50)
    >>> r = least_squares_stationary(X, y, 0.05, 5)
    >>> H, C, e, c = r.hessian, r.covariance, 0.05, r.noise_factor
    >>> A = np.einsum("ni,nj->nij", X, X)
    >>> rhs = e * c * (r.grad_cov + np.einsum("nij,jk,nkl->il", A, C, A) / 50 - H @ C @ H)
    >>> bool(np.allclose(H @ C + C @ H - e * H @ C @ H, rhs))
    True

    With momentum, C is the top-left block of the stacked fixed point (2d)² solve:

    >>> r = least_squares_stationary(X, y, 0.05, 5, momentum=0.9)
    >>> A = np.block([[1.9 * np.eye(3) - e * H, -0.9 * np.eye(3)], [np.eye(3), 0 * H]])
    >>> K = np.einsum("ni,nj,jk,nk,nl->il", X, X, r.covariance, X, X) / 50 - H @ r.covariance @ H
    >>> Q = np.zeros((6, 6)); Q[:3, :3] = e * e * c * (r.grad_cov + K)
    >>> Z = np.linalg.solve(np.eye(36) - np.kron(A, A), Q.ravel()).reshape(6, 6)
    >>> bool(np.allclose(Z[:3, :3], r.covariance, rtol=1e-10, atol=0))
    True
    """
    replacement = v.flag(replacement, "replacement")
    beta = v.momentum(momentum)
    m = least_squares_moments(X, y)
    x, hess, sigma = m.X, m.hessian, m.grad_cov
    n, d = x.shape
    if d > _MAX_DIM:
        raise ValueError(f"X has d={d} columns; the d^2 x d^2 solve supports d <= {_MAX_DIM}")
    if beta and d > _MAX_DIM_MOMENTUM:
        raise ValueError(f"X has d={d} columns; with momentum the solve supports "
                         f"d <= {_MAX_DIM_MOMENTUM}")
    lr = v.scalar_lr(lr)
    c = float(noise_factor(batch_size, n, replacement))
    if beta:
        return _with_momentum(m, lr, c, beta, batch_size)
    lam = m.eigvals

    eye = np.eye(d)
    # Row-major vec: vec(A X B) = (A ⊗ Bᵀ) vec(X); all factors here are symmetric.
    z = np.einsum("ni,nj->nij", x, x).reshape(n, d * d)
    fourth = z.T @ z / n                        # (1/N) Σ A_i ⊗ A_i
    hh = np.kron(hess, hess)
    step = np.kron(eye - lr * hess, eye - lr * hess)
    second_moment_map = step + lr**2 * c * (fourth - hh)
    radius = spectral_radius_on_symmetric(second_moment_map, d)
    if radius >= 1.0:
        raise v.StabilityError(f"lr={lr:g}, batch_size={batch_size} has no stationary law: "
                               f"second-moment spectral radius {radius:.4g} >= 1 "
                               f"(lr*h_max = {lr * lam[-1]:.4g})")
    rhs = lr**2 * c * sigma.reshape(-1)
    cov = np.linalg.solve(np.eye(d * d) - second_moment_map, rhs).reshape(d, d)
    cov = 0.5 * (cov + cov.T)
    return _result(m, cov, c, radius)


def _with_momentum(m: LeastSquaresMoments, lr: float, c: float, beta: float,
                   batch_size) -> LeastSquaresStationary:
    """The heavy-ball branch of :func:`least_squares_stationary` (inputs validated)."""
    lam, u = m.eigvals, m.eigvecs
    v.stable(lr, lam[-1], beta)
    kmat = state_dependent_operator(m.X @ u, lam)
    radius = stacked_radius(kmat, lam, lr, c, beta)
    if radius >= 1.0:
        raise v.StabilityError(f"lr={lr:g}, batch_size={batch_size}, momentum={beta:g} has no "
                               f"stationary law: second-moment spectral radius {radius:.4g} "
                               f">= 1 (lr*h_max = {lr * lam[-1]:.4g})")
    cov = least_squares_momentum_solve(kmat, lam, u, m.grad_cov, lr, c, beta)
    return _result(m, cov, c, radius, beta)


def _result(m: LeastSquaresMoments, cov, c: float, radius: float,
            beta: float = 0.0) -> LeastSquaresStationary:
    """The stationary moments of θ from its covariance C: ½tr(HC), tr(H²C), tr C."""
    hess, n = m.hessian, m.X.shape[0]
    return LeastSquaresStationary(
        minimizer=m.minimizer,
        loss_star=float(m.residuals @ m.residuals / (2 * n)),
        hessian=hess,
        grad_cov=m.grad_cov,
        covariance=cov,
        expected_excess_loss=float(0.5 * np.sum(hess * cov)),
        expected_grad_sqnorm=float(np.sum((hess @ hess) * cov)),
        expected_sq_distance=float(np.trace(cov)),
        noise_factor=c,
        spectral_radius=radius,
        momentum=beta,
    )
