"""Curvature and noise estimators over callables (numpy in, numpy out).

Nothing here knows about Keras: a model only supplies a Hessian-vector product
and per-example gradient square norms (see ``dnn.measure``), so every estimator
is tested on explicit matrices as well as on tiny networks.

Conventions (theory.md, "DNN estimators"): the loss is a *mean* over examples,
L = (1/N) sum_i l_i; the gradient covariance is centred and divides by N,
Sigma = (1/N) sum_i (g_i - gbar)(g_i - gbar)^T.

Vectors are either one ndarray of length ``dim`` or a list of ndarrays with the
given ``shapes`` (one per model variable); inner products sum over the list.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from theory import noise_factor

from ._validate import int_at_least as _int_at_least
from ._validate import probe_counts
from ._validate import finite_array as _finite
from ._validate import nan_to_none as _jsonable
from ._validate import positive_float as _positive_float

__all__ = [
    "EigenEstimate",
    "GradCovTrace",
    "TraceEstimate",
    "TwoBatchNoise",
    "grad_cov_trace",
    "hutchinson_trace",
    "l2_trace_contribution",
    "top_hessian_eigenvalue",
    "two_batch_noise",
]

GRAD_COV_CONVENTION = "centred, divide by N"


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson estimate of tr H: mean and standard error over ``n_hvp`` probes."""

    mean: float
    se: float            # NaN when n_hvp == 1
    n_hvp: int
    converged: bool      # True unless target_rel_se was given and not reached
    target_rel_se: float | None = None

    def as_dict(self) -> dict:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class GradCovTrace:
    """tr Sigma = mean_example_sqnorm - mean_grad_sqnorm over ``n_examples`` examples."""

    trace: float
    mean_example_sqnorm: float   # (1/N) sum_i ||g_i||^2
    mean_grad_sqnorm: float      # ||gbar||^2
    n_examples: int
    sampling_se: float           # sd_i(||g_i||^2)/sqrt(N): error if the N are a sample
    convention: str = GRAD_COV_CONVENTION

    def as_dict(self) -> dict:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class TwoBatchNoise:
    """McCandlish et al. (2018) two-batch estimates of tr Sigma and ||G||^2."""

    trace_cov: float
    trace_cov_se: float
    grad_sqnorm: float
    grad_sqnorm_se: float
    noise_scale: float       # B_simple = tr Sigma / ||G||^2 (ratio of the means)
    noise_scale_se: float    # delta method
    n_pairs: int
    b_small: int
    b_big: int
    n_data: int | None       # None: batches drawn with replacement (c_B = 1/B)
    # True when trace_cov or grad_sqnorm came out < 0 (impossible for the true values):
    # then reliable is False and the numbers are noise, not a measurement.
    negative: bool = False
    reliable: bool = True
    convention: str = GRAD_COV_CONVENTION

    def as_dict(self) -> dict:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class EigenEstimate:
    """Power-iteration estimate of the dominant Hessian eigenvalue."""

    value: float
    n_iters: int
    n_hvp: int
    converged: bool
    rel_change: float        # |lambda_k - lambda_{k-1}| / |lambda_k| at the last step

    def as_dict(self) -> dict:
        return _jsonable(asdict(self))


# ---------------------------------------------------------------------- estimators

def hutchinson_trace(hvp: Callable, dim_or_shapes, *, n_probes: int | None = None,
                     batches: Sequence | None = None, batch_weights=None,
                     rng: np.random.Generator | None = None,
                     target_rel_se: float | None = None, max_probes: int = 10_000,
                     min_probes: int = 10, quadratic_form: bool = False,
                     callback: Callable[[int], None] | None = None) -> TraceEstimate:
    r"""Hutchinson estimate of tr H with Rademacher probes.

    Each probe v has i.i.d. entries ±1, so E[vᵀ H v] = tr H. With ``batches``,
    H = Σ_b w_b H_b / Σ_b w_b is a weighted mean of batch Hessians (w_b = number
    of examples in batch b for a mean loss), and every HVP draws a *fresh* probe
    on its own batch:

    .. math::
        u_k = \frac{B\, w_{b_k}}{\sum_b w_b}\, v_k^\top H_{b_k} v_k,\qquad
        \widehat{\operatorname{tr} H} = \frac1K \sum_k u_k,\qquad
        \mathrm{SE}^2 = \frac{1}{K(K-1)} \sum_k (u_k - \widehat{\operatorname{tr} H})^2,

    with B batches. Batches are visited in passes, each pass in a fresh random
    order, so every probe's batch is marginally uniform and each u_k is unbiased
    for tr H (a Horvitz–Thompson weighting): the estimate is unbiased for any K,
    a partial pass or an early stop included. (A ratio Σ w z / Σ w would be biased
    there when the weights differ, e.g. for a short last batch.) The SE counts the
    spread between batches as well as between probes, so for a fixed partition
    it is conservative.

    Parameters
    ----------
    hvp : callable
        ``hvp(v) -> H v`` without ``batches``; ``hvp(v, batch) -> H_b v`` with them.
        With ``quadratic_form=True`` it returns the scalar vᵀ H v instead (this
        saves moving H v off an accelerator).
    dim_or_shapes : int or sequence of tuple
        Length of a flat vector, or the shapes of a list-of-arrays vector.
    n_probes : int, optional
        Number of probes (HVPs), >= 1. Default: one pass over ``batches``
        (required without them unless ``target_rel_se`` is given). With
        ``target_rel_se`` it is the minimum number.
    batches : sequence, optional
        Opaque batch objects passed to ``hvp``.
    batch_weights : array_like of float, optional
        w_b > 0 per batch; default equal.
    rng : numpy.random.Generator
        Source of the probes and the batch order.
    target_rel_se : float, optional
        Keep drawing probes until SE <= target_rel_se * |mean| (after at least
        ``max(n_probes, min_probes)``), or ``max_probes`` is reached.
    max_probes : int
        Cap on the number of probes with ``target_rel_se``.
    min_probes : int
        Fewest probes before the stopping rule is tried (a small-sample SE is
        itself noisy and would stop too early).
    callback : callable, optional
        Called with the number of HVPs done after each one (progress bars).

    Returns
    -------
    TraceEstimate
        mean, se (NaN for one probe), n_hvp, converged.

    Raises
    ------
    ValueError
        If n_probes < 1, rng is missing, a weight is not positive, or an HVP
        returns a non-finite value.

    References
    ----------
    Hutchinson (1990); theory.md, "DNN estimators".

    Examples
    --------
    >>> h = np.diag([1.0, 2.0, 3.0])
    >>> est = hutchinson_trace(lambda v: h @ v, 3, n_probes=5, rng=np.random.default_rng(0))
    >>> est.mean, est.se   # diagonal H: every Rademacher probe gives tr H exactly
    (6.0, 0.0)
    """
    shapes = _shapes(dim_or_shapes, "dim_or_shapes")
    rng = _rng(rng)
    n_batches, weights = _batches_and_weights(batches, batch_weights)
    if n_probes is None and batches is not None:
        n_probes = n_batches
    n_probes, target_rel_se, n_min, n_max = probe_counts(
        n_probes, target_rel_se, max_probes, min_probes,
        missing="n_probes is required without batches or target_rel_se; got None")

    order = _BatchOrder(n_batches, rng) if batches is not None else None
    scale = (np.ones(1) if order is None
             else n_batches * np.asarray(weights, dtype=float) / float(np.sum(weights)))
    u = []
    sums = np.zeros(2)       # running Σu, Σu²: O(1) stopping checks
    converged = target_rel_se is None
    while len(u) < n_max:
        v = _rademacher(shapes, rng)
        if order is None:
            out = hvp(_unflat(v, dim_or_shapes))
            b = 0
        else:
            b = order.next()
            out = hvp(_unflat(v, dim_or_shapes), batches[b])
        zk = _scalar(out, "hvp") if quadratic_form else _dot(v, out)
        if not math.isfinite(zk):
            raise ValueError(f"hvp returned a non-finite value (vᵀHv = {zk}) at probe {len(u)}")
        uk = float(scale[b]) * zk
        u.append(uk)
        if callback is not None:
            callback(len(u))
        sums += (uk, uk * uk)
        if target_rel_se is not None and len(u) >= n_min:
            k = len(u)
            mean = sums[0] / k
            var = max(sums[1] - k * mean * mean, 0.0) / (k - 1)
            if math.sqrt(var / k) <= target_rel_se * abs(mean):
                converged = True
                break
    uu = np.asarray(u)
    mean = float(uu.mean())
    se = float(uu.std(ddof=1) / math.sqrt(uu.size)) if uu.size > 1 else math.nan
    return TraceEstimate(mean=mean, se=se, n_hvp=len(u), converged=converged,
                         target_rel_se=target_rel_se)


def grad_cov_trace(sqnorms, grad_sum) -> GradCovTrace:
    r"""Exact trace of the per-example gradient covariance over N examples.

    .. math::
        \operatorname{tr}\Sigma = \frac1N\sum_i \|g_i\|^2 - \|\bar g\|^2,
        \qquad \bar g = \frac1N \sum_i g_i,

    the centred covariance dividing by N (theory.md). Both terms are returned.

    Parameters
    ----------
    sqnorms : array_like, shape (N,)
        ‖g_i‖² for each example (streamed chunks may be concatenated first).
    grad_sum : ndarray or list of ndarray
        Σ_i g_i, the *summed* (not mean) per-example gradient.

    Returns
    -------
    GradCovTrace
        trace, mean_example_sqnorm, mean_grad_sqnorm, n_examples, and
        sampling_se = sd(‖g_i‖²)/√N, the first-order error of the first term when
        the N examples are a random sample of a larger set.

    Raises
    ------
    ValueError
        If sqnorms is empty, not 1-D, negative or non-finite, or grad_sum is not finite.

    Examples
    --------
    >>> g = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> r = grad_cov_trace((g ** 2).sum(1), g.sum(0))
    >>> bool(np.isclose(r.trace, np.trace(np.cov(g.T, bias=True))))
    True
    """
    sq = _finite(sqnorms, "sqnorms")
    if sq.ndim != 1 or sq.size == 0:
        raise ValueError(f"sqnorms must be a non-empty 1-D array; got shape {sq.shape}")
    if np.any(sq < 0):
        raise ValueError(f"sqnorms must be >= 0; got {sq[sq < 0][0]:g}")
    gs = [_finite(a, "grad_sum") for a in _as_list(grad_sum)]
    n = sq.size
    mean_sq = float(np.mean(sq))
    mean_grad_sq = sum(float(np.sum(a * a)) for a in gs) / n ** 2
    sampling_se = float(np.std(sq, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return GradCovTrace(trace=mean_sq - mean_grad_sq, mean_example_sqnorm=mean_sq,
                        mean_grad_sqnorm=mean_grad_sq, n_examples=n, sampling_se=sampling_se)


def two_batch_noise(small_sqnorms, big_sqnorms, b_small: int, b_big: int, *,
                    n_data: int | None = None) -> TwoBatchNoise:
    r"""McCandlish et al. (2018) two-batch estimator of tr Σ and ‖G‖².

    A minibatch mean gradient G_B satisfies E‖G_B‖² = ‖G‖² + c_B tr Σ, with
    c_B = 1/B (with replacement) or c_B = (N − B)/(B(N − 1)) (without, N = n_data).
    From pairs of squared norms at B_small < B_big:

    .. math::
        \widehat{\operatorname{tr}\Sigma} = \frac{\|G_{small}\|^2 - \|G_{big}\|^2}
                                               {c_{small} - c_{big}},\qquad
        \widehat{\|G\|^2} = \frac{c_{small}\|G_{big}\|^2 - c_{big}\|G_{small}\|^2}
                                 {c_{small} - c_{big}},

    which for c_B = 1/B are theory.md's
    (‖G_s‖² − ‖G_b‖²)/(1/B_s − 1/B_b) and (B_b‖G_b‖² − B_s‖G_s‖²)/(B_b − B_s).
    Each pair gives an unbiased estimate; the result is the mean over pairs and
    the SE is their standard deviation over √n_pairs.

    Parameters
    ----------
    small_sqnorms, big_sqnorms : array_like, shape (n_pairs,)
        ‖G_small‖² and ‖G_big‖² (paired; scalars allowed).
    b_small, b_big : int
        Batch sizes, 1 <= b_small < b_big.
    n_data : int, optional
        Data-set size N >= b_big when batches are drawn without replacement.

    Returns
    -------
    TwoBatchNoise
        trace_cov, grad_sqnorm, noise_scale = trace_cov / grad_sqnorm, their SEs
        (NaN for one pair), n_pairs, and ``negative`` / ``reliable``.

    Raises
    ------
    ValueError
        On mismatched or non-finite norms, or invalid batch sizes.

    Warns
    -----
    RuntimeWarning
        When trace_cov or grad_sqnorm is negative (``negative=True``,
        ``reliable=False``).  Both true values are >= 0, but the estimates are
        differences of noisy squared norms: with few pairs, or when the noise is small
        against the signal so that B_small‖G_small‖² ≈ B_big‖G_big‖² (for ‖G‖²) or
        ‖G_small‖² ≈ ‖G_big‖² (for tr Σ), sampling noise can flip the sign.  Use more
        pairs or a larger B_big/B_small ratio.

    References
    ----------
    McCandlish, Kaplan, Amodei, "An Empirical Model of Large-Batch Training"
    (2018), Appendix A.1; theory.md, "DNN estimators".

    Examples
    --------
    >>> r = two_batch_noise(1.0 + 4.0 / 2, 1.0 + 4.0 / 8, 2, 8)   # exact expectations
    >>> round(r.trace_cov, 12), round(r.grad_sqnorm, 12)
    (4.0, 1.0)
    """
    s = np.atleast_1d(_finite(small_sqnorms, "small_sqnorms"))
    b = np.atleast_1d(_finite(big_sqnorms, "big_sqnorms"))
    if s.ndim != 1 or s.shape != b.shape:
        raise ValueError(f"small_sqnorms and big_sqnorms must be paired 1-D arrays; got "
                         f"shapes {s.shape} and {b.shape}")
    b_small = _int_at_least(b_small, "b_small", 1)
    b_big = _int_at_least(b_big, "b_big", 1)
    if b_big <= b_small:
        raise ValueError(f"b_big must be > b_small; got b_big={b_big}, b_small={b_small}")
    if n_data is not None:
        n_data = _int_at_least(n_data, "n_data", 2)
        if n_data < b_big:
            raise ValueError(f"n_data must be >= b_big; got n_data={n_data} < b_big={b_big}")
    c_s, c_b = (noise_factor(b, n_data, replacement=n_data is None) for b in (b_small, b_big))
    tr = (s - b) / (c_s - c_b)
    g2 = (c_s * b - c_b * s) / (c_s - c_b)
    n = s.size
    tr_m, g2_m = float(tr.mean()), float(g2.mean())
    if n > 1:
        tr_se = float(tr.std(ddof=1) / math.sqrt(n))
        g2_se = float(g2.std(ddof=1) / math.sqrt(n))
        cov = float(np.cov(tr, g2)[0, 1] / n)
    else:
        tr_se = g2_se = cov = math.nan
    if g2_m > 0:
        ratio = tr_m / g2_m
        # delta method for a ratio of two correlated means
        var = ratio ** 2 * (tr_se ** 2 / tr_m ** 2 + g2_se ** 2 / g2_m ** 2
                            - 2 * cov / (tr_m * g2_m)) if tr_m != 0 else (tr_se / g2_m) ** 2
        ratio_se = math.sqrt(max(var, 0.0)) if math.isfinite(var) else math.nan
    else:
        ratio, ratio_se = math.nan, math.nan
    negative = tr_m < 0 or g2_m < 0
    if negative:
        warnings.warn(f"two_batch_noise: negative estimate (trace_cov={tr_m:.3g}, grad_sqnorm="
                      f"{g2_m:.3g} from {n} pairs, b_small={b_small}, b_big={b_big}); the "
                      "difference of noisy squared norms is dominated by sampling noise, so "
                      "it is flagged reliable=False", RuntimeWarning, stacklevel=2)
    return TwoBatchNoise(trace_cov=tr_m, trace_cov_se=tr_se, grad_sqnorm=g2_m,
                         grad_sqnorm_se=g2_se, noise_scale=ratio, noise_scale_se=ratio_se,
                         n_pairs=n, b_small=b_small, b_big=b_big, n_data=n_data,
                         negative=negative, reliable=not negative)


def top_hessian_eigenvalue(hvp: Callable, dim_or_shapes, *,
                           rng: np.random.Generator | None = None, max_iters: int = 100,
                           tol: float = 1e-4, batches: Sequence | None = None,
                           batch_weights=None,
                           callback: Callable[[int], None] | None = None) -> EigenEstimate:
    r"""Dominant Hessian eigenvalue by power iteration.

    v_{k+1} = H v_k / ‖H v_k‖ from a Gaussian start; the estimate is the Rayleigh
    quotient λ_k = v_kᵀ H v_k, stopped when |λ_k − λ_{k−1}| <= tol·|λ_k|. It
    converges to the eigenvalue of largest *magnitude* (at a minimum, λ_max;
    compare η·λ_max with the stability limit 2) at the rate (λ₂/λ₁)^{2k}.
    With ``batches`` the operator is the weighted mean Σ_b w_b H_b / Σ_b w_b, so
    one iteration costs one HVP per batch.

    Parameters
    ----------
    hvp : callable
        ``hvp(v) -> H v``, or ``hvp(v, batch) -> H_b v`` with ``batches``.
    dim_or_shapes : int or sequence of tuple
        Vector length, or shapes of a list-of-arrays vector.
    rng : numpy.random.Generator
        Source of the start vector.
    max_iters : int
        Iteration cap, >= 2.
    tol : float
        Relative change of the Rayleigh quotient at which to stop, > 0.
    batches, batch_weights : optional
        As in :func:`hutchinson_trace`.
    callback : callable, optional
        Called with the iteration count after each iteration.

    Returns
    -------
    EigenEstimate
        value, n_iters, n_hvp, converged, rel_change.

    Raises
    ------
    ValueError
        On invalid arguments or a non-finite HVP.

    Examples
    --------
    >>> h = np.diag([3.0, 1.0, 0.5])
    >>> r = top_hessian_eigenvalue(lambda v: h @ v, 3, rng=np.random.default_rng(0), tol=1e-12)
    >>> round(r.value, 9), r.converged
    (3.0, True)
    """
    shapes = _shapes(dim_or_shapes, "dim_or_shapes")
    rng = _rng(rng)
    max_iters = _int_at_least(max_iters, "max_iters", 2)
    tol = _positive_float(tol, "tol")
    n_batches, weights = _batches_and_weights(batches, batch_weights)

    def apply(v):
        if batches is None:
            return _hvp_vector(hvp(_unflat(v, dim_or_shapes)), v.size)
        acc = None
        for b in range(n_batches):
            hb = _hvp_vector(hvp(_unflat(v, dim_or_shapes), batches[b]), v.size) * weights[b]
            acc = hb if acc is None else acc + hb
        return acc / float(np.sum(weights))

    v = rng.standard_normal(sum(int(np.prod(s)) for s in shapes))
    v /= np.linalg.norm(v)
    lam_prev, rel, converged, k = math.nan, math.inf, False, 0
    for k in range(1, max_iters + 1):
        hv = apply(v)
        if not np.all(np.isfinite(hv)):
            raise ValueError(f"hvp returned a non-finite vector at power iteration {k}")
        lam = float(v @ hv)
        norm = float(np.linalg.norm(hv))
        if callback is not None:
            callback(k)
        if k > 1:
            rel = abs(lam - lam_prev) / max(abs(lam), np.finfo(float).tiny)
            if rel <= tol:
                converged = True
                break
        if norm == 0.0:       # H v = 0: v is in the null space and lam = 0 exactly
            converged, rel = True, 0.0
            break
        v = hv / norm
        lam_prev = lam
    per_iter = 1 if batches is None else n_batches
    return EigenEstimate(value=lam, n_iters=k, n_hvp=k * per_iter, converged=converged,
                         rel_change=rel)


def l2_trace_contribution(l2: float, n_weights: int) -> float:
    r"""Contribution of an L2 penalty λ‖w‖² to tr H: 2λ·(number of regularised weights).

    Keras' ``L2(l2)`` adds λ Σ w² to the loss, whose Hessian is 2λ I on those
    weights; Σ gets nothing from it (theory.md, "L2 regulariser").

    Examples
    --------
    >>> l2_trace_contribution(1e-4, 850_000)
    170.0
    """
    lam = _finite(l2, "l2")
    if lam.ndim != 0 or lam < 0:
        raise ValueError(f"l2 must be a scalar >= 0; got {l2!r}")
    n = _int_at_least(n_weights, "n_weights", 0)
    return float(2.0 * float(lam) * n)


# -------------------------------------------------------------------------- helpers

class _BatchOrder:
    """Cycles through batch indices, each pass in a fresh random order."""

    def __init__(self, n: int, rng: np.random.Generator):
        self._n, self._rng, self._queue = n, rng, []

    def next(self) -> int:
        if not self._queue:
            self._queue = list(self._rng.permutation(self._n))[::-1]
        return int(self._queue.pop())


def _shapes(dim_or_shapes, name: str) -> list[tuple[int, ...]]:
    if isinstance(dim_or_shapes, numbers.Integral):
        d = _int_at_least(dim_or_shapes, name, 1)
        return [(d,)]
    if isinstance(dim_or_shapes, (numbers.Number, str, bytes)):
        raise ValueError(f"{name} must be an integer >= 1 or a sequence of shapes; got "
                         f"{dim_or_shapes!r}")
    try:
        shapes = [tuple(s) for s in dim_or_shapes]
    except TypeError:
        raise ValueError(f"{name} must be an int or a sequence of shapes; got "
                         f"{dim_or_shapes!r}") from None
    if not shapes:
        raise ValueError(f"{name} must not be empty; got {dim_or_shapes!r}")
    for s in shapes:
        # int() would truncate 2.5 to 2 and accept "3"; shapes are non-negative integers.
        if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0
                   for n in s):
            raise ValueError(f"{name} must hold shapes of non-negative integers; got {s!r}")
    shapes = [tuple(int(n) for n in s) for s in shapes]
    if sum(int(np.prod(s)) for s in shapes) == 0:
        raise ValueError(f"{name} describes an empty vector; got {dim_or_shapes!r}")
    return shapes


def _rademacher(shapes, rng: np.random.Generator) -> np.ndarray:
    d = sum(int(np.prod(s)) for s in shapes)
    # float32: exact for ±1 and matches the models' parameters, halving transfers
    return rng.integers(0, 2, size=d, dtype=np.int8).astype(np.float32) * 2 - 1


def _unflat(v: np.ndarray, dim_or_shapes):
    if isinstance(dim_or_shapes, numbers.Integral):
        return v
    out, i = [], 0
    for s in dim_or_shapes:
        n = int(np.prod(s))
        out.append(v[i:i + n].reshape(s))
        i += n
    return out


def _flat(x) -> np.ndarray:
    parts = [np.asarray(a, dtype=np.float64).ravel() for a in _as_list(x)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _dot(v: np.ndarray, hv) -> float:
    return float(np.dot(v.astype(np.float64), _hvp_vector(hv, v.size)))


def _hvp_vector(hv, d: int) -> np.ndarray:
    """hvp's output flattened, or a ValueError naming hvp and the sizes."""
    try:
        flat = _flat(hv)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"hvp must return an array (or list of arrays) of numbers; got "
                         f"{type(hv).__name__} ({exc})") from None
    if flat.size != d:
        raise ValueError(f"hvp returned {flat.size} values with shape(s) "
                         f"{[np.shape(a) for a in _as_list(hv)]}; expected {d} to match "
                         "dim_or_shapes")
    return flat


def _scalar(out, name: str) -> float:
    a = np.asarray(out)
    if a.size != 1 or a.dtype.kind not in "biuf":
        raise ValueError(f"{name} with quadratic_form=True must return one number vᵀHv; got "
                         f"{type(out).__name__} of shape {a.shape}")
    return float(a.reshape(()))


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _batches_and_weights(batches, batch_weights):
    if batches is None:
        if batch_weights is not None:
            raise ValueError("batch_weights needs batches; got batches=None")
        return 0, None
    n = len(batches)
    if n == 0:
        raise ValueError("batches must not be empty; got 0 batches")
    if batch_weights is None:
        return n, np.ones(n)
    w = _finite(batch_weights, "batch_weights")
    if w.shape != (n,):
        raise ValueError(f"batch_weights must have one entry per batch ({n}); got shape {w.shape}")
    if np.any(w <= 0):
        raise ValueError(f"batch_weights must be > 0; got {w[w <= 0][0]:g}")
    return n, w


def _rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        # ValueError, not TypeError: every bad argument is a ValueError (style.md)
        raise ValueError(f"rng must be a numpy.random.Generator; got {rng!r}")  # noqa: TRY004
    return rng
