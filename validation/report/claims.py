r"""The paper's three claims, answered with numbers from saved results.

Luo & Wang state, for ResNet-56 on CIFAR-10 (Sec. 5; their symbols were lost, see
theory.md, "What the paper claims"):

1. **Figures 2-3.** Runs with the same BS/LR have learning curves that "very closely
   match"; runs whose BS/LR is far apart do not.  Here: the curve distance D of
   :func:`validation.report.curves.curve_distance` between equal-BS/LR
   configurations against the noise floor (D between two seeds of one
   configuration), and the rank correlation of D with |Δ log(BS/LR)|.
2. **Table 1.** The two traces differ by a large factor ("magnitudes"), the factor
   grows as BS/LR falls, and LR moves it more than BS.  Here: tr H / tr Σ per
   configuration, and least-squares slopes of log tr Σ, log tr H and their log ratio
   on log LR and log BS over every run, with standard errors.
3. **Therefore (12) is more robust than (6).**  Here: the stationary excess loss
   measured around each trained network against both predictions, with z-scores,
   over the phases that pass the stationarity checks only.

Every function takes rows or records already loaded from disk and returns plain
dicts; :func:`claims_markdown` renders them.  Nothing here trains or reads a model.
"""

from __future__ import annotations

import math

import numpy as np

from ._format import _fmt

__all__ = [
    "curves_claim",
    "traces_claim",
    "stationary_claim",
    "claims_markdown",
    "Z_AGREE",
]

#: A prediction agrees with the measurement when |z| < Z_AGREE (false alarm 6e-5 for a
#: normal z), the same threshold the stationarity checks use.
Z_AGREE = 4.0
#: Two BS/LR ratios count as equal within this relative tolerance (the grid's values
#: are given to 2-3 digits), as in the figures' colouring.
EQUAL_RTOL = 0.01
#: "Magnitudes" read as at least one order of magnitude.
MAGNITUDE = 10.0


def _mean_se(values):
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    se = float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return float(v.mean()), se, int(v.size)


def curves_claim(distance):
    """Claim 1 from one loss's :func:`~validation.report.curves.curve_distance` result.

    Returns a dict with the equal-BS/LR distances (mean ± SE, n pairs), the noise
    floor (mean ± SE over configurations), the other pairs' mean distance, their
    difference z = (D_equal − D_floor)/√(SE² + SE²), Spearman's ρ with the
    permutation p-value, and a one-line ``verdict``.
    """
    pairs = distance["pairs"]
    equal = [p["distance"] for p in pairs if p["dlog_ratio"] < math.log1p(EQUAL_RTOL)]
    other = [p["distance"] for p in pairs if p["dlog_ratio"] >= math.log1p(EQUAL_RTOL)]
    floor = list((distance.get("noise_floor") or {}).get("per_config", {}).values())
    eq, eq_se, n_eq = _mean_se(equal)
    fl, fl_se, n_fl = _mean_se(floor)
    ot, ot_se, n_ot = _mean_se(other)
    z = (eq - fl) / math.hypot(eq_se, fl_se) if n_eq and n_fl > 1 and n_eq > 1 else math.nan
    rho, p = distance.get("spearman_rho", math.nan), distance.get("mantel_p", math.nan)
    parts = []
    if not n_eq:
        parts.append("no two configurations share BS/LR")
    elif not n_fl:
        parts.append("no configuration has two seeds, so there is no noise floor")
    elif not math.isfinite(z):
        parts.append(f"same-BS/LR distance {_fmt(eq)} against a seed-to-seed floor of "
                     f"{_fmt(fl)} (too few pairs for a z)")
    elif abs(z) < 2:
        parts.append(f"same-BS/LR curves are as close as two seeds of one configuration "
                     f"(D {_fmt(eq)} ± {_fmt(eq_se, 2)} against {_fmt(fl)} ± {_fmt(fl_se, 2)}, "
                     f"z = {z:+.1f})")
    else:
        parts.append(f"same-BS/LR curves are {'farther apart' if z > 0 else 'closer'} than two "
                     f"seeds (D {_fmt(eq)} ± {_fmt(eq_se, 2)} against {_fmt(fl)} ± "
                     f"{_fmt(fl_se, 2)}, z = {z:+.1f})")
    if math.isfinite(rho) and math.isfinite(p):
        grows = rho > 0 and p < 0.05
        parts.append(f"distance {'grows' if grows else 'does not grow significantly'} with "
                     f"|Δ log(BS/LR)| (Spearman ρ = {rho:+.2f}, permutation p = {_fmt(p, 2)})")
    return {"equal_distance": eq, "equal_distance_se": eq_se, "n_equal_pairs": n_eq,
            "noise_floor": fl, "noise_floor_se": fl_se, "n_floor_configs": n_fl,
            "other_distance": ot, "other_distance_se": ot_se, "n_other_pairs": n_ot,
            "z_equal_vs_floor": z, "spearman_rho": rho, "mantel_p": p,
            "verdict": "; ".join(parts) + "."}


def _slopes(log_lr, log_bs, y):
    """OLS y = a + b_LR log LR + b_BS log BS: (b_LR, SE, b_BS, SE), NaN when underdetermined."""
    x = np.column_stack([np.ones_like(log_lr), log_lr, log_bs])
    ok = np.all(np.isfinite(x), axis=1) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n, k = x.shape
    if n <= k or np.linalg.matrix_rank(x) < k:
        return (math.nan,) * 4
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    cov = np.linalg.inv(x.T @ x) * float(resid @ resid) / (n - k)
    se = np.sqrt(np.diag(cov))
    return float(beta[1]), float(se[1]), float(beta[2]), float(se[2])


def traces_claim(points):
    """Claim 2 from per-run traces.

    Parameters
    ----------
    points : list of dict
        One per run with estimates: ``batch_size``, ``lr``, ``trace_grad_cov`` (tr Σ)
        and ``trace_hessian`` (tr H, data loss).

    Returns
    -------
    dict
        ``factor`` (tr H / tr Σ per configuration: min, median, max, and which trace is
        larger), ``slopes`` (for ``log_trace_grad_cov``, ``log_trace_hessian`` and
        ``log_ratio`` = log(tr H/tr Σ): ``lr`` and ``bs`` slopes ± SE, d log / d log),
        ``n_runs``, and ``verdicts`` (one line each for the size of the factor, its
        trend with BS/LR, and LR against BS).
    """
    pts = [p for p in points if all(np.isfinite(p.get(k, math.nan)) and p.get(k, 0) > 0
                                    for k in ("trace_grad_cov", "trace_hessian"))]
    out = {"n_runs": len(pts), "factor": None, "slopes": {}, "verdicts": []}
    if not pts:
        out["verdicts"].append("no run has both traces.")
        return out
    lr = np.log([p["lr"] for p in pts])
    bs = np.log([p["batch_size"] for p in pts])
    ts = np.log([p["trace_grad_cov"] for p in pts])
    th = np.log([p["trace_hessian"] for p in pts])
    configs = {}
    for p in pts:
        configs.setdefault((p["batch_size"], p["lr"]), []).append(p["trace_hessian"]
                                                                  / p["trace_grad_cov"])
    per_config = [float(np.mean(v)) for v in configs.values()]
    lo, med, hi = min(per_config), float(np.median(per_config)), max(per_config)
    out["factor"] = {"min": lo, "median": med, "max": hi, "n_configs": len(per_config)}
    for name, y in (("log_trace_grad_cov", ts), ("log_trace_hessian", th),
                    ("log_ratio", th - ts)):
        b_lr, s_lr, b_bs, s_bs = _slopes(lr, bs, y)
        out["slopes"][name] = {"lr": b_lr, "lr_se": s_lr, "bs": b_bs, "bs_se": s_bs}
    if lo >= MAGNITUDE:
        size = f"tr Σ is at least {_fmt(lo, 2)}× smaller than tr H in every configuration"
    elif hi <= 1 / MAGNITUDE:
        size = f"tr Σ is at least {_fmt(1 / hi, 2)}× larger than tr H in every configuration"
    else:
        size = (f"tr H / tr Σ ranges from {_fmt(lo, 2)} to {_fmt(hi, 2)} (median {_fmt(med, 2)}): "
                + ("tr Σ is smaller, but not by magnitudes" if lo > 1 else
                   "tr Σ is larger" if hi < 1 else "neither trace is uniformly larger"))
    out["verdicts"].append(size + f" (n = {len(per_config)} configurations).")
    r = out["slopes"]["log_ratio"]
    if all(math.isfinite(v) for v in r.values()):
        # BS/LR falls when LR rises or BS falls: d log ratio / d log(BS/LR) is -b_LR
        # along LR and +b_BS along BS.
        z_lr, z_bs = r["lr"] / r["lr_se"], r["bs"] / r["bs_se"]
        trend = ("the factor grows as BS/LR falls through LR" if z_lr > 2 else
                 "the factor shrinks as LR grows" if z_lr < -2 else
                 "the factor shows no significant trend with LR")
        out["verdicts"].append(
            f"{trend}: d log(tr H/tr Σ)/d log LR = {r['lr']:+.2f} ± {r['lr_se']:.2f}, "
            f"d/d log BS = {r['bs']:+.2f} ± {r['bs_se']:.2f} (z = {z_lr:+.1f} and {z_bs:+.1f}).")
        diff = abs(r["lr"]) - abs(r["bs"])
        se = math.hypot(r["lr_se"], r["bs_se"])
        out["verdicts"].append(
            ("LR moves the factor more than BS" if diff > 2 * se else
             "BS moves the factor more than LR" if diff < -2 * se else
             "LR and BS move the factor by amounts not distinguishable here")
            + f" (|slope| difference {diff:+.2f} ± {se:.2f}).")
    return out


def stationary_claim(rows, phases=()):
    """Claim 3 from Table 1 rows (one per loss, BS, LR), and why phases fail.

    For each configuration with a completed phase: the phases that pass the
    stationarity checks (k/n), the observed excess ± SE, and each prediction with
    z = (observed − predicted)/√(SE_obs² + SE_pred²).  Returns ``rows`` and a
    ``verdict`` counting, over configurations whose phases all pass, where (12) and
    (6) agree (|z| < Z_AGREE); configurations with a failed phase are listed but not
    counted, since their observed value is not a stationary measurement.

    ``phases`` (the per-run rows of ``validation.report.tables.stationary_rows``) adds
    ``failures``: how often each check failed, and the median over failing phases of the
    loss change between the halves in units of the observed excess
    (``drift_loss_over_excess``), the number that says whether the network was still
    learning faster than the noise floor it was measured at.
    """
    out_rows, n_ok, agree = [], 0, {"wang": 0, "jastrzebski": 0}
    n_phases = sum(int(r.get("n_phases") or 0) for r in rows)
    n_pass = sum(int(r.get("n_stationary") or 0) for r in rows)
    for r in rows:
        if not r.get("n_phases"):
            continue
        row = {k: r[k] for k in ("loss", "batch_size", "lr", "n_phases", "n_stationary",
                                 "observed_excess", "observed_excess_se")}
        settled = r["n_stationary"] == r["n_phases"]
        row["settled"] = settled
        for name in ("wang", "jastrzebski"):
            pred, se = r[f"predicted_{name}"], r[f"predicted_{name}_se"]
            den = math.hypot(r["observed_excess_se"], se if math.isfinite(se) else 0.0)
            z = (r["observed_excess"] - pred) / den if den > 0 else math.nan
            row[name], row[f"{name}_z"] = pred, z
            if settled and math.isfinite(z) and abs(z) < Z_AGREE:
                agree[name] += 1
        n_ok += settled
        out_rows.append(row)
    verdict = (f"{n_pass} of {n_phases} phases pass the stationarity checks; over the "
               f"{n_ok} configurations whose phases all pass, (12) agrees within "
               f"{Z_AGREE:g} SE in {agree['wang']} and (6) in {agree['jastrzebski']}.")
    failures = _failures(phases)
    if failures["n_failed"]:
        verdict += " " + failures["verdict"]
    return {"rows": out_rows, "n_phases": n_phases, "n_pass": n_pass,
            "n_settled_configs": n_ok, "agree": agree, "failures": failures,
            "verdict": verdict}


def _failures(phases):
    failed = [p for p in phases if p.get("stationary") == "no"]
    counts = {}
    for p in failed:
        for reason in filter(None, (p.get("failed") or "").split("; ")):
            key = "n_eff" if reason.startswith("n_eff") else f"{reason.split(' ')[0]} drift"
            counts[key] = counts.get(key, 0) + 1
    ratios = [p["drift_loss_over_excess"] for p in failed
              if math.isfinite(p.get("drift_loss_over_excess", math.nan))]
    med = float(np.median(ratios)) if ratios else math.nan
    text = ""
    if failed:
        text = ("Failed checks: " + ", ".join(f"{k} in {v}" for k, v in sorted(counts.items()))
                + f" of {len(failed)} failing phases")
        if ratios:
            text += (f"; between the halves of a failing phase the loss changed by a median "
                     f"{med:+.2g}× the observed excess (n = {len(ratios)})")
        text += "."
    return {"n_failed": len(failed), "checks": counts, "median_drift_over_excess": med,
            "n_ratios": len(ratios), "verdict": text}


def claims_markdown(curves, traces, stationary):
    """The "paper's claims" section of ``report.md``: per-loss curve and trace verdicts,
    and the stationary table."""
    md = ["## The paper's three claims, measured\n"]
    md.append("**1. Learning curves (Figures 2-3).**")
    for loss, c in curves.items():
        md.append(f"- `{loss}`: {c['verdict']}")
    if not curves:
        md.append("- fewer than two configurations per loss: no curve distance.")
    md.append("\n**2. tr Σ against tr H (Table 1).**")
    for loss, t in traces.items():
        for v in t["verdicts"]:
            md.append(f"- `{loss}`: {v}")
    md.append("\n**3. The stationary excess loss against (12) and (6).** "
              + stationary["verdict"] + "\n")
    if stationary["rows"]:
        md.append("| loss | BS | LR | stationary | observed ± SE | (12) [z] | (6) [z] |")
        md.append("|---|---|---|---|---|---|---|")
        for r in stationary["rows"]:
            md.append(f"| {r['loss']} | {r['batch_size']} | {_fmt(r['lr'])} | "
                      f"{r['n_stationary']}/{r['n_phases']} | {_fmt(r['observed_excess'])} ± "
                      f"{_fmt(r['observed_excess_se'], 2)} | {_fmt(r['wang'])} "
                      f"[{r['wang_z']:+.1f}] | {_fmt(r['jastrzebski'])} "
                      f"[{r['jastrzebski_z']:+.1f}] |")
    return "\n".join(md) + "\n"
