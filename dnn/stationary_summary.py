r"""The ``stationary.json`` record of a stationary phase: observed, predicted, compared.

:func:`summarize_stationary` turns the phase's raw record (see
:mod:`dnn.convnet.stationary`) and a measurement at the mean iterate into the
observed excess loss (from :mod:`dnn.stationary_stats`), the stationarity checks,
the predictions (12) and (6) via :mod:`theory`, and their ratios.  Pure numpy, no
RNG, no I/O, no framework.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from .stationary_stats import (drift_check, identity_ratio, integrated_time, polyak_excess_loss,
                               stationarity_check, theta_free_excess_loss)

__all__ = [
    "ratio_with_se",
    "discrete_correction",
    "predict_excess_loss",
    "measure_traces",
    "summarize_stationary",
    "SCHEMA_VERSION",
]

#: Version of the record :func:`measure_stationary` returns (``stationary.json``).
#: 1: Polyak method only; 2: θ*-free primary, Polyak second, drift/n_eff criterion.
#: Momentum added keys only (``phase.momentum``, ``phase.step_sqnorm``, ``observed.series``,
#: ``predicted.momentum``, ``predicted.stability``, ...): a version-2 record without them
#: is a plain-SGD phase (the only kind the older code ran), read as β = 0, so it stays 2.
SCHEMA_VERSION = 2


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


def discrete_correction(lr, lambda_max, momentum=0.0):
    r"""Relative size of the discrete-time correction in the stiffest direction, η λ_max / (2(1+β)).

    Per eigendirection the exact discrete excess loss with heavy-ball momentum β
    exceeds its continuous limit (η/(1−β) the effective rate) by the factor
    2(1+β)/(2(1+β) − ηh) = 1 + ηh/(2(1+β)) + O(η²h²) (theory.md, "Discrete time" and
    "Momentum": Var θ_i ∝ (1+β)/(2(1+β) − ηh_i)); at β = 0, 2/(2 − ηh).

    Raises
    ------
    ValueError
        A bad lr or momentum.
    theory.StabilityError
        η λ_max >= 2(1+β): the stiffest direction has no stationary law, and the
        factor is meaningless.

    Examples
    --------
    >>> discrete_correction(0.1, 4.0)
    0.2
    >>> round(discrete_correction(0.1, 4.0, momentum=0.9), 12)
    0.105263157895
    """
    from theory import StabilityError

    from ._validate import momentum as check_momentum

    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be positive and finite; got {lr}")
    beta = check_momentum(momentum)
    x = lr * float(lambda_max)
    if not x < 2.0 * (1.0 + beta):
        raise StabilityError(f"lr*lambda_max = {x:.4g} >= 2(1+momentum) = {2 * (1 + beta):.4g} "
                             f"(lr={lr:g}, lambda_max={float(lambda_max):.4g}, "
                             f"momentum={beta:g}): no stationary law in the stiffest direction")
    return x / (2.0 * (1.0 + beta))


def predict_excess_loss(*, trace_grad_cov, trace_hessian, lr, batch_size,
                        trace_grad_cov_se=0.0, trace_hessian_se=0.0, l2_trace=0.0,
                        lambda_max=None, n_data=None, replacement=True, momentum=0.0):
    r"""Predicted stationary excess loss by Eq. (12) and Eq. (6), with uncertainties.

    .. math::
        \Delta_{(12)} = \frac{\eta c_S}{4(1-\beta)}\,\mathrm{tr}\,\Sigma,\qquad
        \Delta_{(6)} = \frac{\eta c_S}{4(1-\beta)}\,(\mathrm{tr}\,H_{\text{data}}
                        + \mathrm{tr}\,H_{L2}),

    the continuous limits at the effective rate η/(1 − β) (β = 0: the paper's
    formulas), via :func:`theory.expected_loss_wang` and
    :func:`theory.expected_loss_jastrzebski` with ``momentum=β``.
    The Hessian in (6) is that of the objective SGD minimises, so the L2 term's
    constant contribution ``l2_trace`` = 2λ·(number of regularised weights) is added
    to the data-loss trace; Σ has no L2 part.  Both are linear in the trace, so
    the SE scales by the same factor η c_S / (4(1 − β)).

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
        Top Hessian eigenvalue, for the discrete-time correction η λ_max / (2(1+β))
        and the stability flag η λ_max < 2(1+β).
    n_data : int, optional
        N, for sampling without replacement.
    replacement : bool
        The minibatch sampler (the stationary phase draws with replacement).
    momentum : float
        Heavy-ball β in [0, 1) of the phase.

    Returns
    -------
    dict
        ``wang`` and ``jastrzebski`` (each ``{"value", "se"}``), ``noise_factor``,
        ``hessian_trace_total``, ``momentum``, ``discrete_correction`` (None without
        λ_max, or when unstable) and ``stability`` (None without λ_max, else
        ``{"lr_x_lambda_max", "edge"`` = 2(1+β), ``"stable"}``: with η λ_max >= 2(1+β)
        the stiffest direction has no stationary law, and no near-minimum formula
        applies there).

    Examples
    --------
    >>> p = predict_excess_loss(trace_grad_cov=3.0, trace_hessian=2.0, lr=0.1, batch_size=5)
    >>> round(p["wang"]["value"], 12), round(p["jastrzebski"]["value"], 12)
    (0.015, 0.01)
    """
    import theory

    from ._validate import momentum as check_momentum

    beta = check_momentum(momentum)
    c = float(theory.noise_factor(batch_size, n_data, replacement))
    h_total = float(trace_hessian) + float(l2_trace)
    wang = theory.expected_loss_wang(trace_grad_cov, lr, batch_size, n_data=n_data,
                                     replacement=replacement, momentum=beta)
    jast = theory.expected_loss_jastrzebski(h_total, lr, batch_size, n_data=n_data,
                                            replacement=replacement, momentum=beta)
    factor = float(lr) * c / (4.0 * (1.0 - beta))
    stability = correction = None
    if lambda_max is not None:
        x = float(lr) * float(lambda_max)
        stability = {"lr_x_lambda_max": x, "edge": 2.0 * (1.0 + beta),
                     "stable": bool(x < 2.0 * (1.0 + beta))}
        if stability["stable"]:
            correction = discrete_correction(lr, lambda_max, beta)
    return {
        "wang": {"value": float(wang), "se": factor * float(trace_grad_cov_se)},
        "jastrzebski": {"value": float(jast), "se": factor * float(trace_hessian_se)},
        "noise_factor": c,
        "hessian_trace_total": h_total,
        "momentum": beta,
        "discrete_correction": correction,
        "stability": stability,
    }


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
    """Observed excess loss (θ*-free and Polyak), checks, predictions and ratios of a phase.

    Parameters
    ----------
    phase : dict
        The record of :func:`sgd_stationary` (``grad_sqnorm``, ``step_sqnorm``,
        ``anchored_dot``, ``block_offset_dot``, ``losses``, ``loss_at_mean``,
        ``block_losses``, ``lr``, ``momentum`` (absent: 0), ``batch_size``,
        ``n_blocks``, ``record_every``, ``steps``, ...).
    at_mean : dict, optional
        A ``dnn.measure`` result at θ̄ (tr Σ, tr H ± SE, L2 trace, λ_max).  Without
        it only the observed side is computed.

    Returns
    -------
    dict
        ``observed`` (:class:`ThetaFreeExcess` fields: the primary estimate),
        ``polyak`` (:class:`PolyakExcess` fields, with ``tau_records`` from
        :func:`integrated_time`, plus ``tau_steps`` and ``n_eff``),
        ``identity`` (:class:`IdentityRatio` fields plus ``sqdist_start`` and
        ``sqdist_end``, ‖θ − θ̄‖² at the first and after the last recorded step, and
        ``veldot_start``, ``veldot_end``, (θ − θ̄)·v there),
        ``diagnostics`` (``drift_loss``, ``drift_grad_sqnorm``, ``drift_step_sqnorm``
        (None at β = 0), ``n_eff`` and
        :func:`stationarity_check`'s ``stationary``, ``criteria``, ``failed``),
        ``predicted`` (:func:`predict_excess_loss` plus the traces), ``ratios``
        (prediction / observed, ``{"value", "se"}`` per formula) and
        ``relaxation`` (``steps_x_lr_x_lambda_max``: the phase length in relaxation
        times 1/(η λ_max) of the stiffest direction).  All but ``status`` are None
        for a phase that did not complete.
    """
    empty = {"status": phase.get("status"), "observed": None, "polyak": None, "identity": None,
             "diagnostics": None, "predicted": None, "ratios": None, "relaxation": None}
    if phase.get("status", "completed") != "completed":
        return empty
    lr, b, rec = float(phase["lr"]), int(phase["n_blocks"]), int(phase["record_every"])
    # a record without "momentum" is from before momentum: always plain SGD
    beta = float(phase.get("momentum") or 0.0)
    steps_sq = phase.get("step_sqnorm") or None
    obs = theta_free_excess_loss(phase["grad_sqnorm"], lr, n_blocks=b, momentum=beta,
                                 step_sqnorm=steps_sq)
    pol = polyak_excess_loss(phase["losses"], phase["loss_at_mean"], phase["block_losses"])
    ident = identity_ratio(phase["grad_sqnorm"], phase["anchored_dot"],
                           phase["block_offset_dot"], lr, momentum=beta,
                           step_sqnorm=steps_sq)
    polyak = asdict(pol)
    tau_loss = integrated_time(phase["losses"])
    polyak["tau_records"] = tau_loss
    polyak["tau_steps"] = tau_loss * rec
    polyak["n_eff"] = pol.n_records / tau_loss
    identity = asdict(ident)
    identity["sqdist_start"] = phase.get("sqdist_start")
    identity["sqdist_end"] = phase.get("sqdist_end")
    identity["veldot_start"] = phase.get("veldot_start")
    identity["veldot_end"] = phase.get("veldot_end")
    drift_loss = drift_check(phase["losses"], b)
    drift_grad = drift_check(phase["grad_sqnorm"], b)
    # with momentum the estimate averages ‖v‖², whose drift is checked too
    drift_step = drift_check(steps_sq, b) if beta > 0 else None
    n_eff = obs.n_eff if math.isfinite(obs.n_eff) else None
    check = stationarity_check(drift_loss, drift_grad, n_eff, b, drift_step_sqnorm=drift_step)
    out = {"status": "completed", "observed": asdict(obs), "polyak": polyak,
           "identity": identity,
           "diagnostics": {"drift_loss": drift_loss, "drift_grad_sqnorm": drift_grad,
                           "drift_step_sqnorm": drift_step, "n_eff": n_eff, **check},
           "predicted": None, "ratios": None,
           "relaxation": {"steps": int(phase["steps"]), "tau_steps": obs.tau_steps,
                          "steps_x_lr_x_lambda_max": None}}
    if at_mean is None:
        return out
    tr_s, tr_s_se, tr_h, tr_h_se, l2, lam = measure_traces(at_mean)
    pred = predict_excess_loss(trace_grad_cov=tr_s, trace_hessian=tr_h, lr=lr,
                               batch_size=phase["batch_size"], trace_grad_cov_se=tr_s_se,
                               trace_hessian_se=tr_h_se, l2_trace=l2, lambda_max=lam,
                               n_data=phase.get("n_data"),
                               replacement=phase.get("replacement", True), momentum=beta)
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
        out["relaxation"]["steps_x_lr_x_lambda_max"] = int(phase["steps"]) * lr * float(lam)
    return out
