"""Learning-curve groups and the curve distance of Figures 2-3, with a permutation test."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ._format import _groups

__all__ = [
    "learning_curve_groups",
    "curve_distance",
]

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
