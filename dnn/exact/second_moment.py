r"""The second-moment map of linearised SGD on the network, compressed onto a subspace.

Linearised SGD (:mod:`dnn.exact.linear_chains`) moves E δδᵀ by

    T(C) = E_B[(I − ηH_B) C (I − ηH_B)] = (I − ηH)C(I − ηH) + η² c_S K(C),
    K(C) = (1/N) Σ_i D_i C D_i,   D_i = H_i − H,

and is mean-square stable iff ρ(T) < 1 (theory.md, "The full linear theory and its
mean-square stability edge").  At P = 2410, T acts on P(P+1)/2 ≈ 2.9 million symmetric
matrices and the H_i cannot be stored.  Here T is *compressed* (Rayleigh–Ritz) onto the
matrices V X Vᵀ for an orthonormal basis V (P, r) of a few directions:

    T_V(X) = Vᵀ T(V X Vᵀ) V = E_B[(I − ηV ᵀH_B V) X (I − ηVᵀH_B V)],

which is the same map built from the compressed per-example Hessians VᵀH_iV (r × r, from
r sweeps of per-example Hessian-vector products, :func:`compress_per_example_hessians`).
So :func:`theory.second_moment_spectral_radius` of that stack is ρ(T_V), and because T
is self-adjoint and positive, ρ(T_V) <= ρ(T) (Courant–Fischer): the compression never
reports instability that is not there, and the edge it gives, η_edge,V >= η_edge, is an
upper bound.  How close it comes depends on V containing the directions that grow; the
experiment takes them from the linearised chains themselves, and checks the value with
noise-free chains started on the Ritz vector (:func:`ritz_start`).

With r <= ~48 everything is dense in the r(r+1)/2 symmetric coordinates: K once per
subspace (one N × r² × r² product), then ρ for any η and c_S by one symmetric eigenproblem,
and the edge in closed form from the pencil (M, L) as in
:func:`theory.mean_square_stability_edge`.  Numpy in, numpy out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validate import finite_array as _finite_array
from .._validate import positive_float as _positive_float

__all__ = ["CompressedSecondMoment", "compress_per_example_hessians", "orthonormal_basis",
           "ritz_start"]

# Directions kept by orthonormal_basis: a pivoted QR drops columns whose remaining norm is
# below this fraction of the largest, i.e. those already spanned to round-off.
_RANK_RTOL = 1e-8
# Half-width of the bracket checked around the closed-form edge (relative): ρ is
# evaluated there and must straddle 1; round-off in ρ is ~1e-13, far inside.
_EDGE_RTOL = 1e-3
# Above this many symmetric coordinates (r >= 24) the top eigenpair comes from Lanczos.
_DENSE_EIG_MAX = 300


def orthonormal_basis(vectors, *, max_dim=None) -> np.ndarray:
    """An orthonormal basis (P, r) of the span of the columns, round-off directions dropped.

    Columns are taken in order of a column-pivoted QR, so ``max_dim`` keeps the ones
    that add the most; scale each column beforehand to say how much it matters.
    """
    from scipy.linalg import qr

    a = _finite_array(vectors, "vectors")
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"vectors must be a (P, k) array with k >= 1; got shape {a.shape}")
    norms = np.linalg.norm(a, axis=0)
    keep = norms > 0
    if not keep.any():
        raise ValueError("vectors must not all be zero")
    a = a[:, keep] / norms[keep]
    q, r, _ = qr(a, mode="economic", pivoting=True)
    d = np.abs(np.diag(r))
    rank = int(np.sum(d > _RANK_RTOL * d[0]))
    if max_dim is not None:
        rank = min(rank, int(max_dim))
    return q[:, :rank]


def compress_per_example_hessians(per_example_hvp, basis, n_data, *, l2=0.0,
                                  batch_size=None) -> np.ndarray:
    r"""VᵀH_iV for every example: (N, r, r), from r sweeps of per-example HVPs.

    .. math:: (V^\top H_i V)_{ab} = v_a^\top (H_i v_b) + 2\lambda\,\delta_{ab}

    with H_i the Hessian of example i's data loss and the L2 term of the objective added
    to each (so that the mean is VᵀHV of the full objective, and D_i = H_i − H is
    unchanged by it).

    Parameters
    ----------
    per_example_hvp : callable
        ``(v, idx) -> (len(idx), P)``, row k = H_{idx[k]} v
        (``dnn.exact.hessian.Ops.per_example_hvp``).
    basis : (P, r) array_like
        V with orthonormal columns.
    n_data : int
        N; examples 0 .. N−1.
    l2 : float
        λ of the objective's λ‖θ‖² (>= 0).
    batch_size : int, optional
        Examples per call (default all N at once).

    Returns
    -------
    (N, r, r) ndarray, symmetrised.
    """
    v = _finite_array(basis, "basis")
    if v.ndim != 2:
        raise ValueError(f"basis must be a (P, r) array; got shape {v.shape}")
    gram_gap = float(np.max(np.abs(v.T @ v - np.eye(v.shape[1]))))
    if gram_gap > 1e-8:
        raise ValueError(f"basis must have orthonormal columns; max |VᵀV − I| is {gram_gap:.3g}")
    n = int(n_data)
    step = n if batch_size is None else int(batch_size)
    r = v.shape[1]
    stack = np.empty((n, r, r))
    for b in range(r):
        for k in range(0, n, step):
            idx = np.arange(k, min(k + step, n))
            hv = np.asarray(per_example_hvp(v[:, b], idx), dtype=np.float64)
            if hv.shape != (idx.size, v.shape[0]):
                raise ValueError(f"per_example_hvp must return shape ({idx.size}, {v.shape[0]}); "
                                 f"got {hv.shape}")
            stack[idx, :, b] = hv @ v
    stack = 0.5 * (stack + stack.transpose(0, 2, 1))
    l2 = float(l2)
    if not (math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be a finite number >= 0; got {l2!r}")
    stack += 2.0 * l2 * np.eye(r)
    return stack


@dataclass(frozen=True, eq=False)
class CompressedSecondMoment:
    r"""T_V for a stack of compressed per-example Hessians, dense in symmetric coordinates.

    Built once per subspace (:meth:`from_stack`); then :meth:`spectral_radius` for any
    (η, c_S) and :meth:`edge` for any c_S are one symmetric eigenproblem each.  Inside, the
    basis is rotated to the eigenbasis of H_V = mean VᵀH_iV, where (I − ηH_V)⊗(I − ηH_V) and
    L(X) = H_V X + X H_V are diagonal.
    """

    h: np.ndarray          # (r,) eigenvalues of H_V, ascending
    q: np.ndarray          # (r, r) eigenvectors of H_V (columns)
    k_sym: np.ndarray      # (m, m) K in orthonormal symmetric coordinates, m = r(r+1)/2
    pairs: np.ndarray      # (m, 2) the (j, k), j <= k, of each coordinate

    @classmethod
    def from_stack(cls, stack) -> "CompressedSecondMoment":
        """From (N, r, r) symmetric per-example matrices whose mean is positive definite."""
        s = _finite_array(stack, "stack")
        if s.ndim != 3 or s.shape[1] != s.shape[2] or s.shape[0] == 0:
            raise ValueError(f"stack must have shape (N, r, r); got {s.shape}")
        s = 0.5 * (s + s.transpose(0, 2, 1))
        h_mat = s.mean(axis=0)
        h, q = np.linalg.eigh(h_mat)
        if not h[0] > 0:
            raise ValueError(f"the mean of stack must be positive definite; smallest eigenvalue "
                             f"is {h[0]:.3g}")
        n, r = s.shape[0], s.shape[1]
        d = np.matmul(np.matmul(q.T, s - h_mat), q)           # D_i in H_V's eigenbasis
        # (1/N) Σ_i D_i[j,l] D_i[k,m] for all j,k,l,m: one (r², N) × (N, r²) product
        flat = d.reshape(n, r * r)
        k4 = (flat.T @ flat / n).reshape(r, r, r, r).transpose(0, 2, 1, 3)    # [j,k,l,m]
        j, k = np.triu_indices(r)
        # ⟨E_p, K(E_q)⟩ for the orthonormal symmetric basis E_(j,k): weight 1 off the
        # diagonal, 1/√2 on it (theory._second_moment uses the same basis).
        w = np.where(j == k, 1.0 / math.sqrt(2.0), 1.0)
        k_sym = (k4[j[:, None], k[:, None], j[None, :], k[None, :]]
                 + k4[j[:, None], k[:, None], k[None, :], j[None, :]]) * np.outer(w, w)
        return cls(h=h, q=q, k_sym=0.5 * (k_sym + k_sym.T), pairs=np.stack([j, k], axis=1))

    @property
    def dim(self) -> int:
        return int(self.h.size)

    def spectral_radius(self, lr, noise_factor) -> tuple:
        r"""ρ(T_V) and its Perron matrix X (r × r, PSD, unit Frobenius norm, in V's coordinates).

        T_V = (I − ηH_V)⊗(I − ηH_V) + η² c_S K on symmetric X; T_V is self-adjoint and
        positive, so ρ is its largest eigenvalue, with a PSD eigenvector.
        """
        lr = _positive_float(lr, "lr")
        c = _nonnegative(noise_factor, "noise_factor")
        a = 1.0 - lr * self.h
        j, k = self.pairs[:, 0], self.pairs[:, 1]
        t = lr * lr * c * self.k_sym
        t[np.diag_indices_from(t)] += a[j] * a[k]
        # T_V maps PSD to PSD, so ρ is its largest eigenvalue: only that one is computed
        lam, vec = _top_eigenpair(t)
        return lam, self._matrix(vec)

    def edge(self, noise_factor) -> dict:
        r"""η_edge,V = 1/μ_max of the pencil M = diag(h_j h_k) + c_S K, L = diag(h_j + h_k).

        ρ(T_V(η)) < 1 iff η < η_edge,V (theory.mean_square_stability_edge derives it); the
        bracket (lo, hi) = η_edge (1 ∓ 1e-3) is checked: ρ(lo) < 1 <= ρ(hi).

        Returns
        -------
        dict
            ``lr_edge``, ``bracket`` (lo, hi), ``rho_at_bracket`` (ρ(lo), ρ(hi)).
        """
        c = _nonnegative(noise_factor, "noise_factor")
        j, k = self.pairs[:, 0], self.pairs[:, 1]
        ell = self.h[j] + self.h[k]
        m = c * self.k_sym
        m[np.diag_indices_from(m)] += self.h[j] * self.h[k]
        scale = 1.0 / np.sqrt(ell)
        mu = _top_eigenpair(m * np.outer(scale, scale))[0]
        # μ_max >= h_max/2 exactly; round-off may put 1/μ a few ulps above 2/h_max.
        lr_edge = min(1.0 / mu, 2.0 / self.h[-1])
        lo, hi = lr_edge * (1.0 - _EDGE_RTOL), lr_edge * (1.0 + _EDGE_RTOL)
        rho_lo, rho_hi = self.spectral_radius(lo, c)[0], self.spectral_radius(hi, c)[0]
        return {"lr_edge": lr_edge, "bracket": (lo, hi), "rho_at_bracket": (rho_lo, rho_hi),
                "confirmed": bool(rho_lo < 1.0 <= rho_hi)}

    def _matrix(self, coords) -> np.ndarray:
        """Symmetric coordinates → the r × r matrix in V's coordinates, PSD part, unit norm."""
        r = self.dim
        j, k = self.pairs[:, 0], self.pairs[:, 1]
        w = np.where(j == k, 1.0, 1.0 / math.sqrt(2.0))
        x = np.zeros((r, r))
        x[j, k] = coords * w
        x[k, j] = coords * w
        if np.trace(x) < 0:           # the Perron vector is PSD up to its sign
            x = -x
        x = self.q @ x @ self.q.T
        lam, u = np.linalg.eigh(0.5 * (x + x.T))
        x = (u * np.clip(lam, 0.0, None)) @ u.T
        return x / max(np.linalg.norm(x), np.finfo(float).tiny)


def ritz_start(basis, perron, n_chains, rng, *, scale=1.0) -> np.ndarray:
    """δ₀ (n_chains, P) ~ N(0, V X Vᵀ) (times ``scale``): chains started on the Ritz vector.

    Then E δ₀δ₀ᵀ = V X Vᵀ, so E‖δ_k‖² = tr T^k(V X Vᵀ) for noise-free chains, which grows
    as ρ^k from the first step when X is T's Perron matrix.
    """
    v = _finite_array(basis, "basis")
    x = _finite_array(perron, "perron")
    lam, u = np.linalg.eigh(0.5 * (x + x.T))
    f = v @ (u * np.sqrt(np.clip(lam, 0.0, None)))
    return scale * rng.standard_normal((int(n_chains), f.shape[1])) @ f.T


def _top_eigenpair(a):
    """Largest eigenvalue and its unit eigenvector of a symmetric matrix.

    Dense (LAPACK, one index) for small m; Lanczos (ARPACK) beyond, a few times cheaper at
    the m ~ 1000 used here, started from a fixed vector so that runs repeat, and converged
    to 1e-13 relative (checked against the dense answer in the tests).
    """
    m = a.shape[0]
    if m <= _DENSE_EIG_MAX:
        from scipy.linalg import eigh

        lam, vec = eigh(a, subset_by_index=[m - 1, m - 1])
        return float(lam[0]), vec[:, 0]
    from scipy.sparse.linalg import eigsh

    lam, vec = eigsh(a, k=1, which="LA", tol=1e-13, ncv=min(m, 40), v0=np.ones(m))
    return float(lam[0]), vec[:, 0]


def _nonnegative(value, name) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0; got {value!r}") from None
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be a number >= 0; got {value!r}")
    return x
