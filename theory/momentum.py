r"""Heavy-ball momentum: the stacked linear system and its exact stationary law.

Heavy ball with learning rate η and momentum β on L(θ) = ½ δᵀHδ, δ = θ − θ*, with
additive minibatch noise ξₜ, Cov ξ = c_S Σ:

.. math::  θ_{t+1} = θ_t + β(θ_t − θ_{t−1}) − η(Hδ_t + ξ_t).                     \tag{M1}

Derivation (theory.md, "Momentum"; checked here against
``scipy.linalg.solve_discrete_lyapunov`` in tests/test_theory_momentum.py):

1. Stack z = (δₜ, δₜ₋₁): z' = A z + (−ηξ, 0) with
   A = [[(1+β)I − ηH, −βI], [I, 0]], so the stationary Z = Cov z solves the Stein
   equation Z = A Z Aᵀ + Q, Q = [[η² c_S Σ, 0], [0, 0]].                             (M2)
2. In H's eigenbasis (H = U diag(h) Uᵀ, Σ̃ = UᵀΣU) A is block diagonal with
   Aᵢ = [[aᵢ, −β], [1, 0]], aᵢ = 1 + β − ηhᵢ, so each eigen-pair (i, j) has its own
   2×2 Stein equation Zᵢⱼ = Aᵢ Zᵢⱼ Aⱼᵀ + wᵢⱼ e₁e₁ᵀ, wᵢⱼ = η² c_S Σ̃ᵢⱼ: four unknowns
   Zᵢⱼ = [[p, q], [r, s]].                                                             (M3)
3. Its entries read s = p, q = aᵢp − βr, r = aⱼp − βq, and
   p = aᵢaⱼp − β(aⱼr + aᵢq) + β²p + w.  The middle two give
   q = p(aᵢ − βaⱼ)/(1 − β²), r = p(aⱼ − βaᵢ)/(1 − β²); substituting into the first,
   p·Dᵢⱼ = (1 − β²)w with Dᵢⱼ = (1 − β²)² − (1 + β²)aᵢaⱼ + β(aᵢ² + aⱼ²).          (M4)
4. With xᵢ = ηhᵢ the constant terms cancel ((1+β)²(1−β)² = (1−β²)²), leaving

   .. math::  D_{ij} = (1−β)^2\,[(1+β)(x_i + x_j) − x_i x_j] + β(x_i − x_j)^2 > 0 \tag{M5}

   whenever every xᵢ < 2(1+β): (1+β)(xᵢ+xⱼ) − xᵢxⱼ = (1+β)² − (1+β−xᵢ)(1+β−xⱼ) > 0.
   Hence Cov(θ − θ*) = Z₀₀ = U C̃ Uᵀ with

   .. math::  \tilde C_{ij} = \frac{η c_S \tilde Σ_{ij}\,(1+β)/(1−β)}
              {(1+β)(h_i+h_j) − ηh_ih_j + βη(h_i−h_j)^2/(1−β)^2},                  \tag{M6}

   and Cov(θₜ, θₜ₋₁) = Z₀₁ = U [w ⊙ (aᵢ − βaⱼ)/Dᵢⱼ] Uᵀ.
5. On the diagonal Dᵢᵢ = (1−β)² xᵢ (2(1+β) − xᵢ), so tr(H Z₀₀) needs only Σ̃ᵢᵢ:

   .. math::  E L − L^* = \frac{η c_S (1+β)}{2(1−β)}\,
              \mathrm{tr}[(2(1+β)I − ηH)^{-1} Σ].                                 \tag{M7}

   β = 0 gives the discrete law; η → 0 gives (η c_S/(4(1−β))) tr Σ, Eq. (12) at the
   effective rate η/(1−β) (Mandt, Hoffman & Blei 2017).  The (hᵢ − hⱼ)² term in (M6)
   acts only where Σ̃ is off-diagonal (H and Σ do not commute), so the full covariance
   needs every eigen-pair, not only the diagonal that (M7) uses.
6. Stability: the eigenvalues of Aᵢ solve λ² − aᵢλ + β = 0; both lie inside the unit
   circle iff |aᵢ| < 1 + β (Jury), i.e. 0 < ηhᵢ < 2(1+β).  Their largest modulus rᵢ
   is √β (complex pair, aᵢ² < 4β) or (|aᵢ| + √(aᵢ² − 4β))/2, and second moments
   relax like rᵢ²ᵗ.
7. θ*-free check: with vₜ = θₜ − θₜ₋₁, E‖v‖² = tr(2Z₀₀ − Z₀₁ − Z₁₀), and per
   direction E ṽᵢ² = 2p(1 − aᵢ/(1+β)) = 2pηhᵢ/(1+β), so
   E L − L* = ((1+β)/(4η)) E‖v‖² (theory.md, "θ*-free, with momentum").

State-dependent least-squares noise adds η² c_S K(Z₀₀) to the top-left block of Q;
see :func:`stacked_radius` and :func:`theory.least_squares_stationary`.
"""

from __future__ import annotations

import numpy as np

from . import _validate as v
from .sampling import noise_factor

__all__ = ["heavy_ball_covariance"]

# With state-dependent noise the spectral radius takes ~45 bisection steps, each a dense
# d² × d² solve: d = 32 (1024 unknowns) is a few seconds on two cores.
MAX_DIM = 32
# Bisection for the spectral radius stops at this width: far below any use (a relaxation
# time, a comparison with a dense eigensolver at rtol 1e-8).
_RADIUS_ATOL = 1e-13


def gains(x: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(G₀₀, G₀₁) with Z̃₀₀ = w ⊙ G₀₀ and Z̃₀₁ = w ⊙ G₀₁ (Eqs. M4–M5); x = ηh, w = η²c_S Σ̃."""
    a = 1.0 + beta - x
    xi, xj = x[:, None], x[None, :]
    denom = (1.0 - beta) ** 2 * ((1.0 + beta) * (xi + xj) - xi * xj) + beta * (xi - xj) ** 2
    return (1.0 - beta * beta) / denom, (a[:, None] - beta * a[None, :]) / denom


def block_radius(x: np.ndarray, beta: float) -> np.ndarray:
    """Largest |eigenvalue| rᵢ of each 2×2 block [[1+β−xᵢ, −β], [1, 0]] (step 6)."""
    a = np.abs(1.0 + beta - x)
    disc = a * a - 4.0 * beta
    return np.where(disc < 0, np.sqrt(beta), 0.5 * (a + np.sqrt(np.maximum(disc, 0.0))))


def stacked_blocks_eig(eigvals, grad_cov_eig, lr, noise_factor_, beta):
    """(C̃, X̃) in H's eigenbasis: C̃ = Cov(δ̃ₜ) (M6) and X̃ = Cov(δ̃ₜ, δ̃ₜ₋₁) (step 4).

    Inputs are trusted (validated by the caller); used by :func:`heavy_ball_covariance`
    and by sim for an exact start.
    """
    g00, g01 = gains(lr * np.asarray(eigvals), beta)
    w = lr * lr * noise_factor_ * np.asarray(grad_cov_eig)
    cov = w * g00
    return 0.5 * (cov + cov.T), w * g01


def heavy_ball_covariance(hessian, grad_cov, lr, batch_size, *, momentum, n_data=None,
                          replacement=True):
    r"""Stationary covariance of the stacked heavy-ball state (θₜ − θ*, θₜ₋₁ − θ*).

    Exact for (M1) with additive noise: the solution Z of the Stein equation

    .. math::  Z = A Z A^\top + \begin{pmatrix} η^2 c_S Σ & 0 \\ 0 & 0 \end{pmatrix},\qquad
               A = \begin{pmatrix} (1+β)I − ηH & −βI \\ I & 0 \end{pmatrix},

    solved in H's eigenbasis by the 2×2 closed form of the module docstring (M4–M6):
    O(d³), against O(d⁶) for a Kronecker solve of the 2d-dimensional system.

    Parameters
    ----------
    hessian : (d, d) array_like
        H, symmetric positive definite.
    grad_cov : (d, d) array_like
        Σ, symmetric positive semidefinite.
    lr : float
        η > 0 with η h_max < 2(1 + β).
    batch_size : int
        S >= 1.
    momentum : float
        β, 0 <= β < 1.
    n_data : int, optional
        N, for sampling without replacement.
    replacement : bool
        With (c_S = 1/S) or without replacement.

    Returns
    -------
    (2d, 2d) ndarray
        Z = [[Cov θₜ, Cov(θₜ, θₜ₋₁)], [Cov(θₜ₋₁, θₜ), Cov θₜ₋₁]]; its blocks Z₀₀ = Z₁₁.

    Raises
    ------
    ValueError
        Bad matrices or hyperparameters, momentum outside [0, 1).
    StabilityError
        η h_max >= 2(1 + β).

    References
    ----------
    Derived here (module docstring, Eqs. M2–M6); the diagonal agrees with
    Ziyin et al., "Strength of Minibatch Noise in SGD" (ICLR 2022), Thm. 1.

    Examples
    --------
    >>> H = np.diag([1.0, 3.0]); S = np.array([[2.0, 1.0], [1.0, 1.0]])
    >>> Z = heavy_ball_covariance(H, S, 0.2, 4, momentum=0.9)
    >>> A = np.block([[1.9 * np.eye(2) - 0.2 * H, -0.9 * np.eye(2)], [np.eye(2), 0 * H]])
    >>> Q = np.zeros((4, 4)); Q[:2, :2] = 0.2**2 / 4 * S
    >>> bool(np.allclose(A @ Z @ A.T + Q, Z, rtol=1e-12, atol=1e-15))
    True
    """
    replacement = v.flag(replacement, "replacement")
    beta = v.momentum(momentum)
    _, s_mat, h, u = v.hessian_and_grad_cov(hessian, grad_cov)
    lr = v.scalar_lr(lr)
    c = noise_factor(batch_size, n_data, replacement)
    if np.ndim(c) != 0:
        raise ValueError(f"batch_size must be a scalar here; got shape {np.shape(c)}")
    v.stable(lr, h[-1], beta)
    cov, cross = stacked_blocks_eig(h, u.T @ s_mat @ u, lr, float(c), beta)
    c00, c01 = u @ cov @ u.T, u @ cross @ u.T
    c00 = 0.5 * (c00 + c00.T)
    return np.block([[c00, c01], [c01.T, c00]])


def _pair_gain(x, beta, mu):
    r"""p-coefficient of μZ − AᵢZAⱼᵀ = e₁e₁ᵀ (Eq. M4 with the left side scaled by μ).

    The steps of (M4) with μ give q = (μaᵢ − βaⱼ)p/(μ² − β²), r = (μaⱼ − βaᵢ)p/(μ² − β²),
    s = p/μ and p = μ(μ² − β²)/E with
    E = (μ² − β²)(μ² − μaᵢaⱼ − β²) + βμ(μ(aᵢ² + aⱼ²) − 2βaᵢaⱼ); μ = 1 is (M4).
    """
    a = 1.0 + beta - x
    ai, aj = a[:, None], a[None, :]
    m2 = mu * mu - beta * beta
    e = m2 * (mu * mu - mu * ai * aj - beta * beta) + beta * mu * (mu * (ai * ai + aj * aj)
                                                                   - 2.0 * beta * ai * aj)
    return mu * m2 / e


def state_dependent_operator(x_eig: np.ndarray, eigvals: np.ndarray) -> np.ndarray:
    """K̃ as a d² × d² matrix (row-major vec) in H's eigenbasis: (1/N) Σₙ Ãₙ ⊗ Ãₙ − H̃ ⊗ H̃.

    Ãₙ = x̃ₙx̃ₙᵀ with x̃ₙ = Uᵀxₙ; K(C) = (1/N) Σₙ AₙCAₙ − HCH = (1/N) Σₙ (Aₙ − H)C(Aₙ − H),
    a positive map (theory.md, "Real minibatch noise is state-dependent").
    """
    n = x_eig.shape[0]
    z = np.einsum("ni,nj->nij", x_eig, x_eig).reshape(n, -1)
    return z.T @ z / n - np.diag(np.outer(eigvals, eigvals).ravel())


def stacked_radius(kmat: np.ndarray, eigvals: np.ndarray, lr: float, noise_factor_: float,
                   beta: float) -> float:
    r"""Spectral radius ρ(T) of the stacked second-moment map of heavy ball with K-noise.

    .. math::  T(Z) = A Z A^\top + η^2 c_S\, E_1 K(Z_{00}) E_1^\top,

    with E₁ the embedding of the top-left block.  T = T_A + N splits into two positive
    maps (T_A(Z) = AZAᵀ), so for μ > ρ(T_A) = max rᵢ² (regular splitting):
    ρ(T) < μ ⇔ ρ(M_μ) < 1, where M_μ = (μ − T_A)⁻¹N restricted to its top-left block is
    P ↦ η²c_S G_μ ⊙ K(P) in H's eigenbasis (G_μ from :func:`_pair_gain`), itself a
    positive map.  For a positive map, ρ(M) < 1 iff the solution of (I − M)P = I is
    positive definite (then P = Σₖ Mᵏ(I) ⪰ I; if ρ(M) > 1 the dual Perron eigenvector
    Y ⪰ 0 gives (1 − ρ)⟨Y, P⟩ = tr Y, so P is not PSD).  ρ(T) is bisected on μ with that
    test: one d² × d² solve per step, no non-symmetric eigensolver.  β = 0 is the
    d-dimensional map of :func:`theory.least_squares_stationary`.

    ``kmat`` is :func:`state_dependent_operator`; inputs are trusted.
    """
    d = len(eigvals)
    x = lr * np.asarray(eigvals)
    lo = float(np.max(block_radius(x, beta))) ** 2
    eye_vec = np.eye(d).ravel()
    scale = lr * lr * noise_factor_

    def below(mu):
        g = _pair_gain(x, beta, mu).ravel()
        with np.errstate(all="ignore"):
            try:
                p = np.linalg.solve(np.eye(d * d) - scale * g[:, None] * kmat, eye_vec)
            except np.linalg.LinAlgError:
                return False
        if not np.all(np.isfinite(p)):
            return False
        p = p.reshape(d, d)
        return bool(np.linalg.eigvalsh(0.5 * (p + p.T))[0] > 0)

    hi = max(1.0, 2.0 * lo)
    for _ in range(64):                      # ρ(T) is finite: doubling brackets it quickly
        if below(hi):
            break
        lo, hi = hi, 2.0 * hi
    while hi - lo > _RADIUS_ATOL * max(hi, 1.0):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if below(mid):
            hi = mid
        else:
            lo = mid
    return hi


def least_squares_momentum_solve(kmat, eigvals, eigvecs, grad_cov, lr, noise_factor_, beta):
    r"""Cov(θ − θ*) of heavy ball on least squares (reduced form; inputs trusted).

    Given Z₀₀ = P, the stacked equation Z = AZAᵀ + η²c_S E₁[Σ + K(P)]E₁ᵀ is the
    additive one with Σ + K(P) in place of Σ, so by (M4) its top-left block is
    P̃ = η²c_S G₀₀ ⊙ (Σ̃ + K̃(P̃)): a d² × d² linear system instead of the (2d)² one.
    """
    d = len(eigvals)
    g00, _ = gains(lr * np.asarray(eigvals), beta)
    scale = lr * lr * noise_factor_ * g00.ravel()
    s_eig = eigvecs.T @ grad_cov @ eigvecs
    p = np.linalg.solve(np.eye(d * d) - scale[:, None] * kmat, scale * s_eig.ravel())
    p = p.reshape(d, d)
    cov = eigvecs @ (0.5 * (p + p.T)) @ eigvecs.T
    return 0.5 * (cov + cov.T)
