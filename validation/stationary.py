"""The observed side of the stationary comparison, and its predictions.

After training, :func:`dnn.stationary.stationary_phase` continues plain SGD at a
fixed learning rate η_s and the run's batch size S around the trained network
and records the raw loss series.  This module turns that series into the
observed stationary excess loss with its standard error, computes the
predictions of Wang's Eq. (12) and Jastrzębski et al.'s Eq. (6) at the same η_s
and S, and their ratios to the observation.  Everything above
:func:`run_stationary` is pure numpy: no RNG, no I/O.

What the comparison assumes (repeated in the report):

* the loss is quadratic around θ̄ over the range SGD explores (the formulas are
  the linearised, OU/SDE ones);
* batch-norm statistics are frozen (inference mode) during the phase, so the
  loss is a fixed function of θ;
* the Polyak average θ̄ stands in for the minimiser θ*: the measured quantity is
  E L(θ) − L(E θ), which equals E L(θ) − L(θ*) for a quadratic, where E θ = θ*.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BatchMeans",
    "ExcessLoss",
    "batch_means",
    "observed_excess_loss",
    "predict_excess_loss",
    "ratio_with_se",
    "discrete_correction",
    "drift_check",
    "summarize_stationary",
    "measure_traces",
    "run_stationary",
    "STATIONARY_FILE",
]

#: File written into each run folder by :func:`run_stationary`.
STATIONARY_FILE = "stationary.json"


@dataclass(frozen=True)
class BatchMeans:
    """Mean of a correlated series with its batch-means standard error."""

    mean: float        # sample mean of the series (after dropping the remainder)
    se: float          # sd(batch means) / sqrt(n_batches)
    n: int             # samples used
    n_batches: int     # B
    batch_len: int     # samples per batch
    tau: float         # integrated autocorrelation time in samples, batch_len Var(means)/Var(x)


@dataclass(frozen=True)
class ExcessLoss:
    """Observed stationary excess loss E L(θ_k) − L(θ*) with its standard error."""

    value: float       # raw + correction
    se: float          # batch-means SE of mean_k L(θ_k)
    raw: float         # mean_k L(θ_k) − L(θ̄)
    correction: float  # estimate of L(θ̄) − L(E θ), (mean_b L(θ̄_b) − L(θ̄)) / (B − 1)
    n_records: int     # recorded losses used
    n_blocks: int      # B
    tau_records: float # integrated autocorrelation time of the loss series, in records


def _series(values, name):
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite; it contains {x[~np.isfinite(x)][0]}")
    return x


def batch_means(series, n_batches=20):
    r"""Mean of a stationary, correlated series and its batch-means standard error.

    The series x_1..x_n is cut into B contiguous batches of length m = ⌊n/B⌋
    (the first n − mB samples are dropped, as extra burn-in), and

    .. math:: \bar x = \frac1B\sum_b \bar x_b,\qquad
              \mathrm{SE} = \frac{\mathrm{sd}(\bar x_1,\dots,\bar x_B)}{\sqrt B},\qquad
              \tau = \frac{m\,\mathrm{Var}(\bar x_b)}{\mathrm{Var}(x)}.

    The SE is valid once m is several integrated autocorrelation times τ.

    Parameters
    ----------
    series : (n,) array_like
        Finite values, n >= 2 B.
    n_batches : int
        B >= 2.

    Returns
    -------
    BatchMeans

    Raises
    ------
    ValueError
        If the series is not 1-D and finite, B < 2, or n < 2 B.

    References
    ----------
    Flegal & Jones (2010), "Batch means and spectral variance estimators in MCMC".

    Examples
    --------
    >>> r = batch_means(np.arange(40.0) % 2, n_batches=4)
    >>> r.mean, r.se, r.batch_len
    (0.5, 0.0, 10)
    """
    x = _series(series, "series")
    b = int(n_batches)
    if b != n_batches or b < 2:
        raise ValueError(f"n_batches must be an integer >= 2; got {n_batches!r}")
    if x.size < 2 * b:
        raise ValueError(f"series needs at least 2 * n_batches = {2 * b} values; got {x.size}")
    m = x.size // b
    x = x[x.size - m * b:]
    means = x.reshape(b, m).mean(axis=1)
    var_means = float(np.var(means, ddof=1))
    var_x = float(np.var(x, ddof=1))
    tau = m * var_means / var_x if var_x > 0 else float("nan")
    return BatchMeans(mean=float(means.mean()), se=math.sqrt(var_means / b), n=int(x.size),
                      n_batches=b, batch_len=m, tau=tau)


def observed_excess_loss(losses, loss_at_mean, block_losses):
    r"""Observed stationary excess loss from the stationary phase's raw series.

    With θ̄ the Polyak average over the phase and θ̄_b the averages over B
    contiguous blocks of it (θ̄ = mean_b θ̄_b),

    .. math::
        \widehat{\Delta} = \underbrace{\frac1n\sum_k L(\theta_k) - L(\bar\theta)}_{\text{raw}}
          + \underbrace{\frac{\frac1B\sum_b L(\bar\theta_b) - L(\bar\theta)}{B-1}}_{\text{correction}}.

    For a quadratic L with E θ = θ*, L(θ̄) − L(θ*) = ½ δ̄ᵀHδ̄ is the variance of the
    average in the H-norm; the block term estimates it (batch means applied to the
    loss itself), so Δ̂ is unbiased for E L(θ) − L(θ*), not just for the smaller
    E L(θ) − L(θ̄).  The SE is the batch-means SE of the recorded losses over the
    same B blocks; the uncertainty of L(θ̄) and of the correction is of relative
    order 1/n_eff and is neglected.

    Parameters
    ----------
    losses : (n,) array_like
        L(θ_k) at the recorded steps, in time order; n a multiple of B, B >= 2.
    loss_at_mean : float
        L(θ̄).
    block_losses : (B,) array_like
        L(θ̄_b) for the B blocks.

    Returns
    -------
    ExcessLoss

    Raises
    ------
    ValueError
        Non-finite inputs, fewer than 2 blocks, or n not a multiple of B with n >= 2B.

    Examples
    --------
    >>> r = observed_excess_loss([1.0, 3.0, 1.0, 3.0], 1.5, [2.0, 2.0])
    >>> r.raw, r.correction, r.value
    (0.5, 0.5, 1.0)
    """
    x = _series(losses, "losses")
    blocks = _series(block_losses, "block_losses")
    l_bar = float(loss_at_mean)
    if not math.isfinite(l_bar):
        raise ValueError(f"loss_at_mean must be finite; got {loss_at_mean}")
    b = blocks.size
    if b < 2:
        raise ValueError(f"block_losses needs at least 2 blocks; got {b}")
    if x.size < 2 * b or x.size % b:
        raise ValueError(f"losses must hold a multiple of {b} (the number of blocks) values, "
                         f"at least {2 * b}; got {x.size}")
    bm = batch_means(x, n_batches=b)
    raw = bm.mean - l_bar
    correction = (float(blocks.mean()) - l_bar) / (b - 1)
    return ExcessLoss(value=raw + correction, se=bm.se, raw=raw, correction=correction,
                      n_records=bm.n, n_blocks=b, tau_records=bm.tau)


def ratio_with_se(num, num_se, den, den_se):
    r"""r = a / b with first-order propagated uncertainty.

    .. math:: \mathrm{SE}(r) = |r|\sqrt{(\mathrm{SE}_a/a)^2 + (\mathrm{SE}_b/b)^2}

    Returns ``(nan, nan)`` when b = 0 or a = 0 makes the relative form undefined.

    Examples
    --------
    >>> ratio_with_se(2.0, 0.2, 4.0, 0.0)
    (0.5, 0.05)
    """
    a, sa, b, sb = (float(v) for v in (num, num_se, den, den_se))
    if b == 0 or a == 0 or not all(math.isfinite(v) for v in (a, sa, b, sb)):
        return float("nan"), float("nan")
    r = a / b
    return r, abs(r) * math.hypot(sa / a, sb / b)


def discrete_correction(lr, lambda_max):
    r"""Relative size of the discrete-time correction in the stiffest direction, η λ_max / 2.

    Per eigendirection the exact discrete excess loss exceeds the SDE one by the
    factor 2/(2 − ηh) = 1 + ηh/2 + O(η²h²) (theory.md, "Discrete time").

    Examples
    --------
    >>> discrete_correction(0.1, 4.0)
    0.2
    """
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be positive and finite; got {lr}")
    return 0.5 * lr * float(lambda_max)


def predict_excess_loss(*, trace_grad_cov, trace_hessian, lr, batch_size,
                        trace_grad_cov_se=0.0, trace_hessian_se=0.0, l2_trace=0.0,
                        lambda_max=None, n_data=None, replacement=True):
    r"""Predicted stationary excess loss by Eq. (12) and Eq. (6), with uncertainties.

    .. math::
        \Delta_{(12)} = \frac{\eta c_S}{4}\,\mathrm{tr}\,\Sigma,\qquad
        \Delta_{(6)} = \frac{\eta c_S}{4}\,(\mathrm{tr}\,H_{\text{data}} + \mathrm{tr}\,H_{L2}),

    via :func:`theory.expected_loss_wang` and :func:`theory.expected_loss_jastrzebski`.
    The Hessian in (6) is that of the objective SGD minimises, so the L2 term's
    constant contribution ``l2_trace`` = 2λ·(number of regularised weights) is added
    to the data-loss trace; Σ has no L2 part.  Both are linear in the trace, so
    the SE scales by the same factor η c_S / 4.

    Parameters
    ----------
    trace_grad_cov, trace_hessian : float
        tr Σ (centred, dividing by N) and tr H of the data loss.
    lr : float
        η_s > 0.
    batch_size : int
        S.
    trace_grad_cov_se, trace_hessian_se : float
        Their standard errors (0 when exact).
    l2_trace : float
        The L2 regulariser's contribution to tr H.
    lambda_max : float, optional
        Top Hessian eigenvalue, for the discrete-time correction η λ_max / 2.
    n_data : int, optional
        N, for sampling without replacement.
    replacement : bool
        The minibatch sampler (the stationary phase draws with replacement).

    Returns
    -------
    dict
        ``wang`` and ``jastrzebski`` (each ``{"value", "se"}``), ``noise_factor``,
        ``hessian_trace_total`` and ``discrete_correction`` (None without λ_max).

    Examples
    --------
    >>> p = predict_excess_loss(trace_grad_cov=3.0, trace_hessian=2.0, lr=0.1, batch_size=5)
    >>> round(p["wang"]["value"], 12), round(p["jastrzebski"]["value"], 12)
    (0.015, 0.01)
    """
    import theory

    c = float(theory.noise_factor(batch_size, n_data, replacement))
    h_total = float(trace_hessian) + float(l2_trace)
    wang = theory.expected_loss_wang(trace_grad_cov, lr, batch_size, n_data=n_data,
                                     replacement=replacement)
    jast = theory.expected_loss_jastrzebski(h_total, lr, batch_size, n_data=n_data,
                                            replacement=replacement)
    factor = float(lr) * c / 4.0
    return {
        "wang": {"value": float(wang), "se": factor * float(trace_grad_cov_se)},
        "jastrzebski": {"value": float(jast), "se": factor * float(trace_hessian_se)},
        "noise_factor": c,
        "hessian_trace_total": h_total,
        "discrete_correction": (None if lambda_max is None
                                else discrete_correction(lr, lambda_max)),
    }


#: A phase counts as stationary when its two halves agree within this many SE and the
#: batch-means SE rests on at least MIN_N_EFF effectively independent samples.
DRIFT_Z_MAX = 4.0
MIN_N_EFF = 20.0
#: ... and each batch-means block spans at least this many relaxation times of a
#: direction of mean curvature tr H / P.
MIN_BLOCK_RELAXATIONS = 1.0


def drift_check(losses, n_blocks):
    r"""Does the recorded loss still drift?  Second half minus first half, in SE.

    With block means m_1..m_B of the series (B >= 4 contiguous blocks, h = ⌊B/2⌋),

    .. math:: d = \bar m_{\text{last } h} - \bar m_{\text{first } h},\qquad
              \mathrm{SE}(d) = \sqrt{s^2_{\text{first}}/h + s^2_{\text{last}}/h}.

    A relaxing phase (the loss still falling after the switch to frozen BN, or a
    slow direction still moving) shows up as |d|/SE(d) large.

    Returns
    -------
    dict or None
        ``{"value", "se", "z"}``; None with fewer than 4 blocks.

    Examples
    --------
    >>> drift_check([1.0, 1.2, 1.0, 1.2, 2.0, 2.2, 2.0, 2.2], 4)["value"]
    1.0
    """
    x = _series(losses, "losses")
    b = int(n_blocks)
    if b < 4 or x.size < b:
        return None
    m = x.size // b
    means = x[x.size - m * b:].reshape(b, m).mean(axis=1)
    h = b // 2
    first, last = means[:h], means[b - h:]
    d = float(last.mean() - first.mean())
    se = math.sqrt(float(np.var(first, ddof=1) + np.var(last, ddof=1)) / h)
    return {"value": d, "se": se, "z": d / se if se > 0 else (0.0 if d == 0 else math.inf)}


def _first(d, keys, default=None):
    """First present, non-None entry of ``keys`` in ``d``."""
    if not isinstance(d, dict):
        return d if d is not None else default
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return default


def measure_traces(m):
    """(tr Σ, SE, tr H, SE, L2 trace, λ_max) from a ``dnn.measure`` / ``estimates.json`` dict.

    tr Σ is ``trace_grad_cov.trace`` with ``sampling_se`` (its SE when the
    evaluation examples are a sample of the training set); tr H is the
    Hutchinson ``trace_hessian.mean`` ± ``se`` of the data loss; the L2 trace is
    ``l2_trace_contribution.value``; λ_max is ``lambda_max.value`` (None if absent).
    """
    tgc = m.get("trace_grad_cov")
    th = m.get("trace_hessian")
    tr_s = _first(tgc, ("trace", "value", "mean"))
    # An SE that was not reported is unknown (NaN), not zero: a zero would make every
    # ratio built on it look exact.
    tr_s_se = _first(tgc, ("sampling_se", "se"), math.nan) if isinstance(tgc, dict) else math.nan
    tr_h = _first(th, ("mean", "value", "trace"))
    tr_h_se = _first(th, ("se",), math.nan) if isinstance(th, dict) else math.nan
    l2 = _first(m.get("l2_trace_contribution"), ("value",), 0.0)
    lam = _first(m.get("lambda_max"), ("value", "mean"))
    return (None if tr_s is None else float(tr_s), float(tr_s_se),
            None if tr_h is None else float(tr_h), float(tr_h_se), float(l2 or 0.0),
            None if lam is None else float(lam))


def summarize_stationary(phase, at_mean=None):
    """Observed excess loss, predictions and ratios from a stationary phase's raw record.

    Parameters
    ----------
    phase : dict
        The dict returned by :func:`dnn.stationary.stationary_phase` (``losses``,
        ``loss_at_mean``, ``block_losses``, ``lr``, ``batch_size``, ``n_data``,
        ``replacement``, ``steps``, ``record_every``).
    at_mean : dict, optional
        A ``dnn.measure`` result at θ̄ (tr Σ, tr H ± SE, L2 trace, λ_max).  Without
        it only the observed side is computed.

    Returns
    -------
    dict
        ``observed`` (ExcessLoss fields, plus ``tau_steps`` and ``n_eff``),
        ``predicted`` (see :func:`predict_excess_loss`), ``ratios`` (prediction /
        observation, ``{"value", "se"}`` per formula), ``relaxation``
        (``steps_x_lr_x_lambda_max``: the phase length in relaxation times 1/(η λ_max)
        of the stiffest direction) and ``diagnostics`` (:func:`drift_check` and
        whether the phase passes as stationary).
    """
    if phase.get("status", "completed") != "completed":
        return {"status": phase.get("status"), "observed": None, "predicted": None,
                "ratios": None, "relaxation": None, "diagnostics": None}
    obs = observed_excess_loss(phase["losses"], phase["loss_at_mean"], phase["block_losses"])
    rec = int(phase["record_every"])
    observed = asdict(obs)
    observed["tau_steps"] = obs.tau_records * rec
    observed["n_eff"] = (obs.n_records / obs.tau_records
                         if obs.tau_records and math.isfinite(obs.tau_records) else None)
    drift = drift_check(phase["losses"], obs.n_blocks)
    n_eff = observed["n_eff"]
    out = {"status": "completed", "observed": observed, "predicted": None, "ratios": None,
           "relaxation": {"steps": int(phase["steps"]), "tau_steps": observed["tau_steps"],
                          "steps_x_lr_x_lambda_max": None},
           "diagnostics": {
               "drift": drift,
               # stationary: no significant drift and enough independent samples for the SE
               "stationary": bool(drift is not None and abs(drift["z"]) < DRIFT_Z_MAX
                                  and n_eff is not None and n_eff >= MIN_N_EFF),
               "criteria": f"|drift z| < {DRIFT_Z_MAX:g} and n_eff >= {MIN_N_EFF:g}"}}
    if at_mean is None:
        return out
    tr_s, tr_s_se, tr_h, tr_h_se, l2, lam = measure_traces(at_mean)
    pred = predict_excess_loss(trace_grad_cov=tr_s, trace_hessian=tr_h, lr=phase["lr"],
                               batch_size=phase["batch_size"], trace_grad_cov_se=tr_s_se,
                               trace_hessian_se=tr_h_se, l2_trace=l2, lambda_max=lam,
                               n_data=phase.get("n_data"),
                               replacement=phase.get("replacement", True))
    pred["trace_grad_cov"] = {"value": float(tr_s), "se": float(tr_s_se)}
    pred["trace_hessian"] = {"value": float(tr_h), "se": float(tr_h_se)}
    pred["l2_trace"] = float(l2)
    pred["lambda_max"] = None if lam is None else float(lam)
    out["predicted"] = pred
    out["ratios"] = {
        name: dict(zip(("value", "se"), ratio_with_se(pred[name]["value"], pred[name]["se"],
                                                      obs.value, obs.se)))
        for name in ("wang", "jastrzebski")
    }
    if lam is not None:
        out["relaxation"]["steps_x_lr_x_lambda_max"] = (
            int(phase["steps"]) * float(phase["lr"]) * float(lam))
    n_params = at_mean.get("n_params")
    if n_params and tr_h is not None:
        # The stiffest direction relaxes fastest; what limits the measurement is the
        # flat ones.  θ̄ and the block means follow any direction whose relaxation time
        # 1/(η_s h) exceeds a block, so its share of the excess loss is never seen.
        # A conservative check with the mean eigenvalue h̄ = tr H / P: when blocks are
        # shorter than 1/(η_s h̄), the phase is trusted only if Σ sits in stiffer
        # directions, which nothing here measures, so it is not counted as stationary.
        h_bar = (float(tr_h) + float(l2)) / float(n_params)
        block_steps = int(phase["steps"]) / max(int(obs.n_blocks), 1)
        resolved = block_steps * float(phase["lr"]) * h_bar
        out["relaxation"]["mean_curvature"] = h_bar
        out["relaxation"]["block_steps_x_lr_x_mean_curvature"] = resolved
        diag = out["diagnostics"]
        diag["flat_directions_resolved"] = bool(resolved >= MIN_BLOCK_RELAXATIONS)
        diag["stationary"] = bool(diag["stationary"] and diag["flat_directions_resolved"])
        diag["criteria"] += (f" and block_steps*lr*(tr H/P) >= {MIN_BLOCK_RELAXATIONS:g}")
    return out


def run_stationary(run_dir, *, lr=None, steps=2000, burn_in=None, eval_examples=2048,
                   record_every=10, n_blocks=20, measure_examples=None, probes=None,
                   power_iters=20, seed=0, overwrite=False, quiet=True):
    """Run the stationary phase of a trained run and write ``run_dir/stationary.json``.

    Calls :func:`dnn.stationary.stationary_phase` (plain SGD at fixed η_s from the
    final weights, BN frozen), measures tr Σ, tr H, L2 trace and λ_max at θ̄ with
    ``dnn.measure`` on the same evaluation subset, and stores the raw series, the
    measurement and :func:`summarize_stationary`'s statistics, atomically.

    Parameters
    ----------
    run_dir : path
        A completed ``dnn.train`` run folder.
    lr : float, optional
        η_s; default: the schedule's final learning rate.
    steps, burn_in, eval_examples, record_every, n_blocks, seed
        Passed to :func:`dnn.stationary.stationary_phase`.
    measure_examples : int, optional
        Examples for the traces at θ̄; default: the evaluation subset.
    probes : int, optional
        Hutchinson probes for tr H at θ̄ (default: at least 32).
    power_iters : int
        Power iterations for λ_max at θ̄.
    overwrite : bool
        Recompute even if ``stationary.json`` exists.
    quiet : bool
        Silence progress bars.

    Returns
    -------
    dict
        The contents of ``stationary.json``.
    """
    from ._io import atomic_write_json
    from dnn._runio import read_json

    run_dir = Path(run_dir)
    path = run_dir / STATIONARY_FILE
    if path.exists() and not overwrite:
        return read_json(path)
    from dnn import stationary as dstat

    t0 = time.perf_counter()
    run = dstat.load_for_stationary(run_dir)
    phase = dstat.stationary_phase(run, lr=lr, steps=steps, burn_in=burn_in,
                                   eval_examples=eval_examples, record_every=record_every,
                                   n_blocks=n_blocks, seed=seed, quiet=quiet)
    at_mean = None
    if phase["status"] == "completed":
        at_mean = dstat.measure_at_mean(run, phase, examples=measure_examples, probes=probes,
                                        power_iters=power_iters, seed=seed, quiet=quiet)
    summary = summarize_stationary(phase, at_mean)
    record = {
        "status": phase["status"],
        "conventions": {
            "bn": "inference mode (running statistics frozen) for SGD steps and measurements",
            "sampler": phase.get("sampler"),
            "loss": "training objective on a fixed evaluation subset of the training set: "
                    "mean data loss + L2 penalty",
            "observed": "mean_k L(theta_k) - L(theta_bar) + block correction for "
                        "L(theta_bar) - L(E theta); SE by batch means",
            "predictions": "(12) (lr c_S/4) tr Sigma and (6) (lr c_S/4) (tr H_data + L2 "
                           "trace), traces measured at theta_bar",
        },
        "phase": {k: v for k, v in phase.items() if k not in ("mean_weights",)},
        "at_mean": at_mean,
        **summary,
        "wall_time_s": time.perf_counter() - t0,
    }
    atomic_write_json(path, record)
    return record
