r"""Recorders and error bars for many independent chains.

The recorder accumulates, per chain, time sums of quadratic observables of the
eigenbasis state δ̃ = Uᵀ(θ − θ*).  All of them are linear in δ̃²:

.. math::  L − L^* = \tfrac12\sum_i h_i δ̃_i^2,\qquad
           \lVert ∇L \rVert^2 = \sum_i h_i^2 δ̃_i^2,\qquad
           \lVert θ − θ^* \rVert^2 = \sum_i δ̃_i^2,

so one (K·c, d) × (d, 3) product per block gives all three.  With ``record_steps``
it also accumulates the squared step ‖θ_j − θ_{j−1}‖² = ‖δ̃_j − δ̃_{j−1}‖² at each
recorded step j, the input of the θ*-free estimator E L − L* = ((1+β)/(4η))
E‖θ_j − θ_{j−1}‖² (theory.md, "θ*-free, with momentum"); the state before a block
comes from :meth:`remember`.  It costs two passes over the block (~7% of a run).

Error bars: each chain's time average is one independent sample, so the
across-chain SE is sd/√n_chains (valid whatever the autocorrelation).  Batch means
within chains give a second, independent-of-that estimate; ESS = Var(x)/SE².
"""

from __future__ import annotations

import numpy as np

__all__ = ["ChainRecorder", "across_chain_se", "batch_means_se", "effective_sample_size",
           "OBSERVABLES"]

OBSERVABLES = ("excess_loss", "grad_sqnorm", "sq_distance")


def observable_weights(eigvals: np.ndarray) -> np.ndarray:
    """(d, 3) weights w with observable_q = Σ_i w_iq δ̃_i² (order of :data:`OBSERVABLES`)."""
    return np.stack([0.5 * eigvals, eigvals ** 2, np.ones_like(eigvals)], axis=1)


class ChainRecorder:
    """Streaming per-chain sums for one shard of chains.

    Parameters
    ----------
    n_chains, dim : int
    weights : (d, 3) ndarray
        From :func:`observable_weights`.
    record_every, covariance_every : int
        Record step j (j = 0 is the first step after burn-in) iff j % record_every == 0;
        accumulate δ̃δ̃ᵀ iff j % covariance_every == 0 (0 disables it).
    batch_len, n_batches : int
        Record r goes to batch min(r // batch_len, n_batches − 1).
    record_steps : bool
        Accumulate ‖δ̃_j − δ̃_{j−1}‖² per chain in ``step_sum``.
    """

    def __init__(self, n_chains, dim, weights, *, record_every, covariance_every,
                 batch_len, n_batches, record_steps=False):
        self.w = weights
        self.dim = dim
        self.record_every, self.covariance_every = record_every, covariance_every
        self.batch_len, self.n_batches = batch_len, n_batches
        q = weights.shape[1]
        self.sum = np.zeros((n_chains, q))
        self.sumsq = np.zeros((n_chains, q))
        self.batch_sum = np.zeros((n_batches, n_chains, q))
        self.batch_count = np.zeros(n_batches)
        self.state_sum = np.zeros((n_chains, dim))
        self.record_steps = record_steps
        self.step_sum = np.zeros(n_chains)          # Σ_j ‖δ̃_j − δ̃_{j−1}‖² per chain
        self.count = 0
        # The state before the next block (its first step needs it).
        self._last = np.zeros((n_chains, dim)) if record_steps else None
        self.cov_sum = np.zeros((n_chains, dim, dim)) if covariance_every else None
        self.cov_count = 0
        self._cov_buf = np.empty((16, n_chains, dim)) if covariance_every else None
        self._cov_n = 0
        self._buffers = {}

    def update(self, states: np.ndarray, j0: int) -> None:
        """Add the block ``states`` (K, c, d), whose first row is step j0 after burn-in."""
        j = j0 + np.arange(states.shape[0])
        rec = np.flatnonzero((j >= 0) & (j % self.record_every == 0))
        if rec.size:
            s = self._rows(states, rec)
            # Preallocated work buffers: fresh MB-sized temporaries cost page faults
            # that were measured at several ns per element, more than the arithmetic.
            sq = self._buffer("sq", s.shape)
            np.multiply(s, s, out=sq)
            vals = self._buffer("vals", s.shape[:2] + (self.w.shape[1],))
            np.matmul(sq.reshape(-1, s.shape[-1]), self.w, out=vals.reshape(-1, self.w.shape[1]))
            self.sum += vals.sum(axis=0)
            self.sumsq += np.einsum("kcq,kcq->cq", vals, vals)
            self.state_sum += s.sum(axis=0)
            if self.record_steps:
                self.step_sum += self._step_sqnorm(states, rec, s, sq)
            batch = np.minimum(j[rec] // self.record_every // self.batch_len, self.n_batches - 1)
            for b in np.unique(batch):
                sel = batch == b
                self.batch_sum[b] += vals[sel].sum(axis=0)
                self.batch_count[b] += sel.sum()
            self.count += rec.size
        self.remember(states[-1])
        if self.cov_sum is not None:
            for k in np.flatnonzero((j >= 0) & (j % self.covariance_every == 0)):
                # Samples are buffered and added 16 at a time: one pass over the
                # (c, d, d) accumulator per sample would dominate the cost.
                self._cov_buf[self._cov_n] = states[k]
                self._cov_n += 1
                if self._cov_n == len(self._cov_buf):
                    self.finish()

    def remember(self, state: np.ndarray) -> None:
        """Store the (c, d) state that precedes the next block (its steps need it)."""
        if self.record_steps:
            self._last[...] = state

    def _step_sqnorm(self, states, rec, s, buf):
        """Per-chain Σ over recorded rows of ‖δ̃_j − δ̃_{j−1}‖², reusing the free ``buf``."""
        if rec[0] == 0:
            np.subtract(s[0], self._last, out=buf[0])
            if rec.size > 1:
                np.subtract(s[1:], self._rows(states, rec[1:] - 1), out=buf[1:])
        else:
            np.subtract(s, self._rows(states, rec - 1), out=buf)
        return np.einsum("kcd,kcd->c", buf, buf)

    def finish(self) -> None:
        """Flush buffered covariance samples into ``cov_sum`` (call before reading it)."""
        if self.cov_sum is not None and self._cov_n:
            s = self._cov_buf[: self._cov_n]
            self.cov_sum += np.matmul(s.transpose(1, 2, 0), s.transpose(1, 0, 2))
            self.cov_count += self._cov_n
            self._cov_n = 0

    def _rows(self, states, rows):
        if rows[-1] - rows[0] == rows.size - 1:                  # contiguous: a view
            return states[rows[0]:rows[-1] + 1]
        return states[rows]

    def _buffer(self, name, shape):
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != shape[1:]:
            buf = self._buffers[name] = np.empty(shape)
        return buf[:shape[0]]


def across_chain_se(chain_means, axis=0):
    """Mean over independent chains and its SE, sd/√n (ddof = 1).

    Examples
    --------
    >>> across_chain_se([1.0, 2.0, 3.0])
    (2.0, 0.5773502691896258)
    """
    x = np.asarray(chain_means, dtype=float)
    n = x.shape[axis]
    mean = x.mean(axis=axis)
    se = x.std(axis=axis, ddof=1) / np.sqrt(n)
    return (float(mean), float(se)) if np.ndim(mean) == 0 else (mean, se)


def batch_means_se(batch_means) -> float:
    r"""SE of the grand mean from per-chain batch means, shape (n_batches, n_chains).

    Each chain's mean has variance ≈ Var_b(batch means)/n_b (batches much longer than
    the autocorrelation time); chains are independent, so

    .. math::  \mathrm{SE}^2 = \frac{1}{n_c^2}\sum_c \frac{s_c^2}{n_b}.
    """
    b = np.asarray(batch_means, dtype=float)
    n_b, n_c = b.shape
    if n_b < 2:
        return float("nan")
    return float(np.sqrt(np.sum(b.var(axis=0, ddof=1) / n_b)) / n_c)


def effective_sample_size(series) -> float:
    r"""ESS of a (n,) or (n_chains, n) series by Geyer's initial monotone sequence.

    The autocorrelation ρ_t is pooled over chains (FFT, chain-wise demeaned); pairs
    Γ_m = ρ_{2m} + ρ_{2m+1} are summed while positive and made non-increasing, and

    .. math::  \mathrm{ESS} = \frac{n_c\, n}{−1 + 2\sum_m Γ_m}.

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal((4, 2000))
    >>> 0.8 < effective_sample_size(x) / 8000 < 1.2
    True
    """
    x = np.atleast_2d(np.asarray(series, dtype=float))
    n_c, n = x.shape
    x = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(x, n=2 * n, axis=1)
    acov = np.fft.irfft(f * np.conj(f), axis=1)[:, :n].mean(axis=0) / n
    if acov[0] <= 0:
        return float(n_c * n)
    rho = acov / acov[0]
    pairs = rho[: 2 * (n // 2)].reshape(-1, 2).sum(axis=1)
    stop = np.flatnonzero(pairs <= 0)
    pairs = pairs[: stop[0] if stop.size else len(pairs)]
    pairs = np.minimum.accumulate(pairs)
    tau = -1.0 + 2.0 * pairs.sum()
    return float(n_c * n / max(tau, 1.0 / np.log10(max(n_c * n, 10))))
