r"""Mean-square stability of linearised SGD near a minimum, and its full linear stationary law.

Near θ*, with per-example Hessians H_i and gradients g_i (i = 1..N, mean H and 0), SGD moves
δ = θ − θ* by δ' = (I − ηH_B)δ − η g_B, H_B and g_B the minibatch means.  E δδᵀ evolves by
C ↦ T(C) + η² c_S Σ, with the second-moment map

    T(C) = E_B[(I − ηH_B) C (I − ηH_B)] = (I − ηH) C (I − ηH) + η² c_S K(C),
    K(C) = (1/N) Σ_i H_i C H_i − HCH,

for batches drawn with replacement (c_S = 1/S) or without (c_S = (N−S)/(S(N−1))).  Here:
ρ(T), the learning rate where ρ(T) = 1 (a closed form), the stationary C with its loss,
and the one-direction factor of Wu, Ma & E (2018).  (theory.md, "The full linear theory
and its mean-square stability edge", derived.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from . import _validate as v
from ._second_moment import (
    from_symmetric_coordinates,
    kron_mean,
    per_example_stack,
    spectral_radius_on_symmetric,
    symmetric_restriction,
    to_symmetric_coordinates,
)
from .sampling import noise_factor

__all__ = [
    "second_moment_spectral_radius",
    "StabilityEdge",
    "mean_square_stability_edge",
    "linear_stationary_covariance",
    "expected_loss_linear",
    "directional_growth_factor",
]

# Dense eigenvalues of the d(d+1)/2-dimensional restriction cost O(d⁶): ~1 ms at d = 14,
# where one matrix-free product (O(N d³)) times the ~20-50 Lanczos steps starts to win.
_DENSE_MAX_DIM = 14
# The stationary solve is dense in d(d+1)/2 unknowns: 2080 at d = 64, a few seconds.
_SOLVE_MAX_DIM = 64
# Lanczos stops when the residual is below this fraction of the eigenvalue; the eigenvalue
# error of a symmetric operator is at most the residual.
_LANCZOS_TOL = 1e-10
# The bracket around the edge is widened tenfold at a time up to ±50 %; beyond that the
# spectral radius cannot tell the edge apart from a point half as large.
_MAX_BRACKET_HALF_WIDTH = 0.5


def second_moment_spectral_radius(per_example_hessians, lr, batch_size, *,
                                  replacement=True) -> float:
    r"""Spectral radius ρ(T) of the second-moment map of linearised minibatch SGD.

    .. math::
        T(C) = \mathbb E_B\big[(I - \eta H_B)\,C\,(I - \eta H_B)\big]
             = (I - \eta H) C (I - \eta H) + \eta^2 c_S K(C),\qquad
        K(C) = \frac1N \sum_i H_i C H_i - H C H,

    with H_B the mean of the H_i over a batch B of S examples and H = mean H_i.  The second
    form holds because E[H_B] = H and E[(H_B − H) ⊗ (H_B − H)] = c_S (1/N) Σ_i D_i ⊗ D_i
    (D_i = H_i − H) for both samplers: the covariance of a sample mean, taken entrywise.
    Linearised SGD is mean-square stable iff ρ(T) < 1.

    T is self-adjoint in the Frobenius inner product and maps positive semidefinite matrices
    to positive semidefinite ones, so its spectral radius is its largest eigenvalue, with a
    PSD eigenvector (Perron–Frobenius for the PSD cone); T on antisymmetric matrices has no
    larger eigenvalue, so ρ is taken on the symmetric ones.  It is computed densely for
    d <= 14 and by Lanczos on the matrix-free map (O(N d³) per product) beyond.

    Parameters
    ----------
    per_example_hessians : (N, d, d) array_like
        The H_i, finite and symmetric (they need not be positive semidefinite).
    lr : float
        η > 0.
    batch_size : int
        S >= 1; S <= N without replacement.
    replacement : bool
        i.i.d. draws with replacement (c_S = 1/S) or a uniformly random batch of distinct
        examples (c_S = (N−S)/(S(N−1)); 0 when S = N).

    Returns
    -------
    float
        ρ(T) >= 0.

    Raises
    ------
    ValueError
        Non-finite, non-square, mismatched or asymmetric H_i; lr <= 0 or non-finite;
        batch_size not an integer >= 1, or > N without replacement.
    TypeError
        ``replacement`` not a bool.

    References
    ----------
    Wu, Ma & E, "How SGD Selects the Global Minima in Over-parameterized Learning: A
    Dynamical Stability Perspective", NeurIPS 2018 (linear stability in the mean-square
    sense); theory.md, "The full linear theory and its mean-square stability edge"
    (derived).

    Examples
    --------
    With S = 1 the batches are the single examples, so T = (1/N) Σ_i (I−ηH_i) ⊗ (I−ηH_i):

    >>> Hi = np.array([np.diag([1.0, 2.0]), [[3.0, 1.0], [1.0, 2.0]]])
    >>> rho = second_moment_spectral_radius(Hi, 0.3, 1)
    >>> T = sum(np.kron(A, A) for A in np.eye(2) - 0.3 * Hi) / 2
    >>> bool(np.isclose(rho, max(abs(np.linalg.eigvals(T))), rtol=1e-12))
    True
    """
    replacement = v.flag(replacement, "replacement")
    stack = per_example_stack(per_example_hessians)
    lr = v.scalar_lr(lr)
    c = _noise_factor(batch_size, stack.shape[0], replacement)
    h_mat = stack.mean(axis=0)
    return _radius(h_mat, stack - h_mat, lr, c)


@dataclass(frozen=True)
class StabilityEdge:
    """Where linearised minibatch SGD loses mean-square stability."""

    lr_edge: float                     # η_edge: mean-square stable iff 0 < η < η_edge
    lr_edge_times_h_max: float         # η_edge·h_max, in (0, 2]; below 2 by non-uniformity
    bracket: tuple[float, float]       # (lo, hi) around η_edge with ρ(lo) < 1 <= ρ(hi), evaluated
    h_max: float                       # largest eigenvalue of H = mean H_i
    lr_classical: float                # 2/h_max: the edge of full-batch GD and of additive noise
    noise_factor: float                # c_S


def mean_square_stability_edge(per_example_hessians, batch_size, *, replacement=True,
                               rtol=1e-10) -> StabilityEdge:
    r"""The learning rate η_edge at which linearised minibatch SGD loses mean-square stability.

    Expanding the second-moment map (see :func:`second_moment_spectral_radius`) in η,

    .. math::
        T_\eta = I - \eta L + \eta^2 M,\qquad L(C) = HC + CH,\qquad
        M(C) = \mathbb E_B[H_B C H_B] = HCH + c_S K(C).

    T_η is self-adjoint with ρ(T_η) equal to its largest eigenvalue, so ρ(T_η) < 1 iff
    I − T_η = η(L − ηM) is positive definite.  For H ≻ 0, L ≻ 0 (eigenvalues h_j + h_k),
    hence

    .. math::
        \rho(T_\eta) < 1 \iff 0 < \eta < \eta_{\rm edge} = 1/\mu_{\max},\qquad
        \mu_{\max} = \max_C \frac{\langle C, M(C)\rangle}{\langle C, L(C)\rangle},

    the largest eigenvalue of the symmetric pencil (M, L), found in H's eigenbasis where L
    is diagonal.  So the stable set is exactly the interval (0, η_edge), no bisection is
    needed, and ρ(T_η) − 1 changes sign once, at η_edge.  (ρ(T_η) is also convex in η: it is
    the maximum over PSD C of ⟨C, T_η C⟩/‖C‖², each a quadratic in η with leading
    coefficient E‖C^{1/2} H_B C^{1/2}‖² >= 0.)

    C = uuᵀ with u the top eigenvector of H gives μ_max >= h_max/2 + c_S Var_i(uᵀH_iu)/(2h_max),
    so η_edge <= 2/h_max; equality needs Var_i(uᵀH_iu) = 0, and holds when all H_i are
    equal or S = N without replacement (c_S = 0).  The value is clipped to 2/h_max against
    round-off.  The top eigenvector of the pencil is the PSD Perron vector of T at the edge,
    where ⟨C, K(C)⟩ = (1/N) Σ_i ‖C^{1/2} D_i C^{1/2}‖² >= 0 (D_i = H_i − H); so μ_max grows
    with c_S and η_edge shrinks as the batch does.

    Parameters
    ----------
    per_example_hessians : (N, d, d) array_like
        The H_i, finite and symmetric, with H = mean H_i positive definite.
    batch_size : int
        S >= 1; S <= N without replacement.
    replacement : bool
        With (c_S = 1/S) or without replacement (c_S = (N−S)/(S(N−1))).
    rtol : float
        Relative half-width of ``bracket``, 0 < rtol < 0.5: ρ is evaluated at
        η_edge(1 ∓ rtol) and must fall below 1 and reach 1.  When round-off in ρ cannot
        resolve that (a nearly singular H, or the Lanczos tolerance for d > 14), the bracket
        is widened tenfold at a time up to ±50 %.  ``lr_edge`` itself is the closed form.

    Returns
    -------
    StabilityEdge

    Raises
    ------
    ValueError
        Bad H_i (as in :func:`second_moment_spectral_radius`), H = mean H_i not positive
        definite (no η > 0 is stable then), bad batch_size, or rtol outside (0, 0.5).
    RuntimeError
        If ρ cannot confirm the edge even within ±50 % (round-off swamps 1 − ρ).
    TypeError
        ``replacement`` not a bool.

    References
    ----------
    Wu, Ma & E, NeurIPS 2018 (sharpness and non-uniformity); theory.md, "The full linear
    theory and its mean-square stability edge" (derived here).  Mulayoff & Michaeli, "Exact
    Mean Square Linear Stability Analysis for SGD", arXiv:2306.07850, derive a closed-form
    threshold of this kind (without replacement) and prove it non-decreasing in S.

    Examples
    --------
    One dimension, curvatures 1 and 3 (H = 2), S = 1: ρ(η) = mean_i (1 − ηh_i)² =
    1 − 4η + 5η², so η_edge = 4/5, below the classical 2/h_max = 1.

    >>> e = mean_square_stability_edge([[[1.0]], [[3.0]]], 1)
    >>> round(e.lr_edge, 12), e.lr_classical, round(e.lr_edge_times_h_max, 12)
    (0.8, 1.0, 1.6)
    >>> lo, hi = e.bracket
    >>> rho = lambda lr: second_moment_spectral_radius([[[1.0]], [[3.0]]], lr, 1)
    >>> bool(rho(lo) < 1.0 <= rho(hi)) and bool(np.isclose(rho(e.lr_edge), 1.0, rtol=1e-12))
    True
    """
    replacement = v.flag(replacement, "replacement")
    stack = per_example_stack(per_example_hessians)
    h_mat, h, u = _positive_definite_mean(stack)
    c = _noise_factor(batch_size, stack.shape[0], replacement)
    tol = v.finite_array(rtol, "rtol")
    if tol.ndim != 0 or not 0.0 < tol < _MAX_BRACKET_HALF_WIDTH:
        raise ValueError(f"rtol must be a scalar in (0, {_MAX_BRACKET_HALF_WIDTH}); got {rtol!r}")
    dev = stack - h_mat
    h_max = float(h[-1])
    classical = 2.0 / h_max
    # μ_max >= h_max/2 exactly; round-off may put 1/μ_max a few ulps above 2/h_max.
    edge = min(1.0 / _pencil_top_eigenvalue(h, u, dev, c), classical)

    half = float(tol)
    while True:
        lo, hi = edge * (1.0 - half), edge * (1.0 + half)
        if _radius(h_mat, dev, lo, c) < 1.0 <= _radius(h_mat, dev, hi, c):
            break
        if half >= _MAX_BRACKET_HALF_WIDTH:
            raise RuntimeError(f"the spectral radius cannot confirm the edge lr={edge:.6g} even "
                               f"within ±{half:.0%}: round-off swamps 1 − ρ (condition number "
                               f"of the mean Hessian {h[-1] / h[0]:.3g})")
        half = min(10.0 * half, _MAX_BRACKET_HALF_WIDTH)
    return StabilityEdge(lr_edge=edge, lr_edge_times_h_max=edge * h_max, bracket=(lo, hi),
                         h_max=h_max, lr_classical=classical, noise_factor=c)


def linear_stationary_covariance(per_example_hessians, grad_cov, lr, batch_size, *,
                                 replacement=True) -> np.ndarray:
    r"""Stationary covariance of linearised minibatch SGD, to all orders in K.

    δ' = (I − ηH_B)δ − η g_B, with the batch independent of δ and E δ = 0 at stationarity,
    so the cross terms vanish and C = E δδᵀ solves

    .. math::
        C = T(C) + \eta^2 c_S \Sigma
        \iff H C + C H - \eta H C H = \eta c_S \big[\Sigma + K(C)\big],

    with T and K as in :func:`second_moment_spectral_radius` and Σ the per-example gradient
    covariance at θ* (centred, dividing by N).  It sums the Neumann series C₀ + C₁ + … whose
    first terms :func:`theory.state_dependent_covariance_first_order` gives.  The solution
    exists and is PSD iff ρ(T) < 1, i.e. lr < :func:`mean_square_stability_edge`.  Solved
    densely in the d(d+1)/2 coordinates of a symmetric matrix, d <= 64.  For least squares,
    H_i = x_i x_iᵀ, this is :func:`theory.least_squares_stationary`'s covariance.

    An L2 term 2λI in the loss is added to every H_i; it does not change K.

    Parameters
    ----------
    per_example_hessians : (N, d, d) array_like
        The H_i, finite and symmetric, with H = mean H_i positive definite; d <= 64.
    grad_cov : (d, d) array_like
        Σ, symmetric positive semidefinite.
    lr : float
        η > 0.
    batch_size : int
        S >= 1; S <= N without replacement.
    replacement : bool
        With (c_S = 1/S) or without replacement (c_S = (N−S)/(S(N−1))).

    Returns
    -------
    (d, d) ndarray
        C = Cov(θ − θ*), symmetric positive semidefinite.

    Raises
    ------
    ValueError
        Bad H_i or Σ (non-finite, non-square, mismatched, asymmetric, H not positive
        definite, Σ not PSD), d > 64, bad lr or batch_size.
    StabilityError
        ρ(T) >= 1: no stationary law; the message gives ρ.
    TypeError
        ``replacement`` not a bool.

    References
    ----------
    theory.md, "General networks: state-dependent noise to first order" and "The full
    linear theory and its mean-square stability edge" (derived); Wu, Ma & E, NeurIPS 2018.

    Examples
    --------
    >>> Hi = np.array([np.diag([1.0, 2.0]), [[3.0, 1.0], [1.0, 2.0]], np.diag([2.0, 0.5])])
    >>> S = np.array([[1.0, 0.3], [0.3, 0.5]]); eta, c = 0.2, 1 / 2
    >>> C = linear_stationary_covariance(Hi, S, eta, 2)
    >>> H = Hi.mean(axis=0); K = sum(A @ C @ A for A in Hi) / 3 - H @ C @ H
    >>> bool(np.allclose(H @ C + C @ H - eta * H @ C @ H, eta * c * (S + K), rtol=1e-12))
    True
    """
    return _linear_stationary(per_example_hessians, grad_cov, lr, batch_size, replacement)[1]


def expected_loss_linear(per_example_hessians, grad_cov, lr, batch_size, *,
                         replacement=True) -> float:
    r"""Expected excess loss ½ tr(HC) of linearised minibatch SGD, to all orders in K.

    C is :func:`linear_stationary_covariance`.  To first order in K this is
    :func:`theory.expected_loss_discrete` + :func:`theory.state_dependent_correction`.

    Parameters
    ----------
    per_example_hessians, grad_cov, lr, batch_size, replacement
        As in :func:`linear_stationary_covariance`.

    Returns
    -------
    float
        E L(θ) − L(θ*) = ½ tr(HC), H = mean H_i.

    Raises
    ------
    ValueError, StabilityError, TypeError
        As in :func:`linear_stationary_covariance`.

    References
    ----------
    theory.md, "The full linear theory and its mean-square stability edge" (derived).

    Examples
    --------
    One dimension, curvatures 1 and 3, S = 1, Σ = 2: C = η²Σ/(1 − ρ) with
    ρ = mean_i (1 − ηh_i)² = 0.2 at η = 0.4, so C = 0.4 and ½ h C = 0.4.

    >>> round(expected_loss_linear([[[1.0]], [[3.0]]], [[2.0]], 0.4, 1), 12)
    0.4
    """
    h_mat, cov = _linear_stationary(per_example_hessians, grad_cov, lr, batch_size, replacement)
    return float(0.5 * np.sum(h_mat * cov))


def directional_growth_factor(per_example_hessians, direction, lr, batch_size, *,
                              replacement=True) -> float:
    r"""One-step growth E_B[(1 − η uᵀH_Bu)²] of E(uᵀδ)² along a unit direction u.

    With a = uᵀHu (sharpness along u) and s² = Var_i(uᵀH_iu) (non-uniformity, dividing by
    N), the minibatch mean uᵀH_Bu has mean a and variance c_S s², so

    .. math::
        \mathbb E_B\big[(1 - \eta\,u^\top H_B u)^2\big] = (1 - \eta a)^2 + \eta^2 c_S s^2
        = \langle u u^\top, T(u u^\top)\rangle \le \rho(T).

    It must be < 1 for mean-square stability: the condition of Wu, Ma & E (2018), which
    gives η < 2a/(a² + c_S s²) in that direction.  It equals ρ(T), maximised over u, when
    all H_i are diagonal in one basis: T then multiplies entry C_jk by
    τ_jk = E[(1 − ηh_{B,j})(1 − ηh_{B,k})], and Cauchy–Schwarz gives
    |τ_jk| <= max(τ_jj, τ_kk), so the worst basis vector attains ρ.  When the H_i do not
    commute ρ(T) can be larger: its top eigenvector need not have rank one.

    Parameters
    ----------
    per_example_hessians : (N, d, d) array_like
        The H_i, finite and symmetric.
    direction : (d,) array_like
        u, finite and nonzero; it is normalised.
    lr : float
        η > 0.
    batch_size : int
        S >= 1; S <= N without replacement.
    replacement : bool
        With (c_S = 1/S) or without replacement (c_S = (N−S)/(S(N−1))).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Bad H_i, direction of the wrong length, zero or non-finite, bad lr or batch_size.
    TypeError
        ``replacement`` not a bool.

    References
    ----------
    Wu, Ma & E, NeurIPS 2018 (the one-dimensional sharpness/non-uniformity condition);
    theory.md, "The full linear theory and its mean-square stability edge".

    Examples
    --------
    Diagonal H_i: the worst axis gives ρ(T).

    >>> Hi = np.array([np.diag([1.0, 2.0]), np.diag([3.0, 0.5]), np.diag([2.0, 2.5])])
    >>> f = [directional_growth_factor(Hi, u, 0.5, 2) for u in np.eye(2)]
    >>> bool(np.isclose(max(f), second_moment_spectral_radius(Hi, 0.5, 2), rtol=1e-12))
    True
    """
    replacement = v.flag(replacement, "replacement")
    stack = per_example_stack(per_example_hessians)
    d = stack.shape[1]
    u = v.finite_array(direction, "direction", ndim=1)
    if u.shape != (d,):
        raise ValueError(f"direction must have length {d} to match per_example_hessians; "
                         f"got shape {u.shape}")
    norm = float(np.linalg.norm(u))
    if norm == 0.0:
        raise ValueError("direction must be nonzero; got the zero vector")
    lr = v.scalar_lr(lr)
    c = _noise_factor(batch_size, stack.shape[0], replacement)
    u = u / norm
    q = np.einsum("i,nij,j->n", u, stack, u)
    a = float(q.mean())
    s2 = float(np.mean((q - a) ** 2))
    return (1.0 - lr * a) ** 2 + lr**2 * c * s2


# -------------------------------------------------------------------------- helpers

def _noise_factor(batch_size, n: int, replacement: bool) -> float:
    """Validate batch_size against N examples; return c_S."""
    s, _ = v.batch_and_data(batch_size, None)
    if s.ndim != 0:
        raise ValueError(f"batch_size must be a scalar here; got shape {s.shape}")
    if replacement:
        return float(noise_factor(s))
    if s > n:
        raise ValueError(f"batch_size must be <= N = {n} (the number of per_example_hessians) "
                         f"without replacement; got {float(s):g}")
    if n == 1:
        # The only batch is the one example: no minibatch noise, and K ≡ 0 anyway.
        return 0.0
    return float(noise_factor(s, n, replacement=False))


def _linear_stationary(per_example_hessians, grad_cov, lr, batch_size, replacement):
    """Validate in the fixed order; return (H, C) with C = T(C) + η² c_S Σ."""
    replacement = v.flag(replacement, "replacement")
    stack = per_example_stack(per_example_hessians)
    sigma = v.square_symmetric(grad_cov, "grad_cov")
    d = stack.shape[1]
    if sigma.shape != (d, d):
        raise ValueError(f"grad_cov must match per_example_hessians' ({d}, {d}); got shape "
                         f"{sigma.shape}")
    if d > _SOLVE_MAX_DIM:
        raise ValueError(f"per_example_hessians have d={d}; the dense solve supports "
                         f"d <= {_SOLVE_MAX_DIM}")
    h_mat, h, _ = _positive_definite_mean(stack, stacklevel=4)
    v.check_psd(sigma, "grad_cov")
    lr = v.scalar_lr(lr)
    c = _noise_factor(batch_size, stack.shape[0], replacement)

    # One eigendecomposition of the restricted T gives both ρ and the solve of (I − T).
    lam, vec = np.linalg.eigh(symmetric_restriction(_dense_map(h_mat, stack - h_mat, lr, c), d))
    radius = float(max(abs(lam[0]), abs(lam[-1])))
    if radius >= 1.0:
        raise v.StabilityError(f"lr={lr:g}, batch_size={batch_size} has no stationary law: "
                               f"second-moment spectral radius {radius:.4g} >= 1 "
                               f"(lr*h_max = {lr * h[-1]:.4g}); see mean_square_stability_edge")
    rhs = lr**2 * c * to_symmetric_coordinates(sigma)
    cov = from_symmetric_coordinates(vec @ ((vec.T @ rhs) / (1.0 - lam)), d)
    return h_mat, 0.5 * (cov + cov.T)


def _positive_definite_mean(stack: np.ndarray, stacklevel: int = 3):
    """H = mean H_i, checked positive definite; return (H, h, U) with H = U diag(h) Uᵀ."""
    h_mat = stack.mean(axis=0)
    h, u = np.linalg.eigh(h_mat)
    if h[0] <= 0:
        raise ValueError(f"the mean of per_example_hessians must be positive definite (a strict "
                         f"minimum); smallest eigenvalue is {h[0]:.3g}")
    if h[-1] / h[0] > v._ILL_CONDITIONED:
        warnings.warn(f"the mean of per_example_hessians is ill-conditioned (condition number "
                      f"{h[-1] / h[0]:.3g}); 1 − ρ in its flattest directions is near round-off",
                      RuntimeWarning, stacklevel=stacklevel)
    return h_mat, h, u


def _dense_map(h_mat: np.ndarray, dev: np.ndarray, lr: float, c: float) -> np.ndarray:
    """T = (I−ηH)⊗(I−ηH) + η² c_S (1/N) Σ D_i⊗D_i, a d² × d² matrix (row-major vec)."""
    a = np.eye(h_mat.shape[0]) - lr * h_mat
    return np.kron(a, a) + lr**2 * c * kron_mean(dev)


def _radius(h_mat: np.ndarray, dev: np.ndarray, lr: float, c: float) -> float:
    d = h_mat.shape[0]
    if d <= _DENSE_MAX_DIM:
        return spectral_radius_on_symmetric(_dense_map(h_mat, dev, lr, c), d)
    a = np.eye(d) - lr * h_mat
    coef = lr**2 * c

    def apply(c_mat):
        return a @ c_mat @ a + coef * np.matmul(np.matmul(dev, c_mat), dev).mean(axis=0)
    # Perron: the largest eigenvalue of this positive map is its spectral radius.
    return _largest_eigenvalue(apply, d)


def _pencil_top_eigenvalue(h: np.ndarray, u: np.ndarray, dev: np.ndarray, c: float) -> float:
    """μ_max of M C = μ L C on symmetric C, in H's eigenbasis where L is diagonal."""
    d = h.size
    dev_e = np.matmul(np.matmul(u.T, dev), u)
    hh = np.outer(h, h)
    # W = L^{-1/2} M L^{-1/2} is symmetric and has the pencil's eigenvalues.
    scale = 1.0 / np.sqrt(h[:, None] + h[None, :])
    if d <= _DENSE_MAX_DIM:
        m = np.diag(hh.ravel()) + c * kron_mean(dev_e)
        w = m * np.outer(scale.ravel(), scale.ravel())
        return float(np.linalg.eigvalsh(symmetric_restriction(w, d))[-1])

    def apply(c_mat):
        x = scale * c_mat
        return scale * (hh * x + c * np.matmul(np.matmul(dev_e, x), dev_e).mean(axis=0))
    return _largest_eigenvalue(apply, d)


def _largest_eigenvalue(apply, d: int) -> float:
    """Largest eigenvalue of a Frobenius-self-adjoint map on (d, d) matrices, by Lanczos."""
    from scipy.sparse.linalg import LinearOperator, eigsh   # only needed for large d

    def matvec(x):
        return apply(np.asarray(x).reshape(d, d)).ravel()
    op = LinearOperator((d * d, d * d), matvec=matvec, dtype=float)
    # Starting from I keeps the Krylov space symmetric; tr C* > 0 for the PSD Perron vector.
    return float(eigsh(op, k=1, which="LA", v0=np.eye(d).ravel(), tol=_LANCZOS_TOL,
                       return_eigenvectors=False)[0])
