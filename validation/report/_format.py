"""Small helpers the report's modules share: reading numbers and paths, formatting, grouping."""

from __future__ import annotations

import numpy as np

__all__ = ["_num", "_dig", "_fmt", "_pm", "_groups"]


def _num(x):
    """JSON number (or "nan"/"inf" string, or None) → float."""
    if x is None:
        return float("nan")
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _dig(d, path):
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _fmt(x, digits=3):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}g}"


def _pm(mean, err, n=None):
    s = _fmt(mean)
    if s == "–":
        return s
    if err is not None and np.isfinite(err):
        s += f" ± {_fmt(err, 2)}"
    if n is not None:
        s += f" (n={n})"
    return s


def _groups(runs):
    keys = sorted({(r["loss"], r["batch_size"], r["lr"]) for r in runs},
                  key=lambda k: (k[0], k[1] / k[2], k[1], k[2]))
    return [(k, [r for r in runs if (r["loss"], r["batch_size"], r["lr"]) == k]) for k in keys]
