"""The ``sgd-minima`` command line.

The CLI only parses arguments into frozen config objects and calls library
functions.  Library errors (``ValueError`` and its subclasses, missing files)
become one line on stderr and exit code 2, without a traceback.  Heavy DNN
imports happen inside the DNN subcommands only.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]

PROG = "sgd-minima"


class UsageError(ValueError):
    """A bad command line (unknown option, malformed value)."""


class _Parser(argparse.ArgumentParser):
    # argparse prints usage plus an error and exits; we want one line and code 2,
    # the same as any other bad input.
    def error(self, message):
        raise UsageError(message)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return value


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Check where SGD settles: synthetic problems and ResNet-56.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    q = sub.add_parser("quick", help="default synthetic suite: Wang vs Jastrzebski vs exact (<10 s)")
    q.add_argument("--out", default="results/quick", help="output folder (default results/quick)")
    q.add_argument("--seed", type=_positive_int, default=0)
    q.add_argument("--quiet", action="store_true", help="no progress bars")

    s = sub.add_parser("simulate", help="one synthetic simulation with chosen options")
    s.add_argument("--dim", type=_positive_int, default=10)
    s.add_argument("--lr", type=_float, default=0.05)
    s.add_argument("--batch-size", type=_positive_int, default=8)
    s.add_argument("--method", default="sgd", help="sgd | em (Euler-Maruyama) | ou (exact OU transition)")
    s.add_argument("--sampler", default="with_replacement",
                   help="with_replacement | without_replacement | epoch_shuffle (least squares)")
    s.add_argument("--problem", default="gaussian", help="gaussian | least-squares")
    s.add_argument("--misalignment", type=_float, default=1.0,
                   help="0: Sigma = H; 1: unrelated eigenbasis and spectrum")
    s.add_argument("--n-data", type=_positive_int, default=200,
                   help="dataset size for least-squares problems")
    s.add_argument("--chains", type=_positive_int, default=1000)
    s.add_argument("--steps", type=_positive_int, default=4000)
    s.add_argument("--seed", type=_positive_int, default=0)
    s.add_argument("--precision", default="float64",
                   help="float64 | float32 (faster; Gaussian-noise methods only)")
    s.add_argument("--out", default="results/simulate")
    s.add_argument("--quiet", action="store_true")

    t = sub.add_parser("train", help="train a Keras ResNet with the paper's recipe")
    t.add_argument("--batch-size", type=_positive_int, required=True)
    t.add_argument("--lr", type=_float, required=True)
    t.add_argument("--loss", default="kld", help="kld | xent | logit_grad")
    t.add_argument("--epochs", type=_positive_int, default=125)
    t.add_argument("--depth", type=_positive_int, default=56)
    t.add_argument("--width", type=_positive_int, default=16)
    t.add_argument("--shortcut", default="projection", help="projection | zero_pad")
    t.add_argument("--l2", type=_float, default=1e-4, help="L2 weight decay on conv/dense kernels")
    t.add_argument("--momentum", type=_float, default=0.0, help="0: plain SGD, as the theory assumes")
    t.add_argument("--milestones", default="60,100",
                   help="comma-separated epochs after which the LR is multiplied by --lr-decay")
    t.add_argument("--lr-decay", type=_float, default=0.1)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--precision", default="float32", help="float32 | mixed_bfloat16")
    t.add_argument("--data", default="cifar10", help="cifar10 | synthetic")
    t.add_argument("--data-dir", default=None, help="folder holding cifar-10-python.tar.gz")
    t.add_argument("--n-train", type=_positive_int, default=None)
    t.add_argument("--n-test", type=_positive_int, default=None)
    t.add_argument("--seed", type=_positive_int, default=0)
    t.add_argument("--backend", default=None, help="jax | tensorflow (default: $KERAS_BACKEND or jax)")
    t.add_argument("--out", default="runs", help="parent folder; the run folder is named after the config")
    t.add_argument("--quiet", action="store_true")

    e = sub.add_parser("estimate", help="tr Sigma, tr H, lambda_max of a trained run")
    e.add_argument("run_dir")
    e.add_argument("--examples", type=_positive_int, default=None, help="evaluation examples (default all)")
    e.add_argument("--probes", type=_positive_int, default=None, help="Hutchinson probes (default: one per batch)")
    e.add_argument("--batch-size", type=_positive_int, default=256)
    e.add_argument("--seed", type=_positive_int, default=0)
    e.add_argument("--backend", default=None)
    e.add_argument("--quiet", action="store_true")

    g = sub.add_parser("grid", help="train, estimate and measure a grid of runs")
    g.add_argument("--preset", required=True, help="paper | short | smoke")
    g.add_argument("--out", default="runs")
    g.add_argument("--backend", default=None)
    g.add_argument("--loss", default=None, help="comma-separated losses, e.g. kld,logit_grad")
    g.add_argument("--shard", default=None, help="i/n: run the i-th of n deterministic shards")
    g.add_argument("--stationary-lr", type=_float, default=None,
                   help="eta_s of the stationary phase (default: the schedule's final LR)")
    g.add_argument("--stationary-steps", type=_positive_int, default=None,
                   help="recorded SGD steps K of the stationary phase (default: the preset's)")
    g.add_argument("--data", default=None,
                   help="override the preset's data: cifar10 | synthetic (e.g. a GPU check offline)")
    g.add_argument("--quiet", action="store_true")

    r = sub.add_parser("report", help="tables and figures from saved runs")
    r.add_argument("runs_dir")
    r.add_argument("--out", default="report")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _build_parser().parse_args(argv)
        return _dispatch(args)
    except (ValueError, OSError) as exc:
        # OSError: an --out that is a file, an unwritable folder, a missing run folder.
        cmd = argv[0] if argv and not argv[0].startswith("-") else ""
        print(f"{PROG}{' ' + cmd if cmd else ''}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    if args.command == "quick":
        from .quick import QuickConfig, run_quick

        return run_quick(QuickConfig(out=args.out, seed=args.seed, quiet=args.quiet))
    if args.command == "simulate":
        from .simulate import SimulateConfig, run_simulate

        cfg = SimulateConfig(dim=args.dim, lr=args.lr, batch_size=args.batch_size,
                             method=args.method, sampler=args.sampler, problem=args.problem,
                             misalignment=args.misalignment, n_data=args.n_data,
                             chains=args.chains, steps=args.steps, seed=args.seed,
                             precision=args.precision, out=args.out, quiet=args.quiet)
        return run_simulate(cfg)
    # DNN commands: choose the Keras backend before anything imports keras.
    import dnn

    if args.command != "report":
        dnn.set_backend(args.backend)
    if args.command == "train":
        return _train(args, dnn)
    if args.command == "estimate":
        dnn.estimate_run(args.run_dir, examples=args.examples, probes=args.probes,
                         batch_size=args.batch_size, seed=args.seed, quiet=args.quiet)
        print(f"wrote {os.path.join(args.run_dir, 'estimates.json')}")
        return 0
    if args.command == "grid":
        import dataclasses

        from .grid import get_preset, parse_shard, run_grid

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
    from .report import build_report

    out = build_report(args.runs_dir, args.out)
    print(f"wrote {out}")
    return 0


def _train(args, dnn) -> int:
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
    from .grid import run_name

    run_dir = os.path.join(args.out, run_name(cfg.loss, cfg.batch_size, cfg.lr, cfg.seed))
    summary = dnn.train(cfg, run_dir, quiet=args.quiet)
    print(f"{run_dir}: {summary['status']}")
    return 0 if summary["status"] == "completed" else 1
