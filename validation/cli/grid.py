"""``sgd-minima grid``: command-line options → a :class:`validation.grid.Preset`, then ``run_grid``.

Exit status: 0 when every run of the grid (or shard) ended completed or diverged
(divergence is a recorded outcome of training, not a failure of the tool); 1 when
a run or stage failed (the summary printed at the end names each one: run, stage,
path and error); 2 for bad input, detected before any training.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ._args import UsageError, finite_float, positive_int

HELP = "train, estimate and measure a grid of runs"


def add_arguments(p):
    from ..grid.executors import EXECUTORS

    p.add_argument("--preset", required=True, help="paper | short | smoke | fashion")
    p.add_argument("--out", default="runs")
    p.add_argument("--backend", default=None)
    p.add_argument("--loss", default=None, help="comma-separated losses, e.g. kld,logit_grad")
    p.add_argument("--shard", default=None, help="i/n: run the i-th of n deterministic shards")
    p.add_argument("--stationary-lr", type=finite_float, default=None,
                   help="eta_s of the stationary phase (default: the schedule's final LR)")
    p.add_argument("--stationary-steps", type=positive_int, default=None,
                   help="recorded SGD steps K of the stationary phase (default: the preset's)")
    p.add_argument("--stationary-batch-size", type=positive_int, default=None,
                   help="batch size S_s of the stationary phase (default: the preset's, else "
                        "each run's)")
    p.add_argument("--stationary-momentum", type=finite_float, default=None,
                   help="heavy-ball beta_s in [0, 1) of the stationary phase (default: each "
                        "run's training momentum)")
    p.add_argument("--momentum", type=finite_float, default=None,
                   help="training momentum beta in [0, 1) of every run, overriding the "
                        "preset's (an --out holding runs of another beta is refused)")
    p.add_argument("--data", default=None,
                   help="override the preset's data: cifar10 | synthetic | fashion_mnist "
                        "(e.g. a GPU check offline)")
    p.add_argument("--data-dir", default=None,
                   help="folder searched first for the data files (default: the Keras cache, "
                        "then /usr/share/datasets for Fashion-MNIST)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: runs one after the other in this process (default); "
                        "ray: one Ray task per run, one GPU each if the cluster has GPUs")
    p.add_argument("--address", default=None,
                   help="with --executor ray: the Ray cluster to join (default: start a local one)")
    p.add_argument("--quiet", action="store_true")


def _preset(args):
    """The preset with the command line's overrides, all checked before any work."""
    from ..grid import get_preset

    preset = get_preset(args.preset)
    if args.data is not None:
        from dnn.convnet.train import DATA_SOURCES

        if args.data not in DATA_SOURCES:
            raise UsageError(f"--data must be one of {', '.join(DATA_SOURCES)}; got {args.data!r}")
        preset = dataclasses.replace(preset, data=args.data)
    if args.stationary_lr is not None and not args.stationary_lr > 0:
        raise UsageError(f"--stationary-lr must be > 0; got {args.stationary_lr!r}")
    for flag, beta in (("--momentum", args.momentum),
                       ("--stationary-momentum", args.stationary_momentum)):
        if beta is not None and not 0 <= beta < 1:
            raise UsageError(f"{flag} must be in [0, 1); got {beta!r}")
    if args.momentum is not None:
        preset = dataclasses.replace(preset, momentum=args.momentum)
    if (args.stationary_lr is not None or args.stationary_steps is not None
            or args.stationary_momentum is not None or args.stationary_batch_size is not None):
        st = preset.stationary
        preset = dataclasses.replace(preset, stationary=dataclasses.replace(
            st, lr=st.lr if args.stationary_lr is None else args.stationary_lr,
            steps=st.steps if args.stationary_steps is None else args.stationary_steps,
            momentum=(st.momentum if args.stationary_momentum is None
                      else args.stationary_momentum),
            batch_size=(st.batch_size if args.stationary_batch_size is None
                        else args.stationary_batch_size)))
    return preset


def run(args) -> int:
    import dnn

    from ..grid.executors import MissingRayError
    from ..grid import format_summary, parse_shard, run_grid

    if args.address is not None and args.executor != "ray":
        raise UsageError(f"--address needs --executor ray; got --address {args.address!r}")
    if args.data_dir is not None and not Path(args.data_dir).expanduser().is_dir():
        raise UsageError(f"--data-dir must be an existing folder; got {args.data_dir!r}")
    dnn.set_backend(args.backend)
    preset = _preset(args)
    shard = parse_shard(args.shard)
    losses = None if args.loss is None else tuple(x.strip() for x in args.loss.split(","))
    try:
        record = run_grid(preset, args.out, backend=args.backend, losses=losses, shard=shard,
                          quiet=args.quiet, executor=args.executor, address=args.address,
                          data_dir=args.data_dir)
    except MissingRayError as exc:
        raise UsageError(f"--executor ray: {exc}") from None
    print(format_summary(record))
    return 1 if record["n_failed"] else 0
