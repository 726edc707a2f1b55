"""Argument checks shared by dnn's public functions (messages name the argument)."""

from __future__ import annotations

import math
import numbers

import numpy as np


def int_at_least(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


def positive_float(value, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number; got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    return x


def flag(value, name: str) -> bool:
    """A real bool: ``bool("False")`` is True, so strings and ints are refused, not coerced."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__})")


def probe_counts(n_probes, target_rel_se, max_probes, min_probes, *, missing: str):
    """Check a probe budget: a fixed ``n_probes``, or a target relative SE within bounds.

    Returns ``(n_probes, target_rel_se, n_min, n_max)``: a fixed count gives
    n_min = n_max = n_probes; a target runs at least max(n_probes, min_probes) and
    at most ``max_probes`` probes.  ``missing`` is the error when neither is given.
    """
    if n_probes is not None:
        n_probes = int_at_least(n_probes, "n_probes", 1)
    elif target_rel_se is None:
        raise ValueError(missing)
    if target_rel_se is None:
        return n_probes, None, n_probes, n_probes
    target_rel_se = positive_float(target_rel_se, "target_rel_se")
    max_probes = int_at_least(max_probes, "max_probes", 2)
    min_probes = int_at_least(min_probes, "min_probes", 2)
    n_min = max(n_probes or 0, min_probes)
    if n_min > max_probes:
        raise ValueError(f"max_probes must be >= n_probes and min_probes; got "
                         f"max_probes={max_probes} < {n_min}")
    return n_probes, target_rel_se, n_min, max_probes


def finite_array(value, name: str) -> np.ndarray:
    """``value`` as a float64 array; ValueError naming ``name`` unless it is all finite."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be real numbers; got {value!r} ({exc})") from None
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].ravel()[0]
        raise ValueError(f"{name} must be finite; it contains {bad}")
    return arr


def nan_to_none(d: dict) -> dict:
    """A flat result dict with NaN/inf values as None, so that json.dump writes standard JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in d.items()}


def momentum(value, name: str = "momentum") -> float:
    """Heavy-ball β: a finite real number with 0 <= β < 1 (bools and strings refused)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_" \
            or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in [0, 1); got {value!r}")
    beta = float(value)
    if not (math.isfinite(beta) and 0.0 <= beta < 1.0):
        raise ValueError(f"{name} must be a number in [0, 1); got {value!r}")
    return beta
