"""``sgd-minima quick``: the whole synthetic story in a few seconds.

Cases
-----
(a) Σ = H: Wang (Eq. 12) and Jastrzębski (Eq. 6) coincide and match SGD.
(b) Σ misaligned with H: Wang matches, Jastrzębski is rejected.
(c) large η·h: the continuous formulas are biased; the exact discrete formula matches.
(d) least squares with real minibatches (with / without replacement): the noise is
    state-dependent, and only the exact finite-sum law matches.
(e) heavy-ball momentum β = 0.9 at small η·h: (12) and the exact law hold at the
    effective rate η/(1 − β); the same (12) at η, momentum ignored, is 10x too low.
(f) momentum at large η·h (stable up to η·h_max < 2(1 + β)): (12) at the effective rate
    is biased, and only the exact discrete law with momentum matches.

A prediction is *required* to match when theory says it equals the exact law of the
simulated process to within the simulation's resolution (|prediction − exact| < 1 SE),
and *must be rejected* when theory says it misses by more than 8 SE.  The command
exits 1 if a required prediction misses (|z| >= 4) or a must-reject one agrees.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

import sim
import theory

from dnn._runio import check_output_dir

from ._io import atomic_write_json, atomic_write_text, save_figure, synthetic_provenance

__all__ = ["QuickConfig", "QUICK_CASES", "run_quick", "quick_results"]

# |z| < 4: a false alarm for a true prediction has probability 6e-5 per check.
Z_MAX = 4.0


@dataclass(frozen=True)
class QuickConfig:
    out: str = "results/quick"   # output folder
    seed: int = 0                # master seed; each case derives its own stream
    quiet: bool = False          # no progress bars

    def __post_init__(self):
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {self.seed!r}")
        if not isinstance(self.quiet, bool):
            raise TypeError(f"quiet must be True or False; got {self.quiet!r}")
        if not isinstance(self.out, (str, os.PathLike)):
            raise TypeError(f"out must be a path; got {self.out!r}")


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    problem: str          # "gaussian" | "least-squares"
    misalignment: float   # gaussian problems only
    lr_times_hmax: float  # η·h_max, the stability-relevant size of the step
    batch_size: int
    sampler: str = "with_replacement"
    chains: int = 1000
    steps: int = 3000
    momentum: float = 0.0  # heavy-ball β


DIM = 8
# A Hessian spectrum within a factor 2 keeps the slowest relaxation short, so the
# whole suite (burn-in of 20 relaxation times included) fits in a few seconds.
EIG_RANGE = (0.5, 1.0)
QUICK_CASES = (
    # η·h_max = 0.01: the continuous formulas' discretisation bias (~ηh/2 ≈ 0.4%)
    # is below the simulation's ~0.6% resolution, so theory requires them to hold.
    Case("aligned", "(a) Sigma = H", "gaussian", 0.0, 0.01, 8, chains=500, steps=1500),
    Case("misaligned", "(b) Sigma misaligned with H", "gaussian", 1.0, 0.01, 8, chains=500,
         steps=1500),
    Case("large-lr", "(c) large lr*h_max", "gaussian", 1.0, 1.6, 8, chains=500, steps=1500),
    Case("lsq-replacement", "(d) least squares, with replacement", "least-squares", 0.0, 0.4, 8,
         chains=500, steps=1500),
    Case("lsq-no-replacement", "(d) least squares, without replacement", "least-squares", 0.0,
         0.4, 8, sampler="without_replacement", chains=500, steps=1500),
    # η·h_max = 0.01 at β = 0.9: effective η/(1−β) gives 0.1, and the discrete
    # correction with momentum, ηh/(2(1+β)) ≈ 0.3%, is again below the resolution.
    Case("momentum", "(e) momentum 0.9", "gaussian", 1.0, 0.01, 8, chains=500, steps=1500,
         momentum=0.9),
    # η·h_max = 3 of the 3.8 that β = 0.9 allows.
    Case("momentum-large-lr", "(f) momentum 0.9, large lr*h_max", "gaussian", 1.0, 3.0, 8,
         chains=500, steps=1500, momentum=0.9),
)
SWEEP = np.geomspace(0.05, 1.8, 8)   # η·h_max for the figure
SWEEP_CHAINS = 400


def least_squares_data(seed: int, n: int = 32, dim: int = 4):
    """Heavy-tailed inputs make the fourth-moment (state-dependent) noise term large."""
    rng = np.random.default_rng(seed)
    scale = rng.standard_exponential(size=(n, 1))
    x = rng.normal(size=(n, dim)) * scale / np.sqrt(np.mean(scale**2))
    y = x @ rng.normal(size=dim) + 0.3 * rng.normal(size=n)
    return x, y


def _problem(case: Case, seed: int):
    if case.problem == "gaussian":
        return sim.misaligned_problem(DIM, case.misalignment, seed=seed, eig_range=EIG_RANGE)
    return sim.LeastSquares(*least_squares_data(seed))


def _predictions(problem, case: Case, lr: float, mean: float, se: float) -> dict:
    h, s = problem.hessian, problem.grad_cov
    replacement = case.sampler == "with_replacement"
    n_data = getattr(problem, "n_data", None)
    kw = dict(n_data=n_data, replacement=replacement)
    beta = dict(momentum=case.momentum)
    preds = {
        "wang": theory.expected_loss_wang(np.trace(s), lr, case.batch_size, **kw, **beta),
        "jastrzebski": theory.expected_loss_jastrzebski(np.trace(h), lr, case.batch_size, **kw,
                                                        **beta),
        "discrete": theory.expected_loss_discrete(h, s, lr, case.batch_size, **kw, **beta),
    }
    if case.momentum:
        # What a user who ignores momentum would predict: (12) at the raw rate η.
        preds["wang_no_momentum"] = theory.expected_loss_wang(np.trace(s), lr, case.batch_size,
                                                              **kw)
    if case.problem == "least-squares":
        ls = theory.least_squares_stationary(problem.X, problem.y, lr, case.batch_size,
                                             replacement=replacement)
        preds["exact"] = ls.expected_excess_loss
        reference = preds["exact"]
    else:
        reference = preds["discrete"]   # exact for additive Gaussian noise
    out = {}
    for name, value in preds.items():
        z = (mean - value) / se
        gap = abs(value - reference) / se       # theory's own error, in units of the SE
        out[name] = {
            "value": float(value),
            "z": float(z),
            # Theory says this formula equals the process's exact law to within less
            # than the simulation resolves, so it must agree ...
            "required": bool(gap < 1.0),
            # ... or misses it by so much that a working simulation must reject it
            # (|z| >= 4 would need a 4-SE fluctuation the wrong way).
            "must_reject": bool(gap > 2 * Z_MAX),
            "theory_bias": float(value / reference - 1.0),
            "agrees": bool(abs(z) < Z_MAX),
        }
    return out


def _run_case(case: Case, seed: int, progress: bool) -> dict:
    problem = _problem(case, seed)
    h_max = float(np.linalg.eigvalsh(problem.hessian)[-1])
    lr = case.lr_times_hmax / h_max
    res = sim.simulate(problem, "sgd", lr=lr, batch_size=case.batch_size, n_chains=case.chains,
                       n_steps=case.steps, sampler=case.sampler, rng=seed + 1,
                       progress=progress, momentum=case.momentum)
    preds = _predictions(problem, case, lr, res.mean_excess_loss, res.se)
    failed = [k for k, p in preds.items()
              if (p["required"] and not p["agrees"]) or (p["must_reject"] and p["agrees"])]
    return {
        "name": case.name,
        "title": case.title,
        "problem": case.problem,
        "sampler": case.sampler,
        "dim": int(problem.hessian.shape[0]),
        "lr": lr,
        "lr_times_hmax": case.lr_times_hmax,
        "momentum": case.momentum,
        "batch_size": case.batch_size,
        "trace_hessian": float(np.trace(problem.hessian)),
        "trace_grad_cov": float(np.trace(problem.grad_cov)),
        "chains": res.n_chains,
        "steps": res.n_steps,
        "burn_in": res.burn_in,
        "ess": float(res.ess),
        "simulated_mean": float(res.mean_excess_loss),
        "simulated_se": float(res.se),
        "predictions": preds,
        "passed": not failed,
        "verdict": _verdict(preds, failed),
    }


def _verdict(preds: dict, failed: list) -> str:
    if failed:
        return "FAIL: outcome contradicts theory for: " + ", ".join(failed)
    agree = [k for k, p in preds.items() if p["agrees"]]
    reject = [f"{k} (z={p['z']:+.1f})" for k, p in preds.items() if not p["agrees"]]
    text = "agree: " + (", ".join(agree) or "none")
    return text + ("; rejected: " + ", ".join(reject) if reject else "")


def _sweep(seed: int, progress: bool) -> dict:
    problem = sim.misaligned_problem(DIM, 1.0, seed=seed, eig_range=EIG_RANGE)
    h_max = float(np.linalg.eigvalsh(problem.hessian)[-1])
    bs = 8
    rows = []
    for i, frac in enumerate(SWEEP):
        lr = frac / h_max
        res = sim.simulate(problem, "sgd", lr=lr, batch_size=bs, n_chains=SWEEP_CHAINS,
                           n_steps=int(max(600, 40 / frac)), rng=seed + 100 + i,
                           progress=False)
        rows.append({
            "lr": lr, "simulated_mean": float(res.mean_excess_loss), "simulated_se": float(res.se),
            "wang": theory.expected_loss_wang(np.trace(problem.grad_cov), lr, bs),
            "jastrzebski": theory.expected_loss_jastrzebski(np.trace(problem.hessian), lr, bs),
            "discrete": theory.expected_loss_discrete(problem.hessian, problem.grad_cov, lr, bs),
        })
    # Smooth prediction curves are saved too, so the figure needs nothing but this file.
    fine = np.geomspace(rows[0]["lr"], rows[-1]["lr"], 120)
    curve = {
        "lr": fine.tolist(),
        "wang": theory.expected_loss_wang(np.trace(problem.grad_cov), fine, bs).tolist(),
        "jastrzebski": theory.expected_loss_jastrzebski(np.trace(problem.hessian), fine, bs).tolist(),
        "discrete": [theory.expected_loss_discrete(problem.hessian, problem.grad_cov, x, bs)
                     for x in fine],
    }
    return {"batch_size": bs, "h_max": h_max, "chains": SWEEP_CHAINS, "rows": rows, "curve": curve}


def quick_results(cfg: QuickConfig) -> dict:
    """Run every case and the η sweep; return the JSON-ready results."""
    from tqdm.auto import tqdm

    cases = []
    # leave=True: the finished bar keeps its own line (ends with a newline), so the
    # table printed next does not start on the bar's line.
    with tqdm(total=len(QUICK_CASES) + 1, desc="quick", disable=cfg.quiet, leave=True) as bar:
        for i, case in enumerate(QUICK_CASES):
            cases.append(_run_case(case, cfg.seed + 1000 * i, progress=False))
            bar.update()
        sweep = _sweep(cfg.seed + 10_000, progress=False)
        bar.update()
    return {"cases": cases, "sweep": sweep, "z_max": Z_MAX,
            "passed": all(c["passed"] for c in cases)}


def markdown_table(results: dict) -> str:
    head = ("| case | lr | S | simulated ± SE | Wang (12) [z] | Jastrzebski (6) [z] | "
            "discrete [z] | exact finite-sum [z] | Wang at η, β ignored [z] | verdict |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for c in results["cases"]:
        p = c["predictions"]

        def cell(k):
            if k not in p:
                return "n/a"
            mark = "*" if p[k]["required"] else ("!" if p[k]["must_reject"] else "")
            return f"{p[k]['value']:.4g} [{p[k]['z']:+.1f}]{mark}"

        lines.append(f"| {c['title']} | {c['lr']:.4g} | {c['batch_size']} | "
                     f"{c['simulated_mean']:.4g} ± {c['simulated_se']:.2g} | {cell('wang')} | "
                     f"{cell('jastrzebski')} | {cell('discrete')} | {cell('exact')} | "
                     f"{cell('wang_no_momentum')} | {c['verdict']} |")
    foot = (f"\n\n`*` = required by theory to agree (|z| < {Z_MAX:g}); `!` = theory says it is off "
            f"by more than {2 * Z_MAX:g} SE, so it must be rejected; z = (simulated − predicted)/SE; "
            "SE across chains (n = chains). With momentum β every formula but the last is taken "
            "at β: (12) and (6) at the effective rate η/(1 − β), the discrete law exactly.\n")
    return head + "\n".join(lines) + foot


def figure(results: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sw = results["sweep"]
    rows = sw["rows"]
    lr = np.array([r["lr"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.errorbar(lr, [r["simulated_mean"] for r in rows], yerr=[2 * r["simulated_se"] for r in rows],
                fmt="o", color="k", label=f"SGD simulated ± 2 SE ({sw['chains']} chains)")
    curve = sw["curve"]
    ax.plot(curve["lr"], curve["wang"], label="Wang (12): η tr Σ / 4S")
    ax.plot(curve["lr"], curve["jastrzebski"], "--", label="Jastrzębski (6): η tr H / 4S")
    ax.plot(curve["lr"], curve["discrete"], "-.", label="exact discrete SGD")
    ax.set(xscale="log", yscale="log", xlabel="learning rate η",
           ylabel="stationary excess loss E L − L*",
           title=f"misaligned Σ ≠ H, d={DIM}, S={sw['batch_size']}")
    ax.legend(fontsize=8)
    return fig


def run_quick(cfg: QuickConfig) -> int:
    """Run the suite, print the table, write quick.json / quick.md / quick.png; 0 iff passed."""
    out = check_output_dir(cfg.out, "out")   # a bad --out fails before the work, not after
    results = quick_results(cfg)
    out.mkdir(parents=True, exist_ok=True)   # only now: a failed run leaves no empty folder
    table = markdown_table(results)
    atomic_write_json(out / "quick.json", {**results,
                                           "provenance": synthetic_provenance(asdict(cfg), {"seed": cfg.seed})})
    atomic_write_text(out / "quick.md", "# sgd-minima quick\n\n" + table)
    import matplotlib.pyplot as plt

    fig = figure(results)
    save_figure(fig, out / "quick.png")
    plt.close(fig)
    print(_console_table(results))
    print(f"wrote {out / 'quick.json'}, {out / 'quick.md'}, {out / 'quick.png'}")
    return 0 if results["passed"] else 1


def _console_table(results: dict) -> str:
    lines = []
    for c in results["cases"]:
        beta = f", momentum={c['momentum']:g}" if c.get("momentum") else ""
        lines.append(f"{c['title']}: lr={c['lr']:.4g} (lr*h_max={c['lr_times_hmax']:g}){beta}, "
                     f"S={c['batch_size']}, tr Sigma={c['trace_grad_cov']:.3g}, "
                     f"tr H={c['trace_hessian']:.3g}")
        lines.append(f"    simulated  {c['simulated_mean']:.5g} ± {c['simulated_se']:.2g} "
                     f"(SE, n={c['chains']} chains x {c['steps']} steps)")
        for k, p in c["predictions"].items():
            tag = ("must hold" if p["required"] else
                   f"theory bias {p['theory_bias']:+.1%}, must be rejected" if p["must_reject"]
                   else f"theory bias {p['theory_bias']:+.1%}")
            lines.append(f"    {k:<17}{p['value']:.5g}  z={p['z']:+6.1f}  "
                         f"{'agrees' if p['agrees'] else 'REJECTED':<9}({tag})")
        lines.append(f"    verdict: {c['verdict']}")
    lines.append("PASS: every prediction theory says must hold holds, and every one it says "
                 "is wrong is rejected" if results["passed"]
                 else "FAIL: an outcome contradicts theory (see the verdicts above)")
    return "\n".join(lines)
