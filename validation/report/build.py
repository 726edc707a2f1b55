"""``report.md`` and every file beside it, from saved run folders only.

:func:`build_report` reads every run folder under ``runs_dir`` (``run.json``,
``history.json``, ``estimates.json``, ``stationary.json``), never a model, and
writes into ``out_dir``:

* ``table1.csv``, ``table1.md``: one row per (loss, BS, LR);
* ``fig2_kld.png``, ``fig3_logit_grad.png``: learning curves (the paper's Figures 2
  and 3), ``fig4_<loss>.png``: the trace ratio, ``curve_distance_<loss>.png``;
* ``curve_distance.csv`` and ``curve_distance.json``;
* ``stationary.csv``: the per-run stationary comparison;
* ``claims.json``: the paper's three claims as numbers and one-line verdicts
  (:mod:`validation.report.claims`), also the first section of ``report.md``;
* ``report.md`` linking all of it, with conventions and provenance.

Nothing is skipped silently: :func:`scan_runs` names every sub-folder it could
not use and why, and every unreadable or outdated file of a usable run; the
report lists them and :func:`build_report` passes each line to ``log`` (the
CLI prints them on stderr).  With no usable run at all it raises before
writing anything (``FileNotFoundError``/``NotADirectoryError`` for a missing
folder or a file, ``ValueError`` for an empty folder or one of garbage), which
the CLI turns into one line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

from ._format import _dig, _fmt, _num
from .claims import claims_markdown, curves_claim, stationary_claim, traces_claim
from .figures import make_figures
from .runs import _require_runs, scan_runs
from .tables import (STATIONARY_COLUMNS, TABLE1_COLUMNS, stationary_rows, table1_markdown,
                     table1_rows, trace_points)

__all__ = [
    "build_report",
]

# -------------------------------------------------------------------- report

def _provenance_rows(runs):
    rows = []
    for r in runs:
        run = r["run"]
        prov = run.get("provenance") if isinstance(run.get("provenance"), dict) else run
        wall = None
        for k in ("wall_time_s", "wall_time", "train_seconds", "seconds"):
            if run.get(k) is not None:
                wall = run[k]
                break
        h = r["history"]
        rows.append({
            "run": r["name"], "status": r["status"],
            "epochs": None if h is None else len(h["val_acc"]),
            "backend": prov.get("backend"), "device": prov.get("device"),
            "commit": (prov.get("git_commit") or "")[:10] + ("+dirty" if prov.get("git_dirty")
                                                             else ""),
            "train_s": _num(wall),
            "estimate_s": _num(_dig(r["estimates"] or {}, ("timings", "total_s"))),
            "stationary_s": _num((r["stationary"] or {}).get("wall_time_s")),
        })
    return rows


def _betas(values):
    vals = sorted({round(float(v), 12) for v in values})
    return ", ".join(f"{v:g}" for v in vals) if vals else "none"


def _momentum_sentence(runs):
    """One sentence stating the training β and the stationary phases' β_s."""
    train = _betas((r.get("config") or {}).get("momentum") or 0.0 for r in runs)
    st = [r["stationary"] for r in runs if isinstance(r.get("stationary"), dict)]
    phase = _betas(_dig(s, ("phase", "momentum")) or 0.0 for s in st)
    return (f"Training momentum β = {train}; stationary phases at momentum β_s = {phase} "
            f"(heavy ball; 0 is plain SGD).")


def _versions(runs):
    for r in runs:
        v = r["run"].get("versions") or _dig(r["run"], ("provenance", "versions"))
        if v:
            return v
    return {}


def _md_table(rows, cols):
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) if not isinstance(row.get(c), str)
                                       else row[c] for c in cols) + " |")
    return "\n".join(lines) + "\n"


_CONVENTIONS = """\
## Conventions

- **Batch norm in inference mode** (running statistics) for every curvature, noise and
  stationary-phase quantity; per-example gradients are not defined in training mode.
- **tr Σ**: per-example gradient covariance of the data loss, **centred** and **dividing by N**,
  tr Σ = (1/N) Σ‖g_i‖² − ‖ḡ‖², exact over the evaluated examples (`estimates.json`).
- **tr H**: Hutchinson estimate (Rademacher probes, one fresh probe per batch) of the Hessian
  of the **data loss**; the **L2 term** λ‖w‖² adds 2λ·(number of regularised weights) to tr H
  and nothing to Σ.  Table 1's tr H and tr Σ/tr H exclude it; prediction (6) includes it,
  because it predicts the excess of the objective SGD minimises.
- **Table 1 traces** are at the final weights (mean ± sample sd over seeds, n seeds);
  the **predictions** use the traces re-measured at the stationary average θ̄ on the same
  evaluation subset as the observed loss.
- **Stationary phase** (`stationary.json`): from the final weights, heavy-ball SGD
  v' = β_s v − η_s ĝ, θ' = θ + v' (no augmentation; β_s = the run's training momentum β
  unless `--stationary-momentum` overrides it, v = 0 at the start of the burn-in) at
  η_s = the schedule's final LR and the run's batch size S, minibatches drawn i.i.d. **with
  replacement** from the training set (c_S = 1/S), BN frozen.  After a burn-in, K steps
  are recorded in B blocks: at every step ‖v_k‖², the squared length of the step taken,
  and ‖ĝ_k‖², the squared norm of the minibatch gradient SGD stepped with (data loss +
  L2), and every few steps the objective on a fixed evaluation subset of the training set.
- **Observed excess loss = ((1+β_s)/(4η_s))·mean_k ‖v_k‖²**, which is (η_s/4)·mean_k ‖ĝ_k‖²
  for plain SGD (β_s = 0, v = −η_sĝ) (θ*-free; SE by batch means over the B blocks, n = K
  steps).  Why it needs no θ*: with x = θ − a for any fixed a, stationarity of E‖x‖²,
  E[x·v] and the update v' = βv − ηĝ gives E[(θ − a)·∇L(θ)] = ((1+β)/(2η))·E‖v‖² exactly,
  for any loss (it only uses E[ĝ | θ] = ∇L(θ)); for a quadratic L with minimiser θ*,
  (θ − θ*)·∇L = 2(L − L*), hence E[L − L*] = ((1+β)/(4η))·E‖v‖², in discrete time and
  with state-dependent noise (Yaida 2018; theory.md, "Momentum").  ‖v_k‖² and ‖ĝ_k‖² are
  by-products of the step: no extra forward or backward pass, no loss evaluation.  On a
  linear model it recovers the exact finite-sum law (`theory.least_squares_stationary`,
  β = 0 and β = 0.9) within 4 SE on JAX and TensorFlow.
  **Assumptions**: L is quadratic over the range SGD explores around where it settles
  (the fluctuation scale); BN statistics frozen, so L is a fixed function of θ (a different
  function from the one training minimised, hence the burn-in); the phase is stationary
  (checks below).  It measures the excess of the objective SGD minimises (data + L2) over
  the whole training set.
- **Polyak ± SE** (second column, the earlier method): mean_k L(θ_k) − L(θ̄) +
  (mean_b L(θ̄_b) − L(θ̄))/(B − 1) on the evaluation subset, θ̄ the average of the iterates
  standing in for θ*; the last term corrects for L(θ̄) > L(E θ).  θ̄ follows every direction
  that relaxes more slowly than a block, so on a network that share of the excess loss goes
  unseen and this column reads low.
- **stationary k/n**: k of the n completed phases pass the checks: neither the recorded
  loss nor ‖ĝ_k‖² (nor, with momentum, ‖v_k‖²) drifts between the two halves of the phase
  (|z| < 4, the difference of the halves' block means over its SE: `drift_loss_z`,
  `drift_grad_sqnorm_z`, `drift_step_sqnorm_z`), and the series the estimate averages
  holds n_eff = K/τ >= max(20, B) effectively independent steps (τ its integrated
  autocorrelation time, Sokal's automatic window; n_eff >= B means each batch-means block
  spans at least one τ).  These checks can pass on a real network: they ask that the
  measured quantities stopped moving, not that every flat direction equilibrated.  Table 1
  averages all n phases; `stationary.csv` says which failed and why.
- **Identity ratio** (diagnostic, never a gate): E[(θ − θ̄)·ĝ] / (((1+β_s)/(2η_s))·E‖v‖²),
  1 at stationarity for any loss.  For plain SGD, summing the updates gives exactly
  1 + (‖θ_0 − θ̄‖² − ‖θ_K − θ̄‖²)/(η_s² Σ_k ‖ĝ_k‖²): it departs from 1 when the spread
  around θ̄ still changes, as along flat directions that carry almost no loss (on a small
  network with the exact θ*, it read 0.996–0.999 with z down to −10), which leaves the
  excess loss unaffected.
- **Predictions**: (12) (η_s c_S/(4(1−β_s)))·tr Σ and (6) (η_s c_S/(4(1−β_s)))·(tr H + L2
  trace): the continuous-time formulas at the effective rate η_s/(1−β_s) (the paper's at
  β_s = 0), traces at θ̄ on the evaluation subset; (12)/obs and (6)/obs divide by the
  θ*-free observed value, with first-order propagated SE.  η_s λ_max/(2(1+β_s)) is the
  relative size of the discrete-time correction in the stiffest direction (the observed
  value includes it); where η_s λ_max >= 2(1+β_s) that direction has no stationary law,
  no correction is given and `stationary.csv` marks `below_stability_edge` NO.
- **Colours** (Figures 2-3): BS/LR relative to the reference ratio r₀ (the ratio shared by
  most configurations; ties go to the one nearest the median): **equal** (blue) within 1 %,
  **near** (green) within a factor 2, **far** (red) beyond.  Curves: mean over seeds, band ± sd.
- **Curve distance**: mean over epochs of |Δ validation accuracy| between individual runs,
  averaged over seed pairs; the noise floor is the same statistic between seeds of one
  configuration.  Spearman ρ against |Δ log(BS/LR)| with scipy's p-value (assumes independent
  pairs, which they are not) and a one-sided permutation p-value (configuration labels permuted).
"""


def _skipped_section(scan):
    """``report.md``'s list of skipped folders and unusable files (empty when there are none)."""
    if not scan.skipped and not scan.notes:
        return ""
    lines = ["## Skipped\n"]
    if scan.skipped:
        lines.append(f"{len(scan.skipped)} folder(s) under `{scan.root}` are not usable runs "
                     f"and were left out:\n")
        lines += [f"- `{name}`: {why}" for name, why in scan.skipped]
        lines.append("")
    if scan.notes:
        lines.append("Files of usable runs that could not be used:\n")
        lines += [f"- `{name}`: {what}" for name, what in scan.notes]
        lines.append("")
    return "\n".join(lines) + "\n"


def build_report(runs_dir, out_dir, *, log=None):
    """Build Table 1, the figures, the curve distance and ``report.md`` from saved results.

    Parameters
    ----------
    runs_dir : path
        A grid output folder (one sub-folder per run).
    out_dir : path
        Where the report goes (created).
    log : callable, optional
        Receives one line per skipped folder and per unreadable or outdated file
        (:meth:`RunScan.lines`); the same lines are listed in ``report.md``.

    Returns
    -------
    pathlib.Path
        The path of ``report.md``.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If ``runs_dir`` is missing or a file.
    ValueError
        If it holds no usable run folder (the message names the path and lists what
        was skipped).  Nothing is written in either case.
    """
    from .._io import atomic_write_json, atomic_write_text, save_figure
    from dnn._runio import atomic_write_csv

    scan = _require_runs(scan_runs(runs_dir))
    runs = scan.runs
    for line in scan.lines():
        if log is not None:
            log(line)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = table1_rows(runs)
    atomic_write_csv(out / "table1.csv", rows, TABLE1_COLUMNS)
    t1 = table1_markdown(rows)
    atomic_write_text(out / "table1.md", t1)
    srows = stationary_rows(runs)
    atomic_write_csv(out / "stationary.csv", srows, STATIONARY_COLUMNS)

    import matplotlib.pyplot as plt

    figs = make_figures(runs, rows)
    distances, dist_rows = {}, []
    for name, (fig, meta) in figs.items():
        save_figure(fig, out / name)
        plt.close(fig)
        if meta["kind"] == "curve_distance":
            d = meta["distance"]
            distances[meta["loss"]] = d
            dist_rows += [{"loss": meta["loss"], **p} for p in d["pairs"]]
    atomic_write_json(out / "curve_distance.json", distances)
    atomic_write_csv(out / "curve_distance.csv", dist_rows,
                     ("loss", "a", "b", "dlog_ratio", "distance"))

    n_phases = sum(r["n_phases"] for r in rows)
    n_ok = sum(r["n_stationary"] for r in rows)
    losses = sorted({r["loss"] for r in runs})
    claims = {"curves": {loss: curves_claim(d) for loss, d in distances.items()},
              "traces": {loss: traces_claim(trace_points(runs, loss)) for loss in losses},
              "stationary": stationary_claim(rows, srows)}
    atomic_write_json(out / "claims.json", claims)
    md = ["# sgd-minima validation report\n",
          f"Built from `{Path(runs_dir)}` ({len(runs)} runs: "
          f"{sum(r['status'] == 'completed' for r in runs)} completed, "
          f"{sum(r['status'] == 'diverged' for r in runs)} diverged, "
          f"{sum(r['status'] not in ('completed', 'diverged') for r in runs)} other) "
          f"by `validation.report.build_report`, from saved results only.  "
          f"{_momentum_sentence(runs)}  "
          f"**{n_ok} of {n_phases} completed stationary phases pass the stationarity "
          f"checks.**\n",
          _skipped_section(scan),
          claims_markdown(claims["curves"], claims["traces"], claims["stationary"]),
          "## Table 1\n",
          "Files: [table1.csv](table1.csv), [table1.md](table1.md).  tr Σ, tr H, their ratio and "
          "the validation accuracy are mean ± sd over seeds (n).  β is the training momentum, "
          "β_s that of the stationary phase.  The observed excess loss is the θ*-free "
          "((1+β_s)/(4η_s))·E‖v‖², (η_s/4)·E‖ĝ‖² at β_s = 0 (see Conventions), the Polyak "
          "column the earlier method; "
          "both, the predictions and the identity ratio are mean ± SE over the seeds with a "
          "completed stationary phase (n in the observed column); *stationary* k/n counts "
          "those that pass the checks below.  Ratios prediction/observed with propagated "
          "SE.\n",
          t1,
          "## Stationary comparison per run\n",
          "File: [stationary.csv](stationary.csv).  `stationary` is *yes* when neither the "
          "recorded loss nor ‖ĝ‖² drifts between the halves of the phase (|`drift_loss_z`|, "
          "|`drift_grad_sqnorm_z`| < 4) and ‖ĝ‖² holds `n_eff` = K/τ >= max(20, B) "
          "effectively independent steps; `failed` says which check failed.  The identity "
          "ratio is a diagnostic (1 at stationarity for any loss), not a check.  "
          "`drift_loss` is the loss change between the halves and `drift_loss_over_excess` "
          "that change over the observed excess: far below -1, the network was still "
          "learning by more than the noise floor it was measured at.\n",
          _md_table(srows, ("run", "status", "stationary_lr", "stationary_batch_size",
                            "stationary_momentum", "steps",
                            "n_eff", "drift_loss_z", "drift_loss_over_excess",
                            "drift_grad_sqnorm_z",
                            "drift_step_sqnorm_z", "stationary", "failed",
                            "observed_excess", "observed_excess_se", "polyak_excess",
                            "identity_ratio", "identity_ratio_se", "predicted_wang",
                            "predicted_jastrzebski", "wang_over_observed",
                            "jastrzebski_over_observed")) if srows
          else "No stationary records.\n",
          "## Figures\n"]
    for name, (_, meta) in figs.items():
        if meta["kind"] == "learning_curves":
            cap = (f"Training and validation accuracy, loss `{meta['loss']}` "
                   f"({meta['n_configs']} configurations, reference BS/LR "
                   f"{meta['reference_ratio']:.0f}).")
        elif meta["kind"] == "trace_ratio":
            cap = f"tr Σ / tr H against LR and BS/LR, loss `{meta['loss']}`."
        else:
            d = meta["distance"]
            nf = d["noise_floor"]
            cap = (f"Curve distance, loss `{meta['loss']}`: {d['n_pairs']} pairs, Spearman ρ = "
                   f"{_fmt(d['spearman_rho'])} (p = {_fmt(d['spearman_p'])}, permutation p = "
                   f"{_fmt(d['mantel_p'])} over {d['n_permutations']} permutations); noise "
                   f"floor " + (f"{_fmt(nf['min'])}–{_fmt(nf['max'])}" if nf else "n/a") + ".")
        md.append(f"### {name}\n\n{cap}\n\n![{name}]({name})\n")
    md.append("Curve-distance data: [curve_distance.csv](curve_distance.csv), "
              "[curve_distance.json](curve_distance.json).\n")
    md.append(_CONVENTIONS)
    md.append("## Provenance\n")
    v = _versions(runs)
    if v:
        md.append("Versions (first run): " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".\n")
    md.append(_md_table(_provenance_rows(runs), ("run", "status", "epochs", "backend", "device",
                                                 "commit", "train_s", "estimate_s",
                                                 "stationary_s")))
    path = out / "report.md"
    atomic_write_text(path, "\n".join(md))
    return path
