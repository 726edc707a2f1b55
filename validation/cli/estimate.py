"""``sgd-minima estimate``: tr Σ, tr H and λ_max of a trained run (``dnn.estimate_run``)."""

from __future__ import annotations

import os
import sys
import warnings

from ._args import nonnegative_int, positive_int

HELP = "tr Sigma, tr H, lambda_max of a trained run (exit 1 if the estimate is degenerate)"


def add_arguments(p):
    p.add_argument("run_dir")
    p.add_argument("--examples", type=positive_int, default=None, help="evaluation examples (default all)")
    p.add_argument("--probes", type=positive_int, default=None, help="Hutchinson probes (default: one per batch)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--backend", default=None)
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    import dnn

    dnn.set_backend(args.backend)
    with warnings.catch_warnings():
        # Reported below as one line (and exit code 1) instead of a warning with a source line.
        warnings.filterwarnings("ignore", message="degenerate estimate", category=RuntimeWarning)
        out = dnn.estimate_run(args.run_dir, examples=args.examples, probes=args.probes,
                               batch_size=args.batch_size, seed=args.seed, quiet=args.quiet)
    path = os.path.join(args.run_dir, "estimates.json")
    if out.get("degenerate"):
        print(f"sgd-minima estimate: degenerate estimate, not a measurement (written to {path} "
              f"with degenerate: true): {out['degenerate_reason']}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0
