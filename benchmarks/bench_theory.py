"""Benchmark: Lyapunov solve HΓ + ΓH = Σ, eigenbasis route vs scipy, in the same run.

Usage: python benchmarks/bench_theory.py [--dims 500 1000 2000] [--no-scipy-above 1000]

Prints seconds per solve and the speed-up ratio.  scipy's Bartels–Stewart solver
takes about a minute at d = 2000, so by default it is skipped above d = 1000.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg as sl

import theory


def _time(fn, repeat):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", type=int, nargs="+", default=[200, 500, 1000, 2000])
    p.add_argument("--no-scipy-above", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'d':>6} {'eigenbasis s':>13} {'scipy s':>10} {'ratio':>7}  max residual")
    for d in args.dims:
        m = rng.normal(size=(d, d))
        h = m @ m.T / d + 0.1 * np.eye(d)
        n = rng.normal(size=(d, d))
        s = n @ n.T / d
        t_ours = _time(lambda: theory.stationary_covariance(h, s), args.repeat)
        g = theory.stationary_covariance(h, s)
        resid = np.abs(h @ g + g @ h - s).max()
        if d <= args.no_scipy_above:
            t_scipy = _time(lambda: sl.solve_continuous_lyapunov(-h, s), 1)
            print(f"{d:>6} {t_ours:>13.3f} {t_scipy:>10.3f} {t_scipy / t_ours:>6.1f}x  {resid:.1e}")
        else:
            print(f"{d:>6} {t_ours:>13.3f} {'skipped':>10} {'':>7}  {resid:.1e}")


if __name__ == "__main__":
    main()
