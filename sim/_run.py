"""Run shards of chains in rounds of K steps, on threads (numpy and BLAS release the GIL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm.auto import tqdm

try:  # optional: pins BLAS to one thread per shard thread (no oversubscription)
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - without it BLAS may oversubscribe the cores
    threadpool_limits = None

__all__ = ["Shard", "run_shards"]


class Shard:
    """A fixed group of chains with its own noise source, stepper state and recorder."""

    def __init__(self, stepper, source, x0, recorder, block):
        self.stepper, self.source, self.recorder = stepper, source, recorder
        self.state = stepper.init(source, x0)
        # x0 may be a stacked (position, velocity) start; blocks hold positions only.
        self.buf = np.empty((block, x0.shape[0], recorder.dim),
                            dtype=getattr(stepper, "dtype", "float64"))
        recorder.remember(x0[:, :recorder.dim])

    def run(self, n: int, j0: int) -> None:
        """Advance n steps; record the rows with j >= 0 (j0 is the first row's step index)."""
        out = self.buf[:n]
        self.state = self.stepper.advance(self.state, self.source, out)
        if j0 + n > 0:
            self.recorder.update(out, j0)
        elif j0 + n == 0:                       # the last burn-in state precedes step 0
            self.recorder.remember(out[-1])


def run_shards(shards, *, burn_in: int, n_steps: int, block: int, workers: int,
               progress: bool, desc: str) -> None:
    """Advance every shard burn_in + n_steps steps; recording starts after burn-in.

    Rounds never straddle the end of burn-in.  BLAS is pinned to one thread while
    shards run on ``workers`` threads, so the cores are not oversubscribed.
    """
    total = burn_in + n_steps
    n_threads = min(workers, len(shards))
    pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None
    limit = threadpool_limits(1, user_api="blas") if threadpool_limits else None
    try:
        with tqdm(total=total, disable=not progress, unit="step", desc=desc) as bar:
            done = 0
            while done < total:
                n = min(block, total - done, burn_in - done if done < burn_in else total)
                j0 = done - burn_in
                if pool is None:
                    for s in shards:
                        s.run(n, j0)
                else:
                    list(pool.map(Shard.run, shards, [n] * len(shards), [j0] * len(shards)))
                done += n
                bar.update(n)
    finally:
        if pool is not None:
            pool.shutdown()
        if limit is not None:
            limit.restore_original_limits()
