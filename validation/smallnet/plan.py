"""Planning a ``smallnet`` setting from the exact spectrum: burn-in and window length.

Before any SGD step is taken, the additive-noise linear law in H's eigenbasis says
how fast a chain started at θ* fills in its stationary excess loss
(:func:`missing_fraction`, hence :func:`plan_burn_in`) and how noisy a chain's time
average of L is (:func:`plan_window`).  These only size the run; what is reported
is measured across chains.

With heavy-ball momentum β the same sums run over the 2×2 blocks of the stacked
recursion (theory.md, "Momentum"): direction j's share of the excess is (M7)'s
Σ̃_jj/(2(1+β) − ηh_j), and its second moments relax like r_j^{2t}, r_j the spectral
radius of [[1+β−ηh_j, −β], [1, 0]] (:func:`theory.momentum.block_radius`: √β when
underdamped, ≈ 1 − ηh_j/(1−β) for the flat directions).  At β = 0, r_j = |1 − ηh_j|
and every formula is the plain one.  The envelope r^{2t} ignores the block's
oscillation and the polynomial factor of a critically damped block; the drift and
identity checks of :mod:`validation.smallnet.measure` catch what it misses.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["missing_fraction", "plan_burn_in", "plan_window", "relaxation_radius"]


def relaxation_radius(h, lr, momentum=0.0):
    """Per direction, the factor r_j by which a deviation shrinks per step (second moments: r_j²).

    |1 − ηh_j| for plain SGD; with momentum β, the spectral radius of the heavy-ball block
    [[1+β−ηh_j, −β], [1, 0]].

    Examples
    --------
    >>> float(relaxation_radius([2.0], 0.1)[0]), float(relaxation_radius([2.0], 0.1, 0.81)[0])
    (0.8, 0.9)
    """
    x = lr * np.asarray(h, dtype=float)
    if momentum == 0.0:
        return np.abs(1.0 - x)
    from theory.momentum import block_radius

    return block_radius(x, float(momentum))


def missing_fraction(h, s_tilde, lr, t, momentum=0.0):
    r"""Fraction of the stationary excess loss still missing t steps after a start at θ*.

    For the additive-noise linear recursion in H's eigenbasis (h_j, Σ̃_jj = (UᵀΣU)_jj),
    the excess loss from δ₀ = 0 is

    .. math:: E_t = \sum_j \frac{\eta c_S}{2}\,\frac{\tilde\Sigma_{jj}}{2 - \eta h_j}
              \big(1 - (1 - \eta h_j)^{2t}\big),

    so the missing fraction m(t) = Σ_j a_j (1 − ηh_j)^{2t} / Σ_j a_j with
    a_j = Σ̃_jj/(2 − ηh_j) (c_S cancels).  Off-diagonal Σ̃ does not enter: the
    excess loss ½ tr(H C_t) only reads C_t's diagonal in that basis.  With momentum β,
    a_j = Σ̃_jj/(2(1+β) − ηh_j) and (1 − ηh_j)² becomes r_j² (:func:`relaxation_radius`,
    an envelope: see the module docstring).

    Parameters
    ----------
    h : (P,) array_like
        Eigenvalues of H, > 0, with η h_max < 2(1 + β).
    s_tilde : (P,) array_like
        diag(UᵀΣU) >= 0.
    lr : float
        η.
    t : int or array_like of int
        Steps since the start at θ*.
    momentum : float
        Heavy-ball β in [0, 1).

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> round(float(missing_fraction([2.0], [3.0], 0.1, 10)), 10) == round(0.8 ** 20, 10)
    True
    """
    h, a = _weights(h, s_tilde, lr, momentum)
    t = np.asarray(t, dtype=float)
    out = relaxation_radius(h, lr, momentum) ** (2.0 * t[..., None]) @ a / a.sum()
    return float(out) if out.ndim == 0 else out


def _weights(h, s_tilde, lr, momentum=0.0):
    h = np.asarray(h, dtype=float)
    s = np.asarray(s_tilde, dtype=float)
    if h.ndim != 1 or h.shape != s.shape or h.size == 0:
        raise ValueError(f"h and s_tilde must be 1-D of the same length; got {h.shape} and {s.shape}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be a number in [0, 1); got {momentum!r}")
    two = 2.0 * (1.0 + momentum)
    if np.any(h <= 0) or np.any(s < 0) or not (0 < lr * h.max() < two):
        raise ValueError(f"need h > 0, s_tilde >= 0 and 0 < lr*h_max < 2(1+momentum) = {two:g}; "
                         f"got h_min={h.min():.3g}, min s_tilde={s.min():.3g}, "
                         f"lr*h_max={lr * h.max():.3g}")
    a = s / (two - lr * h)
    if a.sum() <= 0:
        raise ValueError("s_tilde is all zero: there is no gradient noise to settle")
    return h, a


def plan_burn_in(h, s_tilde, lr, *, target, max_steps=200_000, momentum=0.0):
    """Smallest t with :func:`missing_fraction` (t) < target, capped at ``max_steps``.

    Returns
    -------
    (int, float, bool)
        Steps, the missing fraction they leave, and whether the cap was hit.
    """
    if not 0 < target < 1:
        raise ValueError(f"target must lie in (0, 1); got {target!r}")
    _weights(h, s_tilde, lr, momentum)

    def m(t):
        return float(missing_fraction(h, s_tilde, lr, t, momentum))

    if m(0) < target:
        return 0, m(0), False
    if m(max_steps) >= target:
        return int(max_steps), m(max_steps), True
    lo, hi = 0, 1          # m(lo) >= target > m(hi); m decreases in t
    while m(hi) >= target:
        lo, hi = hi, min(2 * hi, max_steps)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if m(mid) >= target else (lo, mid)
    return hi, m(hi), False


def plan_window(h, s_tilde_full, lr, noise_factor, n_chains, *, rel_se, min_steps=1,
                momentum=0.0):
    r"""Recorded steps T for a relative SE ``rel_se`` of the across-chain mean excess loss.

    Under the additive-noise linear law (C̃ the discrete covariance in H's eigenbasis),
    the excess loss L = ½ δᵀHδ of a stationary Gaussian chain has
    Cov(L₀, L_k) = ½ Σ_ij h_i h_j C̃_ij² (1 − ηh_j)^{2|k|}, so a chain's time average
    over T ≫ relaxation steps has variance (1/T) Σ_ij ½ h_i h_j C̃_ij² (1+ρ_j)/(1−ρ_j),
    ρ_j = (1 − ηh_j)².  T is chosen so that √(that / n_chains) = rel_se · E with
    E = ½ tr(HC) the discrete law.  The state-dependent noise adds variance; the SE
    actually reported is measured across chains, this only sizes the run.  With momentum
    β, C̃ is the heavy-ball covariance (theory.momentum, M6) and ρ_j = r_j², the block's
    envelope (:func:`relaxation_radius`).

    Returns
    -------
    (int, float)
        T (>= ``min_steps``), and the effective independent samples per step,
        Var(L) / Σ_k Cov(L₀, L_k) (1 for white noise, ≈ 1/(2·relaxation steps) for slow chains).
    """
    h = np.asarray(h, dtype=float)
    st = np.asarray(s_tilde_full, dtype=float)
    if st.shape != (h.size, h.size):
        raise ValueError(f"s_tilde_full must have shape ({h.size}, {h.size}); got {st.shape}")
    _weights(h, np.diag(st).clip(min=0), lr, momentum)
    if momentum == 0.0:
        c = lr * noise_factor * st / (h[:, None] + h[None, :] - lr * h[:, None] * h[None, :])
    else:
        from theory.momentum import stacked_blocks_eig

        c = stacked_blocks_eig(h, st, lr, noise_factor, float(momentum))[0]
    rho = relaxation_radius(h, lr, momentum) ** 2
    tau = (1.0 + rho) / (1.0 - rho)                     # Σ_k ρ^|k|: steps per independent sample
    var_sum = 0.5 * float(np.einsum("i,j,ij,j->", h, h, c * c, tau))
    mean = 0.5 * float(np.sum(h * np.diag(c)))
    steps = var_sum / (n_chains * (rel_se * mean) ** 2)
    var_l = 0.5 * float(np.einsum("i,j,ij->", h, h, c * c))     # Var L, the k = 0 term
    ess_per_step = var_l / var_sum
    return max(int(math.ceil(steps)), int(min_steps)), ess_per_step
