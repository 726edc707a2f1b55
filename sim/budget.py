r"""Work and memory limits checked before a simulation starts.

A simulation costs (burn-in + recorded steps) × chains × d state updates and holds
a few (chains × d) arrays, plus chains × d² covariance accumulators when it records
the covariance.  Both can be absurd for innocent-looking input: the burn-in is
20 relaxation times, τ ≈ 1/(2 η h_min) steps, so ``lr=1e-9`` asks for ~10¹⁰ steps
per chain, and ``dim=100000`` needs d² doubles (80 GB) for one matrix.  These are
refused up front with :class:`BudgetError`, which says what was asked, what the
limit is and how to proceed, instead of running for days or dying in an allocation.

Defaults
--------
``DEFAULT_MAX_STEPS`` = 10⁷ steps per chain (burn-in included).  The toolkit's own
runs need ~10⁴ (quick) to ~10⁵ steps, and the default ``simulate`` problem at
lr = 10⁻⁴ still fits (τ ≈ 5·10⁴, burn-in 10⁶).  10⁷ steps of 1000 chains in d = 10
are 10¹¹ coordinate updates, about 40 min on one core at the ~4·10⁷ updates/s
measured here, so the limit only stops runs that would take hours or more.
The memory limit defaults to half of the memory the system reports as available
(``MemAvailable`` in /proc/meminfo, else ``os.sysconf``), leaving room for the
rest of the process and for other jobs.
"""

from __future__ import annotations

import math
import os
import re

__all__ = ["BudgetError", "DEFAULT_MAX_STEPS", "MEMORY_FRACTION", "available_memory",
           "default_max_memory", "parse_bytes", "format_bytes", "check_budget",
           "estimate_memory"]

DEFAULT_MAX_STEPS = 10_000_000
# Half of what is free: the estimate below is approximate (within ~2x), and the
# machine is often shared.
MEMORY_FRACTION = 0.5
# Used when the system does not say how much memory is free.
_FALLBACK_MEMORY = 4 * 2 ** 30

_UNITS = {"": 1, "b": 1, "k": 10 ** 3, "kb": 10 ** 3, "m": 10 ** 6, "mb": 10 ** 6,
          "g": 10 ** 9, "gb": 10 ** 9, "t": 10 ** 12, "tb": 10 ** 12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


class BudgetError(ValueError):
    """A simulation would exceed its step or memory limit (raise the limit to run it anyway)."""


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable``, else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return _FALLBACK_MEMORY


def default_max_memory() -> int:
    """``MEMORY_FRACTION`` of :func:`available_memory`, in bytes."""
    return int(MEMORY_FRACTION * available_memory())


def parse_bytes(value, name: str = "max_memory") -> int:
    """A byte count from an int or a string such as ``"4GiB"``, ``"512MB"``, ``"1e9"``.

    Decimal units (kB, MB, GB, TB) are powers of 10, binary ones (KiB, MiB, GiB, TiB)
    powers of 2.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a byte count such as 4GiB; got {value!r}")
    if isinstance(value, int):
        number, unit = float(value), ""
    elif isinstance(value, float):
        number, unit = value, ""
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        if m is None or m.group(2).lower() not in _UNITS:
            raise ValueError(f"{name} must be a byte count such as 4GiB, 512MB or 1000000; "
                             f"got {value!r}")
        number, unit = float(m.group(1)), m.group(2).lower()
    else:
        raise TypeError(f"{name} must be a byte count such as 4GiB; got {value!r}")
    total = number * _UNITS[unit]
    if not math.isfinite(total) or total < 1:
        raise ValueError(f"{name} must be at least 1 byte; got {value!r}")
    return int(total)


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style text."""
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def estimate_memory(n_chains: int, dim: int, *, record_covariance: bool, block: int = 512,
                    n_data: int = 0, itemsize: int = 8) -> int:
    """Peak bytes of a simulation, within about a factor 2 (see the module docstring).

    Terms, in 8-byte words: the problem's d × d matrices (H, Σ, eigenvectors,
    rotations: 12 d²); a least-squares data set (N × d, twice); per chain the state,
    its start, sum and covariance buffer (8 d) and the scalar accumulators, 20 batch
    means of 3 observables among them (150); the block of K states a stepper writes
    (K × chains × d at ``itemsize``) and three float64 temporaries of that size in the
    recorder; with covariance, the chains × d² accumulator and the five temporaries of
    rotating it back and averaging at the end (6 chains × d²).  Checked against
    tracemalloc's peak in tests/sim_tests/test_sim_errors.py.
    """
    n_chains, dim, block = int(n_chains), int(dim), int(block)
    words = 12 * dim * dim + 2 * n_data * dim + 8 * n_chains * dim + 150 * n_chains
    words += 3 * block * n_chains * dim
    if record_covariance:
        words += 6 * n_chains * dim * dim
    return int(8 * words + itemsize * block * n_chains * dim)


def check_budget(*, steps_per_chain: float, n_chains: int, dim: int, memory: int,
                 max_steps: int | None, max_memory: int | None, what: str = "simulation",
                 steps_detail: str = "", steps_hint: str = "", burn_in_known: bool = True) -> None:
    """Raise :class:`BudgetError` if ``steps_per_chain > max_steps`` or ``memory > max_memory``.

    ``steps_per_chain`` may be a float (even inf: a relaxation time that is infinite
    in floating point), so no step count is ever converted to an int before this check.
    None for a limit means no limit.
    """
    work = steps_per_chain * n_chains * dim
    at_least = "" if burn_in_known else "at least "
    # An infinite count (τ = inf when η·h rounds away against 1) is refused even with
    # no limit: no run could finish, and rounding it to an int would overflow.
    if not math.isfinite(steps_per_chain) or (max_steps is not None
                                              and not steps_per_chain <= max_steps):
        shown = f"{steps_per_chain:.3g}" if math.isfinite(steps_per_chain) else "infinitely many"
        raise BudgetError(
            f"the {what} needs {shown} steps per chain{steps_detail} "
            f"({_work(work)} coordinate updates for {n_chains} chains in d={dim}; peak memory "
            f"about {format_bytes(memory)}), "
            + (f"over max_steps={max_steps}; " if max_steps is not None
               else "which no run can finish; ")
            + (steps_hint or "use fewer steps")
            + (", or raise max_steps (--max-steps) to run it anyway"
               if math.isfinite(steps_per_chain) else ""))
    if max_memory is not None and memory > max_memory:
        raise BudgetError(
            f"the {what} needs about {format_bytes(memory)} of memory ({n_chains} chains in "
            f"d={dim}; {at_least}{_work(work)} coordinate updates), over max_memory="
            f"{format_bytes(max_memory)}; use fewer chains or a smaller dim, or raise "
            f"max_memory (--max-memory, e.g. 16GiB) if the machine has it")


def _work(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "infinitely many"
