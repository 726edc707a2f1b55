"""One ``smallnet`` setting measured until it is stationary: real and linearised chains side by side.

A setting (η, S) runs real SGD chains (:func:`dnn.exact.chains.run_sgd_chains`) and
linearised-SGD chains (:func:`dnn.exact.linear_chains.run_linear_chains`) with the same
seed, so both see the same minibatches, for the planned burn-in and window.  The row
counts as a measurement only when the real chains are stationary (:func:`is_settled`):

- |drift z| < ``DRIFT_Z_MAX`` = 3 between the window's halves, and
- the fluctuation–dissipation identity ratio E[(θ − θ̄)·ĝ]/((η/2)E‖ĝ‖²), which is 1 at
  stationarity for any loss (theory.md, Yaida), within ``RATIO_SE_MAX`` = 4 SE of 1;
  with heavy-ball momentum β the denominator is ((1+β)/(2η))E‖v‖², v the step
  (theory.md, "Momentum"; :meth:`dnn.exact.chains.ChainStats.identity_ratio`).

Otherwise both sets of chains are continued from where they stand: the window just
measured joins the burn-in and the next window is twice as long, until the row settles
or its total steps would pass the cap.  The linearised chains must pass the same checks
for their value to count as the linear law (they relax more slowly near their stability
edge), so a row also waits for them unless one of them diverged.  A row that never
settles is kept, marked ``settled: false``, and left out of the verdict.  Each attempt
is recorded.
"""

from __future__ import annotations

import math
import time

import numpy as np

__all__ = ["DRIFT_Z_MAX", "RATIO_SE_MAX", "is_settled", "measure_setting", "chain_measurement",
           "linear_measurement"]

# |z| >= 3 flags a drift with probability 0.27% per check for a stationary row; stricter
# than the soundness bound (4) because an unsettled row is extended, not discarded.
DRIFT_Z_MAX = 3.0
# The identity holds exactly at stationarity; 4 SE: a false alarm 6e-5 per check.
RATIO_SE_MAX = 4.0


def is_settled(drift_z, ratio, ratio_se, n_alive) -> tuple:
    """(settled, reason): |drift z| < 3 and |identity ratio − 1| < 4 SE, with >= 2 chains.

    Examples
    --------
    >>> is_settled(1.0, 1.01, 0.005, 8)
    (True, '')
    >>> is_settled(-3.5, 1.0, 0.01, 8)[0], is_settled(0.0, 1.05, 0.01, 8)[0]
    (False, False)
    """
    if n_alive < 2:
        return False, f"{n_alive} chain(s) left: no SE"
    if not (isinstance(drift_z, (int, float)) and math.isfinite(drift_z)):
        return False, f"drift z is not a number ({drift_z!r})"
    if abs(drift_z) >= DRIFT_Z_MAX:
        return False, f"drift z = {drift_z:+.1f} (|z| >= {DRIFT_Z_MAX:g})"
    if not (math.isfinite(ratio) and math.isfinite(ratio_se) and ratio_se > 0):
        return False, f"identity ratio {ratio!r} ± {ratio_se!r} is not a number"
    z = (ratio - 1.0) / ratio_se
    if abs(z) >= RATIO_SE_MAX:
        return False, f"identity ratio {ratio:.4f} ± {ratio_se:.2g} is {z:+.1f} SE from 1"
    return True, ""


def _stats_settled(stats) -> tuple:
    ratio = stats.identity_ratio()
    return is_settled(stats.drift_z(), ratio.value, ratio.se, stats.n_chains - stats.n_diverged)


def chain_measurement(stats) -> dict:
    """Observed excess, drift, θ*-free and identity ratio from ``dnn.exact.chains.ChainStats``.

    The θ*-free estimate is (η/4)E‖ĝ‖², or ((1+β)/(4η))E‖v‖² with momentum β.  It is compared with the observed excess chain by chain
    (both are time averages of the same chain), so their z uses the SE of the
    per-chain difference, not the two SEs added as if independent.
    """
    alive = ~np.asarray(stats.diverged)
    obs, tf, ratio = stats.observed(), stats.theta_free(), stats.identity_ratio()
    diff = stats.theta_free_per_chain()[alive] - stats.excess[alive]
    n = int(diff.size)
    se_diff = float(np.std(diff, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    z_tf = float(-diff.mean() / se_diff) if n > 1 and se_diff > 0 else math.nan
    dist = stats.dist_sq_mean()
    return {
        "observed": obs.value, "observed_se": obs.se, "drift_z": float(stats.drift_z()),
        "n_chains": int(stats.n_chains), "n_diverged": stats.n_diverged,
        "diverged_chains": stats.diverged_chains,
        "diverged_steps": [int(stats.diverged_step[i]) for i in stats.diverged_chains],
        "theta_free": {"value": tf.value, "se": tf.se, "z": z_tf,
                       "rel_error": tf.value / obs.value - 1.0 if obs.value else math.nan},
        "identity_ratio": {"value": ratio.value, "se": ratio.se},
        "dist_sq": {"value": dist.value, "se": dist.se, "n": dist.n},
        "burn_in": int(stats.burn_in), "n_steps": int(stats.n_steps),
        "record_every": int(stats.record_every), "n_records": int(stats.n_records),
        "noise_factor": float(stats.noise_factor), "seconds": float(stats.seconds),
        "momentum": float(stats.momentum),
    }


def linear_measurement(real, lin) -> dict:
    """The linearised chains' excess ½δᵀHδ, its drift and divergence, paired with the real chains.

    Chain j of both runs drew the same minibatches, so obs − linear is measured chain by
    chain over the chains alive in both; its SE is that of the paired differences.
    """
    both = ~np.asarray(real.diverged) & ~np.asarray(lin.diverged)
    est = lin.observed()
    diff = real.excess[both] - lin.excess[both]
    n = int(diff.size)
    se_diff = float(np.std(diff, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    ratio, dist = lin.identity_ratio(), lin.dist_sq_mean()
    first = [int(lin.diverged_step[i]) for i in lin.diverged_chains]
    return {
        "value": est.value, "se": est.se, "n": est.n, "n_chains": int(lin.n_chains),
        "n_diverged": int(lin.n_diverged), "diverged_steps": first,
        "drift_z": float(lin.drift_z()),
        "identity_ratio": {"value": ratio.value, "se": ratio.se},
        "dist_sq": {"value": dist.value, "se": dist.se, "n": dist.n},
        "paired": {"obs_minus_linear": float(diff.mean()) if n else math.nan,
                   "se": se_diff, "n": n},
        # per-chain excesses, for the accounting's paired SEs (alive in both runs)
        "per_chain": {"observed": real.excess[both].tolist(), "linear": lin.excess[both].tolist()},
        "seconds": float(lin.seconds),
    }


def measure_setting(model, data, theta_star, hessian, *, lr, batch_size, n_chains, burn_in,
                    window, record_every, replacement, seed, max_total_steps, quiet=True,
                    momentum=0.0) -> dict:
    """Run real and linearised chains at one (η, S) until the real ones settle (or the cap).

    With ``momentum`` β > 0 both run heavy ball (the linearised ones on the same ĝ).

    Returns
    -------
    dict
        ``real`` and ``linear`` (the last :class:`~dnn.exact.chains.ChainStats` of each),
        ``settle``: {``settled``, ``reason``, ``attempts`` (one dict per window measured:
        burn-in, window, drift z, identity ratio ± SE, seconds), ``steps`` (burn-in + window
        of the accepted attempt, or of the last one), ``seconds`` (wall time, both chain
        sets), ``max_total_steps``}.
    """
    from dnn.exact.chains import run_sgd_chains
    from dnn.exact.linear_chains import run_linear_chains

    t0 = time.perf_counter()
    common = dict(lr=lr, batch_size=batch_size, n_chains=n_chains, record_every=record_every,
                  replacement=replacement, seed=seed, quiet=quiet, momentum=momentum)
    real = run_sgd_chains(model, data, theta_star, burn_in=burn_in, n_steps=window, **common)
    lin = run_linear_chains(model, data, theta_star, hessian=hessian, burn_in=burn_in,
                            n_steps=window, **common)
    attempts = []
    while True:
        ok, reason = _stats_settled(real)
        # the linearised chains must be stationary too for their value to be a law; when
        # any of them diverged there is no law to wait for
        lin_ok, lin_reason = _stats_settled(lin) if lin.n_diverged == 0 else (False, "diverged")
        attempts.append({"burn_in": int(real.burn_in), "n_steps": int(real.n_steps),
                         "drift_z": float(real.drift_z()),
                         "identity_ratio": real.identity_ratio().value,
                         "identity_ratio_se": real.identity_ratio().se, "settled": ok,
                         "reason": reason, "linear_settled": lin_ok, "linear_reason": lin_reason,
                         "seconds": time.perf_counter() - t0})
        window = 2 * real.n_steps
        waiting = (not ok) or (not lin_ok and lin.n_diverged == 0)
        if not waiting or real.n_diverged >= real.n_chains - 1 \
                or real.burn_in + real.n_steps + window > max_total_steps:
            break
        # the window just measured joins the burn-in; the next one is twice as long
        real = run_sgd_chains(model, data, theta_star, burn_in=0, n_steps=window,
                              state=real.final_state, **common)
        if lin.n_diverged < lin.n_chains:     # nothing left to learn from all-diverged chains
            lin = run_linear_chains(model, data, theta_star, hessian=hessian, burn_in=0,
                                    n_steps=window, state=lin.final_state, **common)
    last = attempts[-1]
    settle = {"settled": bool(last["settled"]), "reason": last["reason"], "attempts": attempts,
              "steps": int(last["burn_in"] + last["n_steps"]),
              "linear_settled": bool(last["linear_settled"]), "linear_reason": last["linear_reason"],
              "seconds": time.perf_counter() - t0, "max_total_steps": int(max_total_steps),
              "drift_z_max": DRIFT_Z_MAX, "ratio_se_max": RATIO_SE_MAX}
    return {"real": real, "linear": lin, "settle": settle}
