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

__all__ = [
    "Z_MAX",
    "PREDICTIONS",
    "LABELS",
    "score",
    "row_verdict",
    "soundness",
    "summary_verdict",
    "verdict_lines",
    "markdown_table",
    "console_table",
    "figure",
    "write_outputs",
    "load_results",
]

# |z| < 4: a false alarm for a true prediction has probability 6e-5 per check.
Z_MAX = 4.0
PREDICTIONS = ("wang", "jastrzebski", "discrete", "state_dependent")
LABELS = {"wang": "Wang (12)", "jastrzebski": "Jastrzebski (6)", "discrete": "discrete",
          "state_dependent": "discrete + dE1"}


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
    agree = [k for k in PREDICTIONS if k in predictions and predictions[k]["agrees"] is True]
    rejected = [k for k in PREDICTIONS if k in predictions and predictions[k]["agrees"] is False]
    if not agree and not rejected and any(k in predictions for k in PREDICTIONS):
        return {"agree": [], "rejected": [], "text": "no measurement (every chain diverged)"}
    parts = [f"{k} {predictions[k]['rel_error']:+.0%} (z={predictions[k]['z']:+.1f})"
             for k in PREDICTIONS if k in predictions]
    text = ("agree: " + (", ".join(agree) or "none") + "; " + ", ".join(parts))
    return {"agree": agree, "rejected": rejected, "text": text}


def soundness(rows) -> tuple:
    """(sound, reasons): every row stationary (|drift z| < Z_MAX) with >= 2 surviving chains."""
    reasons = []
    for r in rows:
        tag = f"eta*h_max={r['eta_h_max']:g}, S={r['batch_size']}"
        kept = r["n_chains"] - r["n_diverged"]
        if kept < 2:
            reasons.append(f"{tag}: {r['n_diverged']} of {r['n_chains']} chains diverged, "
                           "too few left for an SE")
            continue
        z = r["drift_z"]
        if not (isinstance(z, (int, float)) and math.isfinite(z)):
            reasons.append(f"{tag}: drift z is not a number ({z!r})")
        elif abs(z) >= Z_MAX:
            reasons.append(f"{tag}: not stationary, drift z = {z:+.1f} between the window's halves")
    return (not reasons), reasons


def summary_verdict(rows) -> dict:
    """Per prediction: rows agreeing, relative errors; plus which chains diverged.

    Settings without a measurement (``agrees`` None) are left out of every count.
    """
    out = {}
    for k in PREDICTIONS:
        scored = [r["predictions"][k] for r in rows
                  if k in r["predictions"] and r["predictions"][k]["agrees"] is not None]
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
                       for r in rows if r["n_diverged"]]
    return out


def verdict_lines(results: dict) -> list:
    """Plain-language verdict, one line per prediction, from saved results only."""
    net, v = results["network"], results["verdict"]
    lines = [f"tr Sigma / tr H = {net['trace_sigma'] / net['trace_h']:.3g} "
             f"(tr Sigma = {net['trace_sigma']:.4g}, tr H = {net['trace_h']:.4g} of which "
             f"L2 {net['trace_h_l2']:.3g})"]
    for k in PREDICTIONS + ("theta_free",):
        if k not in v:
            continue
        s = v[k]
        name = LABELS.get(k, "theta*-free (eta/4)E|g|^2")
        lines.append(f"{name}: agrees within {Z_MAX:g} SE in {s['n_agree']} of {s['n_rows']} "
                     f"settings; relative error {s['rel_error_min']:+.1%} .. {s['rel_error_max']:+.1%}")
    big = [r for r in results["rows"] if r.get("delta_e1", {}).get("relative_to_discrete", 0) > 1]
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
    return lines


def _pm(x, se, digits=4):
    return f"{x:.{digits}g} ± {se:.2g}"


def markdown_table(results: dict) -> str:
    """The results table (markdown) from saved results only."""
    head = ("| η·h_max | lr | S | observed ± SE (n) | drift z | Wang (12) [z] | Jastrzębski (6) [z] "
            "| discrete [z] | discrete + ΔE₁ ± SE [z] | θ*-free (η/4)E‖ĝ‖² ± SE [z] | diverged |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in results["rows"]:
        p = r["predictions"]

        def cell(k):
            mark = {True: "", False: " ✗", None: " (no measurement)"}[p[k]["agrees"]]
            se = f" ± {p[k]['se']:.2g}" if "se" in p[k] else ""
            return f"{p[k]['value']:.4g}{se} [{p[k]['z']:+.1f}]{mark}"

        tf = r["theta_free"]
        lines.append(
            f"| {r['eta_h_max']:g} | {r['lr']:.4g} | {r['batch_size']} | "
            f"{_pm(r['observed'], r['observed_se'])} ({r['n_chains'] - r['n_diverged']}) | "
            f"{r['drift_z']:+.1f} | {cell('wang')} | {cell('jastrzebski')} | {cell('discrete')} | "
            f"{cell('state_dependent')} | {_pm(tf['value'], tf['se'])} [{tf.get('z', math.nan):+.1f}] | "
            f"{r['n_diverged']} of {r['n_chains']} |")
    net = results["network"]
    foot = (f"\n\nNetwork: {net['activation']} MLP, hidden {tuple(net['hidden'])}, P = {net['P']}, "
            f"λ = {net['l2']:g}, N = {net['n_data']}; L* = {net['loss_star']:.6g}, "
            f"‖∇L‖ = {net['grad_norm']:.2g}, train accuracy {net['train_accuracy']:.4f}; "
            f"h_min = {net['h_min']:.4g}, h_max = {net['h_max']:.4g}; tr Σ = {net['trace_sigma']:.4g}, "
            f"tr H = {net['trace_h']:.4g} (data {net['trace_h_data']:.4g} + L2 {net['trace_h_l2']:.4g}).\n\n"
            "observed = E[L(θ) − L*] over the recorded window, mean ± SE across the n chains that did "
            "not diverge; drift z compares the window's two halves; [z] = (observed − prediction)/"
            "√(SE_obs² + SE_pred²); ✗ = rejected (|z| ≥ 4); a setting whose chains all diverged has "
            "no measurement and is left out of the verdict.  θ*-free = (η/4)E‖ĝ‖² from the same "
            "chains, its [z] from the per-chain differences with the observed excess.\n")
    return head + "\n".join(lines) + foot


def console_table(results: dict) -> str:
    """A compact fixed-width table plus the verdict, for the terminal."""
    cols = ("eta*h", "S", "observed ± SE", "n", "drift", "Wang z", "Jastr z", "discr z",
            "sd z", "theta-free ± SE", "div")
    lines = ["{:>6} {:>4} {:>22} {:>4} {:>6} {:>8} {:>8} {:>8} {:>8} {:>22} {:>4}".format(*cols)]
    for r in results["rows"]:
        p, tf = r["predictions"], r["theta_free"]
        lines.append("{:>6g} {:>4d} {:>22} {:>4d} {:>+6.1f} {:>+8.1f} {:>+8.1f} {:>+8.1f} {:>+8.1f} "
                     "{:>22} {:>4d}".format(
                         r["eta_h_max"], r["batch_size"], _pm(r["observed"], r["observed_se"]),
                         r["n_chains"] - r["n_diverged"], r["drift_z"], p["wang"]["z"],
                         p["jastrzebski"]["z"], p["discrete"]["z"], p["state_dependent"]["z"],
                         _pm(tf["value"], tf["se"]), r["n_diverged"]))
    lines += verdict_lines(results)
    if results["sound"]:
        lines.append("SOUND: every setting stationary (|drift z| < 4)")
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
        sd = [r["predictions"]["state_dependent"] for r in rows]
        ax.errorbar(lr, [p["value"] for p in sd], yerr=[2 * p.get("se", 0.0) for p in sd], fmt=":s",
                    ms=4, capsize=2, label="discrete + ΔE₁ (± 2 SE of the probes)")
        ax.errorbar(lr, [r["observed"] for r in rows], yerr=[2 * r["observed_se"] for r in rows],
                    fmt="o", color="k", capsize=3, label="SGD observed ± 2 SE")
        ax.errorbar(lr * 1.04, [r["theta_free"]["value"] for r in rows],
                    yerr=[2 * r["theta_free"]["se"] for r in rows], fmt="^", mfc="none",
                    color="tab:gray", capsize=2, label="θ*-free (η/4)E‖ĝ‖²")
        ax.set(xscale="log", yscale="log", xlabel="learning rate η",
               ylabel="stationary excess loss E L − L*", title=f"S = {s}")
        ax.legend(fontsize=7)
    net = results["network"]
    fig.suptitle(f"digits MLP {net['activation']} {tuple(net['hidden'])}, P={net['P']}, "
                 f"λ={net['l2']:g}; h_max={net['h_max']:.3g}", fontsize=9)
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


def write_outputs(results: dict, out) -> list:
    """smallnet.json, smallnet.md and smallnet.png in ``out`` (each written atomically)."""
    import matplotlib.pyplot as plt

    out = Path(out)
    atomic_write_json(out / "smallnet.json", results)
    text = ("# sgd-minima smallnet\n\n" + markdown_table(results) + "\n## Verdict\n\n"
            + "\n".join(f"- {x}" for x in verdict_lines(results))
            + ("\n- measurement sound: every setting stationary (|drift z| < 4)\n" if results["sound"]
               else "\n" + "\n".join(f"- NOT SOUND: {x}" for x in results["sound_reasons"]) + "\n"))
    atomic_write_text(out / "smallnet.md", text)
    fig = figure(results)
    save_figure(fig, out / "smallnet.png")
    plt.close(fig)
    return [out / "smallnet.json", out / "smallnet.md", out / "smallnet.png"]
