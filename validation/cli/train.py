"""``sgd-minima train``: command-line options → :class:`dnn.TrainConfig`, then ``dnn.train``."""

from __future__ import annotations

import os

from ._args import UsageError, finite_float, nonnegative_int, positive_int

HELP = "train a Keras ResNet with the paper's recipe"


def add_arguments(p):
    p.add_argument("--batch-size", type=positive_int, required=True)
    p.add_argument("--lr", type=finite_float, required=True)
    p.add_argument("--loss", default="kld", help="kld | xent | logit_grad")
    p.add_argument("--epochs", type=positive_int, default=125)
    p.add_argument("--depth", type=positive_int, default=56)
    p.add_argument("--width", type=positive_int, default=16)
    p.add_argument("--shortcut", default="projection", help="projection | zero_pad")
    p.add_argument("--l2", type=finite_float, default=1e-4, help="L2 weight decay on conv/dense kernels")
    p.add_argument("--momentum", type=finite_float, default=0.0, help="0: plain SGD, as the theory assumes")
    p.add_argument("--milestones", default="60,100",
                   help="comma-separated epochs after which the LR is multiplied by --lr-decay")
    p.add_argument("--lr-decay", type=finite_float, default=0.1)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--precision", default="float32", help="float32 | mixed_bfloat16")
    p.add_argument("--data", default="cifar10", help="cifar10 | synthetic | fashion_mnist")
    p.add_argument("--data-dir", default=None,
                   help="folder holding cifar-10-python.tar.gz or the four Fashion-MNIST IDX files")
    p.add_argument("--n-train", type=positive_int, default=None)
    p.add_argument("--n-test", type=positive_int, default=None)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--backend", default=None, help="jax | tensorflow (default: $KERAS_BACKEND or jax)")
    p.add_argument("--out", default="runs", help="parent folder; the run folder is named after the config")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    import dnn
    from dnn._runio import check_output_dir

    check_output_dir(args.out, "out")        # before any import of keras or data
    dnn.set_backend(args.backend)
    try:
        milestones = tuple(int(m) for m in args.milestones.split(",") if m.strip())
    except ValueError:
        raise UsageError(f"--milestones must be comma-separated integers; got "
                         f"{args.milestones!r}") from None
    cfg = dnn.TrainConfig(batch_size=args.batch_size, lr=args.lr, epochs=args.epochs,
                          depth=args.depth, width=args.width, shortcut=args.shortcut,
                          l2=args.l2, momentum=args.momentum, milestones=milestones,
                          lr_decay=args.lr_decay, loss=args.loss,
                          augment=not args.no_augment, seed=args.seed,
                          backend=os.environ.get("KERAS_BACKEND"), precision=args.precision,
                          data=args.data, n_train=args.n_train, n_test=args.n_test,
                          data_dir=args.data_dir)
    from ..grid import run_name

    run_dir = os.path.join(args.out, run_name(cfg.loss, cfg.batch_size, cfg.lr, cfg.seed))
    summary = dnn.train(cfg, run_dir, quiet=args.quiet)
    print(f"{run_dir}: {summary['status']}")
    return 0 if summary["status"] == "completed" else 1
