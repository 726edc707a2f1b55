"""Path-steps per second of sim's vectorised steppers against sdeint, in one run.

A path-step advances one d-dimensional chain by one step.  For each d we time
``sim.simulate`` (SGD with Gaussian noise, Euler–Maruyama, exact OU; all chains,
recording on, burn-in off, setup included) and ``sdeint.itoEuler`` / ``sdeint.itoSRI2``
on one path of the same SDE, and print our rate over itoEuler's ("per CPU-s" is the
rate per second of process CPU time, i.e. per core actually obtained).  Target (issue 2): at d=50,
>= 3e6 path-steps/s for SGD and OU on 2 cores, i.e. >= 15x itoEuler.

Usage: python benchmarks/bench_sim.py [--quick] [--dims 10 50] [--chains 1000] [--json PATH]
Not a test: numbers depend on the machine and its load (printed alongside).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import sdeint

import sim

LR, BATCH = 0.5, 10        # eta*h_max = 0.5 on misaligned_problem's spectrum [0.1, 1]


def _ours(problem, method, n_chains, n_steps, seed):
    method, _, precision = method.partition(":")
    cpu = time.process_time()
    r = sim.simulate(problem, method, lr=LR, batch_size=BATCH, n_chains=n_chains,
                     n_steps=n_steps, rng=seed, burn_in=0, precision=precision or "float64")
    return r.path_steps_per_s, n_chains * n_steps / (time.process_time() - cpu)


def _sdeint(problem, scheme, n_steps, seed):
    c = sim.sampler_noise_factor("with_replacement", BATCH, None)
    g = sim.diffusion_matrix(problem, LR, c)
    h_mat = problem.hessian
    tspan = LR * np.arange(n_steps + 1)
    integrate = sdeint.itoEuler if scheme == "itoEuler" else sdeint.itoSRI2
    t = time.perf_counter()
    integrate(lambda y, t: -h_mat @ y, lambda y, t: g, np.zeros(problem.dim), tspan,
              generator=np.random.default_rng(seed))
    return n_steps / (time.perf_counter() - t)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds (~15 s)")
    ap.add_argument("--dims", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--chains", type=int, default=1000)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)
    steps, sde_steps, sri_steps, repeat = ((1000, 2000, 200, 2) if a.quick
                                           else (3000, 10000, 1000, 5))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.processor() or platform.machine()}, {cores} cores, load {load:.1f}; "
          f"numpy {np.__version__}, sdeint {getattr(sdeint, '__version__', '?')}; "
          f"{a.chains} chains x {steps} steps; sdeint one path x {sde_steps} steps; "
          f"median of {repeat} interleaved rounds")
    print(f"{'d':>3} {'method':<16} {'path-steps/s':>13} {'per CPU-s':>11} {'vs itoEuler':>12}")
    rows = []
    labels = {"sgd": "sim sgd-gaussian", "em": "sim em", "ou": "sim exact-ou",
              "sgd:float32": "sgd-gaussian f32", "ou:float32": "exact-ou f32"}
    for d in a.dims:
        problem = sim.misaligned_problem(d, 1.0, seed=0)
        sri = _sdeint(problem, "itoSRI2", sri_steps, 0)
        # Rounds interleave the reference and ours, so load drift on a shared machine
        # hits both; medians over rounds are reported.
        rates = {k: [] for k in ["itoEuler", *labels]}
        cpus = {k: [] for k in labels}
        for rnd in range(repeat):
            rates["itoEuler"].append(_sdeint(problem, "itoEuler", sde_steps, rnd))
            for method in labels:
                rate, cpu = _ours(problem, method, a.chains, steps, rnd)
                rates[method].append(rate)
                cpus[method].append(cpu)
        ref = float(np.median(rates["itoEuler"]))
        for name, rate in [("sdeint itoEuler", ref), ("sdeint itoSRI2", sri)]:
            print(f"{d:>3} {name:<16} {rate:>13.3g} {'':>11} {rate / ref:>11.2f}x")
            rows.append(dict(d=d, method=name, path_steps_per_s=rate, ratio=rate / ref))
        for method, label in labels.items():
            rate, cpu = float(np.median(rates[method])), float(np.median(cpus[method]))
            ratio = float(np.median(np.array(rates[method]) / np.array(rates["itoEuler"])))
            print(f"{d:>3} {label:<16} {rate:>13.3g} {cpu:>11.3g} {ratio:>11.1f}x")
            rows.append(dict(d=d, method=label, path_steps_per_s=rate, per_cpu_s=cpu,
                             ratio=ratio))
    out = dict(cores=cores, load=load, chains=a.chains, steps=steps, rows=rows)
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=2)
        os.replace(tmp, a.json)
    return out


if __name__ == "__main__":
    main()
