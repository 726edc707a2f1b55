r"""One driver: problem × method × sampler → stationary statistics with honest error bars.

``simulate`` builds a stepper (sgd.py, heavy_ball.py, sde.py, ou.py), draws each chain's
start from the continuous-time stationary law N(0, η c_S Γ) (HΓ + ΓH = Σ) (with
momentum: the exact additive-noise law of the stacked (position, velocity) state),
discards a burn-in of ``BURN_IN_RELAXATIONS`` second-moment relaxation times, then
time-averages the observables of :mod:`sim.stats` over ``n_steps`` steps.

Chains are split into fixed shards (sized from n_chains and d only); each shard has
its own generator seeded from ``rng`` and shards run on threads (numpy and BLAS
release the GIL).  Shards do not depend on the thread count, so a seed gives the
same numbers on any machine.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from theory import StabilityError
from theory.momentum import stacked_blocks_eig

from . import _validate as v
from . import budget as _budget
from ._linear import PRECISIONS, LinearGaussian, noise_factor_matrix
from ._run import Shard, run_shards
from .heavy_ball import HeavyBallGaussian, MinibatchHeavyBall
from .noise import NORMALS, NormalSource
from .ou import exact_ou
from .problems import GaussianQuadratic, LeastSquares
from .samplers import SAMPLERS, make_sampler, sampler_noise_factor
from .sde import euler_maruyama
from .sgd import MinibatchSGD, gaussian_sgd
from .result import SimulationResult, collect
from .stats import ChainRecorder, observable_weights

__all__ = ["METHODS", "SimulationResult", "make_stepper", "simulate", "simulation_memory"]

METHODS = ("sgd", "em", "ou")
# e^{-20} ≈ 2e-9: what is left of the start's mismatch in the second moments.
BURN_IN_RELAXATIONS = 20.0
# A shard is >= 256 chains and >= 8192 state entries: smaller ones pay more numpy
# call overhead than arithmetic.  Shards depend only on (n_chains, d), never on cores.
SHARD_CHAINS = 256
_SHARD_ELEMENTS = 8192
N_BATCHES = 20
# Per-chain covariance accumulators cost n_chains·d² doubles; 2.5e7 is 200 MB.
_MAX_COV_ELEMENTS = 25_000_000
# Block of K steps per shard and round: ~1 MB of states stays in cache.
_BLOCK_ELEMENTS = 2 ** 17


def make_stepper(problem, method, *, lr, batch_size, sampler="with_replacement", step=None,
                 momentum=0.0):
    """Validated stepper for ``method`` on ``problem`` (see :func:`simulate` for arguments)."""
    if not isinstance(problem, (GaussianQuadratic, LeastSquares)):
        raise ValueError(f"problem must be a GaussianQuadratic or LeastSquares; got "
                         f"{type(problem).__name__}")
    v.choice(method, "method", METHODS)
    v.choice(sampler, "sampler", SAMPLERS)
    lr = v.positive_float(lr, "lr")
    beta = v.momentum(momentum)
    if beta and method != "sgd":
        raise ValueError(f"momentum is a setting of method 'sgd' (heavy ball); got "
                         f"momentum={beta:g} with method {method!r}")
    s = v.integer(batch_size, "batch_size", minimum=1, maximum=problem.n_data)
    h = lr if step is None else v.positive_float(step, "step")
    if method == "sgd" and step is not None and h != lr:
        raise ValueError(f"step is the SDE/OU time step; for sgd it is lr, got step={h}")
    if sampler == "epoch_shuffle" and not (method == "sgd" and isinstance(problem, LeastSquares)):
        raise ValueError("sampler 'epoch_shuffle' needs real minibatches: method 'sgd' on a "
                         f"LeastSquares problem; got method {method!r} on "
                         f"{type(problem).__name__}")
    c = sampler_noise_factor(sampler, s, problem.n_data)
    if method == "em" and step is None and h * problem.eigvals[-1] >= 2:
        # Word it in the caller's terms: without ``step`` the EM time step is lr itself,
        # and a command-line user has no "step" to blame.
        raise StabilityError(f"lr is unstable for method 'em', whose time step is lr: "
                             f"lr*h_max = {h * problem.eigvals[-1]:.4g} >= 2 (lr={lr:g}, "
                             f"largest Hessian eigenvalue {problem.eigvals[-1]:.4g}); use "
                             f"lr < {2 / problem.eigvals[-1]:.4g}, or method 'ou' (exact, "
                             "stable for any lr)")
    if method == "em":
        return euler_maruyama(problem, lr, c, h)
    if method == "ou":
        return exact_ou(problem, lr, c, h)
    if beta and isinstance(problem, LeastSquares):
        return MinibatchHeavyBall(problem, lr, make_sampler(sampler, problem.n_data, s), c, beta)
    if beta:
        return HeavyBallGaussian(problem.eigvals, lr * lr * c * problem.grad_cov_eig, lr, beta, c)
    if isinstance(problem, LeastSquares):
        return MinibatchSGD(problem, lr, make_sampler(sampler, problem.n_data, s), c)
    return gaussian_sgd(problem, lr, c)


def simulate(problem, method, *, lr, batch_size, n_chains, n_steps, rng,
             sampler="with_replacement", momentum=0.0, step=None, burn_in=None, record_every=1,
             covariance_every=None, record_covariance=None, normals="box_muller",
             precision="float64", n_workers=None, progress=False,
             max_steps=_budget.DEFAULT_MAX_STEPS, max_memory="auto") -> SimulationResult:
    r"""Simulate many chains to stationarity and return the stationary statistics.

    Methods (time t = kη throughout):

    - ``"sgd"``: θ ← θ − η ĝ.  On :class:`GaussianQuadratic`, ĝ = Hδ + N(0, c_S Σ);
      on :class:`LeastSquares`, ĝ is the mean gradient of a real minibatch drawn by
      ``sampler``.  Compare with the discrete formula HC + CH − ηHCH = η c_S Σ
      (Gaussian) or :func:`theory.least_squares_stationary` (least squares).
      With ``momentum=β`` it is heavy ball, θ ← θ + β(θ − θ₋) − η ĝ (:mod:`sim.heavy_ball`);
      compare with the ``momentum=β`` forms of the same theory functions.
    - ``"em"``: Euler–Maruyama with step h of dθ = −Hδ dt + √(η c_S) σ dB, stationary
      covariance (η/h)·C_SGD(lr = h) (see :mod:`sim.sde`).
    - ``"ou"``: exact OU transition over h; stationary E L − L* = (η c_S/4) tr Σ.

    Parameters
    ----------
    problem : GaussianQuadratic or LeastSquares
    method : {"sgd", "em", "ou"}
    lr : float
        η > 0.
    batch_size : int
        S >= 1 (<= n_data when the problem has one); sets c_S.
    n_chains : int
        Independent chains, >= 2.
    n_steps : int
        Recorded steps per chain after burn-in, >= 1.
    rng : numpy.random.Generator or int
        Source of all randomness (shard generators are seeded from it).
    sampler : {"with_replacement", "without_replacement", "epoch_shuffle"}
        Minibatch sampler (for Gaussian noise it only sets c_S; ``epoch_shuffle``
        needs ``"sgd"`` on :class:`LeastSquares`).
    momentum : float
        Heavy-ball β, 0 <= β < 1, for ``"sgd"`` only (0: plain SGD, bit for bit the
        same numbers as without it).  Stable iff η·h_max < 2(1+β) (and, for least
        squares, the stacked second-moment map contracts; d <= 32 there).
    step : float, optional
        h for ``"em"``/``"ou"`` in SGD-time units; default h = η.
    burn_in : int, optional
        Discarded steps; default ⌈20 τ⌉ with τ = −1/log ρ the second-moment
        relaxation time in steps (ρ = max(1 − ηh_i)² for Gaussian SGD, the spectral
        radius of the fourth-moment map for least squares, e^{−2 h_min h} for OU;
        for ``epoch_shuffle`` the without-replacement map, an approximation).  With
        momentum ρ = max r_i², r_i the spectral radius of the 2×2 heavy-ball block
        (√β when underdamped), or the stacked map's radius for least squares.
    record_every : int
        Record every k-th step (1 <= k <= n_steps).
    covariance_every : int, optional
        Steps between covariance samples; default max(⌊τ/4⌋, d).  A sample costs
        O(d²) per chain against O(d) for a step; states closer than τ/4 are nearly
        identical, so thinning costs little precision.  1 gives the smallest SE.
    record_covariance : bool, optional
        Default: only if n_chains·d² <= 2.5e7.
    normals : {"box_muller", "numpy"}
        Standard-normal transform of the shard generators (see :mod:`sim.noise`).
    precision : {"float64", "float32"}
        Precision of the states and noise of the Gaussian-noise methods (SGD on
        :class:`GaussianQuadratic`, ``"em"``, ``"ou"``); statistics are accumulated
        in float64 either way.  float32 is about 1.5x faster; its rounding (~1e-7
        relative per step, damped by the contraction) is far below any SE here.
    n_workers : int, optional
        Threads; default the available cores.  Does not change the numbers.
    progress : bool
        Show a tqdm progress bar.
    max_steps : int or None
        Refuse (:class:`sim.BudgetError`) if burn-in + n_steps exceeds this many steps
        per chain; default ``sim.budget.DEFAULT_MAX_STEPS`` = 10⁷.  None: no limit.
    max_memory : int, str, "auto" or None
        Refuse if the estimated peak memory (:func:`sim.budget.estimate_memory`)
        exceeds this many bytes (an int, or text such as ``"4GiB"``); ``"auto"``:
        half of the available memory.  None: no limit.

    Returns
    -------
    SimulationResult

    Raises
    ------
    ValueError
        Bad problem, method, sampler, lr, batch_size, momentum, n_chains, n_steps,
        step, burn_in, record_every or rng; momentum with a method other than sgd.
    TypeError
        ``progress`` or ``record_covariance`` is not a bool.
    sim.BudgetError
        The run would exceed ``max_steps`` or ``max_memory`` (a ValueError); the
        message gives the steps per chain, the total work and the memory.
    theory.StabilityError
        η·h_max >= 2(1+β) (sgd), h·h_max >= 2 (em), or no stationary second moment
        (least squares).

    Examples
    --------
    >>> from sim import GaussianQuadratic
    >>> p = GaussianQuadratic([[2.0]], [[3.0]])
    >>> r = simulate(p, "sgd", lr=0.1, batch_size=5, n_chains=200, n_steps=2000, rng=0)
    >>> abs(r.mean_excess_loss - 0.1 * 3.0 / (2 * 5 * (2 - 0.1 * 2.0))) < 4 * r.se  # T1
    True
    """
    t0 = time.perf_counter()
    stepper = make_stepper(problem, method, lr=lr, batch_size=batch_size, sampler=sampler,
                           step=step, momentum=momentum)
    beta = v.momentum(momentum)
    v.choice(precision, "precision", PRECISIONS)
    if precision != "float64":
        if not isinstance(stepper, (LinearGaussian, HeavyBallGaussian)):
            raise ValueError(f"precision {precision!r} needs a Gaussian-noise method (sgd on a "
                             f"GaussianQuadratic, em or ou); got {method!r} on "
                             f"{type(problem).__name__}")
        stepper = stepper.astype(precision)
    lr, batch_size = float(lr), int(batch_size)
    n_chains = v.integer(n_chains, "n_chains", minimum=2)
    n_steps = v.integer(n_steps, "n_steps", minimum=1)
    record_every = v.integer(record_every, "record_every", minimum=1, maximum=n_steps)
    progress = v.flag(progress, "progress")
    if record_covariance is not None:
        record_covariance = v.flag(record_covariance, "record_covariance")
    max_steps = (None if max_steps is None
                 else v.integer(max_steps, "max_steps", minimum=1))
    max_memory = (None if max_memory is None else _budget.default_max_memory()
                  if isinstance(max_memory, str) and max_memory == "auto"
                  else _budget.parse_bytes(max_memory, "max_memory"))
    tau = float(stepper.relaxation_steps())
    # Kept as a float until checked: a tiny lr makes τ astronomically large (or inf),
    # and math.ceil of that would overflow or plan a run of years.
    burn_in_f = (BURN_IN_RELAXATIONS * tau if burn_in is None
                 else float(v.integer(burn_in, "burn_in", minimum=0)))
    d = problem.dim
    if record_covariance is None:
        record_covariance = n_chains * d * d <= _MAX_COV_ELEMENTS
    _check_budget(problem, stepper, method, lr, n_chains, n_steps, burn_in_f, tau,
                  burn_in is None, record_covariance, max_steps, max_memory)
    burn_in = math.ceil(burn_in_f)
    cov_every = 0
    if record_covariance:
        cov_every = (max(1, int(tau // 4), d) if covariance_every is None
                     else v.integer(covariance_every, "covariance_every", minimum=1))
    v.choice(normals, "normals", NORMALS)
    gen = v.generator(rng)
    workers = _available_cores() if n_workers is None else \
        v.integer(n_workers, "n_workers", minimum=1)
    n_records = -(-n_steps // record_every)
    # Steps θ_j − θ_{j−1} feed the θ*-free estimator, which holds for sgd only.
    recorder = dict(record_every=record_every, covariance_every=cov_every,
                    n_batches=min(N_BATCHES, n_records),
                    batch_len=n_records // min(N_BATCHES, n_records),
                    record_steps=method == "sgd")
    shards, block = _shards(problem, stepper, lr, beta, n_chains, gen, normals, recorder)
    run_shards(shards, burn_in=burn_in, n_steps=n_steps, block=block, workers=workers,
               progress=progress, desc=method)
    elapsed = time.perf_counter() - t0
    settings = dict(method=method, sampler=sampler, lr=lr, batch_size=batch_size, momentum=beta,
                    step=float(stepper.step), noise_factor=float(stepper.noise_factor),
                    n_chains=n_chains, n_steps=n_steps, burn_in=burn_in,
                    record_every=record_every, relaxation_steps=float(tau),
                    covariance_every=cov_every, elapsed_s=elapsed,
                    path_steps_per_s=n_chains * (burn_in + n_steps) / elapsed)
    return collect(problem, [s.recorder for s in shards], settings)


def simulation_memory(n_chains, dim, *, n_data=0, precision="float64", record_covariance=None):
    """Estimated peak bytes of :func:`simulate` (see :func:`sim.budget.estimate_memory`).

    Cheap (no allocation), so callers can check a configuration before building its
    problem; ``record_covariance=None`` applies :func:`simulate`'s default.
    """
    n_chains = v.integer(n_chains, "n_chains", minimum=1)
    dim = v.integer(dim, "dim", minimum=1)
    v.choice(precision, "precision", PRECISIONS)
    if record_covariance is None:
        record_covariance = n_chains * dim * dim <= _MAX_COV_ELEMENTS
    _, sizes = _shard_sizes(n_chains, dim)
    return _budget.estimate_memory(n_chains, dim, record_covariance=record_covariance,
                                   block=_block(max(sizes), dim), n_data=int(n_data or 0),
                                   itemsize=np.dtype(precision).itemsize)


def _check_budget(problem, stepper, method, lr, n_chains, n_steps, burn_in, tau, auto_burn_in,
                  record_covariance, max_steps, max_memory):
    """Refuse runs over the step or memory limit before allocating anything large."""
    d = problem.dim
    memory = simulation_memory(n_chains, d, n_data=getattr(problem, "n_data", None) or 0,
                               precision=str(np.dtype(getattr(stepper, "dtype", "float64"))),
                               record_covariance=record_covariance)
    detail = hint = ""
    if auto_burn_in:
        detail = (f" (burn-in {burn_in:.3g} = {BURN_IN_RELAXATIONS:g} relaxation times of "
                  f"{tau:.3g} steps, + n_steps={n_steps})")
        beta = getattr(stepper, "momentum", 0.0)
        if burn_in > n_steps and beta:
            h_min = float(problem.eigvals[0])
            hint = (f"with momentum the relaxation time grows like (1-momentum)/(lr*h_min) "
                    f"at small lr and is at least about 1/(1-momentum) (lr={lr:g}, "
                    f"momentum={beta:g}, smallest Hessian eigenvalue {h_min:.3g}), so use a "
                    "larger lr or a smaller momentum (or, from Python, a shorter burn_in)")
        elif burn_in > n_steps:
            h_min = float(problem.eigvals[0])
            hint = (f"the relaxation time grows like 1/(lr*h_min) (lr={lr:g}, smallest Hessian "
                    f"eigenvalue {h_min:.3g}), so use a larger lr (or, from Python, "
                    + ("a larger step or " if method != "sgd" else "")
                    + "a shorter burn_in)")
    _budget.check_budget(steps_per_chain=burn_in + n_steps, n_chains=n_chains, dim=d,
                         memory=memory, max_steps=max_steps, max_memory=max_memory,
                         steps_detail=detail, steps_hint=hint)


def _shard_sizes(n_chains, d):
    per_shard = max(SHARD_CHAINS, -(-_SHARD_ELEMENTS // d))
    n_shards = -(-n_chains // per_shard)
    base, extra = divmod(n_chains, n_shards)    # the sizes np.array_split gives
    return per_shard, [base + 1] * extra + [base] * (n_shards - extra)


def _block(max_size, d):
    return int(np.clip(_BLOCK_ELEMENTS // (max_size * d), 4, 512))


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _shards(problem, stepper, lr, beta, n_chains, gen, normals, recorder):
    """Fixed shards of chains, each with its own generator, start and recorder."""
    d = problem.dim
    h = problem.eigvals
    if beta:
        start = _heavy_ball_start(problem, lr, stepper.noise_factor, beta)
    else:
        # Start: the continuous stationary law N(0, η c_S Γ̃), Γ̃_ij = Σ̃_ij/(h_i + h_j).
        start, _ = noise_factor_matrix(lr * stepper.noise_factor
                                       * problem.grad_cov_eig / (h[:, None] + h[None, :]))
    _, sizes = _shard_sizes(n_chains, d)
    block = _block(max(sizes), d)
    weights = observable_weights(h)
    shards = []
    for c in sizes:
        seed = np.random.SeedSequence(gen.integers(0, 2 ** 63, size=4))
        source = NormalSource(np.random.Generator(np.random.SFC64(seed)), normals)
        z = np.empty((c, start.shape[1]))
        source.standard_normal(z)
        shards.append(Shard(stepper, source, z @ start.T,
                            ChainRecorder(c, d, weights, **recorder), block))
    return shards, block



def _heavy_ball_start(problem, lr, c, beta):
    """Factor F (2d, r) of the additive-noise stationary law of (x, v) in H's eigenbasis.

    With P = Cov xₜ and X = Cov(xₜ, xₜ₋₁) (theory.momentum, Eqs. M4–M6) and v = xₜ − xₜ₋₁:
    Cov(x, v) = P − X and Cov v = 2P − X − Xᵀ.  Exact for Gaussian noise, so the burn-in
    only has to remove round-off; for least squares it is the additive part of the law.
    """
    p, x = stacked_blocks_eig(problem.eigvals, problem.grad_cov_eig, lr, c, beta)
    xv = p - x
    vv = 2.0 * p - x - x.T
    cov = np.block([[p, xv], [xv.T, 0.5 * (vv + vv.T)]])
    factor, _ = noise_factor_matrix(0.5 * (cov + cov.T))
    return factor
