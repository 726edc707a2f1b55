"""Where the observed excess loss comes from, term by term, for one ``smallnet`` setting.

    obs = (12) + [discrete − (12)] + [linear − discrete] + [obs − linear]

- (12) Wang, (η c_S/4) tr Σ: the noise's size (tr Σ) in the continuous-time limit;
- discrete − (12): discrete time, the exact additive-noise law at this η;
- linear − discrete: state-dependent noise to all orders (linearised SGD, same batches);
- obs − linear: the loss's nonlinearity (what real SGD does beyond its quadratic model).

The first two are exact numbers (no SE of their own; their *share* of obs carries obs's
SE).  The last two come from chains that drew the same minibatches, so their SEs and
shares use the per-chain pairs.  Where linearised SGD has no stationary law (its chains
diverged, or ρ(T) > 1 with growth visible within the run), the last two terms are
undefined; only their sum, obs − discrete, is reported.  All functions are of the saved
row only.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["TERMS", "TERM_LABELS", "SHARE_TARGET", "accounting", "accounting_lines"]

TERMS = ("wang", "discrete_time", "state_dependent", "nonlinearity")
TERM_LABELS = {"wang": "tr Σ (12)", "discrete_time": "discrete time",
               "state_dependent": "state-dependent noise", "nonlinearity": "nonlinearity"}
# "Explains the excess" means within 5% of obs (the criterion).
SHARE_TARGET = 0.05


def _paired_share_se(coef_obs, coef_lin, o, l_):
    """SE of a smooth f(ō, l̄) by the delta method over per-chain pairs: sd(∂f/∂ō o_c + ∂f/∂l̄ l_c)/√n."""
    g = coef_lin * l_ + coef_obs * o
    return float(np.std(g, ddof=1) / math.sqrt(g.size)) if g.size > 1 else math.nan


def accounting(row: dict) -> dict:
    """The four terms of a row, each with SE and share of obs ± SE; and factors needed for 5%.

    Returns
    -------
    dict
        ``terms`` {name: {``value``, ``se``, ``share``, ``share_se``} or None if undefined},
        ``combined_beyond_discrete`` (obs − discrete ± SE, when the last two are undefined),
        ``sum`` (of the defined terms; equals obs to round-off when all four are),
        ``factors_needed`` (1–4: terms in order until the running sum is within 5% of
        obs), ``partial_rel_error`` (running sum / obs − 1 after each term), ``undefined_reason``.
    """
    obs, obs_se = float(row["observed"]), float(row["observed_se"])
    preds = row["predictions"]
    w, d = float(preds["wang"]["value"]), float(preds["discrete"]["value"])
    lin = row.get("linear") or {}
    exists = bool(lin.get("exists", False)) and bool(lin.get("settled", True))
    out = {"observed": obs, "observed_se": obs_se, "terms": {}, "undefined_reason": None}
    if not (math.isfinite(obs) and obs > 0 and math.isfinite(obs_se)):
        out.update(factors_needed=None, partial_rel_error=[], sum=math.nan,
                   undefined_reason="no measurement (the real chains diverged)")
        out["terms"] = {k: None for k in TERMS}
        return out

    def exact_term(value):
        share = value / obs
        return {"value": value, "se": 0.0, "share": share, "share_se": abs(share) * obs_se / obs}

    out["terms"]["wang"] = exact_term(w)
    out["terms"]["discrete_time"] = exact_term(d - w)
    partial = [w, d]
    if exists:
        pc = lin["per_chain"]
        o, l_ = np.asarray(pc["observed"], float), np.asarray(pc["linear"], float)
        lv, lse = float(lin["value"]), float(lin["se"])
        paired = lin["paired"]
        # share (l̄ − d)/ō: ∂/∂l̄ = 1/ō, ∂/∂ō = −(l̄ − d)/ō²; (ō − l̄)/ō: ∂/∂l̄ = −1/ō, ∂/∂ō = l̄/ō²
        sd_share_se = _paired_share_se(-(lv - d) / obs ** 2, 1.0 / obs, o, l_)
        nl_share_se = _paired_share_se(lv / obs ** 2, -1.0 / obs, o, l_)
        out["terms"]["state_dependent"] = {"value": lv - d, "se": lse, "share": (lv - d) / obs,
                                           "share_se": sd_share_se}
        out["terms"]["nonlinearity"] = {"value": obs - lv, "se": float(paired["se"]),
                                        "share": (obs - lv) / obs, "share_se": nl_share_se,
                                        "n_pairs": int(paired["n"])}
        partial.append(lv)
    else:
        out["terms"]["state_dependent"] = out["terms"]["nonlinearity"] = None
        out["undefined_reason"] = lin.get("note") or "linearised SGD has no stationary law here"
        beyond = obs - d
        out["combined_beyond_discrete"] = {"value": beyond, "se": obs_se, "share": beyond / obs,
                                           "share_se": abs(d / obs) * obs_se / obs}
    partial.append(obs)
    defined = [t["value"] for t in out["terms"].values() if t is not None]
    out["sum"] = float(sum(defined)) if exists else float(w + (d - w) + (obs - d))
    rel = [p / obs - 1.0 for p in partial]
    out["partial_rel_error"] = rel
    names = ["wang", "discrete_time"] + (["state_dependent"] if exists else []) + ["rest"]
    k = next(i for i, r in enumerate(rel) if abs(r) <= SHARE_TARGET or i == len(rel) - 1)
    # the last partial is obs itself; without a linear law it counts as the 4th factor
    out["factors_needed"] = 4 if (not exists and k == len(rel) - 1) else k + 1
    out["factors_needed_names"] = names[:k + 1]
    return out


def accounting_lines(rows) -> list:
    """Markdown table of the accounting: value ± SE (share ± SE) per term, and factors needed."""
    head = ("| η·h_max | S | observed ± SE | tr Σ (12) | + discrete time | + state-dependent noise "
            "| + nonlinearity | factors for 5% |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        a = r.get("accounting")
        if a is None:
            continue

        def cell(t):
            if t is None:
                return "undefined"
            return (f"{t['value']:+.4g} ± {t['se']:.2g} ({t['share']:+.1%} ± "
                    f"{t['share_se']:.1%})")
        terms = a["terms"]
        if terms.get("state_dependent") is None and "combined_beyond_discrete" in a:
            c = a["combined_beyond_discrete"]
            sd = nl = f"undefined (together {cell(c)})"
        else:
            sd, nl = cell(terms.get("state_dependent")), cell(terms.get("nonlinearity"))
        k = a.get("factors_needed")
        mark = "" if r.get("settled", True) else " (not settled)"
        lines.append(f"| {r['eta_h_max']:g} | {r['batch_size']} | "
                     f"{r['observed']:.4g} ± {r['observed_se']:.2g}{mark} | "
                     f"{cell(terms.get('wang'))} | {cell(terms.get('discrete_time'))} | {sd} | {nl} | "
                     f"{k if k is not None else '—'} |")
    return lines
