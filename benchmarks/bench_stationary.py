"""Benchmark: stationary-phase steps/s, old per-step loop against the compiled loop, same run.

Usage:
    python benchmarks/bench_stationary.py [--steps 160] [--burn-in 40] [--batch-size 16]
        [--phases 2] [--json OUT]

The smoke preset's model and phase (ResNet-8, width 4, synthetic CIFAR-shaped data,
512 training examples, S = 16, η_s = 0.05, record every 2 steps, 8 blocks, 64
evaluation examples; ``validation/grid/presets.py``).  Each loop runs in its own
fresh process (so neither inherits the other's warm-up), on ``--phases`` models of
the same architecture with different weights, one after the other, as a grid does:

- ``per_step``: one ``train_on_batch`` per step with the measuring Keras optimizer
  (the path before the compiled loop; TensorFlow's path still);
- ``compiled``: the JAX engine, one compiled step dispatched asynchronously per
  step on CPU, compiled once per architecture and batch size in the process;
- ``scan``: the same engine with a ``lax.scan`` per block (the accelerator default);
- ``baseline``: with ``--baseline-tree PATH``, ``sgd_stationary`` of another checkout,
  e.g. the commit before the compiled loop (``git worktree add /tmp/old <commit>``).

Reports each phase's wall time and steps/s (burn-in + recorded steps, loss
evaluations and the θ̄ bookkeeping included), the first phase including
compilation and the later ones cached, and the ratios against ``per_step``.
The device and the load average are printed next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

LOOPS = ("per_step", "compiled", "scan", "baseline")


def _one(loop, steps, burn_in, batch_size, phases):
    """Run ``phases`` phases with one loop in this process; returns their wall times."""
    import numpy as np

    import dnn
    from dnn.convnet.losses import get_loss
    from dnn.convnet.stationary import sgd_stationary

    # the baseline checkout has neither the compiled engine nor the loop argument
    kw = {} if loop == "baseline" else {"loop": "per_step" if loop == "per_step" else "compiled"}
    if loop == "scan":
        from dnn.convnet import _stationary_jax

        init = _stationary_jax.JaxStationaryEngine.__init__

        def scanned(self, *a, **k):
            init(self, *a, **k, scan_blocks=True)
        _stationary_jax.JaxStationaryEngine.__init__ = scanned
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 32, 32, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 512)]
    out = []
    for k in range(phases):
        model = dnn.resnet(8, width=4, seed=k)
        t0 = time.perf_counter()
        ph = sgd_stationary(model, x, y, get_loss("kld"), lr=0.05, batch_size=batch_size,
                            steps=steps, burn_in=burn_in, record_every=2, n_blocks=8,
                            eval_x=x[:64], eval_y=y[:64], seed=k, **kw)
        wall = time.perf_counter() - t0
        out.append({"wall_s": wall, "steps": ph["burn_in"] + ph["steps"],
                    "steps_per_s": (ph["burn_in"] + ph["steps"]) / wall, "status": ph["status"],
                    "code": sys.modules[sgd_stationary.__module__].__file__})
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--burn-in", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--phases", type=int, default=2)
    p.add_argument("--loops", nargs="+", default=None, choices=LOOPS,
                   help="default: per_step compiled scan, and baseline with --baseline-tree")
    p.add_argument("--baseline-tree", default=None,
                   help="a checkout of the code to compare with (the 'baseline' loop)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        res = _one(args.child, args.steps, args.burn_in, args.batch_size, args.phases)
        print("RESULT " + json.dumps(res))
        return 0

    import jax

    device = f"{jax.default_backend()}: {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    loops = args.loops or (["baseline"] if args.baseline_tree else []) + list(LOOPS[:3])
    if "baseline" in loops and not args.baseline_tree:
        p.error("the baseline loop needs --baseline-tree")
    results = {}
    for loop in loops:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", loop, "--steps",
               str(args.steps), "--burn-in", str(args.burn_in), "--batch-size",
               str(args.batch_size), "--phases", str(args.phases)]
        child_env = dict(env)
        if loop == "baseline":
            tree = os.path.abspath(args.baseline_tree)
            child_env["PYTHONPATH"] = os.pathsep.join([tree, os.environ.get("PYTHONPATH", "")])
        done = subprocess.run(cmd, env=child_env, capture_output=True, text=True, check=True,
                              cwd=root)
        line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
        results[loop] = json.loads(line[len("RESULT "):])
        load = os.getloadavg()
        print(f"{loop:9s} " + "  ".join(
            f"phase {i + 1}: {r['wall_s']:6.2f} s, {r['steps_per_s']:6.1f} steps/s"
            for i, r in enumerate(results[loop])) + f"   (load {load[0]:.2f})", flush=True)
    print(f"device: {device}; {args.burn_in} + {args.steps} steps per phase, S = "
          f"{args.batch_size}")
    base_name = "baseline" if "baseline" in results else "per_step"
    base = results.get(base_name)
    if base:
        for loop, rs in results.items():
            if loop == base_name:
                continue
            ratios = ", ".join(f"phase {i + 1} {b['wall_s'] / r['wall_s']:.2f}x"
                               for i, (r, b) in enumerate(zip(rs, base)))
            print(f"speed-up of {loop} over {base_name} (wall time): {ratios}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device": device, "settings": vars(args), "results": results}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
