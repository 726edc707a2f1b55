"""``sgd-minima grid``: command-line options → a :class:`validation.grid.Preset`, then ``run_grid``."""

from __future__ import annotations

import dataclasses

from ._args import UsageError, finite_float, positive_int

HELP = "train, estimate and measure a grid of runs"


def add_arguments(p):
    p.add_argument("--preset", required=True, help="paper | short | smoke")
    p.add_argument("--out", default="runs")
    p.add_argument("--backend", default=None)
    p.add_argument("--loss", default=None, help="comma-separated losses, e.g. kld,logit_grad")
    p.add_argument("--shard", default=None, help="i/n: run the i-th of n deterministic shards")
    p.add_argument("--stationary-lr", type=finite_float, default=None,
                   help="eta_s of the stationary phase (default: the schedule's final LR)")
    p.add_argument("--stationary-steps", type=positive_int, default=None,
                   help="recorded SGD steps K of the stationary phase (default: the preset's)")
    p.add_argument("--data", default=None,
                   help="override the preset's data: cifar10 | synthetic (e.g. a GPU check offline)")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    import dnn

    from .grid import get_preset, parse_shard, run_grid

    dnn.set_backend(args.backend)
    preset = get_preset(args.preset)
    if args.data is not None:
        if args.data not in ("cifar10", "synthetic"):
            raise UsageError(f"--data must be cifar10 or synthetic; got {args.data!r}")
        preset = dataclasses.replace(preset, data=args.data)
    if args.stationary_lr is not None or args.stationary_steps is not None:
        st = preset.stationary
        preset = dataclasses.replace(preset, stationary=dataclasses.replace(
            st, lr=st.lr if args.stationary_lr is None else args.stationary_lr,
            steps=st.steps if args.stationary_steps is None else args.stationary_steps))
    losses = None if args.loss is None else tuple(x.strip() for x in args.loss.split(","))
    run_grid(preset, args.out, backend=args.backend, losses=losses,
             shard=parse_shard(args.shard), quiet=args.quiet)
    return 0
