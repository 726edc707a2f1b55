"""``sgd-minima simulate``: command-line options → :class:`validation.simulate.SimulateConfig`."""

from __future__ import annotations

from ._args import byte_size, finite_float, nonnegative_int, positive_int, step_limit

HELP = "one synthetic simulation with chosen options"

# Literal copy of sim.DEFAULT_MAX_STEPS: importing sim here would slow every command's
# start-up (tests/test_cli.py checks they agree).
DEFAULT_MAX_STEPS = 10_000_000


def add_arguments(p):
    p.add_argument("--dim", type=positive_int, default=10)
    p.add_argument("--lr", type=finite_float, default=0.05)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--method", default="sgd", help="sgd | em (Euler-Maruyama) | ou (exact OU transition)")
    p.add_argument("--sampler", default="with_replacement",
                   help="with_replacement | without_replacement | epoch_shuffle (least squares)")
    p.add_argument("--problem", default="gaussian", help="gaussian | least-squares")
    p.add_argument("--misalignment", type=finite_float, default=1.0,
                   help="0: Sigma = H; 1: unrelated eigenbasis and spectrum")
    p.add_argument("--momentum", type=finite_float, default=0.0,
                   help="heavy-ball beta in [0, 1) (method sgd; default 0: plain SGD)")
    p.add_argument("--n-data", type=positive_int, default=200,
                   help="dataset size for least-squares problems")
    p.add_argument("--chains", type=positive_int, default=1000)
    p.add_argument("--steps", type=positive_int, default=4000)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--precision", default="float64",
                   help="float64 | float32 (faster; Gaussian-noise methods only)")
    p.add_argument("--out", default="results/simulate")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--max-steps", type=step_limit, default=DEFAULT_MAX_STEPS,
                   help="refuse runs needing more steps per chain, burn-in included "
                        f"(default {DEFAULT_MAX_STEPS:.0e}; 'none': no limit)")
    p.add_argument("--max-memory", type=byte_size, default="auto",
                   help="refuse runs needing more memory, e.g. 4GiB (default: half of the "
                        "available memory; 'none': no limit)")


def run(args) -> int:
    from ..simulate import SimulateConfig, run_simulate

    cfg = SimulateConfig(dim=args.dim, lr=args.lr, batch_size=args.batch_size,
                         method=args.method, sampler=args.sampler, problem=args.problem,
                         misalignment=args.misalignment, momentum=args.momentum,
                         n_data=args.n_data,
                         chains=args.chains, steps=args.steps, seed=args.seed,
                         precision=args.precision, out=args.out, quiet=args.quiet,
                         max_steps=args.max_steps, max_memory=args.max_memory)
    return run_simulate(cfg)
