"""Exact curvature and noise of the MLP at a point: full Hessian, per-example gradients, Σ.

With P = 2410 everything fits in memory as dense float64 matrices, so the
quantities the estimators in ``dnn.estimators`` approximate can be computed
exactly and the estimators checked against them:

- H = ∇²L = H_data + 2λI, with H_data = ∇²[(1/N) Σ_i ℓ_i] built from P
  Hessian-vector products against the basis vectors (forward-over-reverse,
  ``jvp`` of ``grad``, in chunks so memory stays ~N·width·chunk).
- g_i = ∇ℓ_i (data loss of example i, no L2), by ``vmap`` of ``grad``; then
  Σ = (1/N) Σ_i (g_i − ḡ)(g_i − ḡ)ᵀ, centred and dividing by N (theory.md).
  At θ* the *data* gradient is ḡ = −2λθ* ≠ 0, so the centring matters.
- tr H = tr H_data + 2λP (the L2 part reported separately); the data Hessian's
  spectrum is that of H shifted by −2λ, so its most negative eigenvalue is
  h_min − 2λ.

``callables`` returns the same operators as numpy-in/numpy-out functions, for
``dnn.hutchinson_trace`` and friends, which take callables.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._checks import check_point

__all__ = ["Exact", "Ops", "callables", "exact_quantities", "full_hessian", "hessian_eigh"]

# Basis vectors per vmapped HVP when building H: the tangent activations cost
# N·Σwidths·chunk doubles (1797·42·128·8 B ≈ 77 MB), and larger chunks gain little on 2 cores.
_HESSIAN_CHUNK = 128


@dataclass(frozen=True, eq=False)
class Exact:
    """Exact second-order quantities of L(θ) = (1/N) Σ_i ℓ_i + λ‖θ‖² at one θ."""

    hessian: np.ndarray            # (P, P) H = H_data + 2λI
    hessian_data: np.ndarray       # (P, P) ∇² of the data loss
    eigenvalues: np.ndarray        # (P,) of H, ascending
    eigenvectors: np.ndarray       # (P, P) columns; H = U diag(eigenvalues) Uᵀ
    per_example_grads: np.ndarray  # (N, P) g_i = ∇ℓ_i (data loss only)
    mean_grad: np.ndarray          # (P,) ḡ = (1/N) Σ g_i (= −2λθ at a minimum)
    sigma: np.ndarray              # (P, P) centred, dividing by N
    trace_sigma: float
    trace_h: float                 # tr H = trace_h_data + trace_h_l2
    trace_h_data: float
    trace_h_l2: float              # 2λP
    h_min: float
    h_max: float
    data_h_min: float              # most negative (smallest) eigenvalue of H_data = h_min − 2λ
    positive_definite: bool        # h_min > 0
    l2: float

    @property
    def n_params(self) -> int:
        return int(self.eigenvalues.size)


def exact_quantities(model, data, theta) -> Exact:
    r"""H, its spectrum, per-example gradients and Σ of the MLP at θ, exactly (dense float64).

    .. math::
        H = \nabla^2 \Big[\frac1N\sum_i \ell_i\Big] + 2\lambda I,\qquad
        \Sigma = \frac1N \sum_i (g_i - \bar g)(g_i - \bar g)^\top,\quad g_i = \nabla \ell_i .

    Parameters
    ----------
    model : dnn.exact.mlp.MLP
    data : dnn.exact.digits.Digits
    theta : array_like (P,)

    Returns
    -------
    Exact
    """
    import jax

    from .mlp import float64

    theta = check_point(model, data, theta)
    hess_data = full_hessian(model, data, theta, data_only=True)
    l2 = float(model.l2)
    hess = hess_data + 2.0 * l2 * np.eye(model.n_params)
    # find_minimum's positive-definiteness check at θ* already decomposed this H
    evals, evecs = hessian_eigh(model, data, theta)
    with float64():
        grads = np.asarray(_compiled(model).per_example_grads(
            theta, jax.numpy.asarray(data.x), jax.numpy.asarray(data.y)))
    mean_grad = grads.mean(axis=0)
    centred = grads - mean_grad
    sigma = centred.T @ centred / grads.shape[0]
    trace_h_data = float(np.trace(hess_data))
    trace_h_l2 = 2.0 * l2 * model.n_params
    return Exact(hessian=hess, hessian_data=hess_data, eigenvalues=evals, eigenvectors=evecs,
                 per_example_grads=grads, mean_grad=mean_grad, sigma=sigma,
                 trace_sigma=float(np.trace(sigma)), trace_h=trace_h_data + trace_h_l2,
                 trace_h_data=trace_h_data, trace_h_l2=trace_h_l2, h_min=float(evals[0]),
                 h_max=float(evals[-1]), data_h_min=float(evals[0] - 2.0 * l2),
                 positive_definite=bool(evals[0] > 0), l2=l2)


def full_hessian(model, data, theta, *, data_only: bool = False) -> np.ndarray:
    """Dense Hessian (P, P) of the full objective (or of the data loss only) at θ, symmetrised.

    Built column by column as H e_j (forward-over-reverse HVPs, ``_HESSIAN_CHUNK`` at a time).
    """
    import jax

    from .mlp import float64

    theta = check_point(model, data, theta)
    key = _key(model, data, theta)
    if _LAST_HESSIAN.get("key") == key:
        # find_minimum's final check and exact_quantities want H at the same θ*: build it once
        h = _LAST_HESSIAN["value"].copy()
    else:
        with float64():
            h = np.asarray(_compiled(model).data_hessian(
                theta, jax.numpy.asarray(data.x), jax.numpy.asarray(data.y)))
        # autodiff H is symmetric only to round-off; eigh wants it exactly symmetric
        h = 0.5 * (h + h.T)
        _LAST_HESSIAN.clear()
        _LAST_HESSIAN.update(key=key, value=h.copy())
    if not data_only:
        h = h + 2.0 * model.l2 * np.eye(model.n_params)
    return h


def hessian_eigh(model, data, theta):
    """Eigendecomposition (ascending eigenvalues, eigenvector columns) of the full objective's H at θ.

    The P×P ``eigh`` is the costliest step of a smallnet run (~10 s at P = 2410 on 2 cores);
    the last one is kept with the Hessian it came from (same content key), so
    ``find_minimum``'s final check and ``exact_quantities`` at the same θ* share it.
    Copies are returned: callers may modify them.
    """
    theta = check_point(model, data, theta)
    key = _key(model, data, theta)
    hit = _LAST_HESSIAN.get("eigh")
    if hit is None or hit[0] != key:
        evals, evecs = np.linalg.eigh(full_hessian(model, data, theta))
        # full_hessian just (re)filled the cache for this key; attach the decomposition to it
        _LAST_HESSIAN["eigh"] = hit = (key, evals, evecs)
    return hit[1].copy(), hit[2].copy()


def seed_hessian_cache(model, data, theta, hessian_data, eigenvalues, eigenvectors, *,
                       n_checks: int = 4, seed: int = 0) -> None:
    """Make a stored data Hessian and full-H eigendecomposition at θ the cached ones, after checking them.

    For a result cache on disk: a later ``exact_quantities`` / ``hessian_eigh`` at the same θ
    then skips the Hessian build and the ``eigh``.  Nothing is trusted unchecked: for
    ``n_checks`` random j, column j of H_data must equal a fresh HVP H_data e_j, and the
    eigenpair j must satisfy ‖H u_j − h_j u_j‖ ≤ 1e-8·h_max with ‖u_j‖ = 1 (H = H_data + 2λI),
    both to 1e-8 relative (round-off is ~1e-13).

    Raises
    ------
    ValueError
        If shapes are wrong or a check fails (the caller should then recompute).
    """
    theta = check_point(model, data, theta)
    P = model.n_params
    hd = np.asarray(hessian_data, dtype=np.float64)
    w = np.asarray(eigenvalues, dtype=np.float64)
    u = np.asarray(eigenvectors, dtype=np.float64)
    if hd.shape != (P, P) or w.shape != (P,) or u.shape != (P, P):
        raise ValueError(f"cached Hessian must have shapes ({P}, {P}), ({P},), ({P}, {P}); got "
                         f"{hd.shape}, {w.shape}, {u.shape}")
    if not (np.all(np.isfinite(w)) and np.all(np.diff(w) >= 0)):
        raise ValueError("cached eigenvalues must be finite and ascending")
    ops = callables(model, data, theta)
    scale = max(abs(w[0]), abs(w[-1]))
    rng = np.random.default_rng(seed)
    for j in [0, P - 1, *rng.integers(0, P, size=n_checks)]:
        e = np.zeros(P)
        e[j] = 1.0
        col_err = np.linalg.norm(ops.hvp_data(e) - hd[:, j])
        if not col_err <= 1e-8 * scale:
            raise ValueError(f"cached Hessian column {j} differs from a fresh HVP by {col_err:.3g}")
        res = np.linalg.norm(ops.hvp(u[:, j]) - w[j] * u[:, j])
        if not (res <= 1e-8 * scale and abs(np.linalg.norm(u[:, j]) - 1.0) <= 1e-8):
            raise ValueError(f"cached eigenpair {j} is not one of H (residual {res:.3g})")
    key = _key(model, data, theta)
    _LAST_HESSIAN.clear()
    _LAST_HESSIAN.update(key=key, value=hd.copy(), eigh=(key, w.copy(), u.copy()))


# The last data Hessian built (one P×P matrix, 46 MB at P = 2410) and, once asked for, the
# full H's eigendecomposition (2 × 46 MB), keyed by model and content digests of x, y and
# θ, so a cache hit is the same matrix, never a stale one.
_LAST_HESSIAN: dict = {}


def _key(model, data, theta) -> tuple:
    return (model, _digest(data.x), _digest(data.y), _digest(theta))


def _digest(a) -> str:
    import hashlib

    a = np.ascontiguousarray(a)
    return hashlib.sha1(a.tobytes() + str((a.dtype, a.shape)).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class Ops:
    """Operators of the MLP at a fixed θ, numpy in and numpy out (float64).

    ``idx`` is an integer array of example indices (repeats allowed).
    """

    model: object
    data: object
    theta: np.ndarray

    @property
    def n_params(self) -> int:
        return self.model.n_params

    @property
    def n_data(self) -> int:
        return int(np.shape(self.data.x)[0])

    def hvp(self, v) -> np.ndarray:
        """H v for the full objective: H_data v + 2λ v."""
        v = self._vec(v)
        return self.hvp_data(v) + 2.0 * self.model.l2 * v

    def hvp_data(self, v) -> np.ndarray:
        """H_data v, the Hessian of the mean data loss over all N examples."""
        return self.minibatch_hvp(v, None)

    def minibatch_hvp(self, v, idx=None) -> np.ndarray:
        """H_B v with H_B the Hessian of the *data* loss mean over examples ``idx`` (all if None)."""
        x, y = self._batch(idx)
        with self._f64() as jnp:
            return np.asarray(_compiled(self.model).hvp_data(jnp.asarray(self.theta), x, y,
                                                             jnp.asarray(self._vec(v))))

    def per_example_grads(self, idx=None) -> np.ndarray:
        """(B, P): g_i = ∇ℓ_i (data loss of each example, no L2)."""
        x, y = self._batch(idx)
        with self._f64() as jnp:
            return np.asarray(_compiled(self.model).per_example_grads(jnp.asarray(self.theta), x, y))

    def per_example_hvp(self, v, idx=None) -> np.ndarray:
        """(B, P): H_i v, the Hessian of each example's data loss ℓ_i applied to v."""
        x, y = self._batch(idx)
        with self._f64() as jnp:
            return np.asarray(_compiled(self.model).per_example_hvp(jnp.asarray(self.theta), x, y,
                                                                    jnp.asarray(self._vec(v))))

    def _vec(self, v) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (self.n_params,):
            raise ValueError(f"v must have shape ({self.n_params},); got {v.shape}")
        return v

    def _batch(self, idx):
        x, y = np.asarray(self.data.x), np.asarray(self.data.y)
        if idx is None:
            return x, y
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"idx must be a non-empty 1-D integer array; got shape {idx.shape}, dtype {idx.dtype}")
        if idx.min() < 0 or idx.max() >= x.shape[0]:
            raise ValueError(f"idx must lie in 0..{x.shape[0] - 1}; got range {idx.min()}..{idx.max()}")
        return x[idx], y[idx]

    @staticmethod
    def _f64():
        import contextlib

        import jax.numpy as jnp

        from .mlp import float64

        @contextlib.contextmanager
        def ctx():
            with float64():
                yield jnp
        return ctx()


def callables(model, data, theta) -> Ops:
    """Operators at θ for the estimators: ``hvp``, ``hvp_data``, ``minibatch_hvp``,
    ``per_example_grads``, ``per_example_hvp`` (see ``Ops``)."""
    theta = check_point(model, data, theta)
    return Ops(model=model, data=data, theta=theta)


class _Compiled:
    """Jitted functions of one model; data and θ are arguments, so nothing recompiles per point."""

    def __init__(self, model):
        import jax
        import jax.numpy as jnp

        P = model.n_params

        def hvp_data(theta, x, y, v):
            grad = jax.grad(model.data_loss)
            return jax.jvp(lambda t: grad(t, x, y), (theta,), (v,))[1]

        def data_hessian(theta, x, y):
            return jax.lax.map(lambda v: hvp_data(theta, x, y, v), jnp.eye(P, dtype=theta.dtype),
                               batch_size=_HESSIAN_CHUNK)

        example_grad = jax.grad(model.example_loss)

        def per_example_grads(theta, x, y):
            return jax.vmap(example_grad, in_axes=(None, 0, 0))(theta, x, y)

        def per_example_hvp(theta, x, y, v):
            def one(xi, yi):
                return jax.jvp(lambda t: example_grad(t, xi, yi), (theta,), (v,))[1]
            return jax.vmap(one)(x, y)

        self.hvp_data = jax.jit(hvp_data)
        self.data_hessian = jax.jit(data_hessian)
        self.per_example_grads = jax.jit(per_example_grads)
        self.per_example_hvp = jax.jit(per_example_hvp)


@functools.lru_cache(maxsize=8)
def _compiled(model) -> _Compiled:
    return _Compiled(model)
