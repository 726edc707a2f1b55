"""A strict minimum of the MLP's full-batch objective, to ‖∇L‖ ≤ 1e-8 in float64.

Two stages. Full-batch L-BFGS (``scipy.optimize.minimize``, jitted JAX value and
gradient) gets close; L-BFGS alone stalls around ‖∇L‖ ~ 1e-7–1e-6 because its
line search cannot resolve loss changes below float64 round-off (|ΔL| ~ ‖∇L‖²/h).
Then Newton steps with the exact Hessian H, applied matrix-free: δ = H⁻¹∇L is
solved by conjugate gradients on exact HVPs (:func:`newton_cg_direction`), θ ← θ − δ.
They converge quadratically and need no loss values at all, only gradients and
HVPs. A step is kept only if it lowers ‖∇L‖. The one dense P×P Hessian (P = 2410
by default) is built at the polished θ*, for the positive-definiteness check.

It is a *strict* minimum when ‖∇L‖ ≤ grad_tol and the smallest eigenvalue of H
at the returned θ is > 0. Anything else raises ``NotAMinimumError``; in
particular with ``relu`` the objective is not twice differentiable: the
L2-regularised optimum sits where units switch (kinks), the gradient jumps
there, L-BFGS stalls near ‖∇L‖ ≈ 1e-3, and the autodiff "Hessian" (which
ignores the kinks) is indefinite, so no quadratic theory applies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .._validate import int_at_least as _int_at_least
from .._validate import positive_float as _positive_float
from ._checks import check_model_data

__all__ = ["Minimum", "NotAMinimumError", "find_minimum", "newton_cg_direction"]

# L-BFGS runs until its line search can make no progress (ftol ~ round-off), with a
# cap that a tanh/softplus run on digits never reaches (it needs a few thousand).
_LBFGS_MAXITER = 20_000
_LBFGS_MAXCOR = 30
# Iterations without halving ‖∇L‖ after which L-BFGS counts as stalled (tanh on digits
# halves it every few tens of iterations until round-off stops the line search).
_LBFGS_STALL = 1000
# Newton converges quadratically from L-BFGS's endpoint; more steps mean it is not converging.
_NEWTON_MAX_STEPS = 8
# Step-halvings tried before a Newton step is declared useless.
_NEWTON_MAX_HALVINGS = 6
# Inexact Newton: a residual of 1e-4·‖∇L‖ leaves ‖∇L‖ ~1e-4 of what it was after one
# step, plus the quadratic term, so one or two steps take 1e-8 to round-off.
_CG_RTOL = 1e-4
# CG iterations per Newton system.  H's condition number is ~4e4 on digits (√κ ≈ 200,
# and most of the spectrum clusters at 2λ), so a few hundred suffice; the cap bounds
# the time spent where H is indefinite (relu), which CG detects and stops on anyway.
_CG_MAXITER = 1000


class NotAMinimumError(ValueError):
    """The optimiser did not reach a strict minimum (gradient too large or Hessian not positive definite)."""


@dataclass(frozen=True, eq=False)
class Minimum:
    """A strict local minimum θ* of L(θ) = data loss + λ‖θ‖², with how it was found."""

    theta: np.ndarray          # (P,) float64
    loss: float                # L(θ*), full objective (data + L2)
    grad_norm: float           # ‖∇L(θ*)‖₂
    train_accuracy: float      # on the N training examples
    lbfgs_iterations: int
    newton_steps: int          # accepted Newton steps
    seconds: float             # wall time of find_minimum
    h_min: float               # smallest eigenvalue of H(θ*) (> 0)
    h_max: float               # largest eigenvalue of H(θ*)

    @property
    def positive_definite(self) -> bool:
        return self.h_min > 0


def find_minimum(model, data, *, grad_tol: float = 1e-8, theta0=None, quiet: bool = True) -> Minimum:
    r"""Minimise L(θ) = (1/N) Σ_i ℓ_i(θ) + λ‖θ‖² by L-BFGS then Newton; check it is a strict minimum.

    Parameters
    ----------
    model : dnn.exact.mlp.MLP
    data : dnn.exact.digits.Digits
        Training set (x (N, n_inputs), y (N,)).
    grad_tol : float
        Required ‖∇L(θ*)‖₂, > 0.
    theta0 : array_like (P,), optional
        Starting point; default ``model.init()`` (``config.seed``).
    quiet : bool
        If False, show a progress bar over L-BFGS iterations and print the stages' results.

    Returns
    -------
    Minimum

    Raises
    ------
    NotAMinimumError
        If ‖∇L‖ > grad_tol after the Newton polish, or H(θ) is not positive
        definite (smallest eigenvalue ≤ 0). The message says which, with the values.
    """
    import jax
    import scipy.optimize

    from .hessian import callables, hessian_eigh
    from .mlp import float64

    grad_tol = _positive_float(grad_tol, "grad_tol")
    check_model_data(model, data)
    start = time.perf_counter()
    with float64():
        x, y = jax.numpy.asarray(data.x), jax.numpy.asarray(data.y)
        value_and_grad = jax.jit(jax.value_and_grad(model.loss))
        grad = jax.jit(jax.grad(model.loss))
        theta = np.asarray(model.init() if theta0 is None else theta0, dtype=np.float64)
        if theta.shape != (model.n_params,) or not np.all(np.isfinite(theta)):
            raise ValueError(f"theta0 must be a finite array of shape ({model.n_params},); got shape {theta.shape}")

        last = {"gnorm": np.inf}

        def fun(t):
            v, g = value_and_grad(t, x, y)
            g = np.asarray(g, dtype=np.float64)
            last["gnorm"] = float(np.linalg.norm(g))
            return float(v), g

        bar = _bar(quiet, "L-BFGS")
        history = []

        def callback(intermediate_result):
            bar.update(1)
            history.append(last["gnorm"])
            # Stalled: no halving of the best ||grad L|| over a long stretch (on a kink,
            # as with relu, L-BFGS would otherwise crawl on to maxiter).
            k = len(history)
            if k > _LBFGS_STALL and min(history[-_LBFGS_STALL:]) > 0.5 * min(history[:-_LBFGS_STALL]):
                raise StopIteration

        res = scipy.optimize.minimize(
            fun, theta, jac=True, method="L-BFGS-B", callback=callback,
            # ftol/gtol at round-off: stop only when the line search cannot progress
            options=dict(maxiter=_LBFGS_MAXITER, maxcor=_LBFGS_MAXCOR, ftol=1e-16, gtol=1e-12, maxls=50))
        bar.close()
        theta = np.asarray(res.x, dtype=np.float64)
        lbfgs_iterations = len(history)
        g = np.asarray(grad(theta, x, y))
        gnorm_lbfgs = float(np.linalg.norm(g))
        if not quiet:
            print(f"L-BFGS: {lbfgs_iterations} iterations, ||grad L|| = {gnorm_lbfgs:.3g} ({res.message})")

        newton_steps, hvps, cg_stop = 0, 0, None
        gnorm = gnorm_lbfgs
        # Newton-CG, matrix-free: each system H δ = ∇L is solved by conjugate gradients on
        # HVPs at the current θ, so no dense H is built before θ* (the only one built is
        # hessian_eigh's, at θ*, which the positive-definiteness check and
        # exact_quantities share).  This saves a P×P Hessian build per cold run.
        for _ in range(_NEWTON_MAX_STEPS):
            if gnorm <= grad_tol * 1e-2:  # well inside the tolerance: stop
                break
            hvp = callables(model, data, theta).hvp
            delta, n_hvp, cg_stop = newton_cg_direction(hvp, g, rtol=_CG_RTOL, maxiter=_CG_MAXITER)
            hvps += n_hvp
            step, accepted = 1.0, False
            for _ in range(_NEWTON_MAX_HALVINGS):
                trial = theta - step * delta
                g_trial = np.asarray(grad(trial, x, y))
                if np.all(np.isfinite(g_trial)) and np.linalg.norm(g_trial) < gnorm:
                    accepted = True
                    break
                step *= 0.5
            if not accepted:
                break
            theta, g, gnorm = trial, g_trial, float(np.linalg.norm(g_trial))
            newton_steps += 1
        if not quiet:
            print(f"Newton-CG: {newton_steps} steps ({hvps} HVPs), ||grad L|| = {gnorm:.3g}")

        if gnorm > grad_tol:
            raise NotAMinimumError(_stalled_message(model, gnorm, grad_tol, gnorm_lbfgs, lbfgs_iterations,
                                                    newton_steps, cg_stop))
        # positive definiteness is judged at the returned θ, not at the L-BFGS point; the
        # decomposition stays cached for exact_quantities at the same θ* (dnn.exact.hessian.hessian_eigh)
        evals, _ = hessian_eigh(model, data, theta)
        if evals[0] <= 0:
            raise NotAMinimumError(_indefinite_message(model, evals, gnorm, "at the polished point"))
        loss = float(model.loss(theta, x, y))
        acc = float(model.accuracy(theta, x, y))
    return Minimum(theta=theta, loss=loss, grad_norm=gnorm, train_accuracy=acc,
                   lbfgs_iterations=lbfgs_iterations, newton_steps=newton_steps,
                   seconds=time.perf_counter() - start, h_min=float(evals[0]), h_max=float(evals[-1]))


def newton_cg_direction(hvp, g, *, rtol: float = 1e-4, maxiter: int = 1000):
    r"""Approximately solve H δ = g by conjugate gradients, given only v ↦ Hv.

    Stops when ‖g − Hδ‖ ≤ rtol·‖g‖, after ``maxiter`` iterations, or on a direction of
    non-positive curvature pᵀHp ≤ 0 (H is not positive definite there, so CG's
    minimisation of ½δᵀHδ − gᵀδ is unbounded; the iterate so far is returned, as in
    Steihaug's truncated CG).

    Parameters
    ----------
    hvp : callable
        ``v -> H v`` for (P,) float64 arrays; H symmetric.
    g : (P,) array_like
        Right-hand side (the gradient, for a Newton step θ ← θ − δ).
    rtol : float
        Relative residual to reach, > 0.
    maxiter : int
        Largest number of HVPs, >= 1.

    Returns
    -------
    (ndarray, int, str)
        δ, the number of HVPs used, and why CG stopped: ``"converged"``, ``"maxiter"``
        or ``"negative curvature"``.

    Examples
    --------
    >>> h = np.diag([1.0, 10.0, 100.0])
    >>> d, n, why = newton_cg_direction(lambda v: h @ v, np.ones(3), rtol=1e-12)
    >>> bool(np.allclose(h @ d, np.ones(3))), n, why
    (True, 3, 'converged')
    """
    g = np.asarray(g, dtype=np.float64)
    if g.ndim != 1 or not np.all(np.isfinite(g)):
        raise ValueError(f"g must be a finite 1-D array; got shape {g.shape}")
    rtol = _positive_float(rtol, "rtol")
    maxiter = _int_at_least(maxiter, "maxiter", 1)
    delta = np.zeros_like(g)
    r = g.copy()
    p = r.copy()
    rr = float(r @ r)
    stop = (rtol * np.sqrt(rr)) ** 2
    if rr == 0.0:
        return delta, 0, "converged"
    for k in range(1, maxiter + 1):
        hp = np.asarray(hvp(p), dtype=np.float64)
        if hp.shape != g.shape:
            raise ValueError(f"hvp must return an array of shape {g.shape}; got {hp.shape}")
        curvature = float(p @ hp)
        if not curvature > 0:
            return delta, k, "negative curvature"
        alpha = rr / curvature
        delta += alpha * p
        r -= alpha * hp
        rr_new = float(r @ r)
        if rr_new <= stop:
            return delta, k, "converged"
        p = r + (rr_new / rr) * p
        rr = rr_new
    return delta, maxiter, "maxiter"


def _relu_note(model) -> str:
    if model.activation != "relu":
        return ""
    return (" With activation 'relu' this is expected: the L2-regularised optimum sits on kinks "
            "(units exactly at their switching point), where L is not differentiable twice; the "
            "gradient jumps there, so L-BFGS stalls near ||grad L|| ~ 1e-3, the Newton polish cannot "
            "converge, and the autodiff Hessian (which ignores the kinks) is indefinite. No quadratic "
            "theory applies; use activation 'tanh' or 'softplus'.")


def _stalled_message(model, gnorm, grad_tol, gnorm_lbfgs, iters, newton_steps, cg_stop) -> str:
    curvature = ("; CG met a direction of non-positive curvature, so H is not positive definite there"
                 if cg_stop == "negative curvature" else "")
    return (f"no strict minimum found: ||grad L|| = {gnorm:.3g} > grad_tol = {grad_tol:.3g} "
            f"(L-BFGS stopped at {gnorm_lbfgs:.3g} after {iters} iterations; {newton_steps} Newton "
            f"steps lowered it{curvature}).{_relu_note(model)}")


def _indefinite_message(model, evals, gnorm, where) -> str:
    n_neg = int(np.sum(evals <= 0))
    return (f"no strict minimum found: the Hessian {where} is not positive definite (smallest "
            f"eigenvalue {evals[0]:.3g}, {n_neg} of {evals.size} eigenvalues <= 0; ||grad L|| = "
            f"{gnorm:.3g}).{_relu_note(model)}")


def _bar(quiet: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(desc=desc, unit="it", disable=quiet, leave=False)
