"""``sgd-minima smallnet``: real SGD on a small exact network against the stationary laws.

Design.  An MLP on scikit-learn's digits is small enough (P = 2410 by default) that
everything the theory needs is exact: a strict minimum θ* (L-BFGS + Newton), the
dense Hessian H with its spectrum, and Σ from all N per-example gradients.  At each
(η·h_max, S) many SGD chains start at θ*, burn in for a number of steps chosen from
that spectrum, and record the excess loss L(θ) − L*; beside them, linearised-SGD chains
on the same minibatches (:mod:`validation.smallnet.measure`).  A setting is a
measurement only once the real chains are stationary (drift and the fluctuation–
dissipation identity); otherwise both are continued, up to a cap.  The observed mean ±
across-chain SE is compared with five predictions, each with a z-score:

- (12) Wang, (η c_S/4) tr Σ;  (6) Jastrzębski, (η c_S/4) tr H  (tr H of the full
  objective, data + L2: the Hessian SGD actually sees);
- the exact discrete additive-noise law, (η c_S/2) tr[(2I − ηH)⁻¹ Σ];
- that law + ΔE₁, the first-order state-dependent term, estimated with Gaussian
  probes v ~ N(0, C₀) and per-example HVPs (its SE enters the z-score:
  z = (obs − pred)/√(se_obs² + se_pred²));
- ``linear``: linearised SGD itself, the full linear theory with the state-dependent
  noise to all orders (z from the per-chain pairs), where it has a stationary law.

Then, per S, the mean-square stability of linearised SGD (ρ of its second-moment map by
Rayleigh–Ritz, the linear edge; with ``stability`` also the real edge:
:mod:`validation.smallnet.stability`), and per row the accounting of the observed excess
into tr Σ, discrete time, state-dependent noise and nonlinearity
(:mod:`validation.smallnet.accounting`).  Beside them, the θ*-free estimate (η/4) E‖ĝ‖²
from the same chains.  The run is *sound* (exit 0) when every setting settled;
diverged chains are counted and reported, never dropped silently.  Which predictions
agree is reported, not folded into the exit status.

This module runs the measurement; :mod:`validation.smallnet.plan` sizes each setting
from the spectrum, :mod:`validation.smallnet.report` scores it and draws the tables,
verdict and figures from saved results, and :mod:`validation.smallnet.cache` keeps θ*.
With heavy-ball momentum β > 0 (``momentum``) real and linearised chains run heavy ball
(:mod:`dnn.exact.chains`, state (θ, v)); (12), (6) and the discrete law take theory's
``momentum=β`` (the effective rate η/(1−β) as η → 0; Eq. M7), the θ*-free value is
((1+β)/(4η))E‖v‖², and η·h_max may go up to 2(1+β).  ΔE₁ and the Ritz stability stage
have no heavy-ball form here, so they are reported as not available (None, "n/a"),
never as their β = 0 values; the linear law then exists where its chains do not diverge.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import plan as _plan
from . import report as _report
from . import stability as _stability
from .._io import synthetic_provenance
from .plan import *  # noqa: F401,F403  (one import for callers)
from .plan import missing_fraction, plan_burn_in, plan_window
from .report import *  # noqa: F401,F403
from .report import (Z_MAX, console_table, row_verdict, score, soundness, summary_verdict,
                              write_outputs)
from .accounting import accounting
from .measure import chain_measurement, linear_measurement, measure_setting
from dnn.exact.digits import PREPROCESSING   # numpy only: no jax at import

# The spectrum-based planning and the scores/reports live in smallnet_plan and
# smallnet_report; their public names are re-exported so ``validation.smallnet``
# stays the one module to import.
__all__ = ["SmallnetConfig", "run_smallnet", "smallnet_results", "sketched_trace_wk",
           *_plan.__all__, *_report.__all__]

ACTIVATIONS = ("tanh", "softplus", "relu")



@dataclass(frozen=True)
class _Effort:
    """How hard one mode tries; every number here buys precision with time."""

    eta_h: tuple            # η·h_max values
    batch_sizes: tuple
    chains: int
    rel_se: float           # target SE of the observed mean, relative to the discrete law
    max_steps: int          # cap on burn-in + window per setting (a time budget)
    min_window: int         # recorded steps at least, so each half holds many samples
    probe_rel_se: float     # cap on the relative SE of tr[W K(C0)] (see _probe_target)
    max_probes: int
    settle_max_steps: int   # cap on burn-in + window of a setting, extensions to settle included
    subspace_eig: int       # H's eigenvectors at each end of the spectrum in the Ritz subspace
    subspace_per_row: int   # linearised-chain states and pilot states per η in it
    subspace_max_dim: int   # r; the dense T_V costs N r⁴ to build
    pilot_steps: int        # steps of the noise-free linearised "pilot" chains per η
    edge_steps: int         # steps within which real chains must diverge (--stability)
    edge_cap: float         # largest η·h_max the real-edge search tries


# Default (<= 5 min on 2 idle cores): 4 x 2 settings, a 2% measurement.  --quick (<= 60 s):
# the two ends of the default η range that discriminate the laws, a 4% measurement.  The
# Ritz subspace (r = 32; 24 for --quick) costs N r⁴ to build and a stability stage three
# times as long at r = 40: on the default network r = 32, 40 and 48 put the S = 8 edge at
# 0.516, 0.516 and 0.512 (the bound tightens with r); the real-edge search goes past
# η·h_max = 2 because real SGD survives there.
DEFAULT = _Effort(eta_h=(0.05, 0.2, 0.5, 1.0), batch_sizes=(8, 64), chains=32, rel_se=0.02,
                  max_steps=40_000, min_window=2_000, probe_rel_se=0.05, max_probes=80,
                  settle_max_steps=80_000, subspace_eig=6, subspace_per_row=3,
                  subspace_max_dim=32, pilot_steps=300, edge_steps=2_000, edge_cap=8.0)
QUICK = _Effort(eta_h=(0.2, 1.0), batch_sizes=(8, 64), chains=16, rel_se=0.04,
                max_steps=8_000, min_window=1_000, probe_rel_se=0.10, max_probes=20,
                settle_max_steps=16_000, subspace_eig=6, subspace_per_row=3,
                subspace_max_dim=24, pilot_steps=200, edge_steps=1_000, edge_cap=8.0)

# A burn-in that leaves a fraction m of the excess loss missing biases the window
# mean by < m·E; keeping m below a quarter of the target relative SE moves z by < 0.25.
BURN_IN_BIAS_PER_SE = 0.25
# Columns of the Gaussian sketch of W in sketched_trace_wk: its own relative noise is
# ~√(2/(m·rank)) per probe, well below the spread over probes v (10-30% on digits).
SKETCH_COLUMNS = 32
# Probes before the stopping rule is first checked (they size the rest; see _probe_target).
PILOT_PROBES = 10


@dataclass(frozen=True)
class SmallnetConfig:
    """One ``smallnet`` run.  ``None`` fields take the mode's value (default or ``quick``)."""

    activation: str = "tanh"       # hidden-layer nonlinearity: tanh | softplus | relu (refused)
    hidden: tuple = (32,)          # hidden widths; P = 2410 for (32,)
    l2: float = 1e-3               # λ of λ‖θ‖² on all parameters; > 0 (else no minimum)
    eta_h: tuple | None = None     # learning rates as η·h_max, each in (0, 2)
    batch_sizes: tuple | None = None   # minibatch sizes S
    chains: int | None = None      # SGD chains per setting, >= 2 (SE across chains)
    seed: int = 0                  # master seed: init, chains and probes derive from it
    quick: bool = False            # <= 60 s instead of <= 5 min
    quiet: bool = False            # no progress bars
    out: str = "results/smallnet"  # output folder
    replacement: bool = True       # minibatches drawn with replacement (c_S = 1/S)
    steps: int | None = None       # recorded window per setting (default: planned for rel_se)
    probes: int | None = None      # probes per η for ΔE1 (default: planned, see _probe_target)
    cache: bool = True             # reuse θ*, H and its spectrum from the on-disk cache (verified)
    preprocess: str = "global"     # input scaling: global | feature | minmax (dnn.exact.digits)
    stability: bool = False        # also search the real edge (real chains diverging)
    momentum: float = 0.0          # heavy-ball β in [0, 1) of every chain; 0 is plain SGD

    def __post_init__(self):
        effort = QUICK if _flag(self.quick, "quick") else DEFAULT
        _flag(self.stability, "stability")
        if self.preprocess not in PREPROCESSING:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESSING)}; "
                             f"got {self.preprocess!r}")
        _flag(self.quiet, "quiet")
        _flag(self.replacement, "replacement")
        _flag(self.cache, "cache")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; "
                             f"got {self.activation!r}")
        hidden = (self.hidden,) if _is_int(self.hidden) else self.hidden
        hidden = _tuple(hidden, "hidden")
        if not hidden or not all(_is_int(h) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be one or more integers >= 1; got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        l2 = _real(self.l2, "l2")
        if not l2 > 0:
            # Unregularised cross-entropy on separable digits has no minimum (θ → ∞).
            raise ValueError(f"l2 must be > 0 (without it the loss has no minimum); got {self.l2!r}")
        object.__setattr__(self, "l2", l2)
        eta_h = _tuple(effort.eta_h if self.eta_h is None else self.eta_h, "eta_h")
        if not eta_h:
            raise ValueError(f"eta_h must hold at least one value; got {self.eta_h!r}")
        beta = _real(self.momentum, "momentum")
        if not 0 <= beta < 1:
            raise ValueError(f"momentum must be a number in [0, 1); got {self.momentum!r}")
        object.__setattr__(self, "momentum", beta)
        if beta > 0 and self.stability:
            raise ValueError("stability (the real-edge search) is not available with momentum > 0; "
                             f"got momentum={beta:g}")
        eta_h = tuple(_real(e, "eta_h") for e in eta_h)
        two = 2.0 * (1.0 + beta)
        for e in eta_h:
            if not 0 < e < two:
                # η·h_max >= 2(1+β): the linearised recursion has no stationary law (theory, M5).
                raise ValueError(f"eta_h must lie in (0, {two:g}) (lr·h_max >= 2(1+momentum) is "
                                 f"unstable; momentum={beta:g}); got {e!r}")
        if len(set(eta_h)) != len(eta_h):
            raise ValueError(f"eta_h must not repeat a value; got {eta_h!r}")
        object.__setattr__(self, "eta_h", eta_h)
        sizes = _tuple(effort.batch_sizes if self.batch_sizes is None else self.batch_sizes,
                       "batch_sizes")
        if not sizes or not all(_is_int(s) and s >= 1 for s in sizes):
            raise ValueError(f"batch_sizes must be one or more integers >= 1; got {self.batch_sizes!r}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"batch_sizes must not repeat a value; got {self.batch_sizes!r}")
        object.__setattr__(self, "batch_sizes", tuple(int(s) for s in sizes))
        chains = effort.chains if self.chains is None else self.chains
        if not _is_int(chains) or chains < 2:
            raise ValueError(f"chains must be an integer >= 2 (an SE needs two); got {self.chains!r}")
        object.__setattr__(self, "chains", int(chains))
        for name, low in (("seed", 0), ("steps", 2), ("probes", 2)):
            value = getattr(self, name)
            if value is None and name != "seed":
                continue
            if not _is_int(value) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
        if not isinstance(self.out, (str, Path)) or not str(self.out).strip():
            raise ValueError(f"out must be a non-empty path; got {self.out!r}")
        object.__setattr__(self, "out", str(self.out))

    @property
    def effort(self) -> _Effort:
        return QUICK if self.quick else DEFAULT


def _flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _tuple(value, name) -> tuple:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of numbers; got {value!r}")
    try:
        return tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of numbers; got {value!r}") from None


def _real(value, name) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return out


# ----------------------------------------------------------------------------- the run

def _discrete_law(h, s_tilde, lr, batch_size, *, n_data, replacement, momentum=0.0, block=128):
    """:func:`theory.expected_loss_discrete` from H's spectrum, without a new P×P ``eigh``.

    The law ½ tr(HC₀) = (η c_S/2) Σ_j Σ̃_jj/(2 − ηh_j) (with momentum β, (η c_S (1+β)/
    (2(1−β))) Σ_j Σ̃_jj/(2(1+β) − ηh_j), Eq. M7) is a sum over H's eigendirections,
    so theory's function is evaluated on diagonal blocks (h_j, Σ̃_jj) and summed: the
    same formula, but an ``eigh`` of 128×128 blocks instead of seconds per call at P = 2410.
    """
    import theory

    h = np.asarray(h, dtype=float)
    # diag(UᵀΣU) of a PSD Σ is >= 0; clip round-off (~1e-17) so the PSD check holds.
    s = np.clip(np.asarray(s_tilde, dtype=float), 0.0, None)
    total = 0.0
    for k in range(0, h.size, block):
        total += theory.expected_loss_discrete(np.diag(h[k:k + block]), np.diag(s[k:k + block]),
                                               lr, batch_size, n_data=n_data,
                                               replacement=replacement, momentum=momentum)
    return float(total)


def _probe_target(effort, rel_se_obs, pilot_mean, lr, c_max, e_disc_at_c_max):
    """Relative SE wanted on tr[W K(C₀)]: SE(ΔE₁) <= ½ SE_obs at the noisiest S.

    Then the combined SE √(se_obs² + se_pred²) exceeds se_obs by at most 12%; never
    looser than the mode's ``probe_rel_se``.
    """
    delta = 0.5 * lr * c_max * c_max * abs(pilot_mean)        # ΔE₁ at the smallest S (C₀ at c=1)
    if delta <= 0:
        return effort.probe_rel_se
    return min(effort.probe_rel_se, 0.5 * rel_se_obs * e_disc_at_c_max / delta)


def _plan_row(cfg, h, s_tilde, s_tilde_full, lr, c_s, batch_size, n_data):
    """Burn-in, window and record spacing for one (η, S) from the exact spectrum."""
    from dnn.exact.chains import default_record_every

    effort, beta = cfg.effort, cfg.momentum
    # Burn-in gets at most half the per-setting budget; directions relaxing slower are
    # not waited for, and the fraction of the excess they leave is reported.
    burn, missing, capped = plan_burn_in(h, s_tilde, lr, target=BURN_IN_BIAS_PER_SE * effort.rel_se,
                                         max_steps=effort.max_steps // 2, momentum=beta)
    # The additive law ignores the state-dependent noise, which slows relaxation as SGD
    # nears mean-square instability (large η, small S); a floor of half the minimum
    # window is cheap insurance, and the drift z checks what remains.
    burn = max(burn, effort.min_window // 2)
    missing = float(missing_fraction(h, s_tilde, lr, burn, beta))
    planned, ess_per_step = plan_window(h, s_tilde_full, lr, c_s, cfg.chains, rel_se=effort.rel_se,
                                        momentum=beta)
    # The window spans >= 1 burn-in, so the slow directions that carry noise relax within
    # it and the drift z between its halves can see a window that is not stationary; a row
    # that is not is extended until it is (validation.smallnet.measure), so this need not
    # be 2 burn-ins per half in advance.
    window = max(planned, effort.min_window, burn)
    # A record (a full-data loss per chain) costs ~N/(3S) steps (dnn.exact.chains' default
    # spacing); records closer than half an independent sample buy nothing, so space
    # them by that when it is longer.
    record_every = max(default_record_every(batch_size, n_data), int(0.5 / ess_per_step))
    notes = []
    if capped:
        notes.append(f"burn-in capped at {burn} steps; it leaves {missing:.2%} of the additive-noise "
                     "excess loss unreached")
    if cfg.steps is not None:
        window = cfg.steps
    elif burn + window > effort.max_steps:
        window = max(effort.max_steps - burn, 4 * record_every)
        notes.append(f"window cut to {window} steps by the {effort.max_steps}-step budget")
    record_every = min(record_every, max(1, window // 4))   # >= 2 records per half
    return {"burn_in": burn, "burn_in_missing_fraction": missing, "burn_in_capped": capped,
            "window": window, "planned_window": planned, "record_every": record_every,
            "planned_ess_per_step": ess_per_step, "notes": notes}


def _network_summary(cfg, model, data, minimum, exact) -> dict:
    return {
        "activation": cfg.activation, "hidden": list(cfg.hidden), "P": int(model.n_params),
        "l2": cfg.l2, "n_data": int(data.n), "loss_star": float(minimum.loss),
        "grad_norm": float(minimum.grad_norm), "train_accuracy": float(minimum.train_accuracy),
        "positive_definite": bool(exact.positive_definite),
        "lbfgs_iterations": int(minimum.lbfgs_iterations), "newton_steps": int(minimum.newton_steps),
        "trace_sigma": float(exact.trace_sigma), "trace_h": float(exact.trace_h),
        "trace_h_data": float(exact.trace_h_data), "trace_h_l2": float(exact.trace_h_l2),
        "h_min": float(exact.h_min), "h_max": float(exact.h_max),
        "data_h_min": float(exact.data_h_min),
        "trace_ratio": float(exact.trace_sigma / exact.trace_h),
    }


def sketched_trace_wk(per_example_hvp, factor, eigenvalues, eigenvectors, lr, n_data, *, rng,
                      n_sketch=SKETCH_COLUMNS, min_probes=10, max_probes=100, target_rel_se=None,
                      batch_size=600, quiet=True, factor_in_eigenbasis=False):
    r"""Monte Carlo tr[W K(C₀)], W = (2I − ηH)⁻¹, with a Gaussian sketch of W (cheap at large P).

    For a probe v = F ξ ~ N(0, C₀) (F Fᵀ = C₀) with u_i = H_i v over all N examples and
    an independent Z ~ N(0, I) of shape (P, m),

    .. math::
        \hat t(v, Z) = rac{1}{N m} \sum_{i=1}^N ig\| Z^	op W^{1/2} (u_i - ar u) ig\|^2,
        \qquad \mathbb E_Z \hat t = rac1N \sum_i (u_i - ar u)^	op W (u_i - ar u),

    whose mean over v is tr[W K(C₀)] (``dnn.exact.state_noise`` derives it).  Each (v, Z) pair is
    an independent unbiased draw, so the SE across pairs carries both sources of noise.
    W^{1/2} Z = U diag(√w) Uᵀ Z costs O(P² m) and the projection O(N P m), instead of
    the O(N P²) of the exact inner product (≈ 20 GFLOP per probe at P = 2410).

    Parameters
    ----------
    per_example_hvp : callable
        ``(v, idx) -> (len(idx), P)``, row k = H_{idx[k]} v (data loss of each example).
    factor : (P, r) array_like
        F with C₀ = F Fᵀ (``dnn.exact.state_noise.probe_inputs``); with ``factor_in_eigenbasis``
        instead F̃ with C₀ = U F̃ F̃ᵀ Uᵀ (``dnn.exact.state_noise.c0_factor_eigenbasis``), so
        probes are v = U F̃ ξ and U F̃ (a P·P·r product) is never formed.
    eigenvalues, eigenvectors : (P,), (P, P) array_like
        H = U diag(h) Uᵀ, with η h_max < 2.
    lr : float
        η.
    n_data : int
        N; examples 0 .. N−1.
    rng : numpy.random.Generator
    n_sketch : int
        Columns m of Z.
    min_probes, max_probes : int
        Bounds on the number of (v, Z) pairs.
    target_rel_se : float or callable, optional
        Stop once se <= target·|mean| (checked from ``min_probes`` on); a callable is
        given the running mean and returns the target, so a pilot can size the run.

    Returns
    -------
    (float, float, int)
        mean, se (across pairs), number of pairs.
    """
    from tqdm.auto import tqdm

    f = np.asarray(factor, dtype=float)
    h = np.asarray(eigenvalues, dtype=float)
    u = np.asarray(eigenvectors, dtype=float)
    sqrt_w = 1.0 / np.sqrt(2.0 - lr * h)
    values = []
    with tqdm(total=max_probes, desc=f"dE1 probes lr={lr:.3g}", unit="probe", disable=quiet,
              leave=False) as bar:
        while len(values) < max_probes:
            v = f @ rng.standard_normal(f.shape[1])
            if factor_in_eigenbasis:
                v = u @ v
            hv = np.concatenate([np.asarray(per_example_hvp(v, np.arange(k, min(k + batch_size, n_data))))
                                 for k in range(0, n_data, batch_size)])
            hv -= hv.mean(axis=0)
            y = u @ (sqrt_w[:, None] * (u.T @ rng.standard_normal((h.size, n_sketch))))
            values.append(float(np.sum((hv @ y) ** 2)) / (n_data * n_sketch))
            bar.update(1)
            if target_rel_se is not None and len(values) >= min_probes:
                arr = np.asarray(values)
                target = target_rel_se(arr.mean()) if callable(target_rel_se) else target_rel_se
                if arr.std(ddof=1) / math.sqrt(arr.size) <= target * abs(arr.mean()):
                    break
    arr = np.asarray(values)
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else math.nan
    return float(arr.mean()), se, int(arr.size)


def _probe_trace(cfg, ops, exact, s_tilde_full, lr, c_values, e_disc_at_c_max, rng):
    """tr[W K(C₀)] at C₀ built with c = 1, for all S at this η: (mean, se, n, seconds)."""
    from dnn.exact.state_noise import c0_factor_eigenbasis

    t0 = time.perf_counter()
    effort = cfg.effort
    # C₀'s factor in H's eigenbasis from the Σ̃ = UᵀΣU already at hand: one pivoted
    # Cholesky per η instead of probe_inputs' three P³ products
    factor = c0_factor_eigenbasis(exact.eigenvalues, s_tilde_full, lr, noise_factor=1.0)
    args = (ops.per_example_hvp, factor, exact.eigenvalues, exact.eigenvectors, lr, ops.n_data)
    if cfg.probes is not None:
        kw = dict(min_probes=cfg.probes, max_probes=cfg.probes)
    else:
        # the first PILOT_PROBES size the rest through the running mean (see _probe_target)
        kw = dict(min_probes=PILOT_PROBES, max_probes=effort.max_probes,
                  target_rel_se=lambda mean: _probe_target(effort, effort.rel_se, mean, lr,
                                                           max(c_values), e_disc_at_c_max))
    mean, se, n = sketched_trace_wk(*args, rng=rng, quiet=cfg.quiet, factor_in_eigenbasis=True, **kw)
    return mean, se, n, time.perf_counter() - t0


def smallnet_results(cfg: SmallnetConfig) -> dict:
    """Run the whole measurement (no files written); return the JSON-ready results.

    Raises
    ------
    ValueError
        Bad settings (e.g. a batch size above N), or no strict minimum
        (``dnn.exact.minimum.NotAMinimumError``, e.g. with ``relu``).
    """
    if not isinstance(cfg, SmallnetConfig):
        raise TypeError(f"cfg must be a SmallnetConfig; got {type(cfg).__name__}")
    import theory
    from dnn.exact.digits import input_scale, load_digits
    from dnn.exact.hessian import callables, exact_quantities
    from dnn.exact.minimum import NotAMinimumError

    from .cache import find_or_load_minimum
    from .cache import store as store_cache
    from dnn.exact.mlp import MLP, MLPConfig
    from tqdm.auto import tqdm

    timings, cpu = {}, {}
    t0, c0 = time.perf_counter(), time.process_time()
    if cfg.cache:
        from .cache import enable_compilation_cache

        enable_compilation_cache()
    data = load_digits(preprocess=cfg.preprocess)
    n_data = data.n
    too_big = [s for s in cfg.batch_sizes if s > n_data]
    if too_big:
        raise ValueError(f"batch_sizes must be <= N = {n_data} (digits); got {too_big[0]}")
    model = MLP(MLPConfig(hidden=cfg.hidden, activation=cfg.activation, l2=cfg.l2, seed=cfg.seed),
                n_inputs=data.n_features, n_classes=data.n_classes)
    minimum, cache_info = find_or_load_minimum(model, data, enabled=cfg.cache, quiet=cfg.quiet,
                                               seed=cfg.seed)
    timings["minimum"] = time.perf_counter() - t0
    cpu["minimum"] = time.process_time() - c0

    t1, c1 = time.perf_counter(), time.process_time()
    exact = exact_quantities(model, data, minimum.theta)
    if not exact.positive_definite:    # find_minimum checks this too; never measure a saddle
        raise NotAMinimumError(f"H at theta* is not positive definite (h_min = {exact.h_min:.3g})")
    h, u = exact.eigenvalues, exact.eigenvectors
    s_tilde_full = u.T @ exact.sigma @ u
    s_tilde = np.clip(np.diag(s_tilde_full), 0.0, None)
    network = _network_summary(cfg, model, data, minimum, exact)
    network["preprocess"] = cfg.preprocess
    network["inputs"] = input_scale(data.x)
    ops = callables(model, data, minimum.theta)
    if cfg.cache and not cache_info["hit"]:
        cache_info["stored"] = store_cache(cache_info, minimum, exact)
    network["minimum_from_cache"] = bool(cache_info["hit"])
    network["per_example_curvature"] = _stability.per_example_curvature(ops, exact)
    timings["exact"] = time.perf_counter() - t1
    cpu["exact"] = time.process_time() - c1

    kw = dict(n_data=n_data, replacement=cfg.replacement)
    beta = cfg.momentum
    c_of = {s: float(theory.noise_factor(s, **kw)) for s in cfg.batch_sizes}
    s_noisiest = max(cfg.batch_sizes, key=lambda s: c_of[s])
    rows, probes, seeds = [], [], {"init": cfg.seed, "chains": {}, "probes": {}}
    linear_states = {}
    for k in ("probes", "chains", "stability"):
        timings[k] = cpu[k] = 0.0
    effort = cfg.effort
    settings = [(e, s) for e in cfg.eta_h for s in cfg.batch_sizes]
    bar = tqdm(total=len(settings), desc="smallnet settings", disable=cfg.quiet, leave=False)
    for i, eta_h in enumerate(cfg.eta_h):
        lr = eta_h / exact.h_max
        e_disc = {s: _discrete_law(h, s_tilde, lr, s, momentum=beta, **kw) for s in cfg.batch_sizes}
        if beta == 0:      # ΔE₁ has no heavy-ball form (theory.state_dependent_correction)
            probe_seed = [cfg.seed, 2, i]
            seeds["probes"][f"{eta_h:g}"] = probe_seed
            c2 = time.process_time()
            tr_mean, tr_se, n_probes, secs = _probe_trace(
                cfg, ops, exact, s_tilde_full, lr, list(c_of.values()), e_disc[s_noisiest],
                np.random.default_rng(probe_seed))
            timings["probes"] += secs
            cpu["probes"] += time.process_time() - c2
            probes.append({"eta_h_max": eta_h, "lr": lr, "trace_wk_c1": tr_mean,
                           "trace_wk_c1_se": tr_se, "n_probes": n_probes, "seconds": secs})
        for j, s in enumerate(cfg.batch_sizes):
            c_s = c_of[s]
            plan = _plan_row(cfg, h, s_tilde, s_tilde_full, lr, c_s, s, n_data)
            chain_seed = cfg.seed * 1000 + 10 * i + j + 1
            seeds["chains"][f"{eta_h:g},{s}"] = chain_seed
            c3, t3 = time.process_time(), time.perf_counter()
            # one seed for both: the linearised chains draw the real chains' minibatches
            res = measure_setting(model, data, minimum.theta, exact.hessian, lr=lr, batch_size=s,
                                  n_chains=cfg.chains, burn_in=plan["burn_in"],
                                  window=plan["window"], record_every=plan["record_every"],
                                  replacement=cfg.replacement, seed=chain_seed,
                                  max_total_steps=max(effort.settle_max_steps,
                                                      plan["burn_in"] + plan["window"]),
                                  quiet=cfg.quiet, momentum=beta)
            timings["chains"] += time.perf_counter() - t3
            cpu["chains"] += time.process_time() - c3
            stats = res["real"]
            m = chain_measurement(stats)
            values = {
                "wang": theory.expected_loss_wang(exact.trace_sigma, lr, s, momentum=beta, **kw),
                "jastrzebski": theory.expected_loss_jastrzebski(exact.trace_h, lr, s,
                                                                momentum=beta, **kw),
                "discrete": e_disc[s],
            }
            preds = {k: score(m["observed"], m["observed_se"], v) for k, v in values.items()}
            preds["state_dependent"] = delta_e1 = None      # not available with momentum
            if beta == 0:
                # tr[W K(C₀)] ∝ c_S (C₀ ∝ c_S) and ΔE₁ = (η c_S/2)·tr: ΔE₁ = (η/2) c_S² tr|_{c=1}.
                delta = theory.state_dependent_correction_from_trace(c_s * tr_mean, lr, s, **kw)
                delta_se = theory.state_dependent_correction_from_trace(c_s * tr_se, lr, s, **kw)
                preds["state_dependent"] = score(m["observed"], m["observed_se"], e_disc[s] + delta,
                                                 delta_se)
                delta_e1 = {"value": delta, "se": delta_se, "n_probes": n_probes,
                            "relative_to_discrete": delta / e_disc[s]}
            row = {"eta_h_max": eta_h, "lr": lr, "batch_size": s, "momentum": beta, **m,
                   "predictions": preds, "delta_e1": delta_e1,
                   "plan": plan, "settle": res["settle"], "settled": res["settle"]["settled"],
                   "linear": linear_measurement(stats, res["linear"])}
            linear_states[(eta_h, s)] = res["linear"].final_state.state
            rows.append(row)
            bar.update(1)
    bar.close()

    t4, c4 = time.perf_counter(), time.process_time()
    # the Ritz ρ is of plain SGD's second-moment map: no heavy-ball counterpart here
    stability = None if beta > 0 else _stability.stability_block(
        model, data, minimum.theta, exact, ops, rows, linear_states, c_of,
        batch_sizes=cfg.batch_sizes, effort=effort, n_chains=cfg.chains,
        replacement=cfg.replacement, seed=cfg.seed,
        search_real_edge=cfg.stability, quiet=cfg.quiet)
    timings["stability"] = time.perf_counter() - t4
    cpu["stability"] = time.process_time() - c4
    for row in rows:
        _finish_row(row, stability)
    timings["total"] = time.perf_counter() - t0
    cpu["total"] = time.process_time() - c0
    timings["cpu"] = cpu       # process CPU seconds (all threads) per stage, beside the wall times
    sound, reasons = soundness(rows)
    results = {"network": network, "momentum": beta, "rows": rows, "probes": probes,
               "stability": stability,
               "curves": _curves(cfg, h, s_tilde, exact, n_data),
               "sound": sound, "sound_reasons": reasons, "seeds": seeds, "z_max": Z_MAX,
               "conventions": CONVENTIONS, "timings": timings,
               "cache": {k: v for k, v in cache_info.items() if k != "key_fields"}}
    results["verdict"] = summary_verdict(rows)
    return results


def _finish_row(row, stability) -> None:
    """Per-row ρ, the linear prediction (or why there is none) and the accounting.

    Without a stability block (momentum > 0) ρ is None and the linear law exists where
    none of its chains diverged."""
    rho = None if stability is None else next(
        r["rho_minus_1"] for r in stability["rows"]
        if r["eta_h_max"] == row["eta_h_max"] and r["batch_size"] == row["batch_size"])
    row["rho_minus_1"] = rho
    lin = row["linear"]
    notes = []
    if lin["n_diverged"]:
        notes.append(f"{lin['n_diverged']} of {lin['n_chains']} linearised chains diverged")
    if rho is not None and rho["value"] > 0 and rho["visible_in_run"]:
        notes.append(f"rho(T) - 1 = {rho['value']:+.3g} per step: E|delta|^2 grows by "
                     f"e^{rho['growth_over_run']:.3g} over the run")
    lin["exists"] = not notes
    lin["stable"] = None if rho is None else bool(rho["value"] < 0)
    lin["settled"] = bool(row["settle"].get("linear_settled", True))
    if notes:
        lin["note"] = "no linear stationary law: " + "; ".join(notes)
        row["predictions"]["linear"] = {"value": math.nan, "se": math.nan, "z": math.nan,
                                        "rel_error": math.nan, "agrees": None,
                                        "n_diverged": lin["n_diverged"], "exists": False,
                                        "note": lin["note"]}
    else:
        if rho is not None and rho["value"] > 0:
            lin["note"] = (f"rho(T) - 1 = {rho['value']:+.3g} > 0, but E|delta|^2 grows by only "
                           f"e^{rho['growth_over_run']:.2g} over the run: the value is the run's "
                           "average, not a stationary law")
        p = score(row["observed"], row["observed_se"], lin["value"], lin["se"])
        # chain j of both runs drew the same batches: the paired SE is the honest one
        pse = lin["paired"]["se"]
        if math.isfinite(pse) and pse > 0:
            p["z"] = float(lin["paired"]["obs_minus_linear"] / pse)
            p["agrees"] = bool(abs(p["z"]) < Z_MAX)
        p.update(n_diverged=lin["n_diverged"], exists=True, z_kind="paired",
                 settled=lin["settled"])
        if not lin["settled"]:
            # a drifting linear run is not its stationary law: reported, not scored
            lin["note"] = (f"linearised chains not stationary after {row['settle']['steps']:,} "
                           f"steps ({row['settle'].get('linear_reason', '')})")
            p["agrees"] = None
        if "note" in lin:
            p["note"] = lin["note"]
        row["predictions"]["linear"] = p
    row["verdict"] = row_verdict(row["predictions"])
    row["accounting"] = accounting(row)


CONVENTIONS = (
    "L = (1/N) sum_i CE_i + l2*|theta|^2 on all parameters; Sigma = per-example gradient covariance "
    "of the data loss, centred, dividing by N; tr H is the full objective's (data + 2*l2*P), the "
    "Hessian SGD sees, used in Jastrzebski (6); c_S = 1/S with replacement, (N-S)/(S(N-1)) without; "
    "lr = eta_h_max / h_max; dE1 = (lr*c_S/2) tr[(2I - lr H)^-1 K(C0)], estimated with probes "
    "v ~ N(0, C0) and propagated into the z-score; linear = 0.5 delta^T H delta of linearised SGD "
    "(the same minibatches as the real chains), its z from the per-chain differences.  With "
    "momentum beta: heavy ball v' = beta v - lr g, theta' = theta + v' (v = 0 at theta*), for real "
    "and linearised chains; Wang, Jastrzebski and discrete take momentum=beta (theory, Eq. M7); "
    "theta-free = (1+beta)/(4 lr) E|v|^2; dE1 and rho are not available (None).")


def _curves(cfg, h, s_tilde, exact, n_data):
    """Predictions per unit c_S on a grid of η, so the figure needs nothing but the JSON."""
    import theory

    beta = cfg.momentum
    two = 2.0 * (1.0 + beta)
    lo, hi = min(cfg.eta_h) / 1.5, min(max(cfg.eta_h) * 1.2, 0.95 * two)
    grid = np.geomspace(lo, hi, 24) / exact.h_max
    # S = 1 with replacement has c_S = 1: each curve is the prediction per unit c_S.
    return {"lr": grid.tolist(),
            "wang_per_c": theory.expected_loss_wang(exact.trace_sigma, grid, 1,
                                                    momentum=beta).tolist(),
            "jastrzebski_per_c": theory.expected_loss_jastrzebski(exact.trace_h, grid, 1,
                                                                  momentum=beta).tolist(),
            # theory.expected_loss_discrete in H's eigenbasis, (η/2) Σ_j Σ̃_jj/(2 − ηh_j) at
            # c_S = 1, vectorised over the grid: a figure aid (24 calls of theory's function
            # cost ~500 block eigh, tens of seconds on a loaded machine); every row's
            # prediction is theory's own function
            "discrete_per_c": (0.5 * grid * (1 + beta) / (1 - beta)
                               * ((1.0 / (two - np.outer(grid, h))) @ s_tilde)).tolist()}


def _provenance(cfg, seeds) -> dict:
    from dnn._runio import device_description, library_versions

    prov = synthetic_provenance(asdict(cfg), seeds)
    prov["versions"].update(library_versions("jax"))
    try:
        from importlib import metadata

        prov["versions"]["scikit-learn"] = metadata.version("scikit-learn")
    except Exception:  # provenance must never abort a run
        prov["versions"]["scikit-learn"] = None
    prov["backend"] = "jax (float64, plain functions; no keras)"
    prov["device"] = device_description("jax")
    return prov


def run_smallnet(cfg: SmallnetConfig) -> int:
    """Measure, print the table and verdict, write the files; 0 iff the measurement is sound."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)   # fail on a bad --out before minutes of work
    results = smallnet_results(cfg)
    results["provenance"] = _provenance(cfg, results["seeds"])
    paths = write_outputs(results, out)
    print(console_table(results))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0 if results["sound"] else 1
