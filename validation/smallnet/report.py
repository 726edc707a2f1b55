"""``smallnet``'s scores, verdict and reports, all from saved results only.

:func:`score` turns an observation and a prediction into a z-score; the verdict
functions say which predictions agree and whether the measurement is sound;
:func:`markdown_table`, :func:`console_table` and :func:`figure` redraw everything
from ``smallnet.json`` without rerunning anything.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .._io import atomic_write_json, atomic_write_text, save_figure

# A prediction that has no formula at this setting (ΔE₁ and ρ with momentum) is None in
# the JSON and this in the tables: never the β = 0 value.
NA = "n/a"

__all__ = [
    "Z_MAX",
    "PREDICTIONS",
    "LABELS",
    "score",
    "row_verdict",
    "soundness",
    "summary_verdict",
    "verdict_lines",
    "momentum_line",
    "markdown_table",
    "console_table",
    "figure",
    "stability_figure",
    "stability_lines",
    "write_outputs",
    "load_results",
]

# |z| < 4: a false alarm for a true prediction has probability 6e-5 per check.
Z_MAX = 4.0
PREDICTIONS = ("wang", "jastrzebski", "discrete", "state_dependent", "linear")
LABELS = {"wang": "Wang (12)", "jastrzebski": "Jastrzebski (6)", "discrete": "discrete",
          "state_dependent": "discrete + dE1", "linear": "linearised SGD"}


def score(observed, observed_se, value, value_se=0.0):
    """A prediction against the observation: z = (obs − pred)/√(se_obs² + se_pred²).

    ``rel_error`` = pred/obs − 1 (how far the prediction is from what SGD did).
    ``agrees`` is True or False, or None where there is no measurement to score
    against (every chain diverged, so the observation or its SE is not finite):
    such a setting neither confirms nor rejects a prediction.
    """
    se = math.sqrt(observed_se ** 2 + value_se ** 2)
    measured = math.isfinite(observed) and math.isfinite(se) and se > 0
    z = (observed - value) / se if measured else math.nan
    out = {"value": float(value), "z": float(z),
           "rel_error": float(value / observed - 1.0) if measured and observed != 0 else math.nan,
           "agrees": bool(abs(z) < Z_MAX) if measured else None}
    if value_se:
        out["se"] = float(value_se)
    return out


def row_verdict(predictions: dict) -> dict:
    """Which predictions agree within Z_MAX SE, and each one's relative error."""
    predictions = {k: p for k, p in predictions.items() if p is not None}   # n/a: left out
    agree = [k for k in PREDICTIONS if k in predictions and predictions[k]["agrees"] is True]
    rejected = [k for k in PREDICTIONS if k in predictions and predictions[k]["agrees"] is False]
    if not agree and not rejected and any(k in predictions for k in PREDICTIONS):
        return {"agree": [], "rejected": [], "text": "no measurement (every chain diverged)"}
    parts = [f"{k} {predictions[k]['rel_error']:+.0%} (z={predictions[k]['z']:+.1f})"
             for k in PREDICTIONS if k in predictions]
    text = ("agree: " + (", ".join(agree) or "none") + "; " + ", ".join(parts))
    return {"agree": agree, "rejected": rejected, "text": text}


def soundness(rows) -> tuple:
    """(sound, reasons): every row settled (or, for rows saved without the settle check,
    |drift z| < Z_MAX) with >= 2 surviving chains."""
    reasons = []
    for r in rows:
        tag = f"eta*h_max={r['eta_h_max']:g}, S={r['batch_size']}"
        kept = r["n_chains"] - r["n_diverged"]
        if kept < 2:
            reasons.append(f"{tag}: {r['n_diverged']} of {r['n_chains']} chains diverged, "
                           "too few left for an SE")
            continue
        if "settled" in r:
            if not r["settled"]:
                st = r.get("settle", {})
                reasons.append(f"{tag}: not settled after {st.get('steps', '?')} steps "
                               f"({st.get('reason', '')})")
            continue
        z = r["drift_z"]
        if not (isinstance(z, (int, float)) and math.isfinite(z)):
            reasons.append(f"{tag}: drift z is not a number ({z!r})")
        elif abs(z) >= Z_MAX:
            reasons.append(f"{tag}: not stationary, drift z = {z:+.1f} between the window's halves")
    return (not reasons), reasons


def summary_verdict(rows) -> dict:
    """Per prediction: rows agreeing, relative errors; plus which chains diverged.

    Settings without a measurement (``agrees`` None) and settings that never settled
    (``settled`` False) are left out of every count.
    """
    out = {}
    diverged_rows = rows
    rows = [r for r in rows if r.get("settled", True)]
    for k in PREDICTIONS:
        scored = [r["predictions"][k] for r in rows
                  if r["predictions"].get(k) is not None
                  and r["predictions"][k]["agrees"] is not None]
        if not scored:
            continue
        rel = [p["rel_error"] for p in scored]
        out[k] = {"n_rows": len(scored), "n_agree": sum(p["agrees"] for p in scored),
                  "rel_error_min": float(min(rel)), "rel_error_max": float(max(rel)),
                  "max_abs_z": float(max(abs(p["z"]) for p in scored))}
    tf = [r["theta_free"] for r in rows if math.isfinite(r.get("theta_free", {}).get("z", math.nan))]
    if tf:
        out["theta_free"] = {"n_rows": len(tf), "n_agree": sum(abs(t["z"]) < Z_MAX for t in tf),
                             "rel_error_min": float(min(t["rel_error"] for t in tf)),
                             "rel_error_max": float(max(t["rel_error"] for t in tf))}
    out["diverged"] = [{"eta_h_max": r["eta_h_max"], "batch_size": r["batch_size"],
                        "n_diverged": r["n_diverged"], "n_chains": r["n_chains"]}
                       for r in diverged_rows if r["n_diverged"]]
    out["unsettled"] = [{"eta_h_max": r["eta_h_max"], "batch_size": r["batch_size"]}
                        for r in diverged_rows if not r.get("settled", True)]
    return out


def verdict_lines(results: dict) -> list:
    """Plain-language verdict, one line per prediction, from saved results only."""
    net, v = results["network"], results["verdict"]
    beta = results.get("momentum", 0.0)
    lines = [f"tr Sigma / tr H = {net['trace_sigma'] / net['trace_h']:.3g} "
             f"(tr Sigma = {net['trace_sigma']:.4g}, tr H = {net['trace_h']:.4g} of which "
             f"L2 {net['trace_h_l2']:.3g})"]
    if net.get("inputs") and net.get("per_example_curvature"):
        inp, pc = net["inputs"], net["per_example_curvature"]
        sharp, flat = pc["sharpest"], pc["flattest"]
        lines.append(f"inputs {net.get('preprocess', '?')}: largest input {inp['max_abs']:.3g} "
                     f"({inp['max_sd_global']:.3g} sd of all inputs); per-example curvature "
                     f"u'H_i u along H's sharpest direction: mean {sharp['mean']:.3g}, sd "
                     f"{sharp['sd']:.3g}, max {sharp['max']:.3g} (n = {sharp['n']}); along the "
                     f"flattest: mean {flat['mean']:.2g}, sd {flat['sd']:.2g}")
    for k in PREDICTIONS + ("theta_free",):
        if k not in v:
            continue
        s = v[k]
        name = LABELS.get(k, "theta*-free ((1+beta)/(4 eta))E|v|^2" if beta
                          else "theta*-free (eta/4)E|g|^2")
        lines.append(f"{name}: agrees within {Z_MAX:g} SE in {s['n_agree']} of {s['n_rows']} "
                     f"settings; relative error {s['rel_error_min']:+.1%} .. {s['rel_error_max']:+.1%}")
    big = [r for r in results["rows"]
           if (r.get("delta_e1") or {}).get("relative_to_discrete", 0) > 1]
    if big:
        lines.append("first order breaks down where dE1 exceeds the discrete law itself ("
                     + ", ".join(f"eta*h_max={r['eta_h_max']:g} S={r['batch_size']}: "
                                 f"dE1/discrete = {r['delta_e1']['relative_to_discrete']:.2g}"
                                 for r in big) + ")")
    for r in results["rows"]:
        ir = r.get("identity_ratio", {})
        if ir.get("se") and math.isfinite(ir["se"]) and abs(ir["value"] - 1) >= Z_MAX * ir["se"]:
            # E[(θ − θ̄)·ĝ] = (η/2)E‖ĝ‖² holds at stationarity for any loss (theory.md, Yaida)
            lines.append(f"WARNING eta*h_max={r['eta_h_max']:g}, S={r['batch_size']}: identity ratio "
                         f"{ir['value']:.4f} ± {ir['se']:.2g} (z = {(ir['value'] - 1) / ir['se']:+.1f}); "
                         "the window is not stationary to this precision")
        for note in r.get("plan", {}).get("notes", []):
            lines.append(f"NOTE eta*h_max={r['eta_h_max']:g}, S={r['batch_size']}: {note}")
    for d in v["diverged"]:
        rest = ("no chain left: no measurement" if d["n_diverged"] >= d["n_chains"]
                else "mean over the others")
        lines.append(f"DIVERGED: {d['n_diverged']} of {d['n_chains']} chains at "
                     f"eta*h_max={d['eta_h_max']:g}, S={d['batch_size']} ({rest})")
    for r in results["rows"]:
        lin = r.get("linear") or {}
        if lin.get("exists") is False:
            lines.append(f"NO LINEAR THEORY at eta*h_max={r['eta_h_max']:g}, S={r['batch_size']}: "
                         f"{lin.get('note', '')}; its last two accounting terms are undefined")
    for d in v.get("unsettled", []):
        lines.append(f"NOT SETTLED: eta*h_max={d['eta_h_max']:g}, S={d['batch_size']} "
                     "(left out of the verdict)")
    settled = [r for r in results["rows"] if r.get("settled") and "settle" in r]
    if settled:
        slow = max(settled, key=lambda r: r["settle"]["steps"])
        lines.append(f"slowest to settle: eta*h_max={slow['eta_h_max']:g}, S={slow['batch_size']}, "
                     f"{slow['settle']['steps']:,} steps ({len(slow['settle']['attempts']) - 1} "
                     f"extension(s), {slow['settle']['seconds']:.0f} s)")
    for b in (results.get("stability") or {}).get("per_batch_size", []):
        le, lw, re = b["linear_edge"], b["linear_edge_within_run"], b.get("real_edge") or {}
        text = (f"S={b['batch_size']}: linear edge eta*h_max = {le['eta_h_max']:.3g} "
                f"(bracket {le['bracket'][0]:.4g}..{le['bracket'][1]:.4g}, an upper bound)")
        if lw.get("eta_h_max") is not None:
            text += f"; growth visible within {lw['steps']:,} steps from {lw['eta_h_max']:.3g}"
        if re.get("eta_h_max") is not None:
            text += (f"; real chains mostly diverge from {re['eta_h_max']:.3g} (bracket "
                     f"{re['bracket'][0]:.3g}..{re['bracket'][1]:.3g})")
        elif re:
            text += f"; real edge above {re['bracket'][0]}" + (f" ({re['note']})" if re.get("note") else "")
        lines.append(text)
    return lines


def momentum_line(results: dict) -> str:
    """What the momentum changes in the report, in one line (from saved results only)."""
    beta = results.get("momentum", 0.0)
    if not beta:
        return "momentum beta = 0 (plain SGD); lr*h_max must be < 2"
    return (f"heavy-ball momentum beta = {beta:g}: v' = beta v - lr g, theta' = theta + v'; "
            f"lr*h_max must be < 2(1+beta) = {2 * (1 + beta):g}; Wang, Jastrzebski and discrete "
            f"at momentum beta (-> effective rate lr/(1-beta) = {1 / (1 - beta):.3g} lr as lr -> 0); "
            f"theta*-free = ((1+beta)/(4 lr))E|v|^2; discrete + dE1 and rho(T) have no momentum "
            f"form: {NA}")


def _pm(x, se, digits=4):
    return f"{x:.{digits}g} ± {se:.2g}"


def _linear_cell(p, lin=None):
    """The linear prediction's cell: value ± SE [z], or why there is none."""
    if p is None:
        return "—"
    if p.get("exists") is False:
        nd = (lin or {}).get("n_diverged", p.get("n_diverged", 0))
        n = (lin or {}).get("n_chains", "?")
        return f"none ({nd} of {n} diverged)" if nd else "none (ρ > 1 within the run)"
    mark = {True: "", False: " ✗", None: " (no measurement)"}[p["agrees"]]
    if p.get("settled") is False:
        mark = " (not settled)"
    se = f" ± {p['se']:.2g}" if "se" in p else ""
    return f"{p['value']:.4g}{se} [{p['z']:+.1f}]{mark}"


def _rho_cell(r):
    rho = r.get("rho_minus_1")
    if rho is None and "rho_minus_1" in r:
        return NA
    if not rho:
        return "—"
    return f"{rho['value']:+.2g} (pilots +{rho['se']:.1g})"


def _settle_cell(r):
    if "settled" not in r:
        return "—"
    st = r.get("settle", {})
    steps = st.get("steps")
    n = len(st.get("attempts", [])) or 1
    return (("yes" if r["settled"] else "**no**")
            + (f" ({steps:,} steps{', ' + str(n - 1) + ' extension' + ('s' if n > 2 else '') if n > 1 else ''})"
               if steps else ""))


def markdown_table(results: dict) -> str:
    """The results table (markdown) from saved results only."""
    beta = results.get("momentum", 0.0)
    tf_label = "((1+β)/(4η))E‖v‖²" if beta else "(η/4)E‖ĝ‖²"
    head = (f"Momentum β = {beta:g}" + (f" (heavy ball; η·h_max < 2(1+β) = {2 * (1 + beta):g}; "
                                       f"ΔE₁ and ρ {NA} with momentum)" if beta else " (plain SGD)")
            + "\n\n| η·h_max | lr | S | observed ± SE (n) | settled | drift z | Wang (12) [z] "
            "| Jastrzębski (6) [z] | discrete [z] | discrete + ΔE₁ ± SE [z] | linearised SGD ± SE [z] "
            f"| ρ − 1 ≥ (Ritz) | θ*-free {tf_label} ± SE [z] | diverged |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in results["rows"]:
        p = r["predictions"]

        def cell(k):
            if p.get(k) is None:
                return NA
            mark = {True: "", False: " ✗", None: " (no measurement)"}[p[k]["agrees"]]
            se = f" ± {p[k]['se']:.2g}" if "se" in p[k] else ""
            return f"{p[k]['value']:.4g}{se} [{p[k]['z']:+.1f}]{mark}"

        tf = r["theta_free"]
        lines.append(
            f"| {r['eta_h_max']:g} | {r['lr']:.4g} | {r['batch_size']} | "
            f"{_pm(r['observed'], r['observed_se'])} ({r['n_chains'] - r['n_diverged']}) | "
            f"{_settle_cell(r)} | "
            f"{r['drift_z']:+.1f} | {cell('wang')} | {cell('jastrzebski')} | {cell('discrete')} | "
            f"{cell('state_dependent')} | {_linear_cell(p.get('linear'), r.get('linear'))} | "
            f"{_rho_cell(r)} | {_pm(tf['value'], tf['se'])} [{tf.get('z', math.nan):+.1f}] | "
            f"{r['n_diverged']} of {r['n_chains']} |")
    net = results["network"]
    pre = net.get("preprocess")
    inputs = net.get("inputs")
    foot = (f"\n\nNetwork: {net['activation']} MLP, hidden {tuple(net['hidden'])}, P = {net['P']}, "
            f"λ = {net['l2']:g}, N = {net['n_data']}"
            + (f", inputs `{pre}`" if pre else "")
            + (f" (largest input {inputs['max_abs']:.3g}, {inputs['max_sd_global']:.3g} sd of all "
               f"inputs)" if inputs else "")
            + f"; L* = {net['loss_star']:.6g}, "
            f"‖∇L‖ = {net['grad_norm']:.2g}, train accuracy {net['train_accuracy']:.4f}; "
            f"h_min = {net['h_min']:.4g}, h_max = {net['h_max']:.4g}; tr Σ = {net['trace_sigma']:.4g}, "
            f"tr H = {net['trace_h']:.4g} (data {net['trace_h_data']:.4g} + L2 {net['trace_h_l2']:.4g}).\n\n"
            "observed = E[L(θ) − L*] over the recorded window, mean ± SE across the n chains that did "
            "not diverge; settled = drift |z| < 3 and the identity ratio within 4 SE of 1, after "
            "the extensions shown; drift z compares the window's two halves; [z] = (observed − "
            "prediction)/√(SE_obs² + SE_pred²), for linearised SGD from the per-chain differences "
            "(same minibatches); ✗ = rejected (|z| ≥ 4); a setting whose chains all diverged has "
            "no measurement and is left out of the verdict, as is one that did not settle.  ρ − 1: "
            "spectral radius of linearised SGD's second-moment map minus 1, per step (Rayleigh–Ritz "
            "on a subspace: a lower bound; \"pilots\" is what the last refinement of the subspace "
            f"added, its stated uncertainty).  θ*-free = {tf_label} from the same "
            "chains, its [z] from the per-chain differences with the observed excess.\n")
    return head + "\n".join(lines) + foot


def stability_lines(results: dict) -> list:
    """Markdown table of the edges per S, from saved results only."""
    st = results.get("stability")
    if not st:
        return []
    out = ["| S | c_S | linear edge η·h_max [bracket] | ρ − 1 > 1/steps from η·h_max | real edge η·h_max "
           "[bracket] | subspace r |", "|---|---|---|---|---|---|"]
    for b in st["per_batch_size"]:
        le, lw, re = b["linear_edge"], b["linear_edge_within_run"], b.get("real_edge", {})

        def fmt(x):
            return "—" if x is None else f"{x:.3g}"
        real = (f"{fmt(re.get('eta_h_max'))} [{fmt(re['bracket'][0])}, {fmt(re['bracket'][1])}]"
                + ("" if re.get("searched", True) else " (rows only)")) if re else "—"
        out.append(f"| {b['batch_size']} | {b['noise_factor']:.3g} | {le['eta_h_max']:.3g} "
                   f"[{le['bracket'][0]:.4g}, {le['bracket'][1]:.4g}] | "
                   f"{fmt(lw.get('eta_h_max'))} (steps {lw.get('steps', 0):,}) | {real} | "
                   f"{b['subspace_dim']} |")
    return out


def console_table(results: dict) -> str:
    """A compact fixed-width table plus the verdict, for the terminal."""
    cols = ("eta*h", "S", "observed ± SE", "n", "settl", "drift", "Wang z", "discr z", "sd z",
            "lin z", "rho-1", "theta-free ± SE", "div")
    fmt = "{:>6} {:>4} {:>22} {:>4} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9} {:>22} {:>4}"
    lines = [momentum_line(results), fmt.format(*cols)]
    for r in results["rows"]:
        p, tf = r["predictions"], r["theta_free"]
        lin = p.get("linear")
        lin_z = ("—" if lin is None else "none" if lin.get("exists") is False
                 else f"{lin['z']:+.1f}")
        rho = r.get("rho_minus_1")
        lines.append(fmt.format(
            f"{r['eta_h_max']:g}", r["batch_size"], _pm(r["observed"], r["observed_se"]),
            r["n_chains"] - r["n_diverged"],
            "—" if "settled" not in r else ("yes" if r["settled"] else "NO"),
            f"{r['drift_z']:+.1f}", f"{p['wang']['z']:+.1f}", f"{p['discrete']['z']:+.1f}",
            NA if p.get("state_dependent") is None else f"{p['state_dependent']['z']:+.1f}", lin_z,
            _rho_cell(r).split(" (")[0], _pm(tf["value"], tf["se"]), r["n_diverged"]))
    if any("accounting" in r for r in results["rows"]):
        from .accounting import accounting_lines

        lines += ["", "Accounting: obs = (12) + [discrete - (12)] + [linear - discrete] + "
                  "[obs - linear], value ± SE (share of obs ± SE)"]
        lines += accounting_lines(results["rows"])
    if results.get("stability"):
        lines += ["", "Mean-square stability of linearised SGD, and the real edge:"]
        lines += stability_lines(results)
    lines += verdict_lines(results)
    if results["sound"]:
        lines.append("SOUND: every setting settled (drift |z| < 3, identity ratio within 4 SE)")
    else:
        lines += ["NOT SOUND: " + x for x in results["sound_reasons"]]
    return "\n".join(lines)


def figure(results: dict):
    """Excess loss vs η, one panel per S: observed ± 2 SE and the four predictions as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["batch_size"] for r in results["rows"]})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 4.2), squeeze=False)
    curves = results["curves"]
    for ax, s in zip(axes[0], sizes):
        rows = sorted((r for r in results["rows"] if r["batch_size"] == s), key=lambda r: r["lr"])
        lr = np.array([r["lr"] for r in rows])
        cs = next(r["noise_factor"] for r in rows)
        grid = np.asarray(curves["lr"])
        ax.plot(grid, cs * np.asarray(curves["wang_per_c"]), label="Wang (12)")
        ax.plot(grid, cs * np.asarray(curves["jastrzebski_per_c"]), "--", label="Jastrzębski (6)")
        ax.plot(grid, cs * np.asarray(curves["discrete_per_c"]), "-.", label="discrete law")
        sd = [(r["lr"], r["predictions"].get("state_dependent")) for r in rows]
        sd = [(x, p) for x, p in sd if p is not None]          # n/a with momentum
        if sd:
            ax.errorbar([x for x, _ in sd], [p["value"] for _, p in sd],
                        yerr=[2 * p.get("se", 0.0) for _, p in sd], fmt=":s", ms=4, capsize=2,
                        label="discrete + ΔE₁ (± 2 SE of the probes)")
        ax.errorbar(lr, [r["observed"] for r in rows], yerr=[2 * r["observed_se"] for r in rows],
                    fmt="o", color="k", capsize=3, label="SGD observed ± 2 SE")
        lin = [(r["lr"], r["predictions"]["linear"]) for r in rows
               if r["predictions"].get("linear", {}).get("exists")]
        if lin:
            ax.errorbar([x * 0.96 for x, _ in lin], [p["value"] for _, p in lin],
                        yerr=[2 * p.get("se", 0.0) for _, p in lin], fmt="D", ms=4, mfc="none",
                        color="tab:purple", capsize=2, label="linearised SGD ± 2 SE")
        ax.errorbar(lr * 1.04, [r["theta_free"]["value"] for r in rows],
                    yerr=[2 * r["theta_free"]["se"] for r in rows], fmt="^", mfc="none",
                    color="tab:gray", capsize=2,
                    label="θ*-free ((1+β)/(4η))E‖v‖²" if results.get("momentum") else "θ*-free (η/4)E‖ĝ‖²")
        ax.set(xscale="log", yscale="log", xlabel="learning rate η",
               ylabel="stationary excess loss E L − L*", title=f"S = {s}")
        ax.legend(fontsize=7)
    net = results["network"]
    fig.suptitle(f"digits MLP {net['activation']} {tuple(net['hidden'])}, P={net['P']}, "
                 f"λ={net['l2']:g}; h_max={net['h_max']:.3g}; momentum β={results.get('momentum', 0.0):g}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def load_results(path) -> dict:
    """``smallnet.json`` as :func:`write_outputs` saw it, so tables and figure can be redrawn.

    The JSON stores non-finite floats as the strings ``"nan"``, ``"inf"``, ``"-inf"``
    (``atomic_write_json``); they come back as floats.

    Raises
    ------
    ValueError
        If the file is missing, is not JSON, or lacks ``network`` or ``rows``; the
        message names the path.
    """
    import json

    from dnn._runio import from_jsonable

    path = Path(path)
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read smallnet results {path}: {exc}") from None
    if not isinstance(results, dict) or not all(k in results for k in ("network", "rows")):
        raise ValueError(f"{path} is not a smallnet.json (no 'network' and 'rows')")
    return from_jsonable(results)


def stability_figure(results: dict):
    """The (S, η·h_max) plane: linear edge (and where its growth shows within a run), real edge,
    and the settings measured, marked by whether linearised SGD had a stationary law there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    st = results["stability"]
    fig, ax = plt.subplots(figsize=(8.8, 4.6))
    blocks = sorted(st["per_batch_size"], key=lambda b: b["batch_size"])
    s_vals = [b["batch_size"] for b in blocks]
    le = [b["linear_edge"] for b in blocks]
    ax.errorbar(s_vals, [e["eta_h_max"] for e in le], fmt="-s", color="tab:purple",
                yerr=[[e["eta_h_max"] - e["bracket"][0] for e in le],
                      [e["bracket"][1] - e["eta_h_max"] for e in le]],
                capsize=3, label="linear edge ρ(T) = 1 (Ritz; upper bound)")
    lw = [(b["batch_size"], b["linear_edge_within_run"]) for b in blocks
          if b["linear_edge_within_run"].get("eta_h_max") is not None]
    if lw:
        ax.plot([x for x, _ in lw], [e["eta_h_max"] for _, e in lw], ":^", color="tab:purple",
                label="ρ − 1 ≥ 1/steps (growth within a run)")
    re = [(b["batch_size"], b.get("real_edge") or {}) for b in blocks]
    found = [(x, e) for x, e in re if e.get("eta_h_max") is not None]
    if found:
        ax.errorbar([x for x, _ in found], [e["eta_h_max"] for _, e in found],
                    yerr=[[e["eta_h_max"] - (e["bracket"][0] or e["eta_h_max"]) for _, e in found],
                          [0.0 for _ in found]],
                    fmt="-o", color="tab:red", capsize=3, label="real edge (> half the chains diverge)")
    above = [(x, e["bracket"][0]) for x, e in re if e.get("eta_h_max") is None
             and e.get("bracket") and e["bracket"][0] is not None]
    if above:
        ax.plot([x for x, _ in above], [y for _, y in above], "^", color="tab:red", mfc="none",
                label="real chains survive up to here")
    ax.axhline(2.0, color="gray", lw=0.8, ls="--", label="η·h_max = 2 (full-batch GD)")
    for r in results["rows"]:
        lin = r.get("linear") or {}
        ok = lin.get("exists", True)
        ax.plot(r["batch_size"] * (1.06 if ok else 0.94), r["eta_h_max"], "o" if ok else "x",
                color="tab:green" if ok else "k", ms=6,
                mfc="none" if not r.get("settled", True) else None)
    ax.plot([], [], "o", color="tab:green", label="row: linear law exists")
    ax.plot([], [], "x", color="k", label="row: no linear law")
    ax.set(xscale="log", yscale="log", xlabel="batch size S", ylabel="η·h_max",
           title="mean-square stability of linearised SGD",
           xlim=(min(s_vals) / 1.6, max(s_vals) * 1.6))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(s_vals, [str(x) for x in s_vals])
    net = results["network"]
    fig.suptitle(f"digits MLP {net['activation']} {tuple(net['hidden'])}, inputs "
                 f"{net.get('preprocess', '?')}, h_max={net['h_max']:.3g}", fontsize=9)
    # outside the axes: the edges and rows fill the plane
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def write_outputs(results: dict, out) -> list:
    """smallnet.json, smallnet.md, smallnet.png (and stability.png) in ``out``, each written atomically."""
    import matplotlib.pyplot as plt

    from .accounting import accounting_lines

    out = Path(out)
    atomic_write_json(out / "smallnet.json", results)
    parts = ["# sgd-minima smallnet\n\n" + markdown_table(results)]
    if any("accounting" in r for r in results["rows"]):
        parts.append("## Accounting\n\nobs = (12) + [discrete − (12)] + [linear − discrete] + "
                     "[obs − linear]: tr Σ, discrete time, state-dependent noise to all orders, "
                     "nonlinearity; value ± SE (share of obs ± SE); factors for 5% = terms "
                     "needed, in this order, for the running sum to come within 5% of obs.\n\n"
                     + "\n".join(accounting_lines(results["rows"])) + "\n")
    if results.get("stability"):
        parts.append("## Stability\n\n" + "\n".join(stability_lines(results)) + "\n")
    text = ("\n".join(parts) + "\n## Verdict\n\n"
            + "\n".join(f"- {x}" for x in verdict_lines(results))
            + ("\n- measurement sound: every setting settled\n" if results["sound"]
               else "\n" + "\n".join(f"- NOT SOUND: {x}" for x in results["sound_reasons"]) + "\n"))
    atomic_write_text(out / "smallnet.md", text)
    paths = [out / "smallnet.json", out / "smallnet.md", out / "smallnet.png"]
    fig = figure(results)
    save_figure(fig, out / "smallnet.png")
    plt.close(fig)
    if results.get("stability"):
        fig = stability_figure(results)
        save_figure(fig, out / "stability.png")
        plt.close(fig)
        paths.append(out / "stability.png")
    return paths
