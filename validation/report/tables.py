"""Table 1 and the per-run stationary comparison, as rows and markdown, from loaded runs."""

from __future__ import annotations

import math

import numpy as np

from ._format import _dig, _fmt, _groups, _num, _pm

__all__ = [
    "TABLE1_COLUMNS",
    "STATIONARY_COLUMNS",
    "table1_rows",
    "table1_markdown",
    "stationary_rows",
    "trace_points",
]

#: Columns of ``table1.csv`` (means and sds are over seeds; n counts the seeds used).
#: ``observed_excess`` is the θ*-free (η_s/4)·E‖ĝ‖², ``polyak_excess`` the Polyak method;
#: ``n_phases`` completed stationary phases, ``n_stationary`` of them pass the checks.
#: ``momentum`` is the training β, ``stationary_momentum`` the phase's β_s (NaN when the
#: runs of a row disagree).
TABLE1_COLUMNS = (
    "loss", "bs_over_lr", "batch_size", "lr", "momentum", "n", "n_diverged",
    "trace_grad_cov_mean", "trace_grad_cov_sd", "trace_hessian_mean", "trace_hessian_sd",
    "ratio_mean", "ratio_sd",
    "stationary_lr", "stationary_batch_size", "stationary_momentum", "n_phases", "n_stationary",
    "predicted_wang", "predicted_wang_se", "predicted_jastrzebski", "predicted_jastrzebski_se",
    "observed_excess", "observed_excess_se", "polyak_excess", "polyak_excess_se",
    "wang_over_observed", "wang_over_observed_se", "jastrzebski_over_observed",
    "jastrzebski_over_observed_se", "identity_ratio", "identity_ratio_se",
    "discrete_correction",
    "val_acc_mean", "val_acc_sd", "val_acc_n",
)

#: Columns of ``stationary.csv`` (one row per run with a current stationary record).
STATIONARY_COLUMNS = (
    "run", "loss", "batch_size", "lr", "seed", "momentum", "status", "stationary_lr",
    "stationary_batch_size",
    "stationary_momentum", "steps", "n_eff", "tau_steps", "drift_loss", "drift_loss_z",
    "drift_loss_over_excess", "drift_grad_sqnorm_z", "drift_step_sqnorm_z", "stationary", "failed",
    "observed_excess", "observed_excess_se", "polyak_excess", "polyak_excess_se",
    "polyak_correction", "identity_ratio", "identity_ratio_se", "sqdist_start", "sqdist_end",
    "predicted_wang", "predicted_jastrzebski", "wang_over_observed", "wang_over_observed_se",
    "jastrzebski_over_observed", "jastrzebski_over_observed_se", "steps_x_lr_x_lambda_max",
    "discrete_correction", "below_stability_edge",
)



# -------------------------------------------------------------------- table 1

def _mean_sd(values):
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if a.size == 0:
        return float("nan"), float("nan"), 0
    return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else float("nan")), int(a.size)


def _traces(est):
    from dnn.stationary_summary import measure_traces

    tr_s, _, tr_h, _, _, _ = measure_traces(est)
    return _num(tr_s), _num(tr_h)


def trace_points(runs, loss):
    """Per completed run of ``loss`` with estimates: BS, LR, tr Σ and tr H (data loss)."""
    pts = []
    for r in runs:
        if r["loss"] == loss and r["status"] == "completed" and r["estimates"]:
            ts, th = _traces(r["estimates"])
            pts.append({"batch_size": r["batch_size"], "lr": r["lr"], "seed": r["seed"],
                        "trace_grad_cov": ts, "trace_hessian": th})
    return pts


def _phase_momentum(s):
    """β_s of a stationary record; a record from before momentum was plain SGD (0)."""
    return _num(_dig(s, ("phase", "momentum")) or 0.0)


def _train_momentum(run):
    return _num((run.get("config") or {}).get("momentum") or 0.0)


def _common(values):
    """The value shared by all, NaN if they differ or there are none."""
    vals = {v for v in values if v is not None and np.isfinite(v)}
    return vals.pop() if len(vals) == 1 else float("nan")


def _final_val_acc(run):
    h = run["history"]
    if h is not None and len(h["val_acc"]):
        return float(h["val_acc"][-1])
    return _num((run["run"].get("final") or {}).get("val_accuracy"))


def _phases(runs):
    """Completed stationary records (current schema) of the completed runs among ``runs``."""
    return [r["stationary"] for r in runs
            if r["status"] == "completed" and r["stationary"]
            and r["stationary"].get("status") == "completed"
            and isinstance(r["stationary"].get("observed"), dict)]


def _mean_se(records, path):
    """Mean over records of ``path + value`` and its SE sqrt(Σ SE²)/n (measurement error)."""
    vals = [_num(_dig(s, path + ("value",))) for s in records]
    ses = [_num(_dig(s, path + ("se",))) for s in records]
    if not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), math.sqrt(float(np.sum(np.square(ses)))) / len(vals)


def table1_rows(runs):
    """Table 1, one dict per (loss, BS, LR), keys :data:`TABLE1_COLUMNS`.

    * the training momentum β and the phases' β_s (each NaN if the row's runs differ);
    * tr Σ, tr H (data loss) and their ratio: mean ± sample sd over the seeds
      whose ``estimates.json`` exists (final weights; ratio per seed, then averaged);
    * over the seeds with a completed stationary phase (``n_phases``, of which
      ``n_stationary`` pass the drift and n_eff checks): the observed excess loss,
      θ*-free ((1+β_s)/(4η_s))·E‖v‖² ((η_s/4)·E‖ĝ‖² at β_s = 0), the Polyak value, the predictions (12) and (6) and the
      identity ratio, each as the mean with SE = sqrt(Σ SE²)/n (measurement
      uncertainty of the mean); the ratios prediction/observed are ratios of
      these means with first-order propagated SE;
    * final validation accuracy: mean ± sd over completed runs.
    """
    from dnn.stationary_summary import ratio_with_se

    rows = []
    for (loss, bs, lr), rs in _groups(runs):
        done = [r for r in rs if r["status"] == "completed"]
        est = [r["estimates"] for r in done if r["estimates"]]
        ts, th = zip(*[_traces(e) for e in est]) if est else ((), ())
        ratios = [a / b for a, b in zip(ts, th) if np.isfinite(a) and np.isfinite(b) and b != 0]
        st = _phases(done)
        row = {"loss": loss, "bs_over_lr": bs / lr, "batch_size": bs, "lr": lr,
               "momentum": _common(_train_momentum(r) for r in rs),
               "n_diverged": sum(r["status"] == "diverged" for r in rs)}
        row["trace_grad_cov_mean"], row["trace_grad_cov_sd"], row["n"] = _mean_sd(ts)
        row["trace_hessian_mean"], row["trace_hessian_sd"], _ = _mean_sd(th)
        row["ratio_mean"], row["ratio_sd"], _ = _mean_sd(ratios)
        row["n_phases"] = len(st)
        row["n_stationary"] = sum(bool(_dig(s, ("diagnostics", "stationary"))) for s in st)
        row["stationary_lr"] = _num(_dig(st[0], ("phase", "lr"))) if st else float("nan")
        row["stationary_batch_size"] = _common(_num(_dig(s, ("phase", "batch_size")))
                                               for s in st)
        row["stationary_momentum"] = _common(_phase_momentum(s) for s in st)
        pred = [s for s in st if isinstance(s.get("predicted"), dict)]
        row["predicted_wang"], row["predicted_wang_se"] = _mean_se(pred, ("predicted", "wang"))
        row["predicted_jastrzebski"], row["predicted_jastrzebski_se"] = _mean_se(
            pred, ("predicted", "jastrzebski"))
        row["observed_excess"], row["observed_excess_se"] = _mean_se(st, ("observed",))
        row["polyak_excess"], row["polyak_excess_se"] = _mean_se(st, ("polyak",))
        row["identity_ratio"], row["identity_ratio_se"] = _mean_se(st, ("identity",))
        for name in ("wang", "jastrzebski"):
            r_, s_ = ratio_with_se(row[f"predicted_{name}"], row[f"predicted_{name}_se"],
                                   row["observed_excess"], row["observed_excess_se"])
            row[f"{name}_over_observed"], row[f"{name}_over_observed_se"] = r_, s_
        dc = [_num(_dig(s, ("predicted", "discrete_correction"))) for s in pred]
        row["discrete_correction"] = float(np.nanmean(dc)) if dc and np.any(np.isfinite(dc)) \
            else float("nan")
        row["val_acc_mean"], row["val_acc_sd"], row["val_acc_n"] = _mean_sd(
            [_final_val_acc(r) for r in done])
        rows.append(row)
    return rows


def table1_markdown(rows):
    """Table 1 as a GitHub-flavoured Markdown table (± is sd over seeds, or SE where marked)."""
    head = ["loss", "BS/LR", "BS", "LR", "β", "tr Σ", "tr H", "tr Σ / tr H", "η_s", "S_s", "β_s",
            "pred. (12) ± SE", "pred. (6) ± SE", "observed (θ*-free) ± SE", "stationary",
            "Polyak ± SE", "(12)/obs", "(6)/obs", "identity ratio", "η_s λ_max/(2(1+β_s))",
            "val acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["loss"], _fmt(r["bs_over_lr"], 4), str(r["batch_size"]), _fmt(r["lr"]),
            _fmt(r["momentum"]),
            _pm(r["trace_grad_cov_mean"], r["trace_grad_cov_sd"], r["n"]),
            _pm(r["trace_hessian_mean"], r["trace_hessian_sd"], r["n"]),
            _pm(r["ratio_mean"], r["ratio_sd"], r["n"]),
            _fmt(r["stationary_lr"]), _fmt(r["stationary_batch_size"]),
            _fmt(r["stationary_momentum"]),
            _pm(r["predicted_wang"], r["predicted_wang_se"]),
            _pm(r["predicted_jastrzebski"], r["predicted_jastrzebski_se"]),
            _pm(r["observed_excess"], r["observed_excess_se"], r["n_phases"] or None),
            f"{r['n_stationary']}/{r['n_phases']}" if r["n_phases"] else "–",
            _pm(r["polyak_excess"], r["polyak_excess_se"]),
            _pm(r["wang_over_observed"], r["wang_over_observed_se"]),
            _pm(r["jastrzebski_over_observed"], r["jastrzebski_over_observed_se"]),
            _pm(r["identity_ratio"], r["identity_ratio_se"]),
            _fmt(r["discrete_correction"], 2),
            _pm(r["val_acc_mean"], r["val_acc_sd"], r["val_acc_n"] or None),
        ]
        if r["n_diverged"]:
            cells[0] += f" ({r['n_diverged']} diverged)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"



# ------------------------------------------------------------------ stationary

def stationary_rows(runs):
    """One row per run with a (current) stationary record, keys :data:`STATIONARY_COLUMNS`."""
    rows = []
    for r in runs:
        s = r["stationary"]
        if not s:
            continue
        row = {"run": r["name"], "loss": r["loss"], "batch_size": r["batch_size"],
               "lr": r["lr"], "seed": r["seed"], "momentum": _train_momentum(r),
               "status": s.get("status")}
        row["stationary_lr"] = _num(_dig(s, ("phase", "lr")))
        row["stationary_batch_size"] = _num(_dig(s, ("phase", "batch_size")))
        row["stationary_momentum"] = _phase_momentum(s)
        row["steps"] = _dig(s, ("phase", "steps"))
        row["n_eff"] = _num(_dig(s, ("observed", "n_eff")))
        row["tau_steps"] = _num(_dig(s, ("observed", "tau_steps")))
        row["drift_loss"] = _num(_dig(s, ("diagnostics", "drift_loss", "value")))
        row["drift_loss_z"] = _num(_dig(s, ("diagnostics", "drift_loss", "z")))
        row["drift_grad_sqnorm_z"] = _num(_dig(s, ("diagnostics", "drift_grad_sqnorm", "z")))
        row["drift_step_sqnorm_z"] = _num(_dig(s, ("diagnostics", "drift_step_sqnorm", "z")))
        ok = _dig(s, ("diagnostics", "stationary"))
        row["stationary"] = "–" if ok is None else ("yes" if ok else "no")
        row["failed"] = "; ".join(_dig(s, ("diagnostics", "failed")) or [])
        row["observed_excess"] = _num(_dig(s, ("observed", "value")))
        row["observed_excess_se"] = _num(_dig(s, ("observed", "se")))
        # How far the loss fell between the halves, in units of the excess being measured:
        # a net still learning by more than its noise floor cannot be measured at rest.
        row["drift_loss_over_excess"] = (row["drift_loss"] / row["observed_excess"]
                                         if row["observed_excess"] else float("nan"))
        row["polyak_excess"] = _num(_dig(s, ("polyak", "value")))
        row["polyak_excess_se"] = _num(_dig(s, ("polyak", "se")))
        row["polyak_correction"] = _num(_dig(s, ("polyak", "correction")))
        row["identity_ratio"] = _num(_dig(s, ("identity", "value")))
        row["identity_ratio_se"] = _num(_dig(s, ("identity", "se")))
        row["sqdist_start"] = _num(_dig(s, ("identity", "sqdist_start")))
        row["sqdist_end"] = _num(_dig(s, ("identity", "sqdist_end")))
        row["predicted_wang"] = _num(_dig(s, ("predicted", "wang", "value")))
        row["predicted_jastrzebski"] = _num(_dig(s, ("predicted", "jastrzebski", "value")))
        for name in ("wang", "jastrzebski"):
            row[f"{name}_over_observed"] = _num(_dig(s, ("ratios", name, "value")))
            row[f"{name}_over_observed_se"] = _num(_dig(s, ("ratios", name, "se")))
        row["steps_x_lr_x_lambda_max"] = _num(_dig(s, ("relaxation", "steps_x_lr_x_lambda_max")))
        row["discrete_correction"] = _num(_dig(s, ("predicted", "discrete_correction")))
        stable = _dig(s, ("predicted", "stability", "stable"))
        row["below_stability_edge"] = "–" if stable is None else ("yes" if stable else "NO")
        rows.append(row)
    return rows
