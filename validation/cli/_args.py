"""Argument types and the usage error shared by the ``sgd-minima`` subcommands."""

from __future__ import annotations

import argparse
import math

__all__ = ["UsageError", "positive_int", "nonnegative_int", "finite_float", "csv_list",
           "byte_size", "step_limit"]


class UsageError(ValueError):
    """A bad command line (unknown option, malformed value)."""


def _int_at_least(text, low):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
    return value


def positive_int(text):
    """An integer >= 1 (argparse type)."""
    return _int_at_least(text, 1)


def nonnegative_int(text):
    """An integer >= 0 (argparse type), e.g. a seed."""
    return _int_at_least(text, 0)


def finite_float(text):
    """A finite number (argparse type); the library checks its range and names the argument."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def csv_list(convert, name):
    """An argparse type for a comma-separated list of ``convert`` values."""

    def parse(text):
        items = [x.strip() for x in str(text).split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{name}: expected a comma-separated list, got {text!r}")
        try:
            return tuple(convert(x) for x in items)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise argparse.ArgumentTypeError(f"{name}: {exc}") from None

    return parse


def byte_size(text):
    """A memory size such as ``4GiB``, ``512MB`` or ``1000000`` (argparse type).

    ``auto``: the library default (half of the available memory); ``none``: no limit.
    """
    if str(text).strip().lower() in ("none", "inf", "unlimited"):
        return None
    if str(text).strip().lower() == "auto":
        return "auto"
    from sim.budget import parse_bytes

    try:
        return parse_bytes(text, "value")
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("value must be", "expected")) from None


def step_limit(text):
    """A step count >= 1 (``1e8`` allowed when integral) or ``none`` for no limit (argparse type)."""
    if str(text).strip().lower() in ("none", "inf", "unlimited"):
        return None
    try:
        value = int(text)
    except ValueError:
        try:
            f = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None
        if not (math.isfinite(f) and f.is_integer()):
            raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}")
        value = int(f)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'none', got {text!r}")
    return value
