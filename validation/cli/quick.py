"""``sgd-minima quick``: command-line options → :class:`validation.quick.QuickConfig`."""

from __future__ import annotations

from ._args import nonnegative_int

HELP = "default synthetic suite: Wang vs Jastrzebski vs exact (<10 s)"


def add_arguments(p):
    p.add_argument("--out", default="results/quick", help="output folder (default results/quick)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from ..quick import QuickConfig, run_quick

    return run_quick(QuickConfig(out=args.out, seed=args.seed, quiet=args.quiet))
