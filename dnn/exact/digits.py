"""The digits data set (8×8 images, 10 classes) for the small exact network.

``sklearn.datasets.load_digits`` ships with scikit-learn, so nothing is
downloaded: N = 1797 examples of 64 pixel intensities in 0..16. We standardise
each feature over the whole set, x_ij ← (x_ij − mean_j)/sd_j (population sd);
a feature that is constant (sd = 0: a few corner pixels are always 0) becomes 0
instead of NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Digits", "load_digits"]


@dataclass(frozen=True, eq=False)
class Digits:
    """A classification data set held in memory as float64 features and int64 labels."""

    x: np.ndarray        # (N, n_features) float64
    y: np.ndarray        # (N,) int64 in 0..n_classes-1
    n_classes: int = 10

    def __post_init__(self):
        x = np.asarray(self.x)
        y = np.asarray(self.y)
        if x.ndim != 2 or x.dtype != np.float64:
            raise ValueError(f"x must be a 2-D float64 array; got shape {x.shape}, dtype {x.dtype}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x must be finite; it holds NaN or inf")
        if y.shape != (x.shape[0],) or y.dtype != np.int64:
            raise ValueError(f"y must be an int64 array of shape ({x.shape[0]},); got shape {y.shape}, dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(f"y must lie in 0..{self.n_classes - 1}; got range {y.min()}..{y.max()}")

    @property
    def n(self) -> int:
        """Number of examples N."""
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])


def load_digits(standardize: bool = True) -> Digits:
    """Load scikit-learn's digits (N = 1797, 64 features, 10 classes), standardised per feature.

    Parameters
    ----------
    standardize : bool
        If True, x_ij ← (x_ij − mean_j)/sd_j with the population sd over all N
        examples; features with sd = 0 are set to 0. If False, raw intensities 0..16.

    Returns
    -------
    Digits
        ``x`` (1797, 64) float64, ``y`` (1797,) int64, ``n_classes`` = 10.

    Examples
    --------
    >>> d = load_digits()
    >>> d.x.shape, d.y.shape, d.n_classes
    ((1797, 64), (1797,), 10)
    >>> bool(abs(d.x.mean(axis=0)).max() < 1e-12)
    True
    """
    if not isinstance(standardize, bool):
        raise TypeError(f"standardize must be a bool; got {standardize!r}")
    from sklearn.datasets import load_digits as _sk_load_digits

    raw = _sk_load_digits()
    x = np.asarray(raw.data, dtype=np.float64)
    y = np.asarray(raw.target, dtype=np.int64)
    if standardize:
        mean = x.mean(axis=0)
        sd = x.std(axis=0)
        # constant pixels carry no information; 0 rather than 0/0
        safe = np.where(sd > 0, sd, 1.0)
        x = np.where(sd > 0, (x - mean) / safe, 0.0)
    return Digits(x=np.ascontiguousarray(x), y=y, n_classes=10)
