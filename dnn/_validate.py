"""Scalar argument checks shared by dnn's public functions (messages name the argument)."""

from __future__ import annotations

import math
import numbers


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
