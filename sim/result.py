"""The frozen result of :func:`sim.simulate`, assembled from the shards' recorders."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .stats import across_chain_se, batch_means_se

__all__ = ["SimulationResult", "collect"]


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Stationary statistics of one simulation (all means over chains and recorded steps).

    SEs are across-chain (each chain's time average is one sample); ``ess`` is
    Var(excess loss)/``se``² in records.  ``covariance`` is E[(θ−θ*)(θ−θ*)ᵀ] in the
    problem's coordinates (None when not recorded); ``mean_offset`` is E[θ − θ*].
    With momentum every moment is of θ, never of the stacked (θ, velocity) state.
    """

    method: str
    sampler: str
    lr: float
    batch_size: int
    step: float                   # time step h in SGD-time units (t = kη); = lr for sgd
    noise_factor: float           # c_S (marginal, per minibatch)
    n_chains: int
    n_steps: int                  # recorded-phase steps per chain (after burn-in)
    burn_in: int                  # discarded steps per chain
    record_every: int
    n_records: int                # records per chain
    relaxation_steps: float       # τ: steps per e-fold of the slowest second moment
    mean_excess_loss: float       # E[L(θ) − L(θ*)]
    se: float                     # its across-chain SE
    se_batch_means: float         # its batch-means SE (cross-check)
    ess: float                    # effective sample size of mean_excess_loss
    mean_grad_sqnorm: float       # E‖∇L(θ)‖² of the full-batch loss
    grad_sqnorm_se: float
    mean_sq_distance: float       # E‖θ − θ*‖²
    sq_distance_se: float
    mean_offset: np.ndarray       # E[θ − θ*], (d,)
    covariance: np.ndarray | None
    covariance_se: np.ndarray | None
    covariance_every: int         # steps between covariance samples (0: not recorded)
    chain_excess_loss: np.ndarray  # per-chain time averages, (n_chains,)
    elapsed_s: float
    path_steps_per_s: float       # n_chains·(burn_in + n_steps)/elapsed_s
    momentum: float = 0.0         # heavy-ball β (sgd only; 0: plain SGD)
    # E‖θ_j − θ_{j−1}‖² over recorded steps j (sgd only; None for em and ou).
    mean_step_sqnorm: float | None = None
    step_sqnorm_se: float | None = None
    # θ*-free estimate ((1+β)/(4η))·E‖θ_j − θ_{j−1}‖² of the excess loss (exact for sgd
    # on a quadratic, theory.md "θ*-free, with momentum"); None for em and ou.
    theta_free_excess_loss: float | None = None
    theta_free_se: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict (arrays become nested lists)."""
        return {k: (x.tolist() if isinstance(x, np.ndarray) else x)
                for k, x in asdict(self).items()}


def collect(problem, recs, settings: dict) -> SimulationResult:
    """Combine per-shard :class:`~sim.stats.ChainRecorder` sums into a result.

    ``settings`` holds the run's bookkeeping fields (method, lr, burn_in, ...).
    Observables are rotated back from H's eigenbasis: E δ = U E δ̃, C = U C̃ Uᵀ.
    """
    for r in recs:
        r.finish()
    count = recs[0].count
    sums = np.concatenate([r.sum for r in recs]) / count                 # (C, 3)
    means, ses = across_chain_se(sums)
    pooled_sq = np.concatenate([r.sumsq for r in recs])[:, 0].sum() / (count * len(sums))
    var = max(pooled_sq - means[0] ** 2, 0.0)
    bm = np.concatenate([r.batch_sum[:, :, 0] / r.batch_count[:, None] for r in recs], axis=1)
    u = problem.eigvecs
    offset = np.concatenate([r.state_sum for r in recs]).mean(axis=0) / count @ u.T
    steps = steps_se = theta_free = theta_free_se = None
    if recs[0].record_steps:
        steps, steps_se = across_chain_se(np.concatenate([r.step_sum for r in recs]) / count)
        # Stationarity of E‖θ − a‖², E[θ·v] and the heavy-ball update (theory.md).
        factor = (1.0 + settings.get("momentum", 0.0)) / (4.0 * settings["lr"])
        theta_free, theta_free_se = factor * steps, factor * steps_se
    cov = cov_se = None
    if recs[0].cov_sum is not None:
        per_chain = np.concatenate([r.cov_sum for r in recs]) / recs[0].cov_count
        cov, cov_se = across_chain_se(u @ per_chain @ u.T)
    return SimulationResult(
        **settings, n_records=count,
        mean_excess_loss=float(means[0]), se=float(ses[0]), se_batch_means=batch_means_se(bm),
        ess=float(var / ses[0] ** 2) if ses[0] > 0 else float("nan"),
        mean_grad_sqnorm=float(means[1]), grad_sqnorm_se=float(ses[1]),
        mean_sq_distance=float(means[2]), sq_distance_se=float(ses[2]),
        mean_offset=offset, covariance=cov, covariance_se=cov_se,
        chain_excess_loss=sums[:, 0], mean_step_sqnorm=steps,
        step_sqnorm_se=steps_se, theta_free_excess_loss=theta_free,
        theta_free_se=theta_free_se)
