"""The digits data set (8×8 images, 10 classes) for the small exact network.

``sklearn.datasets.load_digits`` ships with scikit-learn, so nothing is
downloaded: N = 1797 examples of 64 pixel intensities in 0..16.  Three input scalings
(``PREPROCESSING``):

- ``feature``: each feature standardised over the whole set, x_ij ← (x_ij − mean_j)/sd_j
  (population sd); a constant feature (sd = 0: a few corner pixels are always 0) becomes
  0 instead of NaN.  A pixel that is rarely lit then takes huge values in the few images
  that light it (up to ~42 sd), so those examples have huge per-example curvature;
- ``global``: one mean and sd over all pixels of all images, x ← (x − m)/s, the way
  image models standardise a channel: every pixel keeps its relative scale;
- ``minmax``: x/16, into [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PREPROCESSING", "Digits", "load_digits", "input_scale"]

#: Input scalings offered by :func:`load_digits`.
PREPROCESSING = ("global", "feature", "minmax")


@dataclass(frozen=True, eq=False)
class Digits:
    """A classification data set held in memory as float64 features and int64 labels."""

    x: np.ndarray        # (N, n_features) float64
    y: np.ndarray        # (N,) int64 in 0..n_classes-1
    n_classes: int = 10
    preprocess: str | None = None   # how x was scaled (one of PREPROCESSING, "raw"), if known

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


def load_digits(standardize: bool = True, *, preprocess: str | None = None) -> Digits:
    """Load scikit-learn's digits (N = 1797, 64 features, 10 classes), scaled.

    Parameters
    ----------
    standardize : bool
        Without ``preprocess``: True standardises per feature (``"feature"``), False keeps
        the raw intensities 0..16.
    preprocess : {"global", "feature", "minmax"}, optional
        The input scaling (module docstring); overrides ``standardize``, which must then
        be left True.

    Returns
    -------
    Digits
        ``x`` (1797, 64) float64, ``y`` (1797,) int64, ``n_classes`` = 10.

    Raises
    ------
    ValueError
        ``preprocess`` not one of PREPROCESSING, or given with ``standardize=False``.

    Examples
    --------
    >>> d = load_digits()
    >>> d.x.shape, d.y.shape, d.n_classes, d.preprocess
    ((1797, 64), (1797,), 10, 'feature')
    >>> bool(abs(d.x.mean(axis=0)).max() < 1e-12)
    True
    >>> g = load_digits(preprocess="global")
    >>> round(float(g.x.mean()), 12), round(float(g.x.std()), 12)
    (0.0, 1.0)
    """
    if not isinstance(standardize, bool):
        raise TypeError(f"standardize must be a bool; got {standardize!r}")
    if preprocess is None:
        preprocess = "feature" if standardize else "raw"
    elif preprocess not in PREPROCESSING:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESSING)}; got {preprocess!r}")
    elif not standardize:
        raise ValueError(f"standardize=False contradicts preprocess={preprocess!r}; pass one")
    from sklearn.datasets import load_digits as _sk_load_digits

    raw = _sk_load_digits()
    x = np.asarray(raw.data, dtype=np.float64)
    y = np.asarray(raw.target, dtype=np.int64)
    if preprocess == "feature":
        mean = x.mean(axis=0)
        sd = x.std(axis=0)
        # constant pixels carry no information; 0 rather than 0/0
        safe = np.where(sd > 0, sd, 1.0)
        x = np.where(sd > 0, (x - mean) / safe, 0.0)
    elif preprocess == "global":
        x = (x - x.mean()) / x.std()
    elif preprocess == "minmax":
        x = x / 16.0        # the digits' intensities run 0..16
    return Digits(x=np.ascontiguousarray(x), y=y, n_classes=10, preprocess=preprocess)


def input_scale(x) -> dict:
    """How extreme the inputs are, as fed: the largest |x| and the largest |x − m|/s over all
    entries (m, s the mean and sd of all entries), with the features' own sds for reference.

    Per-feature standardisation turns a rarely lit pixel into values of tens of sd; a
    global scaling keeps every pixel within ~2 sd of the rest.

    Examples
    --------
    >>> r = input_scale(np.array([[0.0, 1.0], [0.0, -1.0]]))
    >>> r["max_abs"], round(r["max_sd_global"], 12)
    (1.0, 1.414213562373)
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"x must be a non-empty 2-D array; got shape {x.shape}")
    s = float(x.std())
    sd_j = x.std(axis=0)
    lit = sd_j > 0
    z = np.abs(x[:, lit] - x[:, lit].mean(axis=0)) / sd_j[lit]
    return {"max_abs": float(np.abs(x).max()),
            "max_sd_global": float(np.abs(x - x.mean()).max() / s) if s > 0 else 0.0,
            "max_sd_per_feature": float(z.max()) if z.size else 0.0}
