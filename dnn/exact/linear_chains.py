r"""Linearised SGD at θ*: the quadratic model stepped with real minibatches, beside the real chains.

Near θ*, each example's gradient is g_i(θ* + δ) ≈ g_i + H_i δ, so SGD on the quadratic
model moves δ = θ − θ* by

    δ' = δ − η ĝ,   ĝ = H_B δ + g_B,
    H_B δ = (1/S) Σ_{i∈B} H_i δ + 2λδ,   g_B = (1/S) Σ_{i∈B} g_i + 2λθ*,

with g_i = ∇ℓ_i(θ*) and H_i = ∇²ℓ_i(θ*) exact: one forward-over-reverse pass at θ* on
the batch gives the batch means of both (no H_i is ever stored), and the L2 term of the
objective is in both, as in the real step.  Its stationary law is the full
linear theory, HC + CH − ηHCH = η c_S [Σ + K(C)], with the state-dependent noise K to all
orders (theory.md, "The full linear theory and its mean-square stability edge"); it
exists iff the second-moment map is mean-square stable.  The excess recorded is the
quadratic model's, ½ δᵀHδ with H the full objective's Hessian at θ*.

The chains run on :mod:`dnn.exact.chains`' driver: the same minibatch indices as real
chains with the same seed (one shared index stream), the same burn-in and window, the
same drift, identity-ratio and divergence accounting.  With ``noise=False`` the g_B term
is dropped: δ' = (I − ηH_B)δ, whose second moment is T^k applied to δ₀δ₀ᵀ.

With ``momentum`` β > 0 the same ĝ drives linearised heavy ball at θ*,

    v' = βv − η(H_B δ + g_B),   δ' = δ + v',   δ₀ = v₀ = 0,

whose stationary law solves the stacked equation Z = AZAᵀ + η²c_S E₁[Σ + K(Z₀₀)]E₁ᵀ,
A = [[(1+β)I − ηH, −βI], [I, 0]] (theory.md, "Momentum"; with K = 0 it is
:func:`theory.heavy_ball_covariance`).
"""

from __future__ import annotations

import numpy as np

from .._validate import finite_array as _finite_array
from .chains import ChainState, ChainStats, _run_chains, register_stepper

__all__ = ["run_linear_chains", "noise_free_growth", "linear_stepper"]


def run_linear_chains(model, data, theta_star, *, hessian, lr, batch_size,
                      n_chains, burn_in, n_steps, replacement: bool = True, seed: int = 0,
                      record_every: int | None = None, diverge_threshold: float | None = None,
                      quiet: bool = True, state: ChainState | None = None, noise: bool = True,
                      start=None, momentum: float = 0.0) -> ChainStats:
    r"""Run ``n_chains`` chains of linearised SGD at θ* and average their stationary statistics.

    δ_{k+1} = δ_k − η (H_{B_k} δ_k + g_{B_k}),  excess ½ δᵀHδ  (see the module docstring);
    with ``momentum`` β > 0, v_{k+1} = βv_k − η(H_{B_k} δ_k + g_{B_k}), δ_{k+1} = δ_k + v_{k+1}.

    Parameters
    ----------
    model : dnn.exact.mlp.MLP
    data : dnn.exact.digits.Digits
    theta_star : (P,) array_like
        The minimum the model is linearised at.
    hessian : (P, P) array_like
        H of the full objective at θ* (``dnn.exact.hessian.Exact.hessian``), for the excess.
    lr, batch_size, n_chains, burn_in, n_steps, replacement, seed, record_every, quiet
        As in :func:`dnn.exact.chains.run_sgd_chains`; with the same ``seed`` the chains draw
        the same minibatches as the real ones.
    diverge_threshold : float, optional
        ½ δᵀHδ above which a chain counts as diverged; default that of the real chains,
        1e3·max(1, |L*|).
    state : ChainState, optional
        Continue an earlier linear run (its ``final_state``).
    noise : bool
        Keep g_B (True) or drop it (False: the noise-free map δ' = (I − ηH_B)δ).
    start : (n_chains, P) array_like, optional
        δ₀ per chain when not 0 (a noise-free run from 0 stays at 0); v₀ = 0 with momentum.
    momentum : float
        Heavy-ball β, 0 <= β < 1 (0: linearised plain SGD); a ``state`` must have the same.

    Returns
    -------
    ChainStats
        ``kind`` "linear"; ``excess`` is ½ δᵀHδ, ``theta_*`` are θ* + δ.

    Raises
    ------
    ValueError
        Bad shapes or non-finite ``hessian`` / ``start``, ``momentum`` outside [0, 1),
        and every check of ``run_sgd_chains``.
    """
    import jax.numpy as jnp

    from ._checks import check_point
    from .._validate import flag

    theta_star = check_point(model, data, theta_star)
    p = model.n_params
    h = _finite_array(hessian, "hessian")
    if h.shape != (p, p):
        raise ValueError(f"hessian must have shape ({p}, {p}); got {h.shape}")
    noise = flag(noise, "noise")
    if start is not None:
        start = _finite_array(start, "start")

    def aux(theta_star_j, loss_star):
        return (theta_star_j, jnp.asarray(h), jnp.float64(1.0 if noise else 0.0))

    return _run_chains("linear", model, data, theta_star, lr=lr, batch_size=batch_size,
                       n_chains=n_chains, burn_in=burn_in, n_steps=n_steps,
                       replacement=replacement, seed=seed, record_every=record_every,
                       diverge_threshold=diverge_threshold, quiet=quiet, state=state, aux=aux,
                       label="linear SGD" if noise else "noise-free linear SGD", start=start,
                       momentum=momentum)


def linear_stepper(model):
    """(gradient, deviation, excess) of one linearised chain, state δ = θ − θ*.

    ``aux`` = (θ*, H (P, P), noise ∈ {0, 1}).  One forward-over-reverse pass at θ* on the
    batch gives both the batch mean of the per-example gradients g_i (the primal) and of
    the per-example HVPs H_i δ (the tangent); the L2 terms 2λδ and 2λθ* are added, as the
    real step's gradient contains them.
    """
    import jax

    grad_data = jax.grad(model.data_loss)
    two_l2 = 2.0 * model.l2

    def gradient(delta, x, y, idx, aux):
        theta_star, _, noise = aux
        xb, yb = x[idx], y[idx]
        # forward-over-reverse at θ*: the primal is the batch's mean data gradient
        # (1/S) Σ g_i, the tangent (1/S) Σ H_i δ; both exact, neither stored per example
        g_data, h_delta = jax.jvp(lambda t: grad_data(t, xb, yb), (theta_star,), (delta,))
        return h_delta + two_l2 * delta + noise * (g_data + two_l2 * theta_star)

    def deviation(delta, aux):
        return delta

    def excess(delta, x, y, aux):
        return 0.5 * delta @ (aux[1] @ delta)

    return gradient, deviation, excess


def noise_free_growth(model, data, theta_star, *, hessian, lr, batch_size,
                      start, n_steps, replacement: bool = True, seed: int = 0) -> dict:
    r"""Mean-square growth rate ρ̂ of noise-free linearised SGD, δ' = (I − ηH_B)δ, ± SE.

    E[δ_k δ_kᵀ] = T^k(E δ₀δ₀ᵀ) exactly (the batch is independent of δ_k), so over the second
    half of ``n_steps`` steps from ``start``,

    .. math:: \hat\rho = \Big(\sum_j \|\delta_{j,k_2}\|^2 \Big/ \sum_j \|\delta_{j,k_1}\|^2\Big)^{1/(k_2-k_1)}

    estimates ρ(T) once E δδᵀ is aligned with T's Perron matrix (the first half is a
    transient; start on :func:`dnn.exact.second_moment.ritz_start` to keep it short).  The
    SE of ρ̂ − 1 is the delete-one-chain jackknife of the ratio of sums.

    Parameters
    ----------
    start : (n_chains, P) array_like
        δ₀ per chain, n_chains >= 2.  The map is linear, so its scale is free: keep ‖δ₀‖²
        small enough that ρ^n_steps cannot overflow (a chain whose ½δᵀHδ passes 1e100 is
        counted as diverged).
    n_steps : int
        Total steps, >= 4.
    Other parameters as in :func:`run_linear_chains`.

    Returns
    -------
    dict
        ``rho_minus_1``, ``se``, ``n`` (chains), ``steps`` (k₂ − k₁), ``transient_rho_minus_1``
        (the same over the first half: far from it means the start was not yet aligned),
        ``n_diverged``, ``seconds``.
    """
    import time

    n_steps = int(n_steps)
    if n_steps < 4:
        raise ValueError(f"n_steps must be an integer >= 4; got {n_steps!r}")
    start = _finite_array(start, "start")
    t0 = time.perf_counter()
    kw = dict(hessian=hessian, lr=lr, batch_size=batch_size,
              n_chains=int(start.shape[0]), replacement=replacement, seed=seed, noise=False,
              record_every=1, diverge_threshold=_NOISE_FREE_THRESHOLD)
    half = n_steps // 2
    # the window of a run is >= 2 steps; each leg is then half − 2 burn-in steps plus those 2
    first = run_linear_chains(model, data, theta_star, burn_in=max(half - 2, 0), n_steps=2,
                              start=start, **kw)
    second = run_linear_chains(model, data, theta_star, burn_in=max(n_steps - half - 2, 0),
                               n_steps=2, state=first.final_state, **kw)
    d0 = np.sum(start ** 2, axis=1)
    d1 = np.sum(first.final_state.state ** 2, axis=1)
    d2 = np.sum(second.final_state.state ** 2, axis=1)
    alive = ~second.diverged
    k1, k2 = first.final_state.step, second.final_state.step
    rate, se = _ratio_rate(d1[alive], d2[alive], k2 - k1)
    transient, _ = _ratio_rate(d0[alive], d1[alive], k1)
    return {"rho_minus_1": rate, "se": se, "n": int(alive.sum()), "steps": int(k2 - k1),
            "transient_rho_minus_1": transient, "n_diverged": int((~alive).sum()),
            "seconds": time.perf_counter() - t0}


# ½δᵀHδ at which a noise-free chain counts as diverged: the map is scale-free, so this only
# guards float64 (max ~1e308) for starts with ‖δ₀‖² ~ 1e-100.
_NOISE_FREE_THRESHOLD = 1e100


def _ratio_rate(before, after, steps):
    """(ρ̂ − 1, jackknife SE) with ρ̂ = (Σ after / Σ before)^(1/steps)."""
    import math

    n = before.size
    if n < 2 or steps < 1:
        return math.nan, math.nan

    def rate(b, a):
        return math.expm1(math.log(a.sum() / b.sum()) / steps)

    full = rate(before, after)
    loo = np.array([rate(np.delete(before, i), np.delete(after, i)) for i in range(n)])
    se = math.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))
    return full, se


register_stepper("linear", linear_stepper)
