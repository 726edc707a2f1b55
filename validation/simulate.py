"""``sgd-minima simulate``: one synthetic simulation with explicit options."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass

import numpy as np

import sim
import theory
from theory.momentum import MAX_DIM as LSQ_MOMENTUM_MAX_DIM  # the (2d)^2 solve's limit

from dnn._runio import check_output_dir

from ._io import atomic_write_json, atomic_write_text, synthetic_provenance

__all__ = ["SimulateConfig", "run_simulate", "simulate_result"]

METHODS = sim.METHODS
SAMPLERS = sim.SAMPLERS
PROBLEMS = ("gaussian", "least-squares")


@dataclass(frozen=True)
class SimulateConfig:
    dim: int = 10                 # parameters d
    lr: float = 0.05              # η (for euler/ou: the SDE's η, and the time step h = η)
    batch_size: int = 8           # S
    method: str = "sgd"           # sgd | em | ou
    sampler: str = "with_replacement"  # minibatch sampler (least squares); noise factor (gaussian)
    problem: str = "gaussian"     # gaussian | least-squares
    misalignment: float = 1.0     # 0: Σ = H; 1: unrelated eigenbasis and spectrum
    momentum: float = 0.0         # heavy-ball β, 0 <= β < 1 (method sgd only; 0: plain SGD)
    n_data: int = 200             # N: dataset size (least squares; gaussian without replacement)
    chains: int = 1000            # independent chains (leading array axis)
    steps: int = 4000             # steps per chain after burn-in
    seed: int = 0                 # numpy Generator seed
    precision: str = "float64"    # float32: ~1.5x faster Gaussian-noise methods
    out: str = "results/simulate"
    quiet: bool = False
    max_steps: int | None = sim.DEFAULT_MAX_STEPS  # burn-in + steps per chain; None: no limit
    max_memory: int | str | None = "auto"          # bytes or "4GiB"; "auto": half of free memory

    def __post_init__(self):
        for name in ("dim", "batch_size", "steps", "n_data"):
            _integer(self, name, 1)
        _integer(self, "chains", 2)       # across-chain standard errors need two
        _integer(self, "seed", 0)
        if not isinstance(self.quiet, bool):
            raise TypeError(f"quiet must be True or False; got {self.quiet!r}")
        for name in ("lr", "misalignment", "momentum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a number; got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0; got {self.lr}")
        for name, options in (("method", METHODS), ("sampler", SAMPLERS),
                              ("precision", ("float64", "float32")), ("problem", PROBLEMS)):
            value = getattr(self, name)
            if value not in options:
                joined = ", ".join(options) if name != "precision" else " or ".join(options)
                raise ValueError(f"{name} must be {'one of ' if name != 'precision' else ''}"
                                 f"{joined}; got {value!r}")
        if not (math.isfinite(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if self.momentum and self.method != "sgd":
            raise ValueError(f"momentum needs method 'sgd' (heavy ball); got method "
                             f"{self.method!r} with momentum={self.momentum:g}")
        if not 0.0 <= self.misalignment <= 1.0:
            raise ValueError(f"misalignment must be in [0, 1]; got {self.misalignment}")
        if self.batch_size > self.n_data:
            raise ValueError(f"batch_size must be <= n_data; got batch_size={self.batch_size} "
                             f"> n_data={self.n_data}")
        if self.problem == "least-squares" and self.dim > self.n_data:
            raise ValueError(f"dim must be <= n_data for a least-squares problem (the n_data x "
                             f"dim design needs full column rank); got dim={self.dim} > "
                             f"n_data={self.n_data}")
        if self.sampler == "epoch_shuffle" and self.problem != "least-squares":
            raise ValueError("sampler 'epoch_shuffle' needs real minibatches: problem "
                             f"'least-squares' (with method 'sgd'); got problem {self.problem!r}")
        if self.problem == "least-squares" and self.method != "sgd":
            raise ValueError(f"method {self.method!r} needs a gaussian problem; least squares "
                             "is simulated with real minibatches (method sgd)")
        if self.max_steps is not None:
            _integer(self, "max_steps", 1)
        if self.max_memory is not None and self.max_memory != "auto":
            sim.budget.parse_bytes(self.max_memory, "max_memory")
        if not isinstance(self.out, (str, os.PathLike)):
            raise TypeError(f"out must be a path; got {self.out!r}")

    @property
    def memory_limit(self) -> int | None:
        """max_memory in bytes (None: no limit)."""
        if self.max_memory is None:
            return None
        if self.max_memory == "auto":
            return sim.budget.default_max_memory()
        return sim.budget.parse_bytes(self.max_memory, "max_memory")


def _integer(cfg, name, low):
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value}")


def _problem(cfg: SimulateConfig):
    if cfg.problem == "gaussian":
        n_data = None if cfg.sampler == "with_replacement" else cfg.n_data
        return sim.misaligned_problem(cfg.dim, cfg.misalignment, seed=cfg.seed, n_data=n_data)
    rng = np.random.default_rng(cfg.seed)
    x = rng.normal(size=(cfg.n_data, cfg.dim))
    y = x @ rng.normal(size=cfg.dim) + 0.5 * rng.normal(size=cfg.n_data)
    return sim.LeastSquares(x, y)


def simulate_result(cfg: SimulateConfig) -> dict:
    """Run the simulation; return simulated moments and every applicable prediction.

    Raises
    ------
    sim.BudgetError
        Over ``cfg.max_steps`` or ``cfg.max_memory``, checked before anything large is
        built (memory: before the d × d problem; steps: once the relaxation time is known).
    """
    # Memory first: the problem alone holds several d x d matrices, so a huge dim
    # must be refused before it is built.
    n_data = cfg.n_data if cfg.problem == "least-squares" else 0
    memory = sim.simulation_memory(cfg.chains, cfg.dim, n_data=n_data, precision=cfg.precision)
    sim.budget.check_budget(steps_per_chain=cfg.steps, n_chains=cfg.chains, dim=cfg.dim,
                            memory=memory, max_steps=cfg.max_steps, max_memory=cfg.memory_limit,
                            burn_in_known=False)
    problem = _problem(cfg)
    h, s = problem.hessian, problem.grad_cov
    replacement = cfg.sampler == "with_replacement"
    n_data = cfg.n_data if (cfg.problem == "least-squares" or not replacement) else None
    kw = dict(n_data=n_data, replacement=replacement, momentum=cfg.momentum)
    if cfg.method == "sgd":
        # Checked before simulating so that an unstable lr fails fast and cleanly.
        theory.sgd_covariance(h, s, cfg.lr, cfg.batch_size, discrete=True, **kw)
    res = sim.simulate(problem, cfg.method, lr=cfg.lr, batch_size=cfg.batch_size,
                       n_chains=cfg.chains, n_steps=cfg.steps, sampler=cfg.sampler,
                       rng=cfg.seed + 1, precision=cfg.precision, progress=not cfg.quiet,
                       max_steps=cfg.max_steps, max_memory=cfg.memory_limit,
                       momentum=cfg.momentum)
    preds = {
        "wang": theory.expected_loss_wang(np.trace(s), cfg.lr, cfg.batch_size, **kw),
        "jastrzebski": theory.expected_loss_jastrzebski(np.trace(h), cfg.lr, cfg.batch_size, **kw),
    }
    if cfg.method != "ou":
        preds["discrete"] = theory.expected_loss_discrete(h, s, cfg.lr, cfg.batch_size, **kw)
    note = None
    if cfg.problem == "least-squares" and cfg.momentum and cfg.dim > LSQ_MOMENTUM_MAX_DIM:
        note = (f"no exact finite-sum prediction: with momentum its (2d)^2 solve is limited to "
                f"d <= {LSQ_MOMENTUM_MAX_DIM}")
    elif cfg.problem == "least-squares":
        preds["exact"] = theory.least_squares_stationary(
            problem.X, problem.y, cfg.lr, cfg.batch_size, replacement=replacement,
            momentum=cfg.momentum).expected_excess_loss
    if cfg.sampler == "epoch_shuffle":
        note = ("expected difference: epoch shuffling makes minibatch noise anti-correlated in "
                "time (Kuehn & Rosenow 2023), so the i.i.d. formulas over-predict the loss; "
                "their z-scores are not a test here")
    return {
        "expected_difference": note,
        "simulated_mean": float(res.mean_excess_loss),
        "simulated_se": float(res.se),
        "ess": float(res.ess),
        "burn_in": int(res.burn_in),
        "mean_grad_sqnorm": float(res.mean_grad_sqnorm),
        "mean_grad_sqnorm_se": float(res.grad_sqnorm_se),
        "covariance": np.asarray(res.covariance).tolist(),
        # ((1+β)/(4η))·E|θ_k − θ_{k−1}|², which needs no θ* (theory.md, "Momentum");
        # exact for a quadratic.  None for em and ou.
        "theta_free": (None if res.theta_free_excess_loss is None else
                       {"value": float(res.theta_free_excess_loss), "se": float(res.theta_free_se)}),
        "momentum": cfg.momentum,
        "trace_hessian": float(np.trace(h)),
        "trace_grad_cov": float(np.trace(s)),
        "predictions": {k: {"value": float(v), "z": float((res.mean_excess_loss - v) / res.se)}
                        for k, v in preds.items()},
    }


def run_simulate(cfg: SimulateConfig) -> int:
    out = check_output_dir(cfg.out, "out")   # a bad --out fails before the work, not after
    result = simulate_result(cfg)
    out.mkdir(parents=True, exist_ok=True)   # only now: a failed run leaves no empty folder
    atomic_write_json(out / "simulate.json", {"result": result, "provenance":
                      synthetic_provenance(asdict(cfg), {"seed": cfg.seed})})
    preds = " | ".join(f"{k} {p['value']:.4g} (z={p['z']:+.1f})"
                       for k, p in result["predictions"].items())
    beta = f" | momentum={cfg.momentum:g}" if cfg.momentum else ""
    line = (f"| {cfg.method} | {cfg.problem} | {cfg.sampler} | d={cfg.dim} | lr={cfg.lr:g}{beta} | "
            f"S={cfg.batch_size} | {result['simulated_mean']:.4g} ± {result['simulated_se']:.2g} "
            f"(SE, n={cfg.chains} chains) | {preds} |")
    if result["theta_free"] is not None:
        tf = result["theta_free"]
        line += f"\n\nθ*-free ((1+β)/(4η))·E‖Δθ‖²: {tf['value']:.4g} ± {tf['se']:.2g} (SE)."
    if result["expected_difference"]:
        line += f"\n\nNote: {result['expected_difference']}."
    atomic_write_text(out / "simulate.md", line + "\n")
    print(line)
    return 0
