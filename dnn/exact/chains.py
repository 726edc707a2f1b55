"""Many SGD chains on the MLP at stationarity around θ*, vectorised, in float64.

Each chain runs θ_{k+1} = θ_k − η ĝ_k with ĝ_k the gradient of the *full*
objective on a minibatch of S real examples,

    ĝ_k = (1/S) Σ_{i∈B_k} ∇ℓ_i(θ_k) + 2λθ_k,

so E[ĝ | θ] = ∇L(θ) and Cov(ĝ | θ) = c_S Σ(θ) with c_S = ``theory.noise_factor``
(indices drawn with replacement: c_S = 1/S; or without replacement within a
batch: c_S = (N−S)/(S(N−1))). All chains start at θ* and advance together
(``vmap`` over chains inside ``lax`` loops under ``jit``; the leading axis of
every state array is the chain).

After ``burn_in`` steps a window of ``n_steps`` is measured, split into two
halves for a drift check. Recorded per chain:
- every ``record_every`` steps, the full-data excess L(θ) − L* (N forward passes
  per chain, the expensive part; ``default_record_every`` makes it cost about as
  much as the steps in between);
- every step, ‖ĝ‖², (θ − θ*)·ĝ, Σĝ and Σ(θ − θ*): enough for the θ*-free
  estimate (η/4)E‖ĝ‖² and the fluctuation–dissipation identity
  E[(θ − θ̄)·ĝ] = (η/2)E‖ĝ‖² (theory.md), which holds for any loss.

A chain whose θ or ĝ becomes non-finite, or whose excess exceeds a huge
threshold, is frozen from that step on and reported as diverged (index and
step); summary statistics use the other chains, and say how many.

**Heavy ball** (``momentum=β`` > 0): each chain carries (θ, v), stacked as one state
row of length 2P, and steps

    v_{k+1} = β v_k − η ĝ_k,   θ_{k+1} = θ_k + v_{k+1},   v_0 = 0 at the start (θ*),

with the same minibatch stream as plain chains of the same seed.  Every step also
records ‖v_{k+1}‖², so that the θ*-free estimate becomes ((1+β)/(4η))·E‖v‖² and the
identity E[(θ − θ̄)·ĝ] = ((1+β)/(2η))·E‖v‖² (theory.md, "Momentum"; at β = 0,
v = −ηĝ and both are the plain ones).  β is a traced constant, so one compilation
serves every β > 0; β = 0 runs the plain kernel, bit for bit as without momentum.

The loops are one driver over a *stepper* (how ĝ and the excess are computed from
the chain's position): plain SGD here, linearised SGD at θ* in
:mod:`dnn.exact.linear_chains`; the update rule (plain or heavy ball) is the
driver's, so every stepper has both.  Every stepper draws its minibatches with
:func:`_draw_batch` from the same per-chain key schedule, so two steppers run with the
same seed see the same index stream, and a run continued from its
:class:`ChainState` is the same run as one long one.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np

from theory import noise_factor

from .._validate import int_at_least as _int_at_least
from .._validate import momentum as _momentum
from .._validate import positive_float as _positive_float

__all__ = ["ChainState", "ChainStats", "Estimate", "run_sgd_chains", "default_record_every",
           "benchmark_steps"]

# Progress-bar granularity: enough chunks to see progress, few enough that the
# per-call overhead (a few ms) is nothing next to the work.
_TARGET_CHUNKS = 40
# A cross-entropy excess of 1000 nats means logits of order 1000: the chain has left the basin.
_DIVERGE_FACTOR = 1e3


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error over ``n`` independent chains."""

    value: float
    se: float
    n: int

    @property
    def z(self) -> float:
        """value / se (NaN when se is 0 or undefined)."""
        return self.value / self.se if self.se > 0 else math.nan


@dataclass(frozen=True, eq=False)
class ChainState:
    """Where a set of chains stands after a run, so that a later call can continue it.

    Continuing (``run_sgd_chains(..., state=s)``) draws the same minibatches as one
    uninterrupted run would have: the keys carry the index stream.
    """

    kind: str                    # the stepper that produced it ("sgd", "linear", ...)
    state: np.ndarray            # (n_chains, P): θ for "sgd", δ = θ − θ* for "linear";
                                 # (n_chains, 2P) with momentum: (position, velocity v)
    keys: np.ndarray             # (n_chains, 2) uint32 PRNG keys after the last step
    alive: np.ndarray            # (n_chains,) bool
    diverged_step: np.ndarray    # (n_chains,) int, −1 if alive
    step: int                    # steps taken since the start at θ*
    seed: int                    # the seed the keys came from
    momentum: float = 0.0        # heavy-ball β of the run (a continuation must use the same)

    @property
    def n_chains(self) -> int:
        return int(self.alive.size)


@dataclass(frozen=True, eq=False)
class ChainStats:
    """Per-chain time averages of one SGD run (shape (n_chains,) unless noted).

    Averages of diverged chains are meaningless (they stop at the divergence)
    and are excluded from every summary; ``diverged`` says which they are.
    """

    lr: float
    batch_size: int
    n_chains: int
    burn_in: int                 # steps before the window, from θ* (earlier runs continued included)
    n_steps: int                 # window length actually run (a multiple of 2·record_every)
    record_every: int
    replacement: bool
    seed: int
    n_data: int
    noise_factor: float          # c_S of the sampling scheme
    loss_star: float             # L(θ*)
    diverge_threshold: float     # excess above which a chain counts as diverged
    excess: np.ndarray           # mean of recorded L(θ) − L* over the window
    excess_halves: np.ndarray    # (n_chains, 2): the same over each half
    grad_sqnorm: np.ndarray      # mean ‖ĝ‖² over the window's steps
    grad_sqnorm_halves: np.ndarray  # (n_chains, 2)
    fd_lhs: np.ndarray           # mean (θ_k − θ̄)·ĝ_k, θ̄ the chain's window mean
    theta_start: np.ndarray      # (n_chains, P) θ at the window's start
    theta_end: np.ndarray        # (n_chains, P) θ after the window
    theta_mean: np.ndarray       # (n_chains, P) θ̄ over the window's steps
    diverged: np.ndarray         # bool
    diverged_step: np.ndarray    # step (from the start, burn-in included) of divergence; -1 if none
    n_records: int               # recorded losses per chain in the window
    seconds: float
    dist_sq: np.ndarray | None = None    # mean ‖θ − θ*‖² over the window's steps
    final_state: ChainState | None = None  # to continue the run (see ChainState)
    kind: str = "sgd"            # the stepper
    momentum: float = 0.0        # heavy-ball β (0: plain SGD)
    velocity_sqnorm: np.ndarray | None = None  # mean ‖v_{k+1}‖² over the window (momentum > 0)

    # ------------------------------------------------------------------ summaries
    @property
    def n_diverged(self) -> int:
        return int(self.diverged.sum())

    @property
    def diverged_chains(self) -> list:
        """Indices of the diverged chains."""
        return [int(i) for i in np.flatnonzero(self.diverged)]

    @property
    def steps_per_second(self) -> float:
        return (self.burn_in + self.n_steps) / self.seconds if self.seconds > 0 else math.nan

    def observed(self) -> Estimate:
        """E[L(θ) − L*]: mean over surviving chains of their window averages, ± across-chain SE."""
        return _mean_se(self.excess[~self.diverged])

    def drift_z(self) -> float:
        """z of the mean paired difference (second half − first half) of the per-chain excess."""
        alive = ~self.diverged
        return _mean_se(self.excess_halves[alive, 1] - self.excess_halves[alive, 0]).z

    def dist_sq_mean(self) -> Estimate:
        """E‖θ − θ*‖² ± across-chain SE (how far the chains wander)."""
        if self.dist_sq is None:
            return Estimate(math.nan, math.nan, 0)
        return _mean_se(self.dist_sq[~self.diverged])

    def grad_sqnorm_mean(self) -> Estimate:
        """E‖ĝ‖² ± across-chain SE."""
        return _mean_se(self.grad_sqnorm[~self.diverged])

    def velocity_sqnorm_mean(self) -> Estimate:
        """E‖v‖² ± across-chain SE (heavy ball; NaN, n = 0 for plain SGD, where v = −ηĝ)."""
        if self.velocity_sqnorm is None:
            return Estimate(math.nan, math.nan, 0)
        return _mean_se(self.velocity_sqnorm[~self.diverged])

    def theta_free_per_chain(self) -> np.ndarray:
        """Per chain, the θ*-free estimate ((1+β)/(4η))·‖v‖² (time average; diverged included).

        At β = 0, v = −ηĝ and it is (η/4)·‖ĝ‖², computed as such.
        """
        if self.momentum == 0.0:
            return 0.25 * self.lr * self.grad_sqnorm
        return (1.0 + self.momentum) / (4.0 * self.lr) * self.velocity_sqnorm

    def theta_free(self) -> Estimate:
        """((1+β)/(4η))·E‖v‖², the θ*-free estimate of the excess (exact for a quadratic loss).

        At β = 0 it is (η/4)·E‖ĝ‖²."""
        if self.momentum == 0.0:
            e = self.grad_sqnorm_mean()
            return Estimate(0.25 * self.lr * e.value, 0.25 * self.lr * e.se, e.n)
        return _mean_se(self.theta_free_per_chain()[~self.diverged])

    def identity_ratio(self) -> Estimate:
        """E[(θ − θ̄)·ĝ] / (((1+β)/(2η))E‖v‖²), which is 1 at stationarity for any loss.

        At β = 0 the denominator is (η/2)E‖ĝ‖².  Delta-method SE."""
        alive = ~self.diverged
        a = self.fd_lhs[alive]
        # 2× the θ*-free estimate: ((1+β)/(2η))‖v‖², or (η/2)‖ĝ‖² at β = 0
        b = 2.0 * self.theta_free_per_chain()[alive]
        n = int(a.size)
        if n < 2:
            return Estimate(math.nan, math.nan, n)
        ma, mb = a.mean(), b.mean()
        r = ma / mb
        # ratio of means: Var ≈ Var(a − r b)/(n mb²)
        se = float(np.std(a - r * b, ddof=1) / (math.sqrt(n) * abs(mb)))
        return Estimate(float(r), se, n)

    def summary(self) -> dict:
        """JSON-ready numbers: settings, observed ± SE, drift z, θ*-free, identity ratio, divergence."""
        def est(e):
            return {"value": e.value, "se": e.se, "n": e.n}
        return {
            "lr": self.lr, "batch_size": self.batch_size, "n_chains": self.n_chains,
            "burn_in": self.burn_in, "n_steps": self.n_steps, "record_every": self.record_every,
            "n_records": self.n_records, "replacement": self.replacement, "seed": self.seed,
            "noise_factor": self.noise_factor, "loss_star": self.loss_star,
            "observed": est(self.observed()), "drift_z": self.drift_z(),
            "grad_sqnorm": est(self.grad_sqnorm_mean()), "theta_free": est(self.theta_free()),
            "identity_ratio": est(self.identity_ratio()), "dist_sq": est(self.dist_sq_mean()),
            "kind": self.kind, "momentum": self.momentum,
            "velocity_sqnorm": est(self.velocity_sqnorm_mean()),
            "n_diverged": self.n_diverged, "diverged_chains": self.diverged_chains,
            "diverged_steps": [int(self.diverged_step[i]) for i in self.diverged_chains],
            "diverge_threshold": self.diverge_threshold,
            "seconds": self.seconds, "steps_per_second": self.steps_per_second,
        }


def default_record_every(batch_size: int, n_data: int) -> int:
    """Steps between full-data loss records so that recording costs about as much as stepping.

    A step costs ~3 forward passes over S examples (forward + backward), a record
    one forward pass over N: equal at record_every ≈ N/(3S). (Digits: S=8 → 75, S=64 → 9.)
    """
    batch_size = _int_at_least(batch_size, "batch_size", 1)
    n_data = _int_at_least(n_data, "n_data", 1)
    return max(1, int(round(n_data / (3 * batch_size))))


def run_sgd_chains(model, data, theta_star, *, lr, batch_size, n_chains, burn_in, n_steps,
                   replacement: bool = True, seed: int = 0, record_every: int | None = None,
                   diverge_threshold: float | None = None, quiet: bool = True,
                   state: ChainState | None = None, momentum: float = 0.0) -> ChainStats:
    r"""Run ``n_chains`` SGD chains from θ* and average their stationary statistics.

    θ_{k+1} = θ_k − η ĝ_k,  ĝ_k = (1/S) Σ_{i∈B_k} ∇ℓ_i(θ_k) + 2λθ_k;

    with ``momentum`` β > 0, heavy ball: v_{k+1} = β v_k − η ĝ_k, θ_{k+1} = θ_k + v_{k+1},
    v_0 = 0 (the same minibatches as β = 0 with the same seed).

    Parameters
    ----------
    model : dnn.exact.mlp.MLP
    data : dnn.exact.digits.Digits
    theta_star : array_like (P,)
        Start of every chain and reference for L* = L(θ*).
    lr : float
        η > 0.
    batch_size : int
        S, 1 ≤ S (≤ N without replacement).
    n_chains : int
        Independent chains, ≥ 2 (the SEs are across chains).
    burn_in : int
        Steps discarded before the window, ≥ 0.
    n_steps : int
        Window length, ≥ 1; rounded *up* to a multiple of 2·record_every so that each
        half holds whole records (``ChainStats.n_steps`` is the length run).
    replacement : bool
        Minibatch indices i.i.d. uniform (True) or distinct within a batch (False).
    seed : int
        Seed of all minibatch draws; the same seed gives the same result.
    record_every : int, optional
        Steps between full-data loss records; default ``default_record_every(S, N)``.
    diverge_threshold : float, optional
        Excess L − L* above which a chain counts as diverged; default 1e3·max(1, |L*|).
    quiet : bool
        Hide the progress bar.
    state : ChainState, optional
        Continue these chains (``ChainStats.final_state`` of an earlier call with the same
        settings) instead of starting at θ*; ``burn_in`` more steps are then discarded.
        ``seed``, ``n_chains`` and ``momentum`` must match it.
    momentum : float
        Heavy-ball β, 0 <= β < 1 (0: plain SGD, bit for bit the run without it).

    Returns
    -------
    ChainStats
        With ``momentum`` and ``velocity_sqnorm`` (β > 0); its ``theta_free`` and
        ``identity_ratio`` use ((1+β)/(4η))·E‖v‖².

    Raises
    ------
    ValueError
        A bad argument (named in the message), e.g. ``momentum`` outside [0, 1), or a
        ``state`` from another stepper, seed, chain count or momentum.
    """
    import jax.numpy as jnp

    return _run_chains("sgd", model, data, theta_star, lr=lr, batch_size=batch_size,
                       n_chains=n_chains, burn_in=burn_in, n_steps=n_steps,
                       replacement=replacement, seed=seed, record_every=record_every,
                       diverge_threshold=diverge_threshold, quiet=quiet, state=state,
                       aux=lambda theta_star, loss_star: (theta_star, jnp.float64(loss_star)),
                       label="SGD", momentum=momentum)


def _run_chains(kind, model, data, theta_star, *, lr, batch_size, n_chains, burn_in, n_steps,
                replacement, seed, record_every, diverge_threshold, quiet, state, aux, label,
                start=None, momentum=0.0) -> ChainStats:
    """The one driver: check arguments, burn in, run the two window halves, summarise.

    ``aux(theta_star, loss_star)`` gives the stepper's constants (jax arrays); ``start``
    (n_chains, P) is the initial position when not the default (θ* for "sgd", δ = 0 for
    steppers whose state is the deviation); with momentum the velocity starts at 0.
    """
    import jax
    import jax.numpy as jnp

    from ._checks import check_point
    from .mlp import float64

    theta_star = check_point(model, data, theta_star)
    lr = _positive_float(lr, "lr")
    n_data = int(np.shape(data.x)[0])
    batch_size = _int_at_least(batch_size, "batch_size", 1)
    if not isinstance(replacement, bool):
        raise TypeError(f"replacement must be a bool; got {replacement!r}")
    if not replacement and batch_size > n_data:
        raise ValueError(f"batch_size must be <= N = {n_data} without replacement; got {batch_size}")
    n_chains = _int_at_least(n_chains, "n_chains", 2)
    burn_in = _int_at_least(burn_in, "burn_in", 0)
    n_steps = _int_at_least(n_steps, "n_steps", 1)
    seed = _int_at_least(seed, "seed", 0)
    beta = _momentum(momentum, "momentum")
    heavy = beta > 0.0
    record_every = (default_record_every(batch_size, n_data) if record_every is None
                    else _int_at_least(record_every, "record_every", 1))
    n_steps = -(-n_steps // (2 * record_every)) * (2 * record_every)
    c_s = float(noise_factor(batch_size, n_data, replacement=replacement))
    if state is not None:
        _check_state(state, kind, n_chains, seed, model.n_params, beta)
    if start is not None and np.shape(start) != (n_chains, model.n_params):
        raise ValueError(f"start must have shape ({n_chains}, {model.n_params}); got "
                         f"{np.shape(start)}")

    start_time = time.perf_counter()
    with float64():
        x, y = jnp.asarray(data.x, dtype=jnp.float64), jnp.asarray(data.y)
        fns = _compiled(model, batch_size, replacement, kind, heavy)
        loss_star = float(_full_loss(model)(jnp.asarray(theta_star), x, y))
        threshold = (_DIVERGE_FACTOR * max(1.0, abs(loss_star)) if diverge_threshold is None
                     else _positive_float(diverge_threshold, "diverge_threshold"))
        P = model.n_params
        if state is None:
            if start is not None:
                cur = jnp.asarray(start, dtype=jnp.float64)
            elif kind == "sgd":
                cur = jnp.broadcast_to(jnp.asarray(theta_star), (n_chains, P))
            else:       # steppers whose state is δ = θ − θ* start at θ*, i.e. at 0
                cur = jnp.zeros((n_chains, P), dtype=jnp.float64)
            if heavy:   # (position, velocity), v_0 = 0
                cur = jnp.concatenate([cur, jnp.zeros((n_chains, P), dtype=jnp.float64)], axis=1)
            keys = jax.random.split(jax.random.PRNGKey(seed), n_chains)
            alive = jnp.ones(n_chains, dtype=bool)
            dstep = jnp.full(n_chains, -1, dtype=jnp.int64)
            step = 0
        else:
            cur, keys = jnp.asarray(state.state), jnp.asarray(state.keys)
            alive, dstep = jnp.asarray(state.alive), jnp.asarray(state.diverged_step, dtype=jnp.int64)
            step = int(state.step)
        consts = (x, y, jnp.float64(lr), jnp.float64(beta), jnp.float64(threshold),
                  aux(jnp.asarray(theta_star), loss_star))

        total = burn_in + n_steps
        chunk = max(2 * record_every, -(-total // _TARGET_CHUNKS))
        chunk = -(-chunk // record_every) * record_every   # window chunks hold whole records
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=f"{label} lr={lr:.3g} S={batch_size}", unit="step",
                   disable=quiet, leave=False)

        burn_end = step + burn_in
        while step < burn_end:
            n = min(chunk, burn_end - step)
            cur, keys, alive, dstep = fns.burn(cur, keys, alive, dstep, jnp.int64(step),
                                               jnp.int64(n), *consts)
            step += n
            bar.update(n)

        state_start = np.asarray(cur)[:, :P]          # positions (the velocity is not θ)
        half = n_steps // 2
        sums = [None, None]
        for h in range(2):
            done = 0
            while done < half:
                n = min(chunk, half - done)
                cur, keys, alive, dstep, acc = fns.window(
                    cur, keys, alive, dstep, jnp.int64(step), jnp.int64(n // record_every),
                    jnp.int64(record_every), *consts)
                acc = {k: np.asarray(v, dtype=np.float64) for k, v in acc.items()}
                sums[h] = acc if sums[h] is None else {k: sums[h][k] + acc[k] for k in acc}
                done += n
                step += n
                bar.update(n)
        bar.close()
        state_end, keys = np.asarray(cur), np.asarray(keys)
        alive = np.asarray(alive)
        dstep = np.asarray(dstep)

    n_rec_half = half // record_every
    excess_h = np.stack([s["excess"] / n_rec_half for s in sums], axis=1)
    g2_h = np.stack([s["g2"] / half for s in sums], axis=1)
    v2 = (sums[0]["v2"] + sums[1]["v2"]) / n_steps if heavy else None
    tot = {k: sums[0][k] + sums[1][k] for k in sums[0]}
    # Σ(θ_k − θ̄)·ĝ_k = Σ(θ_k − θ*)·ĝ_k − (θ̄ − θ*)·Σĝ_k, with the sums taken relative to θ*
    # so nothing large cancels.
    dev_mean = tot["dev"] / n_steps
    fd_lhs = (tot["dev_g"] - np.einsum("cp,cp->c", dev_mean, tot["g"])) / n_steps
    as_theta = (lambda s: s) if kind == "sgd" else (lambda s: theta_star + s)
    final = ChainState(kind=kind, state=state_end, keys=keys, alive=alive, diverged_step=dstep,
                       step=step, seed=seed, momentum=beta)
    state_end = state_end[:, :model.n_params]
    return ChainStats(
        lr=lr, batch_size=batch_size, n_chains=n_chains, burn_in=burn_end, n_steps=n_steps,
        record_every=record_every, replacement=replacement, seed=seed, n_data=n_data,
        noise_factor=c_s, loss_star=loss_star, diverge_threshold=threshold,
        excess=excess_h.mean(axis=1), excess_halves=excess_h, grad_sqnorm=g2_h.mean(axis=1),
        grad_sqnorm_halves=g2_h, fd_lhs=fd_lhs, theta_start=as_theta(state_start),
        theta_end=as_theta(state_end), theta_mean=theta_star + dev_mean, diverged=~alive,
        diverged_step=dstep, n_records=2 * n_rec_half, seconds=time.perf_counter() - start_time,
        dist_sq=tot["dev2"] / n_steps, final_state=final, kind=kind, momentum=beta,
        velocity_sqnorm=v2)


def _check_state(state, kind, n_chains, seed, n_params, momentum):
    if not isinstance(state, ChainState):
        raise TypeError(f"state must be a ChainState; got {type(state).__name__}")
    if state.kind != kind:
        raise ValueError(f"state must come from a {kind!r} run; got one from {state.kind!r}")
    if state.n_chains != n_chains or state.seed != seed:
        raise ValueError(f"state must match n_chains={n_chains} and seed={seed}; got "
                         f"n_chains={state.n_chains}, seed={state.seed}")
    if state.momentum != momentum:
        # the velocity is part of the state: another β would be another recursion
        raise ValueError(f"state must come from a run with momentum={momentum:g}; got one "
                         f"with momentum={state.momentum:g}")
    width = 2 * n_params if momentum > 0 else n_params
    if np.shape(state.state) != (n_chains, width):
        raise ValueError(f"state.state must have shape ({n_chains}, {width}); got "
                         f"{np.shape(state.state)}")


def benchmark_steps(model, data, theta_star, *, batch_size, n_chains=32, n_steps=2000, lr=None,
                    replacement=True, record_every=None, seed=0) -> dict:
    """Measured SGD steps per second (all chains advancing together), compilation excluded.

    Runs one short warm-up (compiles) and then ``n_steps`` timed steps with recording.
    ``lr`` defaults to a small safe value (1e-3). Returns a dict with ``steps_per_second``,
    ``chain_steps_per_second``, ``seconds`` and the settings.
    """
    lr = 1e-3 if lr is None else lr
    kw = dict(lr=lr, batch_size=batch_size, n_chains=n_chains, replacement=replacement,
              record_every=record_every, seed=seed)
    run_sgd_chains(model, data, theta_star, burn_in=1, n_steps=1, **kw)   # compile
    stats = run_sgd_chains(model, data, theta_star, burn_in=0, n_steps=n_steps, **kw)
    return {"batch_size": batch_size, "n_chains": n_chains, "n_steps": stats.n_steps,
            "record_every": stats.record_every, "replacement": replacement, "seconds": stats.seconds,
            "steps_per_second": stats.n_steps / stats.seconds,
            "chain_steps_per_second": stats.n_steps * n_chains / stats.seconds}


# ---------------------------------------------------------------------- compiled kernels

def _mean_se(values) -> Estimate:
    values = np.asarray(values, dtype=np.float64)
    n = int(values.size)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    se = float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return Estimate(float(values.mean()), se, n)


class _Kernels:
    """Jitted burn-in and window loops for one (model, S, sampling scheme, stepper, update).

    Everything else (state, keys, data, η, β, the stepper's constants, step counts) is a
    traced argument, so one compilation serves every learning rate, momentum, chunk length
    and seed.  A stepper is three functions of one chain's position (``_stepper``): the
    minibatch gradient ĝ, the deviation θ − θ* and the excess loss.  The update is the
    kernel's: position − η ĝ (``heavy_ball`` False), or on the stacked (position, v),
    v' = βv − ηĝ, position' = position + v' (``heavy_ball`` True, which also records ‖v'‖²).
    """

    def __init__(self, model, batch_size, replacement, kind, heavy_ball=False):
        import jax
        import jax.numpy as jnp

        gradient, deviation, excess = _stepper(model, kind)
        P = model.n_params

        def position(state):
            return state[:P] if heavy_ball else state

        def step(state, key, x, y, lr, beta, aux):
            key, idx = _draw_batch(key, x.shape[0], batch_size, replacement)
            if not heavy_ball:
                g = gradient(state, x, y, idx, aux)
                return state - lr * g, key, g
            pos, vel = state[:P], state[P:]
            g = gradient(pos, x, y, idx, aux)
            vel = beta * vel - lr * g
            return jnp.concatenate([pos + vel, vel]), key, g

        def guard(ok_old, new, old):
            return jnp.where(ok_old, new, old)

        # ---- one chain; vmapped below.  The burn-in runs this same loop as one block of n
        # steps and drops the sums: one compilation per stepper instead of two (each costs
        # seconds on 2 cores), for a few vector operations per step.
        def window_one(state, key, alive, dstep, step0, n_blocks, every, x, y, lr, beta, thr,
                       aux):
            zero = jnp.zeros((), state.dtype)
            acc0 = {"excess": zero, "g2": zero, "dev_g": zero, "dev2": zero,
                    "g": jnp.zeros(P, state.dtype), "dev": jnp.zeros(P, state.dtype)}
            if heavy_ball:
                acc0["v2"] = zero

            def step_body(k, carry):
                state, key, alive, dstep, acc, base = carry
                new, key, g = step(state, key, x, y, lr, beta, aux)
                v2 = acc.get("v2")
                ok = alive & jnp.all(jnp.isfinite(new)) & jnp.all(jnp.isfinite(g))
                dstep = jnp.where(alive & ~ok, base + k, dstep)
                dev = deviation(position(state), aux)
                acc = {"excess": acc["excess"],
                       "g2": acc["g2"] + jnp.where(ok, g @ g, 0.0),
                       "dev_g": acc["dev_g"] + jnp.where(ok, dev @ g, 0.0),
                       "dev2": acc["dev2"] + jnp.where(ok, dev @ dev, 0.0),
                       "g": acc["g"] + jnp.where(ok, g, 0.0),
                       "dev": acc["dev"] + jnp.where(ok, dev, 0.0)}
                if heavy_ball:
                    vel = new[P:]
                    acc["v2"] = v2 + jnp.where(ok, vel @ vel, 0.0)
                return guard(ok, new, state), key, ok, dstep, acc, base

            def block_body(b, carry):
                state, key, alive, dstep, acc = carry
                base = step0 + b * every
                state, key, alive, dstep, acc, _ = jax.lax.fori_loop(
                    0, every, step_body, (state, key, alive, dstep, acc, base))
                exc = excess(position(state), x, y, aux)
                ok = alive & jnp.isfinite(exc) & (exc < thr)
                dstep = jnp.where(alive & ~ok, base + every - 1, dstep)
                acc = dict(acc, excess=acc["excess"] + jnp.where(ok, exc, 0.0))
                return state, key, ok, dstep, acc

            return jax.lax.fori_loop(0, n_blocks, block_body, (state, key, alive, dstep, acc0))

        chains = (0, 0, 0, 0) + (None,) * 9
        self.window = jax.jit(jax.vmap(window_one, in_axes=chains, out_axes=(0, 0, 0, 0, 0)))

    def burn(self, state, keys, alive, dstep, step0, n, *consts):
        """n steps with one divergence check at the end (the window loop as one block)."""
        import jax.numpy as jnp

        state, keys, alive, dstep, _ = self.window(state, keys, alive, dstep, step0,
                                                   jnp.int64(1), n, *consts)
        return state, keys, alive, dstep


#: Stepper factories by kind: ``factory(model) -> (gradient, deviation, excess)``.  Other
#: modules register theirs (dnn.exact.linear_chains adds "linear" on import), so this
#: module never imports them back.
_STEPPERS = {}


def register_stepper(kind, factory):
    """Make ``kind`` available to the chain runner (called by the module that defines it)."""
    _STEPPERS[kind] = factory


def _stepper(model, kind):
    """(gradient, deviation, excess) of one chain for the stepper ``kind``."""
    if kind != "sgd":
        if kind not in _STEPPERS:
            raise ValueError(f"kind must be 'sgd' or one of {sorted(_STEPPERS)}; got {kind!r}")
        return _STEPPERS[kind](model)
    import jax

    grad_loss = jax.grad(model.loss)

    def gradient(theta, x, y, idx, aux):
        return grad_loss(theta, x[idx], y[idx])     # batch mean data gradient + 2λθ

    def deviation(theta, aux):
        return theta - aux[0]

    def excess(theta, x, y, aux):
        return model.loss(theta, x, y) - aux[1]

    return gradient, deviation, excess


def _draw_batch(key, n_data, batch_size, replacement):
    """(next key, S indices): the one minibatch draw every stepper uses (same seed, same batches)."""
    import jax

    key, sub = jax.random.split(key)
    if replacement:
        return key, jax.random.randint(sub, (batch_size,), 0, n_data)
    return key, _floyd_sample(sub, n_data, batch_size)


def _floyd_sample(key, n_data, size):
    """S distinct indices, uniform over S-subsets (Floyd's algorithm): O(S²) work, not O(N).

    For j = N−S … N−1: draw t uniform in [0, j]; take t unless already taken, else take j.
    """
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(key, size)
    chosen = jnp.full(size, -1, dtype=jnp.int32)

    def body(k, chosen):
        j = n_data - size + k
        t = jax.random.randint(keys[k], (), 0, j + 1)
        taken = jnp.any(chosen == t)
        return chosen.at[k].set(jnp.where(taken, j, t).astype(jnp.int32))

    return jax.lax.fori_loop(0, size, body, chosen)


@functools.lru_cache(maxsize=16)
def _compiled(model, batch_size, replacement, kind="sgd", heavy_ball=False) -> _Kernels:
    return _Kernels(model, batch_size, replacement, kind, heavy_ball)


@functools.lru_cache(maxsize=8)
def _full_loss(model):
    import jax

    return jax.jit(model.loss)
