"""Table 1, Figures 2-4, the curve distance and ``report.md``, from saved run folders only.

:func:`build_report` reads every run folder under ``runs_dir`` (``run.json``,
``history.json``, ``estimates.json``, ``stationary.json``), never a model, and
writes into ``out_dir``:

* ``table1.csv``, ``table1.md``: one row per (loss, BS, LR);
* ``fig2_kld.png``, ``fig3_logit_grad.png``: learning curves (the paper's Figures 2
  and 3), ``fig4_<loss>.png``: the trace ratio, ``curve_distance_<loss>.png``;
* ``curve_distance.csv`` and ``curve_distance.json``;
* ``stationary.csv``: the per-run stationary comparison;
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

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import figures as F

__all__ = [
    "TABLE1_COLUMNS",
    "STATIONARY_COLUMNS",
    "RunScan",
    "scan_runs",
    "load_runs",
    "table1_rows",
    "table1_markdown",
    "learning_curve_groups",
    "curve_distance",
    "stationary_rows",
    "make_figures",
    "learning_curve_file",
    "build_report",
]

#: Columns of ``table1.csv`` (means and sds are over seeds; n counts the seeds used).
#: ``observed_excess`` is the θ*-free (η_s/4)·E‖ĝ‖², ``polyak_excess`` the Polyak method;
#: ``n_phases`` completed stationary phases, ``n_stationary`` of them pass the checks.
TABLE1_COLUMNS = (
    "loss", "bs_over_lr", "batch_size", "lr", "n", "n_diverged",
    "trace_grad_cov_mean", "trace_grad_cov_sd", "trace_hessian_mean", "trace_hessian_sd",
    "ratio_mean", "ratio_sd",
    "stationary_lr", "n_phases", "n_stationary",
    "predicted_wang", "predicted_wang_se", "predicted_jastrzebski", "predicted_jastrzebski_se",
    "observed_excess", "observed_excess_se", "polyak_excess", "polyak_excess_se",
    "wang_over_observed", "wang_over_observed_se", "jastrzebski_over_observed",
    "jastrzebski_over_observed_se", "identity_ratio", "identity_ratio_se",
    "discrete_correction",
    "val_acc_mean", "val_acc_sd", "val_acc_n",
)

#: Columns of ``stationary.csv`` (one row per run with a current stationary record).
STATIONARY_COLUMNS = (
    "run", "loss", "batch_size", "lr", "seed", "status", "stationary_lr", "steps",
    "n_eff", "tau_steps", "drift_loss_z", "drift_grad_sqnorm_z", "stationary", "failed",
    "observed_excess", "observed_excess_se", "polyak_excess", "polyak_excess_se",
    "polyak_correction", "identity_ratio", "identity_ratio_se", "sqdist_start", "sqdist_end",
    "predicted_wang", "predicted_jastrzebski", "wang_over_observed", "wang_over_observed_se",
    "jastrzebski_over_observed", "jastrzebski_over_observed_se", "steps_x_lr_x_lambda_max",
    "discrete_correction",
)

_NAME = re.compile(r"^(?P<loss>[a-z_]+)_bs(?P<bs>\d+)_lr(?P<lr>[0-9.e+-]+)_seed(?P<seed>\d+)$")

# Key aliases in history records, so the report reads any history.json layout
# dnn.train has written (list of per-epoch dicts or dict of columns).


# ------------------------------------------------------------------- loading

def _read(path, notes, label):
    """A JSON file of a usable run, or None; a present but unreadable file is noted."""
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        notes.append((label, f"{path.name} unreadable ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}); the run is used without it"))
        return None


def _num(x):
    """JSON number (or "nan"/"inf" string, or None) → float."""
    if x is None:
        return float("nan")
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _history_columns(h):
    """``{"epoch", "train_acc", "val_acc", "seconds"}`` arrays from a ``history.json``, or None.

    The file is ``dnn.train``'s ``{"columns": [...], "epochs": [row, ...]}``; epochs
    are 1-based (epoch k is the state after k passes over the data).
    """
    if not isinstance(h, dict) or not isinstance(h.get("epochs"), list):
        return None
    rows = [r for r in h["epochs"] if isinstance(r, dict)]
    if not rows or any(k not in rows[0] for k in ("accuracy", "val_accuracy")):
        return None

    def col(key):
        return np.array([_num(r.get(key)) for r in rows])

    ep = col("epoch") if "epoch" in rows[0] else np.arange(1, len(rows) + 1)
    return {"epoch": ep, "train_acc": col("accuracy"), "val_acc": col("val_accuracy"),
            "seconds": col("seconds") if "seconds" in rows[0] else None}


@dataclass(frozen=True)
class RunScan:
    """What :func:`scan_runs` found under a runs folder."""

    root: Path
    runs: list                                   # usable runs (see load_runs)
    skipped: list = field(default_factory=list)  # (folder name, why) of unusable sub-folders
    notes: list = field(default_factory=list)    # (run name, what) for files of usable runs

    def lines(self):
        """One human-readable line per skipped folder and per note."""
        return ([f"skipped {self.root / name}: {why}" for name, why in self.skipped]
                + [f"note {self.root / name}: {what}" for name, what in self.notes])


#: Folders the grid itself keeps next to the runs.  They are its bookkeeping, never
#: runs, so listing them as "skipped" on every report would only bury real problems.
_GRID_FOLDERS = frozenset({".jax_cache", ".locks", "grid-logs"})


def _run_record(d, notes):
    """(record, None) for a usable run folder ``d``, else (None, why it is skipped)."""
    if d.name.startswith("."):
        return None, "hidden folder, not a run"
    path = d / "run.json"
    if not path.is_file():
        return None, "no run.json"
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
    except (OSError, ValueError) as exc:
        return None, f"run.json unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})"
    if not isinstance(run, dict):
        return None, f"run.json holds a {type(run).__name__}, not a JSON object"
    cfg = run.get("config") if isinstance(run.get("config"), dict) else {}
    m = _NAME.match(d.name)
    loss = cfg.get("loss", m and m["loss"])
    bs = cfg.get("batch_size", m and m["bs"])
    lr = cfg.get("lr", m and m["lr"])
    seed = cfg.get("seed", m and m["seed"])
    if loss is None or bs is None or lr is None:
        return None, ("run.json has no config with loss, batch_size and lr, and the folder "
                      "name is not <loss>_bs<BS>_lr<LR>_seed<seed>")
    try:
        bs, lr = int(bs), float(lr)
        seed = None if seed is None else int(seed)
    except (TypeError, ValueError):
        return None, f"batch_size {bs!r}, lr {lr!r} or seed {seed!r} is not a number"
    if not (bs >= 1 and math.isfinite(lr) and lr > 0):
        return None, f"batch_size {bs} or lr {lr} is out of range"
    stationary = _read(d / "stationary.json", notes, d.name)
    if stationary is not None:
        from .stationary import is_current

        if not isinstance(stationary, dict):
            notes.append((d.name, "stationary.json is not a JSON object; the run is used "
                                  "without it"))
            stationary = None
        elif not is_current(stationary):
            notes.append((d.name, "stationary.json is of an older schema (no theta-free "
                                  "estimate); delete it and rerun the grid to redo the "
                                  "stationary stage; the run is used without it"))
            stationary = None
    raw_history = _read(d / "history.json", notes, d.name)
    history = _history_columns(raw_history)
    if raw_history is not None and history is None:
        notes.append((d.name, "history.json has no epochs with accuracy and val_accuracy; "
                              "the run is used without its learning curve"))
    estimates = _read(d / "estimates.json", notes, d.name)
    if estimates is not None and not isinstance(estimates, dict):
        notes.append((d.name, "estimates.json is not a JSON object; the run is used without it"))
        estimates = None
    if stationary is not None and not isinstance(stationary, dict):
        stationary = None
    return {
        "name": d.name, "dir": str(d), "loss": str(loss), "batch_size": bs, "lr": lr,
        "seed": seed, "status": run.get("status"), "config": cfg, "run": run,
        "history": history, "estimates": estimates, "stationary": stationary,
    }, None


def scan_runs(runs_dir):
    """Every usable run folder under ``runs_dir``, and every folder that is not, with why.

    A sub-folder is usable when its ``run.json`` is a readable JSON object whose
    ``config`` (or, failing that, the folder name ``<loss>_bs<BS>_lr<LR>_seed<seed>``)
    gives the loss, batch size and learning rate.  Plain files (``grid.json``) are
    not folders and are ignored, and so are the grid's own folders (``.jax_cache``,
    ``.locks``, ``grid-logs``).  Unreadable optional files of a usable run
    (``history.json``, ``estimates.json``, ``stationary.json``) and stationary
    records of an older schema become notes; the run is used without them.

    Returns
    -------
    RunScan
        ``runs`` (dicts, see :func:`load_runs`), ``skipped`` and ``notes``.

    Raises
    ------
    FileNotFoundError
        If ``runs_dir`` does not exist.
    NotADirectoryError
        If it is a file.
    """
    root = Path(runs_dir)
    if not root.exists():
        raise FileNotFoundError(f"runs_dir {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"runs_dir {str(root)!r} is a file, not a folder of runs")
    runs, skipped, notes = [], [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in _GRID_FOLDERS):
        rec, why = _run_record(d, notes)
        if rec is None:
            skipped.append((d.name, why))
        else:
            runs.append(rec)
    return RunScan(root=root, runs=runs, skipped=skipped, notes=notes)


def _require_runs(scan):
    if scan.runs:
        return scan
    if not scan.skipped:
        raise ValueError(f"runs_dir {str(scan.root)!r} holds no run folders (it has no "
                         f"sub-folder)")
    shown = "; ".join(f"{name}: {why}" for name, why in scan.skipped[:5])
    more = f"; and {len(scan.skipped) - 5} more" if len(scan.skipped) > 5 else ""
    raise ValueError(f"runs_dir {str(scan.root)!r} holds no usable run folders "
                     f"({len(scan.skipped)} skipped: {shown}{more})")


def load_runs(runs_dir):
    """Every usable run folder under ``runs_dir`` as a dict of its saved results.

    Each record has ``name``, ``loss``, ``batch_size``, ``lr``, ``seed``,
    ``status``, ``config``, ``run`` (run.json), ``history`` (columns, see below,
    or None), ``estimates`` and ``stationary`` (dicts or None; ``stationary`` only
    of the current schema).  :func:`scan_runs` also says what was skipped.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If ``runs_dir`` does not exist or is a file.
    ValueError
        If it holds no usable run folder (the message lists the skipped ones).
    """
    return _require_runs(scan_runs(runs_dir)).runs


# -------------------------------------------------------------------- table 1

def _mean_sd(values):
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if a.size == 0:
        return float("nan"), float("nan"), 0
    return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else float("nan")), int(a.size)


def _traces(est):
    from dnn.stationary import measure_traces

    tr_s, _, tr_h, _, _, _ = measure_traces(est)
    return _num(tr_s), _num(tr_h)


def _final_val_acc(run):
    h = run["history"]
    if h is not None and len(h["val_acc"]):
        return float(h["val_acc"][-1])
    return _num((run["run"].get("final") or {}).get("val_accuracy"))


def _groups(runs):
    keys = sorted({(r["loss"], r["batch_size"], r["lr"]) for r in runs},
                  key=lambda k: (k[0], k[1] / k[2], k[1], k[2]))
    return [(k, [r for r in runs if (r["loss"], r["batch_size"], r["lr"]) == k]) for k in keys]


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

    * tr Σ, tr H (data loss) and their ratio: mean ± sample sd over the seeds
      whose ``estimates.json`` exists (final weights; ratio per seed, then averaged);
    * over the seeds with a completed stationary phase (``n_phases``, of which
      ``n_stationary`` pass the drift and n_eff checks): the observed excess loss,
      θ*-free (η_s/4)·E‖ĝ‖², the Polyak value, the predictions (12) and (6) and the
      identity ratio, each as the mean with SE = sqrt(Σ SE²)/n (measurement
      uncertainty of the mean); the ratios prediction/observed are ratios of
      these means with first-order propagated SE;
    * final validation accuracy: mean ± sd over completed runs.
    """
    from dnn.stationary import ratio_with_se

    rows = []
    for (loss, bs, lr), rs in _groups(runs):
        done = [r for r in rs if r["status"] == "completed"]
        est = [r["estimates"] for r in done if r["estimates"]]
        ts, th = zip(*[_traces(e) for e in est]) if est else ((), ())
        ratios = [a / b for a, b in zip(ts, th) if np.isfinite(a) and np.isfinite(b) and b != 0]
        st = _phases(done)
        row = {"loss": loss, "bs_over_lr": bs / lr, "batch_size": bs, "lr": lr,
               "n_diverged": sum(r["status"] == "diverged" for r in rs)}
        row["trace_grad_cov_mean"], row["trace_grad_cov_sd"], row["n"] = _mean_sd(ts)
        row["trace_hessian_mean"], row["trace_hessian_sd"], _ = _mean_sd(th)
        row["ratio_mean"], row["ratio_sd"], _ = _mean_sd(ratios)
        row["n_phases"] = len(st)
        row["n_stationary"] = sum(bool(_dig(s, ("diagnostics", "stationary"))) for s in st)
        row["stationary_lr"] = _num(_dig(st[0], ("phase", "lr"))) if st else float("nan")
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


def _dig(d, path):
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _fmt(x, digits=3):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}g}"


def _pm(mean, err, n=None):
    s = _fmt(mean)
    if s == "–":
        return s
    if err is not None and np.isfinite(err):
        s += f" ± {_fmt(err, 2)}"
    if n is not None:
        s += f" (n={n})"
    return s


def table1_markdown(rows):
    """Table 1 as a GitHub-flavoured Markdown table (± is sd over seeds, or SE where marked)."""
    head = ["loss", "BS/LR", "BS", "LR", "tr Σ", "tr H", "tr Σ / tr H", "η_s",
            "pred. (12) ± SE", "pred. (6) ± SE", "observed (θ*-free) ± SE", "stationary",
            "Polyak ± SE", "(12)/obs", "(6)/obs", "identity ratio", "η_s λ_max/2", "val acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["loss"], _fmt(r["bs_over_lr"], 4), str(r["batch_size"]), _fmt(r["lr"]),
            _pm(r["trace_grad_cov_mean"], r["trace_grad_cov_sd"], r["n"]),
            _pm(r["trace_hessian_mean"], r["trace_hessian_sd"], r["n"]),
            _pm(r["ratio_mean"], r["ratio_sd"], r["n"]),
            _fmt(r["stationary_lr"]),
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


# ------------------------------------------------------------ curves, distance

def learning_curve_groups(runs, loss):
    """Per configuration of ``loss``: accuracy curves of its completed seeds, stacked.

    Returns a list of dicts with ``batch_size``, ``lr``, ``epochs`` (E,),
    ``train_acc`` and ``val_acc`` (n_seeds, E), ``seeds``; curves are cut to the
    shortest history so they stack (all runs of a grid share the epoch count).
    Runs without a history or not completed are left out.
    """
    out = []
    for (l_, bs, lr), rs in _groups([r for r in runs if r["loss"] == loss]):
        rs = [r for r in rs if r["status"] == "completed" and r["history"] is not None
              and len(r["history"]["val_acc"])]
        if not rs:
            continue
        n = min(len(r["history"]["val_acc"]) for r in rs)
        out.append({
            "batch_size": bs, "lr": lr, "epochs": rs[0]["history"]["epoch"][:n],
            "train_acc": np.stack([r["history"]["train_acc"][:n] for r in rs]),
            "val_acc": np.stack([r["history"]["val_acc"][:n] for r in rs]),
            "seeds": [r["seed"] for r in rs],
        })
    return out


def _mean_abs_diff(a, b):
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


def curve_distance(groups, *, n_permutations=9999, seed=0):
    r"""Claim (1) as a number: curve distance against BS/LR distance, with a noise floor.

    For configurations a ≠ b with seed curves v_{a,i}(t) (validation accuracy),

    .. math:: D(a,b) = \operatorname{mean}_{i,j}\ \operatorname{mean}_t |v_{a,i}(t) - v_{b,j}(t)|,

    the same statistic between individual runs that the noise floor uses:
    D(a,a) = mean over seed pairs i < j of the same configuration.  The x-axis is
    |Δ log(BS/LR)| (natural log).  Association: Spearman's ρ over the pairs with
    scipy's p-value, which treats pairs as independent (they are not: each
    configuration enters several pairs), so a permutation (Mantel) p-value is
    also given: the configurations' BS/LR labels are permuted (all permutations
    when there are at most 8 configurations, else ``n_permutations`` seeded
    draws) and p = P(ρ_perm >= ρ), one-sided, since the claim predicts ρ > 0.

    Returns
    -------
    dict
        ``pairs`` (list of {a, b, dlog_ratio, distance}), ``noise_floor``
        ({per_config, min, max, mean} or None with fewer than 2 seeds),
        ``spearman_rho``, ``spearman_p``, ``mantel_p``, ``n_pairs``,
        ``n_permutations``.
    """
    from scipy.stats import spearmanr

    labels = [f"BS={g['batch_size']},LR={g['lr']:g}" for g in groups]
    logr = np.array([math.log(g["batch_size"] / g["lr"]) for g in groups])
    k = len(groups)
    dist = np.full((k, k), np.nan)
    for a, b in itertools.combinations(range(k), 2):
        va, vb = groups[a]["val_acc"], groups[b]["val_acc"]
        n = min(va.shape[1], vb.shape[1])
        dist[a, b] = dist[b, a] = float(np.mean([_mean_abs_diff(x[:n], y[:n])
                                                 for x in va for y in vb]))
    pairs = [{"a": labels[a], "b": labels[b], "dlog_ratio": float(abs(logr[a] - logr[b])),
              "distance": float(dist[a, b])} for a, b in itertools.combinations(range(k), 2)]
    floors = {}
    for g, lab in zip(groups, labels):
        v = g["val_acc"]
        if v.shape[0] >= 2:
            floors[lab] = float(np.mean([_mean_abs_diff(v[i], v[j])
                                         for i, j in itertools.combinations(range(v.shape[0]), 2)]))
    noise = None
    if floors:
        vals = list(floors.values())
        noise = {"per_config": floors, "min": min(vals), "max": max(vals),
                 "mean": float(np.mean(vals))}
    out = {"pairs": pairs, "noise_floor": noise, "n_pairs": len(pairs),
           "spearman_rho": float("nan"), "spearman_p": float("nan"), "mantel_p": float("nan"),
           "n_permutations": 0}
    iu = np.triu_indices(k, 1)
    y = dist[iu]

    def rho_for(lr_):
        x = np.abs(lr_[:, None] - lr_[None, :])[iu]
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            return float("nan")
        return float(spearmanr(x, y).statistic)

    if len(pairs) >= 3:
        res = spearmanr([p["dlog_ratio"] for p in pairs], y)
        out["spearman_rho"], out["spearman_p"] = float(res.statistic), float(res.pvalue)
        if np.isfinite(out["spearman_rho"]):
            if k <= 8:
                perms = [np.array(p) for p in itertools.permutations(range(k))]
            else:
                rng = np.random.default_rng(seed)
                perms = [np.arange(k)] + [rng.permutation(k) for _ in range(n_permutations)]
            rhos = np.array([rho_for(logr[p]) for p in perms])
            rhos = rhos[np.isfinite(rhos)]
            # the identity permutation is included, so p >= 1/len(perms)
            out["mantel_p"] = float(np.mean(rhos >= out["spearman_rho"] - 1e-12))
            out["n_permutations"] = int(len(perms))
    return out


# ------------------------------------------------------------------ stationary

def stationary_rows(runs):
    """One row per run with a (current) stationary record, keys :data:`STATIONARY_COLUMNS`."""
    rows = []
    for r in runs:
        s = r["stationary"]
        if not s:
            continue
        row = {"run": r["name"], "loss": r["loss"], "batch_size": r["batch_size"],
               "lr": r["lr"], "seed": r["seed"], "status": s.get("status")}
        row["stationary_lr"] = _num(_dig(s, ("phase", "lr")))
        row["steps"] = _dig(s, ("phase", "steps"))
        row["n_eff"] = _num(_dig(s, ("observed", "n_eff")))
        row["tau_steps"] = _num(_dig(s, ("observed", "tau_steps")))
        row["drift_loss_z"] = _num(_dig(s, ("diagnostics", "drift_loss", "z")))
        row["drift_grad_sqnorm_z"] = _num(_dig(s, ("diagnostics", "drift_grad_sqnorm", "z")))
        ok = _dig(s, ("diagnostics", "stationary"))
        row["stationary"] = "–" if ok is None else ("yes" if ok else "no")
        row["failed"] = "; ".join(_dig(s, ("diagnostics", "failed")) or [])
        row["observed_excess"] = _num(_dig(s, ("observed", "value")))
        row["observed_excess_se"] = _num(_dig(s, ("observed", "se")))
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
        rows.append(row)
    return rows


# ------------------------------------------------------------------- figures

def make_figures(runs, rows=None):
    """All figures as ``{file name: (Figure, metadata)}``; nothing is saved or closed.

    Per loss: the learning curves (:func:`learning_curve_file`: ``fig2_kld.png`` and
    ``fig3_logit_grad.png``, the paper's Figures 2 and 3), ``fig4_<loss>.png`` the
    trace ratio and ``curve_distance_<loss>.png``.  The
    metadata holds what the figure shows (number of configurations, the
    curve-distance statistics).
    """
    rows = table1_rows(runs) if rows is None else rows
    figs = {}
    for loss in sorted({r["loss"] for r in runs}, key=_loss_order):
        groups = learning_curve_groups(runs, loss)
        if groups:
            figs[learning_curve_file(loss)] = (
                F.plot_learning_curves(groups, title=f"Learning curves, loss {loss}"),
                {"kind": "learning_curves", "loss": loss, "n_configs": len(groups),
                 "reference_ratio": F.reference_ratio(
                     [g["batch_size"] / g["lr"] for g in groups])})
        lrows = [r for r in rows if r["loss"] == loss]
        figs[f"fig4_{loss}.png"] = (
            F.plot_trace_ratio(lrows, title=f"loss {loss}"),
            {"kind": "trace_ratio", "loss": loss,
             "n_batch_sizes": len({r["batch_size"] for r in lrows
                                   if np.isfinite(r["ratio_mean"])})})
        if len(groups) >= 2:
            dist = curve_distance(groups)
            figs[f"curve_distance_{loss}.png"] = (
                F.plot_curve_distance(dist, title=f"loss {loss}"),
                {"kind": "curve_distance", "loss": loss, "distance": dist})
    return figs


#: The paper's figure number of each loss's learning curves (§5.1 KL divergence, §5.2
#: the gradient of the log loss); other losses get ``learning_curves_<loss>.png``.
_PAPER_FIGURE = {"kld": 2, "logit_grad": 3}


def learning_curve_file(loss):
    """File name of a loss's learning-curve figure, e.g. ``fig2_kld.png``, ``fig3_logit_grad.png``."""
    n = _PAPER_FIGURE.get(loss)
    return f"fig{n}_{loss}.png" if n else f"learning_curves_{loss}.png"


def _loss_order(name):
    order = ("kld", "logit_grad", "xent")
    return (order.index(name) if name in order else len(order), name)


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
- **Stationary phase** (`stationary.json`): from the final weights, plain SGD (momentum 0,
  no augmentation) at η_s = the schedule's final LR and the run's batch size S, minibatches
  drawn i.i.d. **with replacement** from the training set (c_S = 1/S), BN frozen.  After a
  burn-in, K steps are recorded in B blocks: at every step ‖ĝ_k‖², the squared norm of the
  minibatch gradient SGD stepped with (data loss + L2), and every few steps the objective
  on a fixed evaluation subset of the training set.
- **Observed excess loss = (η_s/4)·mean_k ‖ĝ_k‖²** (θ*-free; SE by batch means over the B
  blocks, n = K steps).  Why it needs no θ*: for SGD θ' = θ − ηĝ and any fixed point a,
  stationarity of E‖θ − a‖² gives E[(θ − a)·∇L(θ)] = (η/2)·E‖ĝ‖² exactly, for any loss
  (it only uses E[ĝ | θ] = ∇L(θ)); for a quadratic L with minimiser θ*,
  (θ − θ*)·∇L = 2(L − L*), hence E[L − L*] = (η/4)·E‖ĝ‖², in discrete time and with
  state-dependent noise (Yaida 2018).  ‖ĝ_k‖² is a by-product of the step: no extra
  forward or backward pass, no loss evaluation.  On a linear model it recovers the exact
  finite-sum law (`theory.least_squares_stationary`) within 4 SE on JAX and TensorFlow.
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
  loss nor ‖ĝ_k‖² drifts between the two halves of the phase (|z| < 4, the difference of
  the halves' block means over its SE: `drift_loss_z`, `drift_grad_sqnorm_z`), and ‖ĝ_k‖²
  holds n_eff = K/τ >= max(20, B) effectively independent steps (τ its integrated
  autocorrelation time, Sokal's automatic window; n_eff >= B means each batch-means block
  spans at least one τ).  These checks can pass on a real network: they ask that the
  measured quantities stopped moving, not that every flat direction equilibrated.  Table 1
  averages all n phases; `stationary.csv` says which failed and why.
- **Identity ratio** (diagnostic, never a gate): E[(θ − θ̄)·ĝ] / ((η_s/2)·E‖ĝ‖²), 1 at
  stationarity for any loss.  Summing the updates gives exactly
  1 + (‖θ_0 − θ̄‖² − ‖θ_K − θ̄‖²)/(η_s² Σ_k ‖ĝ_k‖²): it departs from 1 when the spread
  around θ̄ still changes, as along flat directions that carry almost no loss (on a small
  network with the exact θ*, it read 0.996–0.999 with z down to −10), which leaves the
  excess loss unaffected.
- **Predictions**: (12) (η_s c_S/4)·tr Σ and (6) (η_s c_S/4)·(tr H + L2 trace), traces at θ̄
  on the evaluation subset; (12)/obs and (6)/obs divide by the θ*-free observed value, with
  first-order propagated SE.  η_s λ_max/2 is the relative size of the discrete-time
  correction in the stiffest direction (the observed value includes it; the predictions
  are the continuous-time formulas).
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
    from ._io import atomic_write_json, atomic_write_text, save_figure
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
    md = ["# sgd-minima validation report\n",
          f"Built from `{Path(runs_dir)}` ({len(runs)} runs: "
          f"{sum(r['status'] == 'completed' for r in runs)} completed, "
          f"{sum(r['status'] == 'diverged' for r in runs)} diverged, "
          f"{sum(r['status'] not in ('completed', 'diverged') for r in runs)} other) "
          f"by `validation.report.build_report`, from saved results only.  "
          f"**{n_ok} of {n_phases} completed stationary phases pass the stationarity "
          f"checks.**\n",
          _skipped_section(scan),
          "## Table 1\n",
          "Files: [table1.csv](table1.csv), [table1.md](table1.md).  tr Σ, tr H, their ratio and "
          "the validation accuracy are mean ± sd over seeds (n).  The observed excess loss is "
          "the θ*-free (η_s/4)·E‖ĝ‖² (see Conventions), the Polyak column the earlier method; "
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
          "ratio is a diagnostic (1 at stationarity for any loss), not a check.\n",
          _md_table(srows, ("run", "status", "stationary_lr", "steps", "n_eff",
                            "drift_loss_z", "drift_grad_sqnorm_z", "stationary", "failed",
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
