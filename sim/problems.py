r"""Problems with a known minimum: the Gaussian quadratic and finite-sum least squares.

Both are exactly quadratic, L(θ) − L* = ½ (θ−θ*)ᵀ H (θ−θ*), and expose the same
attributes, so every stepper can work in H's eigenbasis: δ̃ = Uᵀ(θ − θ*) with
H = U diag(h) Uᵀ (h ascending) and Σ̃ = Uᵀ Σ U.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import theory

from . import _validate as v

__all__ = ["GaussianQuadratic", "LeastSquares", "misaligned_problem"]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a


class _Quadratic:
    """Shared helpers; subclasses set hessian, grad_cov, minimizer, loss_star, eigvals, eigvecs."""

    @property
    def dim(self) -> int:
        """Number of parameters d."""
        return self.hessian.shape[0]

    @property
    def grad_cov_eig(self) -> np.ndarray:
        """Σ̃ = Uᵀ Σ U, the per-example gradient covariance in H's eigenbasis."""
        return self.eigvecs.T @ self.grad_cov @ self.eigvecs

    def excess_loss(self, theta) -> np.ndarray:
        """L(θ) − L(θ*) = ½ (θ−θ*)ᵀ H (θ−θ*), over the last axis of ``theta``."""
        d = np.asarray(theta, dtype=float) - self.minimizer
        return 0.5 * np.einsum("...i,ij,...j->...", d, self.hessian, d)

    def grad(self, theta) -> np.ndarray:
        """Full-batch gradient ∇L(θ) = H (θ − θ*), over the last axis of ``theta``."""
        return (np.asarray(theta, dtype=float) - self.minimizer) @ self.hessian


@dataclass(frozen=True, eq=False)
class GaussianQuadratic(_Quadratic):
    r"""Quadratic loss with additive Gaussian per-example gradient noise.

    .. math::
        L(θ) = \tfrac12 θᵀ H θ,\quad θ^* = 0,\qquad
        \hat g(θ) = Hθ + ξ,\quad ξ \sim N(0, c_S Σ),

    independent across steps, where c_S is the minibatch noise factor of the sampler.

    Parameters
    ----------
    hessian : (d, d) array_like
        H, symmetric positive definite.
    grad_cov : (d, d) array_like
        Σ, the per-example gradient covariance (dividing by N), symmetric PSD.
    n_data : int, optional
        Notional dataset size N, needed only for sampling without replacement,
        c_S = (N − S)/(S(N − 1)).

    Raises
    ------
    ValueError
        Non-finite, non-square, mismatched or asymmetric input; H not positive
        definite; Σ not positive semidefinite; n_data < 2.

    Examples
    --------
    >>> p = GaussianQuadratic(np.diag([1.0, 3.0]), [[2.0, 1.0], [1.0, 1.0]])
    >>> float(p.excess_loss([1.0, 1.0]))
    2.0
    """

    hessian: np.ndarray
    grad_cov: np.ndarray
    n_data: int | None = None
    minimizer: np.ndarray = field(init=False)
    loss_star: float = field(init=False, default=0.0)
    eigvals: np.ndarray = field(init=False)
    eigvecs: np.ndarray = field(init=False)

    def __post_init__(self):
        h_mat = v.symmetric(self.hessian, "hessian")
        s_mat = v.symmetric(self.grad_cov, "grad_cov")
        if h_mat.shape != s_mat.shape:
            raise ValueError(f"hessian and grad_cov must have the same shape; got "
                             f"{h_mat.shape} and {s_mat.shape}")
        h, u = v.spd_eigh(h_mat, "hessian")
        v.check_psd(s_mat, "grad_cov")
        n = None if self.n_data is None else v.integer(self.n_data, "n_data", minimum=2)
        for name, val in [("hessian", _frozen(h_mat)), ("grad_cov", _frozen(s_mat)),
                          ("n_data", n), ("minimizer", _frozen(np.zeros(len(h)))),
                          ("eigvals", _frozen(h)), ("eigvecs", _frozen(u))]:
            object.__setattr__(self, name, val)


@dataclass(frozen=True, eq=False)
class LeastSquares(_Quadratic):
    r"""Finite-sum least squares; minibatch gradients come from the data rows.

    .. math::
        L(θ) = \frac{1}{2N}\lVert Xθ - y\rVert^2,\quad H = XᵀX/N,\quad
        θ^* = H^{-1} Xᵀy/N,\quad g_i(θ) = x_i (x_iᵀθ - y_i),

    so the minibatch noise depends on θ.  ``grad_cov`` is Σ at θ*:
    (1/N) Σ_i g_i g_iᵀ − ḡḡᵀ with g_i = g_i(θ*) (ḡ = 0 up to round-off).

    Parameters
    ----------
    X : (N, d) array_like
        Design matrix of full column rank, N >= 2.
    y : (N,) array_like
        Targets.

    Raises
    ------
    ValueError
        Non-finite or mis-shaped data, or rank-deficient X.

    Examples
    --------
    >>> p = LeastSquares([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [1.0, 2.0, 0.0])
    >>> p.n_data, p.dim, bool(np.allclose(p.grad(p.minimizer), 0))
    (3, 2, True)
    """

    X: np.ndarray
    y: np.ndarray
    n_data: int = field(init=False)
    hessian: np.ndarray = field(init=False)
    grad_cov: np.ndarray = field(init=False)
    minimizer: np.ndarray = field(init=False)
    residuals: np.ndarray = field(init=False)   # r_i = x_iᵀθ* − y_i
    loss_star: float = field(init=False)
    eigvals: np.ndarray = field(init=False)
    eigvecs: np.ndarray = field(init=False)

    def __post_init__(self):
        x = v.finite_array(self.X, "X", ndim=2)
        n, d = x.shape
        if n < 2 or d < 1:
            raise ValueError(f"X must have at least 2 rows and 1 column; got shape {x.shape}")
        m = theory.least_squares_moments(x, self.y)
        y, hess, sigma, theta, r, h, u = (m.y, m.hessian, m.grad_cov, m.minimizer, m.residuals,
                                          m.eigvals, m.eigvecs)
        for name, val in [("X", _frozen(x)), ("y", _frozen(y)), ("n_data", n),
                          ("hessian", _frozen(hess)), ("grad_cov", _frozen(sigma)),
                          ("minimizer", _frozen(theta)), ("residuals", _frozen(r)),
                          ("loss_star", float(r @ r / (2 * n))),
                          ("eigvals", _frozen(h)), ("eigvecs", _frozen(u))]:
            object.__setattr__(self, name, val)

    def loss(self, theta) -> np.ndarray:
        """L(θ) = (1/2N)‖Xθ − y‖², over the last axis of ``theta``."""
        r = np.asarray(theta, dtype=float) @ self.X.T - self.y
        return 0.5 * np.mean(r * r, axis=-1)


def _haar_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    # QR of a Gaussian matrix with R's diagonal made positive is Haar distributed.
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def misaligned_problem(dim, misalignment, seed, *, eig_range=(0.1, 1.0), trace_ratio=3.0,
                       n_data=None) -> GaussianQuadratic:
    r"""Gaussian quadratic whose Σ moves from H (m = 0) to an unrelated matrix (m = 1).

    .. math::
        H = U\,\mathrm{diag}(h)\,Uᵀ,\qquad
        Σ(m) = (1 - m)\,H + m\,Σ_1,\qquad Σ_1 = Q\,\mathrm{diag}(s)\,Qᵀ,

    with h geometric on ``eig_range``, U and Q independent Haar-random rotations, and
    s log-uniform on ``eig_range`` rescaled so that tr Σ_1 = ρ tr H (ρ = ``trace_ratio``).
    A convex combination of PSD matrices is PSD for every m, and

    .. math::  \operatorname{tr} Σ(m) / \operatorname{tr} H = 1 + m(ρ - 1),

    so Jastrzębski's (η c_S/4) tr H under-predicts Wang's (η c_S/4) tr Σ by the factor
    1 + m(ρ − 1), linear in m: exact agreement at m = 0 (Σ = H, theory.md T3), a
    factor ρ at m = 1.  The eigenbasis and spectrum of Σ_1 are unrelated to H's, so
    H and Σ do not commute for m > 0.

    Parameters
    ----------
    dim : int
        d >= 1.
    misalignment : float
        m in [0, 1].
    seed : int or numpy.random.Generator
        Seeds U, Q and s.
    eig_range : (float, float)
        0 < h_min <= h_max: the Hessian spectrum (geometric) and the range of s.
    trace_ratio : float
        ρ = tr Σ_1 / tr H > 0.
    n_data : int, optional
        Passed to :class:`GaussianQuadratic` (sampling without replacement).

    Returns
    -------
    GaussianQuadratic

    Examples
    --------
    >>> p = misaligned_problem(5, 1.0, seed=0)
    >>> round(float(np.trace(p.grad_cov) / np.trace(p.hessian)), 12)
    3.0
    >>> bool(np.allclose(misaligned_problem(5, 0.0, seed=0).grad_cov, p.hessian))
    True
    """
    d = v.integer(dim, "dim", minimum=1)
    m = float(v.finite_array(misalignment, "misalignment", ndim=0))
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"misalignment must be in [0, 1]; got {m}")
    lo, hi = (float(x) for x in v.finite_array(eig_range, "eig_range", ndim=1))
    if not 0 < lo <= hi:
        raise ValueError(f"eig_range must satisfy 0 < h_min <= h_max; got ({lo}, {hi})")
    rho = v.positive_float(trace_ratio, "trace_ratio")
    rng = v.generator(seed)
    h = np.geomspace(lo, hi, d)
    u = _haar_orthogonal(d, rng)
    q = _haar_orthogonal(d, rng)
    s = np.exp(rng.uniform(np.log(lo), np.log(hi), d))
    s *= rho * h.sum() / s.sum()
    hess = (u * h) @ u.T
    sigma1 = (q * s) @ q.T
    return GaussianQuadratic(hess, (1 - m) * hess + m * sigma1, n_data=n_data)
