r"""The stationary measurement around a trained network: the phase and its statistics.

After training, plain SGD continues at a fixed learning rate η_s and batch size S
with batch norm frozen; the phase records per step the squared norm of the
minibatch gradient it stepped with, ‖ĝ_k‖², and the observed excess loss is

.. math:: \widehat{\Delta} = \frac{\eta_s}{4}\,\overline{\|\hat g\|^2}
          \qquad(\text{theory.md, "A θ*-free measurement"}),

which needs neither θ* nor a loss evaluation.  This module is the one home of
that measurement: the Keras phase (:func:`sgd_stationary`,
:func:`stationary_phase`), the pure-numpy statistics of its record
(:func:`summarize_stationary` and the functions above it), and one call that
does both for a trained run (:func:`measure_stationary`).
:mod:`validation.stationary` only calls :func:`measure_stationary` and writes
``stationary.json``; :mod:`validation.report` reads the statistics from there.

Why the estimator holds.  For SGD θ' = θ − ηĝ and any fixed a, stationarity of
E‖θ − a‖² gives E[(θ − a)·∇L(θ)] = (η/2)·E‖ĝ‖² exactly, for any loss (it uses
only E[ĝ | θ] = ∇L(θ)).  For a quadratic L with minimiser θ*,
(θ − θ*)·∇L = 2(L − L*), hence E[L − L*] = (η/4)·E‖ĝ‖², in discrete time and
with state-dependent noise.  On a network it assumes the loss is quadratic over
the fluctuation scale and a fixed function of θ (BN frozen).  The identity
ratio E[(θ − θ̄)·ĝ] / ((η/2)·E‖ĝ‖²) is reported as a diagnostic only: it falls
below 1 when ‖θ − θ̄‖² keeps growing along flat directions that carry almost no
loss, which does not bias the excess loss.

The second column, kept for comparison, is the Polyak method: mean_k L(θ_k) −
L(θ̄) with a block correction for L(θ̄) − L(E θ) (:func:`polyak_excess_loss`).

Conventions
-----------
* **Batch norm frozen.** Every forward pass (the SGD steps and the loss
  measurements) runs batch norm in inference mode with the running statistics
  of the end of training, so the loss is a fixed function of θ.  BN's γ and β
  stay trainable.
* **Plain SGD** (momentum 0, no augmentation): θ_{k+1} = θ_k − η_s ĝ_k, with ĝ_k
  the mean gradient of the training objective (data loss + L2 penalty) over S
  examples drawn **i.i.d. with replacement** from the training set, so
  E[ĝ | θ] = ∇L(θ) and Cov(ĝ) = Σ/S (c_S = 1/S).
* **Blocks.** After ``burn_in`` steps the K recorded steps are cut into B
  contiguous blocks.  Per step: ‖ĝ_k‖² and (θ_k − a)·ĝ_k (a = θ at the start of
  recording, so the float32 sums stay small).  Per block: the mean of the
  iterates θ̄_b and the gradient sum G_b = Σ_{k∈b} ĝ_k, kept on the device inside
  the optimizer (as Keras keeps EMA weights); θ̄ = mean_b θ̄_b.  Every
  ``record_every`` steps L(θ_k) is measured on a fixed evaluation subset, for
  the Polyak column and the loss-drift check.  No extra forward or backward
  pass is spent on ‖ĝ‖².

Backend-agnostic: a wrapper model forcing ``training=False`` and a Keras
optimizer subclass written in ``keras.ops``, trained with ``train_on_batch``;
the same code runs on JAX and TensorFlow (tests check both on a linear model).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ._validate import int_at_least, positive_float

__all__ = [
    # statistics (pure numpy)
    "BatchMeans",
    "ThetaFreeExcess",
    "PolyakExcess",
    "IdentityRatio",
    "batch_means",
    "integrated_time",
    "drift_check",
    "theta_free_excess_loss",
    "polyak_excess_loss",
    "identity_ratio",
    "stationarity_check",
    "ratio_with_se",
    "discrete_correction",
    "predict_excess_loss",
    "measure_traces",
    "summarize_stationary",
    "DRIFT_Z_MAX",
    "MIN_DRIFT_BLOCKS",
    "MIN_N_EFF",
    "SCHEMA_VERSION",
    # the phase (keras, imported lazily)
    "SAMPLER",
    "sgd_stationary",
    "StationaryRun",
    "load_for_stationary",
    "final_lr",
    "stationary_phase",
    "measure_at_mean",
    "measure_stationary",
]

#: How the stationary phase draws minibatches (matches ``theory`` with ``replacement=True``).
SAMPLER = "iid_with_replacement"

#: Version of the record :func:`measure_stationary` returns (``stationary.json``).
#: 1: Polyak method only; 2: θ*-free primary, Polyak second, drift/n_eff criterion.
SCHEMA_VERSION = 2

#: A phase counts as stationary when neither the loss nor ‖ĝ‖² drifts between the halves
#: by DRIFT_Z_MAX SE or more (false alarm 6e-5 per check for a normal z) ...
DRIFT_Z_MAX = 4.0
#: ... and the mean of ‖ĝ‖² rests on at least MIN_N_EFF effectively independent steps
#: (and at least B, so that each batch-means block spans one τ): per-step ‖ĝ‖² is
#: skewed (χ²-like), and with >= 20 independent draws its mean is close enough to
#: normal for a z-test.
MIN_N_EFF = 20.0


# ============================================================== statistics (numpy only)

@dataclass(frozen=True)
class BatchMeans:
    """Mean of a correlated series with its batch-means standard error."""

    mean: float        # sample mean of the series (after dropping the remainder)
    se: float          # sd(batch means) / sqrt(n_batches)
    n: int             # samples used
    n_batches: int     # B
    batch_len: int     # samples per batch
    tau: float         # integrated autocorrelation time in samples, batch_len Var(means)/Var(x)


@dataclass(frozen=True)
class ThetaFreeExcess:
    """Observed excess loss (η/4)·E‖ĝ‖², the primary estimate."""

    value: float               # (η/4) mean_k ‖ĝ_k‖²
    se: float                  # (η/4) × batch-means SE of mean_k ‖ĝ_k‖²
    mean_grad_sqnorm: float    # mean_k ‖ĝ_k‖²
    mean_grad_sqnorm_se: float
    n_steps: int               # K, steps averaged
    n_blocks: int              # B, batches of the SE
    tau_steps: float           # integrated autocorrelation time of ‖ĝ_k‖² (Sokal), in steps
    n_eff: float               # K / τ: effectively independent steps


@dataclass(frozen=True)
class PolyakExcess:
    """Observed excess loss by the Polyak method, E L(θ_k) − L(θ*) with θ̄ for θ*."""

    value: float       # raw + correction
    se: float          # batch-means SE of mean_k L(θ_k)
    raw: float         # mean_k L(θ_k) − L(θ̄)
    correction: float  # estimate of L(θ̄) − L(E θ), (mean_b L(θ̄_b) − L(θ̄)) / (B − 1)
    n_records: int     # recorded losses used
    n_blocks: int      # B
    tau_records: float # batch-means autocorrelation time of the loss series, in records


@dataclass(frozen=True)
class IdentityRatio:
    """E[(θ − θ̄)·ĝ] / ((η/2)·E‖ĝ‖²): 1 at stationarity, for any loss (a diagnostic)."""

    value: float       # r = mean_b x_b / mean_b y_b
    se: float          # batch-means SE of the ratio (delta method over the B blocks)
    numerator: float   # mean_k (θ_k − θ̄)·ĝ_k
    denominator: float # (η/2) mean_k ‖ĝ_k‖²
    n_blocks: int      # B


def _series(values, name):
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite; it contains {x[~np.isfinite(x)][0]}")
    return x


def _n_blocks(n_blocks, name="n_blocks"):
    b = int(n_blocks) if isinstance(n_blocks, (int, np.integer)) else None
    if b is None or isinstance(n_blocks, bool) or b < 2:
        raise ValueError(f"{name} must be an integer >= 2; got {n_blocks!r}")
    return b


def batch_means(series, n_batches=20):
    r"""Mean of a stationary, correlated series and its batch-means standard error.

    The series x_1..x_n is cut into B contiguous batches of length m = ⌊n/B⌋
    (the first n − mB samples are dropped, as extra burn-in), and

    .. math:: \bar x = \frac1B\sum_b \bar x_b,\qquad
              \mathrm{SE} = \frac{\mathrm{sd}(\bar x_1,\dots,\bar x_B)}{\sqrt B},\qquad
              \tau = \frac{m\,\mathrm{Var}(\bar x_b)}{\mathrm{Var}(x)}.

    The SE is valid once m is several integrated autocorrelation times τ.

    Parameters
    ----------
    series : (n,) array_like
        Finite values, n >= 2 B.
    n_batches : int
        B >= 2.

    Returns
    -------
    BatchMeans

    Raises
    ------
    ValueError
        If the series is not 1-D and finite, B < 2, or n < 2 B.

    References
    ----------
    Flegal & Jones (2010), "Batch means and spectral variance estimators in MCMC".

    Examples
    --------
    >>> r = batch_means(np.arange(40.0) % 2, n_batches=4)
    >>> r.mean, r.se, r.batch_len
    (0.5, 0.0, 10)
    """
    x = _series(series, "series")
    b = _n_blocks(n_batches, "n_batches")
    if x.size < 2 * b:
        raise ValueError(f"series needs at least 2 * n_batches = {2 * b} values; got {x.size}")
    m = x.size // b
    x = x[x.size - m * b:]
    means = x.reshape(b, m).mean(axis=1)
    var_means = float(np.var(means, ddof=1))
    var_x = float(np.var(x, ddof=1))
    tau = m * var_means / var_x if var_x > 0 else float("nan")
    return BatchMeans(mean=float(means.mean()), se=math.sqrt(var_means / b), n=int(x.size),
                      n_batches=b, batch_len=m, tau=tau)


def integrated_time(series, c=5.0):
    r"""Integrated autocorrelation time of a series, with Sokal's automatic window.

    .. math:: \tau(W) = 1 + 2\sum_{t=1}^{W}\hat\rho(t),\qquad
              W = \min\{W : W \ge c\,\tau(W)\},

    with ρ̂ the sample autocorrelation (FFT).  Unlike the batch-means τ, which
    cannot exceed about one batch length, this one grows with the true τ until
    the window reaches the length of the series, so n/τ is a usable effective
    sample size even when the batches are too short.

    Parameters
    ----------
    series : (n,) array_like
        Finite values, n >= 2.
    c : float
        Window factor (5, as emcee's ``integrated_time``).

    Returns
    -------
    float
        τ in samples (1 for a constant series).

    References
    ----------
    Sokal (1997), "Monte Carlo methods in statistical mechanics"; Goodman & Weare,
    emcee's ``autocorr.integrated_time``.

    Examples
    --------
    >>> integrated_time(np.tile([1.0, -1.0], 500))    # anti-correlated: clipped at 1
    1.0
    """
    x = _series(series, "series")
    n = x.size
    if n < 2:
        raise ValueError(f"series needs at least 2 values; got {n}")
    x = x - x.mean()
    if not np.any(x):
        return 1.0
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, n=size)
    acf = np.fft.irfft(f * np.conj(f), n=size)[:n]
    acf = acf / acf[0]
    taus = 2.0 * np.cumsum(acf) - 1.0
    inside = np.arange(n) < c * taus
    w = int(np.argmin(inside)) if not np.all(inside) else n - 1
    # an anti-correlated series can give τ < 1; more than n independent samples is not
    # a claim we make
    return float(max(taus[w], 1.0))


#: Fewest blocks for a drift test: with h = B/2 >= 4 blocks per half the difference has a
#: usable SE; with 2 per half a monotone trend reads only z ≈ 2.8 however clean it is.
MIN_DRIFT_BLOCKS = 8


def drift_check(series, n_blocks):
    r"""Does a recorded series still drift?  Second half minus first half, in SE.

    With block means m_1..m_B of the series (B >= :data:`MIN_DRIFT_BLOCKS`
    contiguous blocks, h = ⌊B/2⌋ per half),

    .. math:: d = \bar m_{\text{last } h} - \bar m_{\text{first } h},\qquad
              \mathrm{SE}(d) = s\sqrt{2/h},\qquad
              s^2 = \frac{1}{2(B-1)}\sum_{b=1}^{B-1}(m_{b+1} - m_b)^2,

    s² the von Neumann (successive-difference) variance of the block means: it
    estimates their variance under stationarity, and a slow trend barely
    inflates it (a linear trend of a per block adds a²/2), unlike the spread
    within each half.  A relaxing phase (the loss still falling after the switch
    to frozen BN, the gradient noise still changing as θ moves) shows up as
    |d|/SE(d) large: a clean linear trend reads z = h^{3/2} (8 at B = 8, 32 at
    B = 20).  Block means correlated beyond one block make SE(d) too small and z
    too large: the check errs towards "not stationary".

    Returns
    -------
    dict or None
        ``{"value", "se", "z", "n_blocks"}``; None with fewer than
        :data:`MIN_DRIFT_BLOCKS` blocks or values.

    Examples
    --------
    >>> drift_check([1.0, 1.2, 1.0, 1.2, 1.0, 1.2, 1.0, 1.2], 4) is None
    True
    >>> d = drift_check([1.0, 1.2, 1.0, 1.2, 2.0, 2.2, 2.0, 2.2], 8)
    >>> d["value"], round(d["z"], 3)
    (1.0, 5.641)
    """
    x = _series(series, "series")
    b = int(n_blocks)
    if b < MIN_DRIFT_BLOCKS or x.size < b:
        return None
    m = x.size // b
    means = x[x.size - m * b:].reshape(b, m).mean(axis=1)
    h = b // 2
    d = float(means[b - h:].mean() - means[:h].mean())
    s2 = float(np.sum(np.diff(means) ** 2)) / (2 * (b - 1))
    se = math.sqrt(2 * s2 / h)
    return {"value": d, "se": se, "z": d / se if se > 0 else (0.0 if d == 0 else math.inf),
            "n_blocks": b}


def theta_free_excess_loss(grad_sqnorm, lr, n_blocks=20):
    r"""Observed stationary excess loss without θ*: (η/4)·E‖ĝ‖².

    .. math:: \widehat{\Delta} = \frac{\eta}{4}\cdot\frac1K\sum_{k}\|\hat g_k\|^2,\qquad
              \mathrm{SE} = \frac{\eta}{4}\,\mathrm{SE}_{\text{batch means}},\qquad
              n_{\text{eff}} = K/\tau,

    with τ from :func:`integrated_time`.

    Exact in expectation for a quadratic loss at stationarity, in discrete time
    and with any (state-dependent) unbiased gradient noise: the module docstring
    gives the derivation.  ĝ_k is the gradient SGD stepped with (objective incl.
    L2), so Δ̂ is the excess of that objective over the whole training set.

    Parameters
    ----------
    grad_sqnorm : (K,) array_like
        ‖ĝ_k‖² per recorded step, in time order; K >= 2B.
    lr : float
        η > 0, the learning rate of the steps.
    n_blocks : int
        B >= 2 batches for the batch-means SE (the phase's blocks).

    Returns
    -------
    ThetaFreeExcess

    Raises
    ------
    ValueError
        Non-finite or negative ‖ĝ‖², a bad lr, B < 2 or K < 2B.

    Examples
    --------
    >>> r = theta_free_excess_loss([1.0, 3.0, 1.0, 3.0], 0.4, n_blocks=2)
    >>> round(r.value, 12), r.se, r.n_steps
    (0.2, 0.0, 4)
    """
    g = _series(grad_sqnorm, "grad_sqnorm")
    if np.any(g < 0):
        raise ValueError(f"grad_sqnorm must be >= 0; it contains {g[g < 0][0]}")
    lr = positive_float(lr, "lr")
    bm = batch_means(g, n_batches=n_blocks)
    tau = integrated_time(g[g.size - bm.n:])
    n_eff = bm.n / tau
    return ThetaFreeExcess(value=0.25 * lr * bm.mean, se=0.25 * lr * bm.se,
                           mean_grad_sqnorm=bm.mean, mean_grad_sqnorm_se=bm.se, n_steps=bm.n,
                           n_blocks=bm.n_batches, tau_steps=tau, n_eff=n_eff)


def polyak_excess_loss(losses, loss_at_mean, block_losses):
    r"""Observed stationary excess loss by the Polyak method (the second column).

    With θ̄ the Polyak average over the phase and θ̄_b the averages over B
    contiguous blocks of it (θ̄ = mean_b θ̄_b),

    .. math::
        \widehat{\Delta}_P = \underbrace{\frac1n\sum_k L(\theta_k) - L(\bar\theta)}_{\text{raw}}
          + \underbrace{\frac{\frac1B\sum_b L(\bar\theta_b) - L(\bar\theta)}{B-1}}_{\text{correction}}.

    For a quadratic L with E θ = θ*, L(θ̄) − L(θ*) = ½ δ̄ᵀHδ̄ is the variance of the
    average in the H-norm; the block term estimates it, so Δ̂_P is unbiased for
    E L(θ) − L(θ*).  On a network θ̄ follows every direction slower than a block,
    so their share of the excess loss is missed: Δ̂_P is then an underestimate.
    The SE is the batch-means SE of the recorded losses over the same B blocks.

    Parameters
    ----------
    losses : (n,) array_like
        L(θ_k) at the recorded steps, in time order; n a multiple of B, n >= 2B.
    loss_at_mean : float
        L(θ̄).
    block_losses : (B,) array_like
        L(θ̄_b) for the B blocks, B >= 2.

    Returns
    -------
    PolyakExcess

    Raises
    ------
    ValueError
        Non-finite inputs, fewer than 2 blocks, or n not a multiple of B with n >= 2B.

    Examples
    --------
    >>> r = polyak_excess_loss([1.0, 3.0, 1.0, 3.0], 1.5, [2.0, 2.0])
    >>> r.raw, r.correction, r.value
    (0.5, 0.5, 1.0)
    """
    x = _series(losses, "losses")
    blocks = _series(block_losses, "block_losses")
    l_bar = float(loss_at_mean)
    if not math.isfinite(l_bar):
        raise ValueError(f"loss_at_mean must be finite; got {loss_at_mean}")
    b = blocks.size
    if b < 2:
        raise ValueError(f"block_losses needs at least 2 blocks; got {b}")
    if x.size < 2 * b or x.size % b:
        raise ValueError(f"losses must hold a multiple of {b} (the number of blocks) values, "
                         f"at least {2 * b}; got {x.size}")
    bm = batch_means(x, n_batches=b)
    raw = bm.mean - l_bar
    correction = (float(blocks.mean()) - l_bar) / (b - 1)
    return PolyakExcess(value=raw + correction, se=bm.se, raw=raw, correction=correction,
                        n_records=bm.n, n_blocks=b, tau_records=bm.tau)


def identity_ratio(grad_sqnorm, anchored_dot, block_offset_dot, lr):
    r"""The fluctuation–dissipation ratio E[(θ − θ̄)·ĝ] / ((η/2)·E‖ĝ‖²), with its SE.

    The phase records, per step, y_k = ‖ĝ_k‖² and u_k = (θ_k − a)·ĝ_k (a: θ at the
    start of recording) and, per block, c_b = (θ̄ − a)·G_b with G_b = Σ_{k∈b} ĝ_k.
    Per block of m steps,

    .. math:: x_b = \frac1m\Big(\sum_{k\in b} u_k - c_b\Big)
                  = \frac1m\sum_{k\in b}(\theta_k-\bar\theta)\cdot\hat g_k,\qquad
              r = \frac{\bar x}{\tfrac{\eta}{2}\,\bar y},\qquad
              \mathrm{SE}(r) = \frac{\mathrm{sd}_b(x_b - r\,\tfrac{\eta}{2}\,y_b)}
                                    {\sqrt B\;\tfrac{\eta}{2}\,\bar y}.

    Summing θ_{k+1} = θ_k − ηĝ_k gives, exactly,
    r = 1 + (‖θ_0 − θ̄‖² − ‖θ_K − θ̄‖²)/(η² Σ_k ‖ĝ_k‖²): r < 1 means the iterates
    ended farther from θ̄ than they started (diffusion along flat directions).
    A diagnostic, not a gate: flat directions carry almost no loss.

    Parameters
    ----------
    grad_sqnorm, anchored_dot : (K,) array_like
        y_k and u_k; K a multiple of B.
    block_offset_dot : (B,) array_like
        c_b, B >= 2.
    lr : float
        η > 0.

    Returns
    -------
    IdentityRatio

    Examples
    --------
    >>> r = identity_ratio([1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0], 1.0)
    >>> r.value, r.se
    (1.0, 0.0)
    """
    y = _series(grad_sqnorm, "grad_sqnorm")
    u = _series(anchored_dot, "anchored_dot")
    c = _series(block_offset_dot, "block_offset_dot")
    lr = positive_float(lr, "lr")
    b = c.size
    if b < 2:
        raise ValueError(f"block_offset_dot needs at least 2 blocks; got {b}")
    if y.size != u.size or y.size < 2 * b or y.size % b:
        raise ValueError(f"grad_sqnorm and anchored_dot must hold the same multiple of {b} "
                         f"(the number of blocks) values, at least {2 * b}; got {y.size} "
                         f"and {u.size}")
    m = y.size // b
    x_b = (u.reshape(b, m).sum(axis=1) - c) / m
    d_b = 0.5 * lr * y.reshape(b, m).mean(axis=1)
    den = float(d_b.mean())
    if den <= 0:
        return IdentityRatio(float("nan"), float("nan"), float(x_b.mean()), den, b)
    r = float(x_b.mean()) / den
    se = float(np.std(x_b - r * d_b, ddof=1)) / math.sqrt(b) / den
    return IdentityRatio(value=r, se=se, numerator=float(x_b.mean()), denominator=den,
                         n_blocks=b)


def stationarity_check(drift_loss, drift_grad_sqnorm, n_eff, n_blocks=None):
    r"""Does a phase count as stationary?  Both drifts small and enough effective samples.

    Stationary iff |z| < :data:`DRIFT_Z_MAX` for the drift of the loss and of
    ‖ĝ‖² between the halves (:func:`drift_check`), and the n_eff = K/τ of ‖ĝ‖²
    is at least max(:data:`MIN_N_EFF`, B): 20 independent samples behind the
    mean, and (n_eff >= B ⟺ K/B >= τ) batch-means blocks at least one τ long,
    without which their SE is too small.  These can pass on a real network:
    they ask that the measured quantities stopped moving, not that every flat
    direction equilibrated.

    Parameters
    ----------
    drift_loss, drift_grad_sqnorm : dict or None
        :func:`drift_check` of the loss records and of ‖ĝ_k‖² (None: untestable).
    n_eff : float or None
        Effective sample size of ‖ĝ_k‖².
    n_blocks : int, optional
        B, the batch-means blocks.

    Returns
    -------
    dict
        ``stationary`` (bool), ``criteria`` (text), ``min_n_eff`` and ``failed``
        (one reason per failed criterion; empty when stationary).

    Examples
    --------
    >>> stationarity_check({"z": 1.0}, {"z": -5.0}, 50.0)["failed"]
    ['grad_sqnorm drift z = -5 (|z| >= 4)']
    """
    min_n_eff = max(MIN_N_EFF, float(n_blocks or 0))
    failed = []
    for name, d in (("loss", drift_loss), ("grad_sqnorm", drift_grad_sqnorm)):
        if d is None:
            failed.append(f"{name} drift untestable (fewer than {MIN_DRIFT_BLOCKS} blocks)")
        elif not abs(d["z"]) < DRIFT_Z_MAX:
            failed.append(f"{name} drift z = {d['z']:.3g} (|z| >= {DRIFT_Z_MAX:g})")
    if n_eff is None or not math.isfinite(n_eff) or n_eff < min_n_eff:
        failed.append(f"n_eff = {n_eff if n_eff is None else f'{n_eff:.3g}'} "
                      f"(< {min_n_eff:g})")
    return {"stationary": not failed,
            "criteria": (f"|loss drift z| < {DRIFT_Z_MAX:g} and |grad_sqnorm drift z| < "
                         f"{DRIFT_Z_MAX:g} and n_eff(grad_sqnorm) >= max({MIN_N_EFF:g}, "
                         f"n_blocks)"),
            "min_n_eff": min_n_eff, "failed": failed}


def ratio_with_se(num, num_se, den, den_se):
    r"""r = a / b with first-order propagated uncertainty.

    .. math:: \mathrm{SE}(r) = |r|\sqrt{(\mathrm{SE}_a/a)^2 + (\mathrm{SE}_b/b)^2}

    Returns ``(nan, nan)`` when b = 0 or a = 0 makes the relative form undefined.

    Examples
    --------
    >>> ratio_with_se(2.0, 0.2, 4.0, 0.0)
    (0.5, 0.05)
    """
    a, sa, b, sb = (float(v) for v in (num, num_se, den, den_se))
    if b == 0 or a == 0 or not all(math.isfinite(v) for v in (a, sa, b, sb)):
        return float("nan"), float("nan")
    r = a / b
    return r, abs(r) * math.hypot(sa / a, sb / b)


def discrete_correction(lr, lambda_max):
    r"""Relative size of the discrete-time correction in the stiffest direction, η λ_max / 2.

    Per eigendirection the exact discrete excess loss exceeds the SDE one by the
    factor 2/(2 − ηh) = 1 + ηh/2 + O(η²h²) (theory.md, "Discrete time").

    Examples
    --------
    >>> discrete_correction(0.1, 4.0)
    0.2
    """
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be positive and finite; got {lr}")
    return 0.5 * lr * float(lambda_max)


def predict_excess_loss(*, trace_grad_cov, trace_hessian, lr, batch_size,
                        trace_grad_cov_se=0.0, trace_hessian_se=0.0, l2_trace=0.0,
                        lambda_max=None, n_data=None, replacement=True):
    r"""Predicted stationary excess loss by Eq. (12) and Eq. (6), with uncertainties.

    .. math::
        \Delta_{(12)} = \frac{\eta c_S}{4}\,\mathrm{tr}\,\Sigma,\qquad
        \Delta_{(6)} = \frac{\eta c_S}{4}\,(\mathrm{tr}\,H_{\text{data}} + \mathrm{tr}\,H_{L2}),

    via :func:`theory.expected_loss_wang` and :func:`theory.expected_loss_jastrzebski`.
    The Hessian in (6) is that of the objective SGD minimises, so the L2 term's
    constant contribution ``l2_trace`` = 2λ·(number of regularised weights) is added
    to the data-loss trace; Σ has no L2 part.  Both are linear in the trace, so
    the SE scales by the same factor η c_S / 4.

    Parameters
    ----------
    trace_grad_cov, trace_hessian : float
        tr Σ (centred, dividing by N) and tr H of the data loss.
    lr : float
        η_s > 0.
    batch_size : int
        S.
    trace_grad_cov_se, trace_hessian_se : float
        Their standard errors (0 when exact).
    l2_trace : float
        The L2 regulariser's contribution to tr H.
    lambda_max : float, optional
        Top Hessian eigenvalue, for the discrete-time correction η λ_max / 2.
    n_data : int, optional
        N, for sampling without replacement.
    replacement : bool
        The minibatch sampler (the stationary phase draws with replacement).

    Returns
    -------
    dict
        ``wang`` and ``jastrzebski`` (each ``{"value", "se"}``), ``noise_factor``,
        ``hessian_trace_total`` and ``discrete_correction`` (None without λ_max).

    Examples
    --------
    >>> p = predict_excess_loss(trace_grad_cov=3.0, trace_hessian=2.0, lr=0.1, batch_size=5)
    >>> round(p["wang"]["value"], 12), round(p["jastrzebski"]["value"], 12)
    (0.015, 0.01)
    """
    import theory

    c = float(theory.noise_factor(batch_size, n_data, replacement))
    h_total = float(trace_hessian) + float(l2_trace)
    wang = theory.expected_loss_wang(trace_grad_cov, lr, batch_size, n_data=n_data,
                                     replacement=replacement)
    jast = theory.expected_loss_jastrzebski(h_total, lr, batch_size, n_data=n_data,
                                            replacement=replacement)
    factor = float(lr) * c / 4.0
    return {
        "wang": {"value": float(wang), "se": factor * float(trace_grad_cov_se)},
        "jastrzebski": {"value": float(jast), "se": factor * float(trace_hessian_se)},
        "noise_factor": c,
        "hessian_trace_total": h_total,
        "discrete_correction": (None if lambda_max is None
                                else discrete_correction(lr, lambda_max)),
    }


def _first(d, keys, default=None):
    """First present, non-None entry of ``keys`` in ``d``."""
    if not isinstance(d, dict):
        return d if d is not None else default
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return default


def measure_traces(m):
    """(tr Σ, SE, tr H, SE, L2 trace, λ_max) from a ``dnn.measure`` / ``estimates.json`` dict.

    tr Σ is ``trace_grad_cov.trace`` with ``sampling_se`` (its SE when the
    evaluation examples are a sample of the training set); tr H is the
    Hutchinson ``trace_hessian.mean`` ± ``se`` of the data loss; the L2 trace is
    ``l2_trace_contribution.value``; λ_max is ``lambda_max.value`` (None if absent).
    """
    tgc = m.get("trace_grad_cov")
    th = m.get("trace_hessian")
    tr_s = _first(tgc, ("trace", "value", "mean"))
    # An SE that was not reported is unknown (NaN), not zero: a zero would make every
    # ratio built on it look exact.
    tr_s_se = _first(tgc, ("sampling_se", "se"), math.nan) if isinstance(tgc, dict) else math.nan
    tr_h = _first(th, ("mean", "value", "trace"))
    tr_h_se = _first(th, ("se",), math.nan) if isinstance(th, dict) else math.nan
    l2 = _first(m.get("l2_trace_contribution"), ("value",), 0.0)
    lam = _first(m.get("lambda_max"), ("value", "mean"))
    return (None if tr_s is None else float(tr_s), float(tr_s_se),
            None if tr_h is None else float(tr_h), float(tr_h_se), float(l2 or 0.0),
            None if lam is None else float(lam))


def summarize_stationary(phase, at_mean=None):
    """Observed excess loss (θ*-free and Polyak), checks, predictions and ratios of a phase.

    Parameters
    ----------
    phase : dict
        The record of :func:`sgd_stationary` (``grad_sqnorm``, ``anchored_dot``,
        ``block_offset_dot``, ``losses``, ``loss_at_mean``, ``block_losses``,
        ``lr``, ``batch_size``, ``n_blocks``, ``record_every``, ``steps``, ...).
    at_mean : dict, optional
        A ``dnn.measure`` result at θ̄ (tr Σ, tr H ± SE, L2 trace, λ_max).  Without
        it only the observed side is computed.

    Returns
    -------
    dict
        ``observed`` (:class:`ThetaFreeExcess` fields: the primary estimate),
        ``polyak`` (:class:`PolyakExcess` fields, with ``tau_records`` from
        :func:`integrated_time`, plus ``tau_steps`` and ``n_eff``),
        ``identity`` (:class:`IdentityRatio` fields plus ``sqdist_start`` and
        ``sqdist_end``, ‖θ − θ̄‖² at the first and after the last recorded step),
        ``diagnostics`` (``drift_loss``, ``drift_grad_sqnorm``, ``n_eff`` and
        :func:`stationarity_check`'s ``stationary``, ``criteria``, ``failed``),
        ``predicted`` (:func:`predict_excess_loss` plus the traces), ``ratios``
        (prediction / observed, ``{"value", "se"}`` per formula) and
        ``relaxation`` (``steps_x_lr_x_lambda_max``: the phase length in relaxation
        times 1/(η λ_max) of the stiffest direction).  All but ``status`` are None
        for a phase that did not complete.
    """
    empty = {"status": phase.get("status"), "observed": None, "polyak": None, "identity": None,
             "diagnostics": None, "predicted": None, "ratios": None, "relaxation": None}
    if phase.get("status", "completed") != "completed":
        return empty
    lr, b, rec = float(phase["lr"]), int(phase["n_blocks"]), int(phase["record_every"])
    obs = theta_free_excess_loss(phase["grad_sqnorm"], lr, n_blocks=b)
    pol = polyak_excess_loss(phase["losses"], phase["loss_at_mean"], phase["block_losses"])
    ident = identity_ratio(phase["grad_sqnorm"], phase["anchored_dot"],
                           phase["block_offset_dot"], lr)
    polyak = asdict(pol)
    tau_loss = integrated_time(phase["losses"])
    polyak["tau_records"] = tau_loss
    polyak["tau_steps"] = tau_loss * rec
    polyak["n_eff"] = pol.n_records / tau_loss
    identity = asdict(ident)
    identity["sqdist_start"] = phase.get("sqdist_start")
    identity["sqdist_end"] = phase.get("sqdist_end")
    drift_loss = drift_check(phase["losses"], b)
    drift_grad = drift_check(phase["grad_sqnorm"], b)
    n_eff = obs.n_eff if math.isfinite(obs.n_eff) else None
    check = stationarity_check(drift_loss, drift_grad, n_eff, b)
    out = {"status": "completed", "observed": asdict(obs), "polyak": polyak,
           "identity": identity,
           "diagnostics": {"drift_loss": drift_loss, "drift_grad_sqnorm": drift_grad,
                           "n_eff": n_eff, **check},
           "predicted": None, "ratios": None,
           "relaxation": {"steps": int(phase["steps"]), "tau_steps": obs.tau_steps,
                          "steps_x_lr_x_lambda_max": None}}
    if at_mean is None:
        return out
    tr_s, tr_s_se, tr_h, tr_h_se, l2, lam = measure_traces(at_mean)
    pred = predict_excess_loss(trace_grad_cov=tr_s, trace_hessian=tr_h, lr=lr,
                               batch_size=phase["batch_size"], trace_grad_cov_se=tr_s_se,
                               trace_hessian_se=tr_h_se, l2_trace=l2, lambda_max=lam,
                               n_data=phase.get("n_data"),
                               replacement=phase.get("replacement", True))
    pred["trace_grad_cov"] = {"value": float(tr_s), "se": float(tr_s_se)}
    pred["trace_hessian"] = {"value": float(tr_h), "se": float(tr_h_se)}
    pred["l2_trace"] = float(l2)
    pred["lambda_max"] = None if lam is None else float(lam)
    out["predicted"] = pred
    out["ratios"] = {
        name: dict(zip(("value", "se"), ratio_with_se(pred[name]["value"], pred[name]["se"],
                                                      obs.value, obs.se)))
        for name in ("wang", "jastrzebski")
    }
    if lam is not None:
        out["relaxation"]["steps_x_lr_x_lambda_max"] = int(phase["steps"]) * lr * float(lam)
    return out


# ================================================================ the phase (keras)

_CLASSES = {}


def _classes(keras):
    """The wrapper model and the measuring optimizer, built once per process (keras is lazy)."""
    if _CLASSES:
        return _CLASSES["model"], _CLASSES["opt"]
    ops = keras.ops

    class InferenceModeModel(keras.Model):
        """Calls ``inner`` with ``training=False`` always: BN uses running statistics.

        Gradients still flow to every trainable variable of ``inner`` (γ, β
        included); the running statistics are never updated.
        """

        def __init__(self, inner, **kwargs):
            super().__init__(**kwargs)
            self.inner = inner

        def call(self, x, training=False):
            return self.inner(x, training=False)

    class StationarySGD(keras.optimizers.Optimizer):
        """Plain SGD that also measures the gradient it steps with.

        Per step, before the update: ``grad_sqnorm`` ← ‖ĝ‖² and ``anchored_dot`` ←
        (θ − a)·ĝ over all variables (a = ``anchors``), and ``grad_sums`` += ĝ.
        After it, ``averages`` ← running mean of the iterates since ``iterations``
        was 0 (avg ← avg + (θ_new − avg)/(t + 1)).  The caller resets
        ``iterations`` and ``grad_sums`` at each block start and sets ``anchors``
        once.  Written in keras.ops, so it runs inside the compiled train step on
        every backend; on JAX the variables are read through the stateless scope.
        """

        def __init__(self, learning_rate, **kwargs):
            super().__init__(learning_rate=learning_rate, name="stationary_sgd", **kwargs)

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self.averages = [self.add_variable_from_reference(v, name="average")
                             for v in variables]
            self.anchors = [self.add_variable_from_reference(v, name="anchor")
                            for v in variables]
            self.grad_sums = [self.add_variable_from_reference(v, name="grad_sum")
                              for v in variables]
            self.grad_sqnorm = self.add_variable((), initializer="zeros", dtype="float32",
                                                 name="grad_sqnorm")
            self.anchored_dot = self.add_variable((), initializer="zeros", dtype="float32",
                                                  name="anchored_dot")

        def apply(self, grads, trainable_variables=None):
            if trainable_variables is not None and not self.built:
                self.build(list(trainable_variables))
            variables = (self._trainable_variables if trainable_variables is None
                         else list(trainable_variables))
            sq = ops.zeros((), "float32")
            dot = ops.zeros((), "float32")
            for g, v in zip(grads, variables):
                if g is None:
                    continue
                i = self._get_variable_index(v)
                g32 = ops.cast(g, "float32")
                sq = ops.add(sq, ops.sum(ops.square(g32)))
                # θ − a, not θ: the float32 sum of θ·ĝ would bury the small (θ − θ̄)·ĝ
                delta = ops.subtract(ops.cast(v, "float32"),
                                     ops.cast(self.anchors[i], "float32"))
                dot = ops.add(dot, ops.sum(ops.multiply(delta, g32)))
                s = self.grad_sums[i]
                self.assign(s, ops.add(s, ops.cast(g, s.dtype)))
            self.assign(self.grad_sqnorm, sq)
            self.assign(self.anchored_dot, dot)
            return super().apply(grads, trainable_variables)

        def update_step(self, gradient, variable, learning_rate):
            lr = ops.cast(learning_rate, variable.dtype)
            new = ops.subtract(variable, ops.multiply(ops.cast(gradient, variable.dtype), lr))
            self.assign(variable, new)
            avg = self.averages[self._get_variable_index(variable)]
            count = ops.cast(self.iterations + 1, variable.dtype)
            self.assign(avg, ops.add(avg, ops.divide(ops.subtract(new, avg), count)))

    _CLASSES["model"], _CLASSES["opt"] = InferenceModeModel, StationarySGD
    return InferenceModeModel, StationarySGD


def _chunks(n, max_chunk):
    k = max(1, math.ceil(n / max_chunk))
    # near-equal chunks: at most two distinct shapes, hence at most two compilations
    return np.array_split(np.arange(n), k)


def _block_geometry(anchor, block_means, block_grad_sums, theta_end):
    """θ̄ and the per-block offsets c_b = (θ̄ − a)·G_b, ‖θ_0 − θ̄‖², ‖θ_K − θ̄‖² (float64).

    Each argument is a list (over blocks, for the two middle ones) of per-variable arrays.
    """
    theta_bar = [np.mean([bm[i] for bm in block_means], axis=0, dtype=np.float64)
                 for i in range(len(anchor))]
    offset = [tb - np.asarray(a, np.float64) for tb, a in zip(theta_bar, anchor)]
    dots = [float(sum(np.vdot(o, np.asarray(g, np.float64)) for o, g in zip(offset, gs)))
            for gs in block_grad_sums]
    sq_start = float(sum(np.vdot(o, o) for o in offset))
    sq_end = float(sum(np.sum((np.asarray(t, np.float64) - tb) ** 2)
                       for t, tb in zip(theta_end, theta_bar)))
    return theta_bar, dots, sq_start, sq_end


def sgd_stationary(model, x, y, loss, *, lr, batch_size, steps, burn_in=None, eval_x=None,
                   eval_y=None, record_every=10, n_blocks=20, eval_batch=1024, seed=0,
                   quiet=True):
    r"""Run plain SGD at fixed η from ``model``'s weights and record the stationary phase.

    The backend-agnostic core used for every model, from the linear model of the
    tests to ResNet-56.  See the module docstring for the conventions (BN frozen,
    i.i.d. minibatches with replacement, blocks) and :func:`summarize_stationary`
    for the statistics of the returned record.

    Parameters
    ----------
    model : keras.Model
        A built model; modified in place, and left holding θ̄ on return.
    x, y : array_like
        Training data (the finite sum SGD samples from).
    loss : callable
        ``loss(y_true, y_pred) -> (batch,)`` per-example data loss in ``keras.ops``;
        regularisation losses of ``model`` are added by Keras.
    lr : float
        η_s > 0.
    batch_size : int
        S, 1 <= S.
    steps : int
        K, the recorded steps; rounded up to a multiple of ``n_blocks * record_every``.
    burn_in : int, optional
        Steps run before recording; default ``steps // 4``.
    eval_x, eval_y : array_like, optional
        Evaluation subset on which L is measured (Polyak column, loss drift);
        default the training data.
    record_every : int
        Steps between recorded losses (‖ĝ‖² is recorded at every step).
    n_blocks : int
        B >= 2 blocks for the block averages, batch means and the drift checks
        (which need B >= 8).
    eval_batch : int
        Largest chunk of the evaluation subset per forward pass.
    seed : int
        Seed of the minibatch draws.
    quiet : bool
        Silence the progress bar.

    Returns
    -------
    dict
        ``status`` ("completed" or "diverged"); per recorded step ``grad_sqnorm``
        (‖ĝ_k‖²) and ``anchored_dot`` ((θ_k − a)·ĝ_k); per block
        ``block_offset_dot`` ((θ̄ − a)·G_b) and ``block_losses`` (L(θ̄_b));
        ``sqdist_start`` and ``sqdist_end`` (‖θ − θ̄‖² at the first recorded step
        and after the last); ``losses`` (recorded L(θ_k)), ``record_steps``,
        ``loss_at_start``, ``loss_at_mean`` (L(θ̄)), ``mean_weights`` (θ̄ as float32
        arrays, one per trainable variable), and the settings (``lr``,
        ``batch_size``, ``steps``, ``burn_in``, ``record_every``, ``n_blocks``,
        ``eval_examples``, ``n_data``, ``replacement``, ``sampler``, ``seed``,
        ``wall_time_s``).
    """
    from .backend import import_keras, to_numpy

    keras = import_keras()
    lr = positive_float(lr, "lr")
    x = np.asarray(x)
    y = np.asarray(y)
    n = int_at_least(len(x), "number of training examples", 1)
    if len(y) != n:
        raise ValueError(f"x and y must have the same length; got {n} and {len(y)}")
    s = int_at_least(batch_size, "batch_size", 1)
    steps = int_at_least(steps, "steps", 1)
    record_every = int_at_least(record_every, "record_every", 1)
    n_blocks = int_at_least(n_blocks, "n_blocks", 2)
    burn_in = steps // 4 if burn_in is None else int_at_least(burn_in, "burn_in", 0)
    eval_batch = int_at_least(eval_batch, "eval_batch", 1)
    if eval_x is None:
        eval_x, eval_y = x, y
    eval_x = np.asarray(eval_x)
    eval_y = np.asarray(eval_y)
    if len(eval_x) == 0 or len(eval_x) != len(eval_y):
        raise ValueError(f"eval_x and eval_y must be non-empty and of equal length; got "
                         f"{len(eval_x)} and {len(eval_y)}")
    # Whole blocks of whole recording intervals, so batch means line up with θ̄_b.
    unit = n_blocks * record_every
    steps = unit * math.ceil(steps / unit)
    block_len = steps // n_blocks

    Wrapper, StationarySGD = _classes(keras)
    wrapped = Wrapper(model)
    opt = StationarySGD(lr)
    wrapped.compile(optimizer=opt, loss=loss, jit_compile="auto")
    variables = wrapped.trainable_variables
    ops = keras.ops
    # Device-resident evaluation chunks: they are reused at every record.
    eval_chunks = [(ops.convert_to_tensor(eval_x[idx]), ops.convert_to_tensor(eval_y[idx]),
                    len(idx)) for idx in _chunks(len(eval_x), eval_batch)]

    def eval_loss():
        tot = 0.0
        for xe, ye, m in eval_chunks:
            tot += m * float(wrapped.test_on_batch(xe, ye, return_dict=True)["loss"])
        return tot / len(eval_x)

    def host(vs):
        return [to_numpy(v).astype(np.float32) for v in vs]

    def set_weights(ws):
        for v, w in zip(variables, ws):
            v.assign(w)

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    losses, record_steps, block_means, block_grad_sums = [], [], [], []
    grad_sqnorm = np.zeros(steps)
    anchored_dot = np.zeros(steps)
    anchor = None
    status = "completed"
    loss_at_start = eval_loss()
    total = burn_in + steps
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        tqdm = None
    bar = tqdm(total=total, desc="stationary SGD", disable=quiet, leave=False) if tqdm else None
    try:
        for k in range(total):
            j = k - burn_in                 # index of the recorded step, < 0 in the burn-in
            if j == 0:
                # a = θ_0: the identity holds for any fixed a; this one keeps θ − a small
                anchor = host(variables)
                # from the host copy: assigning v.value would alias one device buffer
                # in two variables, which JAX refuses to donate twice
                for a, w in zip(opt.anchors, anchor):
                    a.assign(w)
            if j >= 0 and j % block_len == 0:
                # block start: restart the running mean and the gradient sum on the device
                opt.iterations.assign(0)
                for g in opt.grad_sums:
                    g.assign(ops.zeros_like(g.value))
            idx = rng.integers(0, n, size=s)
            batch_loss = float(wrapped.train_on_batch(x[idx], y[idx], return_dict=True)["loss"])
            if not math.isfinite(batch_loss):
                status = "diverged"
                break
            if j < 0:
                if bar is not None:
                    bar.update(1)
                continue
            grad_sqnorm[j] = float(to_numpy(opt.grad_sqnorm))
            anchored_dot[j] = float(to_numpy(opt.anchored_dot))
            if not (math.isfinite(grad_sqnorm[j]) and math.isfinite(anchored_dot[j])):
                status = "diverged"
                break
            done = j + 1
            if done % record_every == 0:
                value = eval_loss()
                if not math.isfinite(value):
                    status = "diverged"
                    break
                losses.append(value)
                record_steps.append(k + 1)
            if done % block_len == 0:
                block_means.append(host(opt.averages))
                block_grad_sums.append(host(opt.grad_sums))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    out = {
        "status": status, "lr": lr, "batch_size": s, "steps": steps, "burn_in": burn_in,
        "record_every": record_every, "n_blocks": n_blocks, "eval_examples": int(len(eval_x)),
        "n_data": n, "replacement": True, "sampler": SAMPLER, "seed": int(seed),
        "loss_at_start": loss_at_start, "record_steps": record_steps, "losses": losses,
        "grad_sqnorm": [], "anchored_dot": [], "block_offset_dot": [], "block_losses": [],
        "sqdist_start": None, "sqdist_end": None, "loss_at_mean": None, "mean_weights": None,
    }
    if status == "completed":
        theta_bar, dots, sq_start, sq_end = _block_geometry(anchor, block_means,
                                                            block_grad_sums, host(variables))
        del block_grad_sums
        block_losses = []
        for wb in block_means:
            set_weights(wb)
            block_losses.append(eval_loss())
        mean = [t.astype(np.float32) for t in theta_bar]
        set_weights(mean)
        out.update(grad_sqnorm=grad_sqnorm.tolist(), anchored_dot=anchored_dot.tolist(),
                   block_offset_dot=dots, block_losses=block_losses, sqdist_start=sq_start,
                   sqdist_end=sq_end, loss_at_mean=eval_loss(), mean_weights=mean)
    out["wall_time_s"] = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------ trained runs

@dataclass(frozen=True)
class StationaryRun:
    """What the stationary phase needs from a trained run."""

    config: object        # dnn.TrainConfig
    model: object         # keras.Model with the run's final weights (then θ̄)
    train: tuple          # (x float32 standardised, y int labels)
    run_dir: Path | None  # the run folder, when loaded from one


def load_for_stationary(run):
    """A trained run as a :class:`StationaryRun`; ``run`` is a folder or a loaded run.

    Accepts a path, a :class:`StationaryRun`, or whatever :func:`dnn.train.load_run`
    returns (an object with ``config``, ``model`` and ``train``, or the
    equivalent tuple).
    """
    if isinstance(run, StationaryRun):
        return run
    run_dir = None
    if isinstance(run, (str, Path)):
        from .train import load_run

        run_dir = Path(run)
        run = load_run(run_dir)
    if isinstance(run, tuple) and not hasattr(run, "config"):
        config, model, train = run[0], run[1], run[2]
    else:
        config, model, train = run.config, run.model, run.train
        run_dir = getattr(run, "run_dir", run_dir)
    return StationaryRun(config, model, (np.asarray(train[0]), np.asarray(train[1])),
                         None if run_dir is None else Path(run_dir))


def final_lr(config):
    """The learning rate of the schedule's last epoch, ``config.lr_at(config.epochs - 1)``."""
    return float(config.lr_at(config.epochs - 1))


def _one_hot(y, k):
    out = np.zeros((len(y), k), np.float32)
    out[np.arange(len(y)), np.asarray(y, dtype=np.int64)] = 1.0
    return out


def stationary_phase(run, *, lr=None, steps=2000, burn_in=None, eval_examples=2048,
                     record_every=10, n_blocks=20, eval_batch=1024, seed=0, quiet=True):
    """Stationary phase of a trained run: plain SGD at η_s from its final weights.

    Continues SGD with momentum 0 at the fixed learning rate η_s and the run's
    batch size for ``steps`` recorded steps (after ``burn_in``), with batch norm
    frozen in inference mode, recording ‖ĝ‖² at every step and the training
    loss (data loss + L2 penalty, on the first ``eval_examples`` training
    examples, the subset ``dnn.estimate_run`` uses) every ``record_every`` steps.
    See :func:`sgd_stationary` for the returned raw record and
    :func:`summarize_stationary` for its statistics.

    Parameters
    ----------
    run : path or loaded run
        A ``dnn.train`` run folder, or the result of ``dnn.load_run``.
    lr : float, optional
        η_s; default the schedule's final learning rate.
    steps : int
        K recorded steps (rounded up to a multiple of ``n_blocks * record_every``).
    burn_in : int, optional
        Steps before recording (default ``steps // 4``): the switch from training-
        to inference-mode BN moves the minimum slightly.
    eval_examples : int
        Size of the fixed evaluation subset (clamped to the training set).
    record_every, n_blocks, eval_batch, seed, quiet
        As in :func:`sgd_stationary`.

    Returns
    -------
    dict
        :func:`sgd_stationary`'s record plus ``loss_name``, ``precision`` and
        ``lr_source`` ("final schedule LR" or "given").  The loaded model is left
        holding θ̄ (use :func:`measure_at_mean` next).
    """
    run = load_for_stationary(run)
    config, model, (x, y) = run.config, run.model, run.train
    from .losses import get_loss

    lr_source = "given"
    if lr is None:
        lr = final_lr(config)
        lr_source = "final schedule LR"
    m = min(int_at_least(eval_examples, "eval_examples", 1), len(x))
    k = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else int(y.max()) + 1
    y1 = _one_hot(y, k)
    out = sgd_stationary(model, x, y1, get_loss(config.loss), lr=lr,
                         batch_size=config.batch_size, steps=steps, burn_in=burn_in,
                         eval_x=x[:m], eval_y=y1[:m], record_every=record_every,
                         n_blocks=n_blocks, eval_batch=eval_batch, seed=seed, quiet=quiet)
    out.update(loss_name=config.loss, precision=getattr(config, "precision", "float32"),
               lr_source=lr_source)
    return out


def measure_at_mean(run, phase, *, examples=None, probes=None, batch_size=256, power_iters=20,
                    seed=0, quiet=True):
    """tr Σ, tr H (± SE), L2 trace and λ_max at θ̄ via ``dnn.measure``.

    ``run`` must be the loaded run whose model :func:`stationary_phase` left at
    θ̄ (the weights are re-assigned from ``phase["mean_weights"]`` to be sure).
    Measured on the first ``examples`` training examples (default: the phase's
    evaluation subset), with ``probes`` Hutchinson probes (default: at least 32,
    so that tr H has a usable SE even on a small subset).
    """
    from .measure import measure

    run = load_for_stationary(run)
    config, model, (x, y) = run.config, run.model, run.train
    if phase.get("mean_weights") is not None:
        for v, w in zip(model.trainable_variables, phase["mean_weights"]):
            v.assign(w)
    m = phase["eval_examples"] if examples is None else min(int(examples), len(x))
    bs = min(batch_size, m)
    if probes is None:
        probes = max(32, math.ceil(m / bs))
    # by name, as dnn.estimate_run does: the same compiled programs (and cache entries)
    return measure(model, x[:m], y[:m], loss=config.loss, batch_size=bs,
                   n_probes=probes, power_iters=power_iters, seed=seed, quiet=quiet)


_CONVENTIONS = {
    "bn": "inference mode (running statistics frozen) for SGD steps and measurements",
    "loss": "training objective: mean data loss + L2 penalty",
    "observed": "theta-free: (lr/4) mean_k |g_k|^2 over the recorded steps, g_k the minibatch "
                "gradient stepped with (objective incl. L2, whole training set); SE by batch "
                "means over the blocks; exact for a quadratic loss at stationarity",
    "polyak": "mean_k L(theta_k) - L(theta_bar) + (mean_b L(theta_bar_b) - L(theta_bar))/(B-1) "
              "on the fixed evaluation subset; SE by batch means",
    "identity": "E[(theta - theta_bar).g] / ((lr/2) E|g|^2): diagnostic only, 1 at "
                "stationarity for any loss",
    "stationary": "no drift of the loss and of |g|^2 between the halves (|z| < 4) and "
                  "n_eff(|g|^2) >= max(20, B)",
    "predictions": "(12) (lr c_S/4) tr Sigma and (6) (lr c_S/4) (tr H_data + L2 trace), "
                   "traces measured at theta_bar on the evaluation subset",
}


def measure_stationary(run, *, lr=None, steps=2000, burn_in=None, eval_examples=2048,
                       record_every=10, n_blocks=20, measure_examples=None, probes=None,
                       power_iters=20, seed=0, quiet=True):
    """The whole stationary measurement of a trained run, as a JSON-ready record.

    Runs :func:`stationary_phase`, measures tr Σ, tr H, the L2 trace and λ_max at
    θ̄ (:func:`measure_at_mean`, same evaluation subset unless ``measure_examples``)
    when the phase completed, and adds :func:`summarize_stationary`'s statistics.
    This is the one entry point :mod:`validation.stationary` calls.

    Parameters
    ----------
    run : path or loaded run
        A completed ``dnn.train`` run folder or loaded run.
    lr, steps, burn_in, eval_examples, record_every, n_blocks, seed, quiet
        Passed to :func:`stationary_phase`.
    measure_examples, probes, power_iters
        Passed to :func:`measure_at_mean` (``examples``, ``probes``, ``power_iters``).

    Returns
    -------
    dict
        ``schema_version`` (:data:`SCHEMA_VERSION`), ``status``, ``conventions``,
        ``phase`` (the raw record without the weights), ``at_mean`` (the
        measurement at θ̄, or None), the keys of :func:`summarize_stationary`, and
        ``wall_time_s``.
    """
    t0 = time.perf_counter()
    run = load_for_stationary(run)
    phase = stationary_phase(run, lr=lr, steps=steps, burn_in=burn_in,
                             eval_examples=eval_examples, record_every=record_every,
                             n_blocks=n_blocks, seed=seed, quiet=quiet)
    at_mean = None
    if phase["status"] == "completed":
        at_mean = measure_at_mean(run, phase, examples=measure_examples, probes=probes,
                                  power_iters=power_iters, seed=seed, quiet=quiet)
    summary = summarize_stationary(phase, at_mean)
    return {
        "schema_version": SCHEMA_VERSION,
        "status": phase["status"],
        "conventions": {**_CONVENTIONS, "sampler": phase.get("sampler")},
        "phase": {k: v for k, v in phase.items() if k != "mean_weights"},
        "at_mean": at_mean,
        **{k: v for k, v in summary.items() if k != "status"},
        "wall_time_s": time.perf_counter() - t0,
    }
