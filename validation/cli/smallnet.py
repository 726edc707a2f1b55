"""``sgd-minima smallnet``: command-line options → :class:`validation.smallnet.SmallnetConfig`."""

from __future__ import annotations

from ._args import csv_list, finite_float, nonnegative_int, positive_int

HELP = ("real SGD on a small exact network (digits MLP) vs Wang, Jastrzebski, discrete, "
        "state-dependent and linearised SGD; its mean-square stability edge")


def add_arguments(p):
    p.add_argument("--activation", default="tanh",
                   help="tanh | softplus | relu (relu has no smooth minimum and is refused)")
    p.add_argument("--hidden", type=csv_list(positive_int, "--hidden"), default=(32,),
                   help="hidden widths, comma-separated (default 32: P = 2410)")
    p.add_argument("--l2", type=finite_float, default=1e-3, help="lambda of lambda*|theta|^2 (default 1e-3)")
    p.add_argument("--eta-h", type=csv_list(finite_float, "--eta-h"), default=None,
                   help="learning rates as lr*h_max, each in (0, 2(1+momentum)) "
                        "(default 0.05,0.2,0.5,1.0; --quick 0.2,1.0)")
    p.add_argument("--momentum", type=finite_float, default=0.0, metavar="BETA",
                   help="heavy-ball momentum beta in [0, 1) for the real and linearised chains "
                        "(default 0: plain SGD); the predictions take it, dE1 and the stability "
                        "stage are n/a with it")
    p.add_argument("--batch-sizes", type=csv_list(positive_int, "--batch-sizes"), default=None,
                   help="minibatch sizes (default 8,64)")
    p.add_argument("--chains", type=positive_int, default=None,
                   help="SGD chains per setting (default 32; --quick 16)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--without-replacement", action="store_true",
                   help="draw each minibatch without replacement (default: with)")
    p.add_argument("--no-cache", action="store_true",
                   help="find theta*, H and its spectrum afresh instead of reusing the verified "
                        "cache in $XDG_CACHE_HOME/sgd-minima/smallnet")
    p.add_argument("--preprocess", choices=("global", "feature", "minmax"), default="global",
                   help="input scaling: one mean and sd over all pixels (global, default), "
                        "per-feature standardisation (feature), or x/16 (minmax)")
    p.add_argument("--stability", action="store_true",
                   help="also search the real edge: the smallest lr*h_max at which most real "
                        "chains diverge (the linear edge is always computed)")
    p.add_argument("--quick", action="store_true", help="fewer, shorter settings (<= 60 s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, help="output folder for smallnet.json/.md/.png")


def run(args) -> int:
    from ..smallnet import SmallnetConfig, run_smallnet

    return run_smallnet(SmallnetConfig(
        activation=args.activation, hidden=args.hidden, l2=args.l2, eta_h=args.eta_h,
        batch_sizes=args.batch_sizes, chains=args.chains, seed=args.seed, quick=args.quick,
        quiet=args.quiet, out=args.out, replacement=not args.without_replacement,
        cache=not args.no_cache, preprocess=args.preprocess, stability=args.stability,
        momentum=args.momentum))
