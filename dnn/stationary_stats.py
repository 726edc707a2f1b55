r"""Statistics of a stationary phase's record: pure numpy, no RNG, no I/O.

The phase itself (:mod:`dnn.convnet.stationary`) records per step ‖ĝ_k‖² and
(θ_k − a)·ĝ_k, per block the mean iterate and the gradient sum, and every few
steps the loss.  This module turns that record into

* the primary, θ*-free observed excess loss ((1+β)/(4η_s))·mean‖v‖² with a
  batch-means SE, which is (η_s/4)·mean‖ĝ‖² for plain SGD
  (:func:`theta_free_excess_loss`; theory.md, "A θ*-free measurement", "Momentum");
* the Polyak column, mean L(θ_k) − L(θ̄) with a block correction
  (:func:`polyak_excess_loss`);
* the identity ratio E[(θ − θ̄)·ĝ] / (((1+β)/(2η))E‖v‖²), a diagnostic only;
* the stationarity checks (no drift of the loss, of ‖ĝ‖² or of ‖v‖² between
  halves, enough effective samples).

:mod:`dnn.stationary_summary` adds the predictions (12) and (6) and assembles the
``stationary.json`` record.  Both are split from the Keras phase so that they can
be read, and tested on simulated series, without a framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import positive_float

__all__ = [
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
    "DRIFT_Z_MAX",
    "MIN_DRIFT_BLOCKS",
    "MIN_N_EFF",
]

#: A phase counts as stationary when neither the loss nor ‖ĝ‖² drifts between the halves
#: by DRIFT_Z_MAX SE or more (false alarm 6e-5 per check for a normal z) ...
DRIFT_Z_MAX = 4.0
#: ... and the mean of ‖ĝ‖² rests on at least MIN_N_EFF effectively independent steps
#: (and at least B, so that each batch-means block spans one τ): per-step ‖ĝ‖² is
#: skewed (χ²-like), and with >= 20 independent draws its mean is close enough to
#: normal for a z-test.
MIN_N_EFF = 20.0

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
    """Observed excess loss ((1+β)/(4η))·E‖v‖² = (η/4)·E‖ĝ‖² at β = 0, the primary estimate."""

    value: float               # (η/4) mean_k ‖ĝ_k‖², or ((1+β)/(4η)) mean_k ‖v_k‖² (β > 0)
    se: float                  # the same factor × the batch-means SE of that mean
    mean_grad_sqnorm: float    # mean_k ‖ĝ_k‖²
    mean_grad_sqnorm_se: float
    n_steps: int               # K, steps averaged
    n_blocks: int              # B, batches of the SE
    tau_steps: float           # integrated autocorrelation time (Sokal) of the series averaged
    n_eff: float               # K / τ: effectively independent steps
    momentum: float = 0.0      # β of the steps
    series: str = "grad_sqnorm"        # the series averaged: "grad_sqnorm" or "step_sqnorm"
    mean_step_sqnorm: float | None = None     # mean_k ‖v_k‖² (when recorded)
    mean_step_sqnorm_se: float | None = None


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
    """E[(θ − θ̄)·ĝ] / (((1+β)/(2η))·E‖v‖²): 1 at stationarity, for any loss (a diagnostic)."""

    value: float       # r = mean_b x_b / mean_b y_b
    se: float          # batch-means SE of the ratio (delta method over the B blocks)
    numerator: float   # mean_k (θ_k − θ̄)·ĝ_k
    denominator: float # (η/2) mean_k ‖ĝ_k‖², or ((1+β)/(2η)) mean_k ‖v_k‖² (β > 0)
    n_blocks: int      # B
    momentum: float = 0.0


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


def _momentum(value):
    from ._validate import momentum

    return momentum(value)


def theta_free_excess_loss(grad_sqnorm, lr, n_blocks=20, *, momentum=0.0, step_sqnorm=None):
    r"""Observed stationary excess loss without θ*: ((1+β)/(4η))·E‖v‖², (η/4)·E‖ĝ‖² at β = 0.

    .. math:: \widehat{\Delta} = \frac{1+\beta}{4\eta}\cdot\frac1K\sum_{k}\|v_k\|^2
              \;\overset{\beta=0}{=}\;\frac{\eta}{4}\cdot\frac1K\sum_{k}\|\hat g_k\|^2,\qquad
              \mathrm{SE} = \text{the same factor}\times\mathrm{SE}_{\text{batch means}},\qquad
              n_{\text{eff}} = K/\tau,

    with v_k = θ_k − θ_{k−1} the heavy-ball step and τ from :func:`integrated_time`
    of the series averaged.  At β = 0, v = −ηĝ, so the two forms agree in exact
    arithmetic; the plain-SGD form is computed from ‖ĝ_k‖², as it always was.

    Exact in expectation for a quadratic loss at stationarity, in discrete time
    and with any (state-dependent) unbiased gradient noise: stationarity of
    E‖θ − a‖², E[(θ − a)·v] and the update v' = βv − ηĝ give
    E[(θ − a)·∇L] = ((1+β)/(2η))E‖v‖² (:mod:`dnn.convnet.stationary`'s docstring
    has the three equations), and (θ − θ*)·∇L = 2(L − L*) for a quadratic.  ĝ_k is
    the gradient SGD stepped with (objective incl. L2), so Δ̂ is the excess of that
    objective over the whole training set.

    Parameters
    ----------
    grad_sqnorm : (K,) array_like
        ‖ĝ_k‖² per recorded step, in time order; K >= 2B.
    lr : float
        η > 0, the learning rate of the steps.
    n_blocks : int
        B >= 2 batches for the batch-means SE (the phase's blocks).
    momentum : float
        β in [0, 1).
    step_sqnorm : (K,) array_like, optional
        ‖v_k‖² per recorded step; required when β > 0 (then it is the series
        averaged), summarised alongside when given at β = 0.

    Returns
    -------
    ThetaFreeExcess

    Raises
    ------
    ValueError
        Non-finite or negative ‖ĝ‖² or ‖v‖², a bad lr or momentum, β > 0 without
        ``step_sqnorm``, series of different lengths, B < 2 or K < 2B.

    Examples
    --------
    >>> r = theta_free_excess_loss([1.0, 3.0, 1.0, 3.0], 0.4, n_blocks=2)
    >>> round(r.value, 12), r.se, r.n_steps
    (0.2, 0.0, 4)
    >>> r = theta_free_excess_loss([1.0] * 4, 0.5, n_blocks=2, momentum=0.5,
    ...                            step_sqnorm=[0.5, 1.5, 0.5, 1.5])
    >>> round(r.value, 12), r.series      # (1.5 / 2) × mean ‖v‖² = 0.75
    (0.75, 'step_sqnorm')
    """
    g = _series(grad_sqnorm, "grad_sqnorm")
    if np.any(g < 0):
        raise ValueError(f"grad_sqnorm must be >= 0; it contains {g[g < 0][0]}")
    lr = positive_float(lr, "lr")
    beta = _momentum(momentum)
    v = None
    if step_sqnorm is not None:
        v = _series(step_sqnorm, "step_sqnorm")
        if np.any(v < 0):
            raise ValueError(f"step_sqnorm must be >= 0; it contains {v[v < 0][0]}")
        if v.size != g.size:
            raise ValueError(f"step_sqnorm and grad_sqnorm must have the same length; got "
                             f"{v.size} and {g.size}")
    elif beta > 0:
        raise ValueError(f"momentum = {beta:g} > 0 needs step_sqnorm (the recorded ‖v_k‖²)")
    bm_g = batch_means(g, n_batches=n_blocks)
    bm_v = None if v is None else batch_means(v, n_batches=n_blocks)
    if beta > 0:
        series, bm, factor = v, bm_v, (1.0 + beta) / (4.0 * lr)
    else:
        series, bm, factor = g, bm_g, 0.25 * lr
    tau = integrated_time(series[series.size - bm.n:])
    return ThetaFreeExcess(value=factor * bm.mean, se=factor * bm.se,
                           mean_grad_sqnorm=bm_g.mean, mean_grad_sqnorm_se=bm_g.se,
                           n_steps=bm.n, n_blocks=bm.n_batches, tau_steps=tau,
                           n_eff=bm.n / tau, momentum=beta,
                           series="step_sqnorm" if beta > 0 else "grad_sqnorm",
                           mean_step_sqnorm=None if bm_v is None else bm_v.mean,
                           mean_step_sqnorm_se=None if bm_v is None else bm_v.se)


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


def identity_ratio(grad_sqnorm, anchored_dot, block_offset_dot, lr, *, momentum=0.0,
                   step_sqnorm=None):
    r"""The fluctuation–dissipation ratio E[(θ − θ̄)·ĝ] / (((1+β)/(2η))·E‖v‖²), with its SE.

    The phase records, per step, y_k = ‖ĝ_k‖², w_k = ‖v_{k+1}‖² (the step taken)
    and u_k = (θ_k − a)·ĝ_k (a: θ at the start of recording) and, per block,
    c_b = (θ̄ − a)·G_b with G_b = Σ_{k∈b} ĝ_k.  Per block of m steps,

    .. math:: x_b = \frac1m\Big(\sum_{k\in b} u_k - c_b\Big)
                  = \frac1m\sum_{k\in b}(\theta_k-\bar\theta)\cdot\hat g_k,\qquad
              d_b = \frac{1+\beta}{2\eta}\,\bar w_b
                  \;\overset{\beta=0}{=}\;\frac{\eta}{2}\,\bar y_b,\qquad
              r = \frac{\bar x}{\bar d},\qquad
              \mathrm{SE}(r) = \frac{\mathrm{sd}_b(x_b - r\,d_b)}{\sqrt B\;\bar d}.

    Summing the updates gives, exactly, with x_k = θ_k − θ̄ and p_k = x_k·v_k,

    .. math:: \sum_k x_k\cdot\hat g_k = \frac{1+\beta}{2\eta}\sum_k\|v_{k+1}\|^2
              + \frac{(1-\beta)(\|x_0\|^2 - \|x_K\|^2)/2 + \beta(p_0 - p_K)}{\eta}

    (from ‖x_{k+1}‖² = ‖x_k‖² + 2x_k·v_{k+1} + ‖v_{k+1}‖² and
    x_k·v_{k+1} = βp_k − ηx_k·ĝ_k); at β = 0, r = 1 + (‖x_0‖² − ‖x_K‖²)/(η²Σ‖ĝ_k‖²).
    r < 1 means the iterates ended farther from θ̄ than they started (diffusion along
    flat directions).  A diagnostic, not a gate: flat directions carry almost no loss.

    Parameters
    ----------
    grad_sqnorm, anchored_dot : (K,) array_like
        y_k and u_k; K a multiple of B.
    block_offset_dot : (B,) array_like
        c_b, B >= 2.
    lr : float
        η > 0.
    momentum : float
        β in [0, 1).
    step_sqnorm : (K,) array_like, optional
        w_k; required when β > 0 (at β = 0 the denominator uses y_k).

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
    beta = _momentum(momentum)
    if beta > 0:
        if step_sqnorm is None:
            raise ValueError(f"momentum = {beta:g} > 0 needs step_sqnorm (the recorded ‖v_k‖²)")
        den_series, factor = _series(step_sqnorm, "step_sqnorm"), (1.0 + beta) / (2.0 * lr)
    else:
        den_series, factor = y, 0.5 * lr
    b = c.size
    if b < 2:
        raise ValueError(f"block_offset_dot needs at least 2 blocks; got {b}")
    if not (y.size == u.size == den_series.size) or y.size < 2 * b or y.size % b:
        raise ValueError(f"grad_sqnorm, anchored_dot (and step_sqnorm) must hold the same "
                         f"multiple of {b} (the number of blocks) values, at least {2 * b}; "
                         f"got {y.size}, {u.size} and {den_series.size}")
    m = y.size // b
    x_b = (u.reshape(b, m).sum(axis=1) - c) / m
    d_b = factor * den_series.reshape(b, m).mean(axis=1)
    den = float(d_b.mean())
    if den <= 0:
        return IdentityRatio(float("nan"), float("nan"), float(x_b.mean()), den, b, beta)
    r = float(x_b.mean()) / den
    se = float(np.std(x_b - r * d_b, ddof=1)) / math.sqrt(b) / den
    return IdentityRatio(value=r, se=se, numerator=float(x_b.mean()), denominator=den,
                         n_blocks=b, momentum=beta)


def stationarity_check(drift_loss, drift_grad_sqnorm, n_eff, n_blocks=None, *,
                       drift_step_sqnorm=None):
    r"""Does a phase count as stationary?  Both drifts small and enough effective samples.

    Stationary iff |z| < :data:`DRIFT_Z_MAX` for the drift of the loss and of
    ‖ĝ‖² between the halves (:func:`drift_check`), and the n_eff = K/τ of ‖ĝ‖²
    is at least max(:data:`MIN_N_EFF`, B): 20 independent samples behind the
    mean, and (n_eff >= B ⟺ K/B >= τ) batch-means blocks at least one τ long,
    without which their SE is too small.  These can pass on a real network:
    they ask that the measured quantities stopped moving, not that every flat
    direction equilibrated.

    With momentum the estimate averages ‖v_k‖², so its drift is checked too
    (``drift_step_sqnorm``) and ``n_eff`` is that of ‖v_k‖².

    Parameters
    ----------
    drift_loss, drift_grad_sqnorm : dict or None
        :func:`drift_check` of the loss records and of ‖ĝ_k‖² (None: untestable).
    n_eff : float or None
        Effective sample size of the series the estimate averages.
    n_blocks : int, optional
        B, the batch-means blocks.
    drift_step_sqnorm : dict, optional
        :func:`drift_check` of ‖v_k‖² (given with momentum; not checked when None).

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
    checks = [("loss", drift_loss), ("grad_sqnorm", drift_grad_sqnorm)]
    if drift_step_sqnorm is not None:
        checks.append(("step_sqnorm", drift_step_sqnorm))
    for name, d in checks:
        if d is None:
            failed.append(f"{name} drift untestable (fewer than {MIN_DRIFT_BLOCKS} blocks)")
        elif not abs(d["z"]) < DRIFT_Z_MAX:
            failed.append(f"{name} drift z = {d['z']:.3g} (|z| >= {DRIFT_Z_MAX:g})")
    if n_eff is None or not math.isfinite(n_eff) or n_eff < min_n_eff:
        failed.append(f"n_eff = {n_eff if n_eff is None else f'{n_eff:.3g}'} "
                      f"(< {min_n_eff:g})")
    return {"stationary": not failed,
            "criteria": (f"|loss drift z| < {DRIFT_Z_MAX:g} and |grad_sqnorm drift z| < "
                         f"{DRIFT_Z_MAX:g}"
                         + (f" and |step_sqnorm drift z| < {DRIFT_Z_MAX:g} and "
                            f"n_eff(step_sqnorm)" if drift_step_sqnorm is not None
                            else " and n_eff(grad_sqnorm)")
                         + f" >= max({MIN_N_EFF:g}, n_blocks)"),
            "min_n_eff": min_n_eff, "failed": failed}
