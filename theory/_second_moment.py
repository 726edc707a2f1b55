"""The second-moment map of linearised SGD, shared by least_squares, state_dependent, stability.

Linearised SGD δ' = (I − ηH_B)δ moves E δδᵀ by

    T(C) = (I − ηH) C (I − ηH) + η² c_S K(C),   K(C) = (1/N) Σ_i D_i C D_i,  D_i = H_i − H̄.

Dense forms use the row-major vec, vec(A X B) = (A ⊗ Bᵀ) vec(X); every factor here is
symmetric, so T is the d² × d² matrix (I−ηH)⊗(I−ηH) + η² c_S (1/N) Σ D_i⊗D_i.  T is
self-adjoint in the Frobenius inner product and preserves the symmetric matrices, whose
orthonormal basis {E_jj, (E_jk + E_kj)/√2} (j < k) gives the d(d+1)/2-dimensional
restriction used for eigenvalues and solves.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _validate as v

# Same relative tolerance as _validate's symmetric-matrix check (round-off only).
_SYMMETRY_RTOL = 1e-8


def per_example_stack(value, d: int | None = None) -> np.ndarray:
    """Validate a stack of symmetric (d, d) matrices, one per example; return it symmetrised.

    ``d`` fixes the matrix size (to match a separately given hessian); None infers it.
    """
    if isinstance(value, (list, tuple)) and len(value) > 1:
        # A ragged list would otherwise surface as "must be real numbers" with a long repr.
        try:
            shapes = [np.shape(item) for item in value]
        except ValueError:
            shapes = []
        for i, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise ValueError(f"per_example_hessians must all have the same shape; entry 0 "
                                 f"has shape {shapes[0]} and entry {i} has {shape}")
    a = v.finite_array(value, "per_example_hessians", ndim=3)
    if d is not None:
        if a.shape[0] == 0 or a.shape[1:] != (d, d):
            raise ValueError(f"per_example_hessians must have shape (n, {d}, {d}) with n >= 1 "
                             f"to match hessian; got {a.shape}")
    elif a.shape[0] == 0 or a.shape[1] == 0 or a.shape[1] != a.shape[2]:
        raise ValueError(f"per_example_hessians must have shape (n, d, d) with n, d >= 1; "
                         f"got {a.shape}")
    scale = max(float(np.max(np.abs(a))), np.finfo(float).tiny)
    asym = np.max(np.abs(a - a.transpose(0, 2, 1)), axis=(1, 2))
    i = int(np.argmax(asym))
    if asym[i] > _SYMMETRY_RTOL * scale:
        raise ValueError(f"per_example_hessians must be symmetric; entry {i} has "
                         f"max |A - A^T| = {asym[i]:.3g}")
    return 0.5 * (a + a.transpose(0, 2, 1))


def k_operator_of_stack(stack: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """C ↦ K(C) = (1/N) Σ_i D_i C D_i for a validated stack of H_i."""
    # The centred form (1/N) Σ D_i C D_i, D_i = H_i − H̄, equals (1/N) Σ H_i C H_i − H̄CH̄
    # without the cancellation between two large terms.
    dev = stack - stack.mean(axis=0)

    def k_of(c):
        out = np.einsum("nik,nkl->il", np.einsum("nij,jk->nik", dev, c), dev) / dev.shape[0]
        return 0.5 * (out + out.T)
    return k_of


def kron_mean(dev: np.ndarray) -> np.ndarray:
    """(1/N) Σ_i D_i ⊗ D_i as a d² × d² matrix, through one BLAS product.

    With G = (1/N) Σ vec(D_i) vec(D_i)ᵀ, G[(i,j),(k,l)] = mean D_ij D_kl, which is the
    Kronecker entry [(i,k),(j,l)]; a transpose of the four indices converts one to the other.
    """
    n, d, _ = dev.shape
    flat = dev.reshape(n, d * d)
    g = flat.T @ flat / n
    return g.reshape(d, d, d, d).transpose(0, 2, 1, 3).reshape(d * d, d * d)


def _symmetric_basis(d: int):
    """Indices and weights of the orthonormal symmetric basis in row-major vec coordinates."""
    j, k = np.triu_indices(d)
    # Diagonal basis vectors are e_(jj) = ½(e_(jj) + e_(jj)); off-diagonal ones are
    # (e_(jk) + e_(kj))/√2.
    return j * d + k, k * d + j, np.where(j == k, 0.5, np.sqrt(0.5))


def symmetric_restriction(op: np.ndarray, d: int) -> np.ndarray:
    """Qᵀ op Q for the orthonormal basis Q of symmetric matrices; (d(d+1)/2)² matrix."""
    i1, i2, w = _symmetric_basis(d)
    oq = (op[:, i1] + op[:, i2]) * w
    out = (oq[i1] + oq[i2]) * w[:, None]
    return 0.5 * (out + out.T)


def to_symmetric_coordinates(mat: np.ndarray) -> np.ndarray:
    """Qᵀ vec(mat): coordinates of a symmetric matrix in the orthonormal symmetric basis."""
    i1, i2, w = _symmetric_basis(mat.shape[0])
    flat = mat.reshape(-1)
    return (flat[i1] + flat[i2]) * w


def from_symmetric_coordinates(y: np.ndarray, d: int) -> np.ndarray:
    """The symmetric (d, d) matrix with coordinates y (the inverse of the above)."""
    i1, i2, w = _symmetric_basis(d)
    flat = np.zeros(d * d)
    np.add.at(flat, i1, w * y)
    np.add.at(flat, i2, w * y)
    return flat.reshape(d, d)


def spectral_radius_on_symmetric(op: np.ndarray, d: int) -> float:
    """Largest |eigenvalue| of a Frobenius-self-adjoint d² × d² operator on symmetric matrices."""
    lam = np.linalg.eigvalsh(symmetric_restriction(op, d))
    return float(max(abs(lam[0]), abs(lam[-1])))
