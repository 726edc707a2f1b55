"""Planning a ``smallnet`` setting from the exact spectrum: burn-in and window length.

Before any SGD step is taken, the additive-noise linear law in H's eigenbasis says
how fast a chain started at θ* fills in its stationary excess loss
(:func:`missing_fraction`, hence :func:`plan_burn_in`) and how noisy a chain's time
average of L is (:func:`plan_window`).  These only size the run; what is reported
is measured across chains.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["missing_fraction", "plan_burn_in", "plan_window"]


def missing_fraction(h, s_tilde, lr, t):
    r"""Fraction of the stationary excess loss still missing t steps after a start at θ*.

    For the additive-noise linear recursion in H's eigenbasis (h_j, Σ̃_jj = (UᵀΣU)_jj),
    the excess loss from δ₀ = 0 is

    .. math:: E_t = \sum_j \frac{\eta c_S}{2}\,\frac{\tilde\Sigma_{jj}}{2 - \eta h_j}
              \big(1 - (1 - \eta h_j)^{2t}\big),

    so the missing fraction m(t) = Σ_j a_j (1 − ηh_j)^{2t} / Σ_j a_j with
    a_j = Σ̃_jj/(2 − ηh_j) (c_S cancels).  Off-diagonal Σ̃ does not enter: the
    excess loss ½ tr(H C_t) only reads C_t's diagonal in that basis.

    Parameters
    ----------
    h : (P,) array_like
        Eigenvalues of H, > 0, with η h_max < 2.
    s_tilde : (P,) array_like
        diag(UᵀΣU) >= 0.
    lr : float
        η.
    t : int or array_like of int
        Steps since the start at θ*.

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> round(float(missing_fraction([2.0], [3.0], 0.1, 10)), 10) == round(0.8 ** 20, 10)
    True
    """
    h, a = _weights(h, s_tilde, lr)
    t = np.asarray(t, dtype=float)
    out = np.abs(1.0 - lr * h) ** (2.0 * t[..., None]) @ a / a.sum()
    return float(out) if out.ndim == 0 else out


def _weights(h, s_tilde, lr):
    h = np.asarray(h, dtype=float)
    s = np.asarray(s_tilde, dtype=float)
    if h.ndim != 1 or h.shape != s.shape or h.size == 0:
        raise ValueError(f"h and s_tilde must be 1-D of the same length; got {h.shape} and {s.shape}")
    if np.any(h <= 0) or np.any(s < 0) or not (0 < lr * h.max() < 2):
        raise ValueError(f"need h > 0, s_tilde >= 0 and 0 < lr*h_max < 2; got h_min={h.min():.3g}, "
                         f"min s_tilde={s.min():.3g}, lr*h_max={lr * h.max():.3g}")
    a = s / (2.0 - lr * h)
    if a.sum() <= 0:
        raise ValueError("s_tilde is all zero: there is no gradient noise to settle")
    return h, a


def plan_burn_in(h, s_tilde, lr, *, target, max_steps=200_000):
    """Smallest t with :func:`missing_fraction` (t) < target, capped at ``max_steps``.

    Returns
    -------
    (int, float, bool)
        Steps, the missing fraction they leave, and whether the cap was hit.
    """
    if not 0 < target < 1:
        raise ValueError(f"target must lie in (0, 1); got {target!r}")
    _weights(h, s_tilde, lr)
    if missing_fraction(h, s_tilde, lr, 0) < target:
        return 0, float(missing_fraction(h, s_tilde, lr, 0)), False
    if missing_fraction(h, s_tilde, lr, max_steps) >= target:
        return int(max_steps), float(missing_fraction(h, s_tilde, lr, max_steps)), True
    lo, hi = 0, 1          # m(lo) >= target > m(hi); m decreases in t
    while missing_fraction(h, s_tilde, lr, hi) >= target:
        lo, hi = hi, min(2 * hi, max_steps)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if missing_fraction(h, s_tilde, lr, mid) >= target else (lo, mid)
    return hi, float(missing_fraction(h, s_tilde, lr, hi)), False


def plan_window(h, s_tilde_full, lr, noise_factor, n_chains, *, rel_se, min_steps=1):
    r"""Recorded steps T for a relative SE ``rel_se`` of the across-chain mean excess loss.

    Under the additive-noise linear law (C̃ the discrete covariance in H's eigenbasis),
    the excess loss L = ½ δᵀHδ of a stationary Gaussian chain has
    Cov(L₀, L_k) = ½ Σ_ij h_i h_j C̃_ij² (1 − ηh_j)^{2|k|}, so a chain's time average
    over T ≫ relaxation steps has variance (1/T) Σ_ij ½ h_i h_j C̃_ij² (1+ρ_j)/(1−ρ_j),
    ρ_j = (1 − ηh_j)².  T is chosen so that √(that / n_chains) = rel_se · E with
    E = ½ tr(HC) the discrete law.  The state-dependent noise adds variance; the SE
    actually reported is measured across chains, this only sizes the run.

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
    _weights(h, np.diag(st).clip(min=0), lr)
    c = lr * noise_factor * st / (h[:, None] + h[None, :] - lr * h[:, None] * h[None, :])
    rho = (1.0 - lr * h) ** 2
    tau = (1.0 + rho) / (1.0 - rho)                     # Σ_k ρ^|k|: steps per independent sample
    var_sum = 0.5 * float(np.einsum("i,j,ij,j->", h, h, c * c, tau))
    mean = 0.5 * float(np.sum(h * np.diag(c)))
    steps = var_sum / (n_chains * (rel_se * mean) ** 2)
    var_l = 0.5 * float(np.einsum("i,j,ij->", h, h, c * c))     # Var L, the k = 0 term
    ess_per_step = var_l / var_sum
    return max(int(math.ceil(steps)), int(min_steps)), ess_per_step
