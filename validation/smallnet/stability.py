r"""Where linearised SGD loses mean-square stability on the network, and where real SGD diverges.

For each batch size S, after its settings have run:

1. **A subspace V** (P × r, r <= ~48) of the directions that matter for the second-moment
   map T: H's flattest and sharpest eigenvectors (the additive-noise edge and the slowest
   relaxation), the final states of the linearised chains at every η of this S (diverged
   ones point along what grew), and the states of a few noise-free linearised chains run
   from a random start at each η ("pilots": one sampled power iteration on T, δ ← (I − ηH_B)δ
   over a few hundred steps, which amplifies whatever grows fastest).
2. **ρ(T) by Rayleigh–Ritz** on V (:mod:`dnn.exact.second_moment`): the exact per-example
   Hessians compressed onto V, VᵀH_iV, give T_V, and ρ(T_V) <= ρ(T) for every η, so the
   per-row ``rho_minus_1`` is a *lower bound*, exact in V (no Monte Carlo).  Its stated
   uncertainty ``se`` is the last refinement: ρ(T_V) − ρ(T_V') with V' = V without the
   pilots, i.e. how much the power step still added (one-sided: ρ(T) can only be higher).
3. **The linear edge**, η_edge·h_max with ρ(T_V) = 1, in closed form from the pencil of
   T_V (:meth:`~dnn.exact.second_moment.CompressedSecondMoment.edge`), with a bracket
   checked by evaluating ρ on both sides; an *upper* bound on the true edge.  Beside it,
   the edge *within the run*: the smallest η at which ρ − 1 >= 1/n, n the longest
   setting's steps at this S, i.e. where the instability amplifies E‖δ‖² by e or more
   during a measurement (found by bisection on ρ(T_V), which is convex in η).
4. **The real edge** (``--stability``): the smallest η·h_max at which more than half of a
   set of real chains diverge within a fixed number of steps, by scanning up from the
   largest measured η and bisecting the bracket, with a cap.
"""

from __future__ import annotations

import math
import time

import numpy as np

__all__ = ["STABILITY_METHOD", "MAJORITY", "stability_block", "batch_size_stability",
           "real_edge_search", "per_example_curvature", "rho_summary"]

# The noise-free chains' map is linear, so their scale is free: ‖δ₀‖² ~ 1e-100 leaves 200
# decades of growth before float64 overflows (dnn.exact.linear_chains guards at 1e100).
_PILOT_SCALE = 1e-50
# Bisection for the within-run edge stops at this relative width of the bracket: 2% is
# finer than the rows' grid in η·h_max by far, and each step is one eigenproblem.
_BISECT_RTOL = 0.02
# Real chains "mostly" diverge: strictly more than this fraction of them.
MAJORITY = 0.5


def _top_states(states, k):
    """The k states with the largest norm (diverged chains first: they grew the most)."""
    s = np.asarray(states, dtype=float)
    norms = np.linalg.norm(s, axis=1)
    order = np.argsort(-norms)
    return s[order[:k]][norms[order[:k]] > 0]


def batch_size_stability(model, data, theta_star, exact, ops, *, batch_size, noise_factor,
                         rows, n_eig, n_per_row, pilot_chains, pilot_steps, max_dim,
                         replacement, seed, quiet=True) -> dict:
    """Ritz ρ per row, and the linear edges, for one S (see the module docstring).

    Parameters
    ----------
    rows : list of dict
        One per η at this S: ``lr``, ``eta_h_max``, ``linear_states`` ((n_chains, P) final δ
        of the linearised chains), ``steps`` (total steps run).

    Returns
    -------
    dict
        ``subspace_dim``, ``subspace`` (what V holds), ``linear_edge``,
        ``linear_edge_within_run``, ``rows`` (η·h_max → ``rho_minus_1`` dict), ``seconds``.
    """
    from dnn.exact.linear_chains import run_linear_chains
    from dnn.exact.second_moment import (CompressedSecondMoment, compress_per_example_hessians,
                                         orthonormal_basis)

    t0 = time.perf_counter()
    h_max = float(exact.h_max)
    u = exact.eigenvectors
    base = [u[:, :n_eig], u[:, -n_eig:]]
    chain_vecs, pilot_vecs = [], []
    rng = np.random.default_rng([seed, 7, batch_size])
    p = model.n_params
    for k, row in enumerate(rows):
        chain_vecs.append(_top_states(row["linear_states"], n_per_row).T)
        start = rng.standard_normal((pilot_chains, p)) * (_PILOT_SCALE / math.sqrt(p))
        pilot = run_linear_chains(model, data, theta_star, hessian=exact.hessian, lr=row["lr"],
                                  batch_size=batch_size, n_chains=pilot_chains,
                                  burn_in=pilot_steps, n_steps=2, record_every=1,
                                  replacement=replacement, seed=seed + 100 * k + 5, noise=False,
                                  start=start, diverge_threshold=1e100, quiet=quiet)
        pilot_vecs.append(_top_states(pilot.final_state.state, n_per_row).T)
    # V = [V', pilots ⊥ V']: the compression onto V' (no pilots) is then the leading block
    n_pilot_dims = min(sum(x.shape[1] for x in pilot_vecs), max(max_dim // 3, 1))
    v_pre = orthonormal_basis(np.concatenate(base + chain_vecs, axis=1),
                              max_dim=max_dim - n_pilot_dims)
    pilots = np.concatenate(pilot_vecs, axis=1)
    extra = pilots - v_pre @ (v_pre.T @ pilots)
    extra = extra - v_pre @ (v_pre.T @ extra)      # twice: Gram–Schmidt loses orthogonality once
    # a pilot already inside V' (to 1e-6 of its length) adds nothing but round-off
    extra = extra[:, np.linalg.norm(extra, axis=0) > 1e-6 * np.linalg.norm(pilots, axis=0)]
    pieces = [v_pre]
    if extra.shape[1]:
        e = orthonormal_basis(extra, max_dim=n_pilot_dims)
        pieces.append(e - v_pre @ (v_pre.T @ e))
    v_all = np.linalg.qr(np.concatenate(pieces, axis=1))[0]
    # qr keeps the span of the leading columns: v_all[:, :r'] spans V' (signs may flip)
    stack = compress_per_example_hessians(ops.per_example_hvp, v_all, ops.n_data, l2=model.l2)
    full = CompressedSecondMoment.from_stack(stack)
    r_pre = v_pre.shape[1]
    pre = CompressedSecondMoment.from_stack(stack[:, :r_pre, :r_pre])

    out_rows = {}
    for row in rows:
        rho, _ = full.spectral_radius(row["lr"], noise_factor)
        rho_pre, _ = pre.spectral_radius(row["lr"], noise_factor)
        out_rows[f"{row['eta_h_max']:g}"] = rho_summary(rho, rho_pre, full.dim, row["steps"])

    edge = full.edge(noise_factor)
    edge_pre = pre.edge(noise_factor)
    n_ref = max(int(row["steps"]) for row in rows)
    within = _within_run_edge(full, noise_factor, edge["lr_edge"], 2.0 / h_max, n_ref)
    return {
        "batch_size": int(batch_size), "noise_factor": float(noise_factor),
        "subspace_dim": full.dim,
        "subspace": {"eigenvectors_each_end": int(n_eig), "linear_chain_states_per_row": int(n_per_row),
                     "pilot_states_per_row": int(n_per_row), "pilot_chains": int(pilot_chains),
                     "pilot_steps": int(pilot_steps), "dim_without_pilots": pre.dim},
        "linear_edge": {"eta_h_max": edge["lr_edge"] * h_max,
                        "bracket": [edge["bracket"][0] * h_max, edge["bracket"][1] * h_max],
                        "rho_at_bracket": list(edge["rho_at_bracket"]),
                        "confirmed": edge["confirmed"],
                        "without_pilots": edge_pre["lr_edge"] * h_max,
                        "refinement": (edge_pre["lr_edge"] - edge["lr_edge"]) * h_max,
                        "upper_bound": True},
        "linear_edge_within_run": within | {"steps": n_ref},
        "rows": out_rows, "seconds": time.perf_counter() - t0,
    }


def rho_summary(rho, rho_pre, dim, steps) -> dict:
    """``rho_minus_1`` of a row: Ritz value, its refinement uncertainty, and what it means in steps."""
    value = rho - 1.0
    out = {"value": value, "se": abs(rho - rho_pre), "se_kind": "last refinement (one-sided)",
           "lower_bound": True, "subspace_dim": int(dim), "steps": int(steps),
           "stable": bool(value < 0)}
    # e-folding of E‖δ‖² per step is ln ρ; over the row's steps the amplification is ρ^n
    out["growth_over_run"] = float(steps * math.log(rho)) if rho > 0 else -math.inf
    out["visible_in_run"] = bool(out["growth_over_run"] >= 1.0)
    return out


def _within_run_edge(op, c, lr_lo, lr_cap, n_ref) -> dict:
    """Smallest lr >= lr_lo with ρ(T_V) − 1 >= 1/n_ref, by bisection (ρ is convex, 1 at lr_lo)."""
    target = 1.0 / n_ref

    def excess(lr):
        return op.spectral_radius(lr, c)[0] - 1.0 - target

    if excess(lr_cap) < 0:
        return {"eta_h_max": None, "bracket": [lr_cap * op.h[-1], None],
                "note": "no growth of 1/steps per step below eta*h_max = 2"}
    lo, hi = lr_lo, lr_cap
    while hi / lo - 1.0 > _BISECT_RTOL:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
    h_max = float(op.h[-1])
    return {"eta_h_max": hi * h_max, "bracket": [lo * h_max, hi * h_max]}


def real_edge_search(model, data, theta_star, *, h_max, batch_size, rows, n_chains, steps, cap,
                     replacement, seed, quiet=True) -> dict:
    """Smallest η·h_max at which > half of ``n_chains`` real chains diverge within ``steps``.

    The measured rows at this S start the bracket: ``lo`` is the largest η·h_max whose
    chains mostly survived, ``hi`` the smallest at which they mostly diverged.  Without such
    a row, η·h_max is raised ×1.5 from ``lo`` until the chains mostly diverge or ``cap`` is
    passed; then the bracket is bisected (geometrically) to a ratio of 1.1.

    Returns
    -------
    dict
        ``eta_h_max`` (the bracket's top, None if none up to ``cap``), ``bracket``,
        ``evaluations`` (η·h_max, diverged, chains, steps each, and the survivors' excess
        L − L* over the last steps ± SE), ``cap``, ``seconds``.
    """
    from dnn.exact.chains import run_sgd_chains

    t0 = time.perf_counter()
    evals = []

    def mostly(row_or_eval):
        return row_or_eval["n_diverged"] > MAJORITY * row_or_eval["n_chains"]

    def run(eta_h):
        st = run_sgd_chains(model, data, theta_star, lr=eta_h / h_max, batch_size=batch_size,
                            n_chains=n_chains, burn_in=max(steps - 2, 0), n_steps=2,
                            record_every=1, replacement=replacement,
                            seed=seed + len(evals) + 1, quiet=quiet)
        # how far the survivors are from θ* at the end: "not diverged" is not "near θ*"
        final = st.observed()
        e = {"eta_h_max": float(eta_h), "n_diverged": int(st.n_diverged),
             "n_chains": int(n_chains), "steps": int(st.burn_in + st.n_steps), "source": "search",
             "final_excess": final.value, "final_excess_se": final.se}
        evals.append(e)
        return e

    measured = [{"eta_h_max": r["eta_h_max"], "n_diverged": r["n_diverged"],
                 "n_chains": r["n_chains"], "steps": r["steps"], "source": "row"} for r in rows]
    survived = [m["eta_h_max"] for m in measured if not mostly(m)]
    died = [m["eta_h_max"] for m in measured if mostly(m)]
    lo = max(survived) if survived else None
    hi = min([d for d in died if lo is None or d > lo], default=None)
    if lo is None:
        # every measured row mostly diverged: search downwards from the smallest
        hi = min(died)
        x = hi / 1.5
        while x > 1e-3 and mostly(run(x)):
            hi, x = x, x / 1.5
        lo = x
    while hi is None:
        x = lo * 1.5
        if x > cap:
            return {"eta_h_max": None, "bracket": [lo, None], "evaluations": measured + evals,
                    "cap": cap, "seconds": time.perf_counter() - t0,
                    "note": f"real chains mostly survive up to the cap eta*h_max = {cap:g}"}
        if mostly(run(x)):
            hi = x
        else:
            lo = x
    while hi / lo > 1.1:
        x = math.sqrt(lo * hi)
        lo, hi = (lo, x) if mostly(run(x)) else (x, hi)
    return {"eta_h_max": hi, "bracket": [lo, hi], "evaluations": measured + evals, "cap": cap,
            "seconds": time.perf_counter() - t0}


def per_example_curvature(ops, exact) -> dict:
    """Spread of the per-example curvature q_i = uᵀH_iu along H's sharpest and flattest directions.

    These set the one-direction stability factor (1 − ηa)² + η² c_S s² (a = mean q_i + 2λ,
    s² = Var q_i; Wu, Ma & E): the larger s relative to a, the lower the edge.
    """
    out = {}
    for name, j in (("sharpest", -1), ("flattest", 0)):
        u = exact.eigenvectors[:, j]
        q = np.asarray(ops.per_example_hvp(u)) @ u
        a = float(q.mean() + 2.0 * exact.l2)
        out[name] = {"h": float(exact.eigenvalues[j]), "mean": a, "sd": float(q.std()),
                     "max": float(q.max() + 2.0 * exact.l2),
                     "max_over_mean": float((q.max() + 2.0 * exact.l2) / a),
                     "n": int(q.size)}
    return out


def stability_block(model, data, theta_star, exact, ops, rows, linear_states, c_of, *,
                    batch_sizes, effort, n_chains, replacement, seed, search_real_edge,
                    quiet=True) -> dict:
    """``stability`` of smallnet.json: per S the Ritz ρ per row and the edges.

    ``rows`` are the measured rows (dicts), ``linear_states`` maps (η·h_max, S) to the final
    δ of that row's linearised chains, ``c_of`` S to c_S; ``effort`` carries the subspace,
    pilot and edge-search sizes (``validation.smallnet.run``'s modes).  Pilots and the edge
    search run ``n_chains`` chains, as the rows do: the chain kernels are compiled per chain
    count, for seconds each.
    """
    per_s = []
    for s in batch_sizes:
        mine = [r for r in rows if r["batch_size"] == s]
        inputs = [{"lr": r["lr"], "eta_h_max": r["eta_h_max"],
                   "linear_states": linear_states[(r["eta_h_max"], s)],
                   "steps": r["settle"]["steps"]} for r in mine]
        block = batch_size_stability(
            model, data, theta_star, exact, ops, batch_size=s, noise_factor=c_of[s], rows=inputs,
            n_eig=effort.subspace_eig, n_per_row=effort.subspace_per_row,
            pilot_chains=n_chains, pilot_steps=effort.pilot_steps,
            max_dim=effort.subspace_max_dim, replacement=replacement,
            seed=seed * 1000 + 500 + s, quiet=quiet)
        if search_real_edge:
            block["real_edge"] = real_edge_search(
                model, data, theta_star, h_max=exact.h_max, batch_size=s,
                rows=[{"eta_h_max": r["eta_h_max"], "n_diverged": r["n_diverged"],
                       "n_chains": r["n_chains"], "steps": r["settle"]["steps"]} for r in mine],
                n_chains=n_chains, steps=effort.edge_steps, cap=effort.edge_cap,
                replacement=replacement, seed=seed * 1000 + 700 + s, quiet=quiet)
        else:
            block["real_edge"] = _real_edge_from_rows(mine)
        per_s.append(block)
    rows_out = [{"eta_h_max": r["eta_h_max"], "batch_size": r["batch_size"],
                 "rho_minus_1": next(b for b in per_s if b["batch_size"] == r["batch_size"])
                 ["rows"][f"{r['eta_h_max']:g}"]} for r in rows]
    return {"method": STABILITY_METHOD, "per_batch_size": per_s, "rows": rows_out,
            "real_edge_searched": bool(search_real_edge)}


STABILITY_METHOD = (
    "rho(T) of linearised SGD by Rayleigh-Ritz: the exact per-example Hessians compressed onto a "
    "subspace V (H's extreme eigenvectors, linearised-chain states, noise-free pilot chains), "
    "rho(T_V) <= rho(T); se = what the pilot vectors added (one-sided). linear_edge = 1/mu_max of "
    "the compressed pencil (an upper bound on the true edge), bracket checked by rho on both "
    "sides; linear_edge_within_run: smallest eta with rho - 1 >= 1/steps of the longest setting. "
    "real_edge: smallest eta*h_max at which > half the real chains diverge within edge_steps.")


def _real_edge_from_rows(rows) -> dict:
    """The real edge as far as the measured rows bracket it (no extra chains run)."""
    mostly = [r for r in rows if r["n_diverged"] > MAJORITY * r["n_chains"]]
    fine = [r["eta_h_max"] for r in rows if r not in mostly]
    lo = max(fine) if fine else None
    hi = min((r["eta_h_max"] for r in mostly if lo is None or r["eta_h_max"] > lo), default=None)
    return {"eta_h_max": hi, "bracket": [lo, hi], "evaluations": [], "searched": False,
            "note": "from the measured settings only; --stability searches it"}
