r"""Minibatch index samplers for finite datasets, vectorised over chains.

Each sampler is a frozen description (n_data N, batch_size S) with explicit state:
``state = sampler.init(rng, n_chains)``, then
``idx, state = sampler.draw(state, rng, n_steps)`` with ``idx`` of shape
(n_steps, n_chains, S).  Chains draw independently.

Marginal noise factor c_S (Cov of one minibatch mean gradient = c_S Σ at fixed θ):

- ``with_replacement``: S i.i.d. uniform indices, c_S = 1/S;
- ``without_replacement``: a uniform S-subset each step, c_S = (N−S)/(S(N−1));
- ``epoch_shuffle``: a fresh per-chain permutation each epoch, cut into ⌊N/S⌋
  consecutive batches (the last N mod S examples of a permutation are dropped, as
  with ``drop_last``).  Each batch is marginally a uniform S-subset, so c_S is the
  without-replacement value, but batches within an epoch are dependent: the noise is
  anti-correlated in time (Kühn & Rosenow 2023), which the i.i.d. formulas ignore.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory import noise_factor

from . import _validate as v

__all__ = ["SAMPLERS", "WithReplacement", "WithoutReplacement", "EpochShuffle", "make_sampler",
           "sampler_noise_factor"]

SAMPLERS = ("with_replacement", "without_replacement", "epoch_shuffle")


@dataclass(frozen=True)
class _Sampler:
    n_data: int
    batch_size: int

    def __post_init__(self):
        n = v.integer(self.n_data, "n_data", minimum=1)
        s = v.integer(self.batch_size, "batch_size", minimum=1, maximum=n)
        object.__setattr__(self, "n_data", n)
        object.__setattr__(self, "batch_size", s)

    def init(self, rng: np.random.Generator, n_chains: int):
        """Initial sampler state for ``n_chains`` independent chains."""
        return n_chains


@dataclass(frozen=True)
class WithReplacement(_Sampler):
    """S i.i.d. uniform indices per step and chain (c_S = 1/S)."""

    name = "with_replacement"

    def draw(self, state, rng, n_steps):
        """Return (indices of shape (n_steps, n_chains, S), state)."""
        return rng.integers(0, self.n_data, size=(n_steps, state, self.batch_size)), state


@dataclass(frozen=True)
class WithoutReplacement(_Sampler):
    """A uniform random S-subset per step and chain (c_S = (N−S)/(S(N−1)))."""

    name = "without_replacement"

    def draw(self, state, rng, n_steps):
        """Return (indices of shape (n_steps, n_chains, S), state).

        Floyd's algorithm, vectorised over rows: for j = N−S, …, N−1 draw t uniform
        on {0, …, j}; keep t unless already chosen, else take j.  Every S-subset is
        equally likely; the cost is O(S²) per row instead of O(N) for a shuffle.
        """
        n, s = self.n_data, self.batch_size
        rows = n_steps * state
        out = np.empty((rows, s), dtype=np.intp)
        for i, j in enumerate(range(n - s, n)):
            t = rng.integers(0, j + 1, size=rows)
            taken = (out[:, :i] == t[:, None]).any(axis=1)
            out[:, i] = np.where(taken, j, t)
        return out.reshape(n_steps, state, s), state


@dataclass(frozen=True)
class EpochShuffle(_Sampler):
    """Each example once per epoch: per-chain permutations cut into ⌊N/S⌋ batches."""

    name = "epoch_shuffle"

    def init(self, rng, n_chains):
        """State (permutations, position); position past the end forces a fresh epoch."""
        return np.empty((n_chains, self.n_data), dtype=np.intp), self.n_data

    def draw(self, state, rng, n_steps):
        """Return (indices of shape (n_steps, n_chains, S), state)."""
        perm, pos = state
        s = self.batch_size
        out = np.empty((n_steps, perm.shape[0], s), dtype=np.intp)
        for k in range(n_steps):
            if pos + s > self.n_data:
                perm = rng.permuted(np.broadcast_to(np.arange(self.n_data), perm.shape), axis=1)
                pos = 0
            out[k] = perm[:, pos:pos + s]
            pos += s
        return out, (perm, pos)


_BY_NAME = {cls.name: cls for cls in (WithReplacement, WithoutReplacement, EpochShuffle)}


def make_sampler(name: str, n_data: int, batch_size: int) -> _Sampler:
    """Build the sampler called ``name`` (one of :data:`SAMPLERS`)."""
    return _BY_NAME[v.choice(name, "sampler", SAMPLERS)](n_data, batch_size)


def sampler_noise_factor(name: str, batch_size: int, n_data: int | None) -> float:
    r"""Marginal noise factor c_S of one minibatch under sampler ``name``.

    ``with_replacement``: 1/S; ``without_replacement`` and ``epoch_shuffle``:
    (N−S)/(S(N−1)), which needs ``n_data``.  Values follow :func:`theory.noise_factor`.

    Examples
    --------
    >>> sampler_noise_factor("without_replacement", 3, 6)
    0.2
    """
    v.choice(name, "sampler", SAMPLERS)
    s = v.integer(batch_size, "batch_size", minimum=1)
    if name == "with_replacement":
        return float(noise_factor(s, n_data, replacement=True))
    if n_data is None:
        raise ValueError(f"sampler {name!r} needs n_data (the dataset size N); got None")
    return float(noise_factor(s, v.integer(n_data, "n_data", minimum=2), replacement=False))
