"""Figures 2-4 and the curve-distance plot, from the records :mod:`validation.report.runs` loads.

Every function takes plain arrays/dicts (no run folders, no keras) and returns
the matplotlib ``Figure``; callers save it (``validation._io.save_figure``) and
close it.  Conventions:

* **Colour by BS/LR** (Figures 2 and 3, as in the paper): a configuration's
  ratio r = BS/LR is compared with the reference ratio r₀ (see
  :func:`reference_ratio`): **equal** (blue) if |r/r₀ − 1| <= ``equal_rtol``
  (1 %), **near** (green) if 1/``near_factor`` <= r/r₀ <= ``near_factor``
  (within a factor 2), else **far** (red).
* Curves are the mean over seeds with a band of ± one sample sd (ddof = 1);
  the number of seeds n is in the legend.
"""

from __future__ import annotations

import math

import numpy as np

from .curves import curve_distance, learning_curve_groups
from .tables import table1_rows

__all__ = [
    "COLOURS",
    "EQUAL_RTOL",
    "NEAR_FACTOR",
    "reference_ratio",
    "ratio_class",
    "plot_learning_curves",
    "plot_trace_ratio",
    "plot_curve_distance",
    "make_figures",
    "learning_curve_file",
]

#: Colour of each class of |BS/LR − reference| (the paper's Figures 2-3).
COLOURS = {"equal": "tab:blue", "near": "tab:green", "far": "tab:red"}
#: Relative tolerance for "equal" BS/LR (grids are given to 2-3 digits).
EQUAL_RTOL = 0.01
#: "near" means within this factor of the reference ratio.
NEAR_FACTOR = 2.0


def _agg():
    import matplotlib

    # Headless: the report runs on servers and in CI.
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def reference_ratio(ratios):
    """The reference BS/LR: the ratio shared by most configurations.

    Ties are broken by closeness (in log) to the median log-ratio, so the
    reference sits in the middle of the grid.  For the paper's grid the ratios
    1000 and 2500 each occur twice and the median is 1000, so r₀ = 1000.

    Examples
    --------
    >>> reference_ratio([100 / 0.08, 200 / 0.2, 500 / 0.5, 200 / 0.08, 500 / 0.2])
    1000.0
    """
    r = np.asarray(ratios, dtype=float)
    if r.size == 0 or not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError(f"ratios must be non-empty, finite and > 0; got {ratios!r}")
    groups = []
    for x in np.sort(r):
        if groups and abs(x / groups[-1][0] - 1) <= EQUAL_RTOL:
            groups[-1].append(x)
        else:
            groups.append([x])
    med = float(np.median(np.log(r)))
    best = max(groups, key=lambda g: (len(g), -abs(math.log(g[0]) - med)))
    return float(best[0])


def ratio_class(ratio, reference, *, equal_rtol=EQUAL_RTOL, near_factor=NEAR_FACTOR):
    """``"equal"``, ``"near"`` or ``"far"``: where BS/LR lies relative to the reference.

    Examples
    --------
    >>> [ratio_class(r, 1000.0) for r in (1000.0, 1250.0, 2500.0)]
    ['equal', 'near', 'far']
    """
    q = float(ratio) / float(reference)
    if abs(q - 1.0) <= equal_rtol:
        return "equal"
    if 1.0 / near_factor <= q <= near_factor:
        return "near"
    return "far"


def plot_learning_curves(configs, *, title, reference=None):
    """Figure 2/3: training and validation accuracy against epoch, one curve per configuration.

    Parameters
    ----------
    configs : list of dict
        Each with ``batch_size``, ``lr``, ``epochs`` (E,), ``train_acc`` and
        ``val_acc`` (n_seeds, E).
    title : str
    reference : float, optional
        Reference BS/LR (default :func:`reference_ratio` of the configurations).

    Returns
    -------
    matplotlib.figure.Figure
        Two axes (train, validation), each with exactly one ``Line2D`` per
        configuration (mean over seeds) and one ± sd band per configuration.
    """
    plt = _agg()
    if not configs:
        raise ValueError("configs must not be empty")
    ratios = [c["batch_size"] / c["lr"] for c in configs]
    ref = reference_ratio(ratios) if reference is None else float(reference)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    styles = ["-", "--", ":", "-."]
    seen = {}
    for c, ratio in sorted(zip(configs, ratios), key=lambda t: t[1]):
        cls = ratio_class(ratio, ref)
        style = styles[seen.get(cls, 0) % len(styles)]
        seen[cls] = seen.get(cls, 0) + 1
        n = np.asarray(c["val_acc"]).shape[0]
        label = f"BS={c['batch_size']}, LR={c['lr']:g} (BS/LR={ratio:.0f}, {cls}; n={n})"
        for ax, key in zip(axes, ("train_acc", "val_acc")):
            a = np.asarray(c[key], dtype=float)
            mean = a.mean(axis=0)
            sd = a.std(axis=0, ddof=1) if a.shape[0] > 1 else np.zeros_like(mean)
            ep = np.asarray(c["epochs"])
            ax.plot(ep, mean, linestyle=style, color=COLOURS[cls], label=label)
            ax.fill_between(ep, mean - sd, mean + sd, color=COLOURS[cls], alpha=0.15, lw=0)
    for ax, name in zip(axes, ("training accuracy", "validation accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (mean ± sd over seeds)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title}: colour = BS/LR vs reference {ref:.0f} (blue equal, green within "
                 f"x{NEAR_FACTOR:g}, red farther)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_trace_ratio(rows, *, title):
    """Figure 4: tr Σ / tr H against LR (one line per BS) and against BS/LR.

    Parameters
    ----------
    rows : list of dict
        Table-1 rows of one loss: ``batch_size``, ``lr``, ``ratio_mean``, ``ratio_sd``.

    Returns
    -------
    matplotlib.figure.Figure
        Left axes: one ``Line2D`` per batch size; right axes: one ``Line2D``
        of markers only (all configurations; several may share a BS/LR).  Error bars (± sd over seeds)
        are drawn without caps, so they add no ``Line2D``.
    """
    plt = _agg()
    rows = [r for r in rows if r.get("ratio_mean") is not None
            and np.isfinite(r.get("ratio_mean", np.nan))]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for bs in sorted({r["batch_size"] for r in rows}):
        rs = sorted((r for r in rows if r["batch_size"] == bs), key=lambda r: r["lr"])
        a1.errorbar([r["lr"] for r in rs], [r["ratio_mean"] for r in rs],
                    yerr=[_nz(r.get("ratio_sd")) for r in rs], marker="o", capsize=0,
                    label=f"BS={bs}")
    rs = sorted(rows, key=lambda r: r["batch_size"] / r["lr"])
    a2.errorbar([r["batch_size"] / r["lr"] for r in rs], [r["ratio_mean"] for r in rs],
                yerr=[_nz(r.get("ratio_sd")) for r in rs], marker="o", capsize=0,
                color="k", linestyle="none")
    for ax, xl in ((a1, "learning rate"), (a2, "BS/LR")):
        ax.set_xscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("tr Σ / tr H (mean ± sd over seeds)")
        ax.grid(alpha=0.3, which="both")
    if rows:
        a1.legend(fontsize=8)
    fig.suptitle(f"{title}: gradient-noise vs Hessian trace at the end of training", fontsize=9)
    fig.tight_layout()
    return fig


def _nz(x):
    return 0.0 if x is None or not np.isfinite(x) else float(x)


def plot_curve_distance(dist, *, title):
    """Curve distance against |Δ log(BS/LR)|, with the seed-to-seed noise floor as a band.

    Parameters
    ----------
    dist : dict
        From :func:`validation.report.curve_distance`: ``pairs`` (list of
        ``{"dlog_ratio", "distance"}``), ``noise_floor`` (``{"min", "max", "mean"}``
        or None), ``spearman_rho``, ``spearman_p``, ``mantel_p``.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: a scatter with one point per pair of configurations, the
        noise-floor band (an ``axhspan``) and its mean as the only ``Line2D``.
    """
    plt = _agg()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    x = [p["dlog_ratio"] for p in dist["pairs"]]
    y = [p["distance"] for p in dist["pairs"]]
    ax.scatter(x, y, color="k", s=18, zorder=3, label="pairs of configurations")
    nf = dist.get("noise_floor")
    if nf:
        ax.axhspan(nf["min"], nf["max"], color="tab:gray", alpha=0.25,
                   label="seed-to-seed noise floor (min–max over configs)")
        ax.axhline(nf["mean"], color="tab:gray", linestyle="--", lw=1)
    rho, p, pm = dist.get("spearman_rho"), dist.get("spearman_p"), dist.get("mantel_p")
    ax.set_title(f"{title}: Spearman ρ = {_f(rho)}, p = {_f(p)} "
                 f"(permutation p = {_f(pm)})", fontsize=9)
    ax.set_xlabel("|Δ log(BS/LR)|")
    ax.set_ylabel("mean |Δ validation accuracy| over epochs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _f(v):
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3g}"


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
                plot_learning_curves(groups, title=f"Learning curves, loss {loss}"),
                {"kind": "learning_curves", "loss": loss, "n_configs": len(groups),
                 "reference_ratio": reference_ratio(
                     [g["batch_size"] / g["lr"] for g in groups])})
        lrows = [r for r in rows if r["loss"] == loss]
        figs[f"fig4_{loss}.png"] = (
            plot_trace_ratio(lrows, title=f"loss {loss}"),
            {"kind": "trace_ratio", "loss": loss,
             "n_batch_sizes": len({r["batch_size"] for r in lrows
                                   if np.isfinite(r["ratio_mean"])})})
        if len(groups) >= 2:
            dist = curve_distance(groups)
            figs[f"curve_distance_{loss}.png"] = (
                plot_curve_distance(dist, title=f"loss {loss}"),
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
