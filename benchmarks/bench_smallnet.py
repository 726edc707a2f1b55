"""Wall time of ``sgd-minima smallnet`` per stage, against its budgets (--quick 60 s, default 300 s).

Runs the library function ``validation.smallnet.smallnet_results`` (no files
written) for the --quick and the default configuration, each in a fresh process
so that neither profits from the other's JAX compilation, and prints the seconds
spent finding the minimum, on the exact quantities (Hessian, spectrum, Σ), on the
state-dependent probes, on the SGD chains (real and linearised, with the extensions to
settle) and on the stability analysis (Ritz ρ and edges; the real-edge search only with
``--stability``), with the total against the budget.
Also printed: the process's CPU seconds and the load average, because a loaded
2-core machine stretches wall time by the load and the budgets are for an idle one.

Each mode runs twice: "cold" with an empty result cache (a fresh temporary
``XDG_CACHE_HOME``: L-BFGS, Newton, Hessian and its ``eigh`` all computed), then
"warm" with the cache the cold run wrote (θ*, H and its spectrum loaded and
verified).  ``--cache-dir DIR`` uses DIR instead (kept afterwards).

Usage: python benchmarks/bench_smallnet.py [--only quick|default] [--seed 0] [--json PATH]
       [--preprocess global|feature|minmax] [--stability]
Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BUDGET_S = {"quick": 60.0, "default": 300.0}
STAGES = ("minimum", "exact", "probes", "chains", "stability")


def _measure(mode: str, seed: int, preprocess: str = "global", stability: bool = False) -> dict:
    """One run in this process; returns the timings and the work done."""
    import resource
    import warnings

    from validation.smallnet import SmallnetConfig, smallnet_results

    load0 = os.getloadavg()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = smallnet_results(SmallnetConfig(quick=mode == "quick", quiet=True, seed=seed,
                                            out=os.devnull, preprocess=preprocess,
                                            stability=stability))
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    steps = sum(row["burn_in"] + row["n_steps"] for row in r["rows"])
    return {"mode": mode, "cache_hit": bool(r["cache"]["hit"]), "wall_s": wall, "timings": r["timings"],
            "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
            "load_before": load0, "load_after": os.getloadavg(), "settings": len(r["rows"]),
            "sgd_steps": steps, "chains": r["rows"][0]["n_chains"],
            "probes": sum(p["n_probes"] for p in r["probes"]), "sound": r["sound"]}


def _print(m: dict) -> None:
    t = m["timings"]
    budget = BUDGET_S[m["mode"]]
    print(f"{m['mode']} ({m['cache']} cache, {'hit' if m['cache_hit'] else 'miss'}): {m['settings']} settings x {m['chains']} chains, {m['sgd_steps']} SGD steps, "
          f"{m['probes']} probes")
    for k in STAGES:
        print(f"  {k:<8} {t[k]:8.1f} s wall {t['cpu'][k]:8.1f} s CPU")
    verdict = "within" if m["process_wall_s"] <= budget else "OVER"
    print(f"  total    {m['wall_s']:8.1f} s  (process incl. start-up {m['process_wall_s']:.1f} s, {verdict} "
          f"the {budget:.0f} s budget); CPU {m['cpu_s']:.1f} s; "
          f"load average {m['load_before'][0]:.1f} -> {m['load_after'][0]:.1f} on {os.cpu_count()} cores")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("quick", "default"), default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the measurements here")
    p.add_argument("--cache-dir", default=None, help="result cache root (default: a fresh temporary one)")
    p.add_argument("--preprocess", choices=("global", "feature", "minmax"), default="global")
    p.add_argument("--stability", action="store_true", help="include the real-edge search")
    p.add_argument("--child", choices=("quick", "default"), default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:                                    # one measurement, JSON on stdout
        print(json.dumps(_measure(args.child, args.seed, args.preprocess, args.stability)))
        return 0
    import tempfile

    results = []
    cache_root = args.cache_dir or tempfile.mkdtemp(prefix="bench-smallnet-cache-")
    for mode in (args.only,) if args.only else ("quick", "default"):
        for state in ("cold", "warm"):
            env = dict(os.environ, XDG_CACHE_HOME=os.path.join(cache_root, mode))
            if state == "cold" and not args.cache_dir:
                assert not os.path.exists(env["XDG_CACHE_HOME"])
            t0 = time.perf_counter()
            extra = ["--preprocess", args.preprocess] + (["--stability"] if args.stability else [])
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--seed", str(args.seed),
                                  *extra],
                                 capture_output=True, text=True, check=True, env=env,
                                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            m = json.loads(out.stdout.strip().splitlines()[-1])
            m["cache"] = state
            m["process_wall_s"] = time.perf_counter() - t0    # start-up (imports) included
            _print(m)
            results.append(m)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
