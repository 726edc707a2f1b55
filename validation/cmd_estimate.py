"""``sgd-minima estimate``: tr Σ, tr H and λ_max of a trained run (``dnn.estimate_run``)."""

from __future__ import annotations

import os

from ._args import nonnegative_int, positive_int

HELP = "tr Sigma, tr H, lambda_max of a trained run"


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
    dnn.estimate_run(args.run_dir, examples=args.examples, probes=args.probes,
                     batch_size=args.batch_size, seed=args.seed, quiet=args.quiet)
    print(f"wrote {os.path.join(args.run_dir, 'estimates.json')}")
    return 0
