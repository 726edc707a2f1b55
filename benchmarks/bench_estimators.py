"""Benchmark: seconds per batch of the estimator primitives, against a plain gradient, same run.

Usage:
    python benchmarks/bench_estimators.py [--backend jax] [--depth 56] [--batch-sizes 256 1024]
        [--repeat 5] [--json OUT]

For each batch size, on a ResNet (random weights, synthetic CIFAR-shaped data,
inference-mode batch norm) it times, after compilation:

- baseline: the mean-loss gradient (one forward + backward);
- HVP (``jvp`` of ``grad``), one Hutchinson probe;
- per-example gradient square norms (``vmap`` of ``grad`` on JAX),

and prints s/batch, s per 50k examples and the ratio to the baseline.  The
anchors (H100, JAX, fp32) are HVP 0.021 s and per-example 0.054 s per batch of 256.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _best(fn, repeat):
    fn()                                    # compile / warm up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"))
    p.add_argument("--depth", type=int, default=56)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import dnn

    dnn.set_backend(args.backend)
    import numpy as np

    from dnn._runio import device_description
    from dnn.convnet.data import channel_stats, standardize
    from dnn.convnet.measure import model_ops

    model = dnn.resnet(args.depth, width=args.width, seed=0)
    ops = model_ops(model, "kld")
    rng = np.random.default_rng(0)
    device = device_description(args.backend)
    print(f"device: {device}; backend {args.backend}; ResNet-{args.depth} width {args.width}")
    print(f"{'batch':>6} {'grad s':>8} {'HVP s':>8} {'x grad':>7} {'per-ex s':>9} {'x grad':>7} "
          f"{'HVP s/50k':>10} {'per-ex s/50k':>13}")
    rows = []
    for bs in args.batch_sizes:
        xu, y = dnn.synthetic_cifar(bs, seed=1)
        mean, std = channel_stats(xu)
        x = standardize(xu, mean, std)
        w = np.ones(bs, dtype=np.float32)
        v = [rng.choice([-1.0, 1.0], size=s).astype(np.float32) for s in ops.shapes]
        t_grad = _best(lambda: ops.loss_grad(x, y, w), args.repeat)
        t_hvp = _best(lambda: ops.hvp(x, y, w, v), args.repeat)
        t_pe = _best(lambda: ops.per_example(x, y, w), args.repeat)
        per50k = 50_000 / bs
        rows.append({"batch_size": bs, "grad_s": t_grad, "hvp_s": t_hvp, "per_example_s": t_pe,
                     "device": device})
        print(f"{bs:>6} {t_grad:>8.4f} {t_hvp:>8.4f} {t_hvp / t_grad:>7.2f} {t_pe:>9.4f} "
              f"{t_pe / t_grad:>7.2f} {t_hvp * per50k:>10.2f} {t_pe * per50k:>13.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "backend": args.backend, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
