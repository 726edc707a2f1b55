"""The stationary stage of a grid run: one call into :mod:`dnn.convnet.stationary`, one file out.

The measurement (the phase, the θ*-free observed excess loss ((1+β)/(4η_s))·E‖v‖²,
(η_s/4)·E‖ĝ‖² for plain SGD, the
Polyak column, the stationarity checks, the predictions (12) and (6) and their
ratios) lives in :mod:`dnn.convnet.stationary`, where the raw record is produced, so
one reader follows it in one file.  This module is the narrow interface the
grid uses: :func:`run_stationary` calls :func:`dnn.convnet.stationary.measure_stationary`
and writes its record atomically to ``run_dir/stationary.json``.
:func:`summarize_stationary` is re-exported for ``validation``'s public API.
"""

from __future__ import annotations

from pathlib import Path

from dnn.stationary_summary import SCHEMA_VERSION, summarize_stationary  # noqa: F401 (re-export)

__all__ = ["run_stationary", "summarize_stationary", "STATIONARY_FILE", "is_current"]

#: File written into each run folder by :func:`run_stationary`.
STATIONARY_FILE = "stationary.json"


def is_current(record):
    """Whether a ``stationary.json`` record has the current schema (θ*-free estimator).

    Records of schema 1 (Polyak method only, no ``schema_version`` key) are stale:
    :func:`run_stationary` recomputes them and the report does not use them.

    Examples
    --------
    >>> is_current({"schema_version": 2, "status": "completed", "phase": {}})
    True
    >>> is_current({"status": "completed", "phase": {}})
    False
    """
    return isinstance(record, dict) and record.get("schema_version") == SCHEMA_VERSION


def run_stationary(run_dir, *, lr=None, steps=2000, burn_in=None, eval_examples=2048,
                   record_every=10, n_blocks=20, measure_examples=None, probes=None,
                   power_iters=20, seed=0, overwrite=False, quiet=True, momentum=None,
                   batch_size=None):
    """Run the stationary phase of a trained run and write ``run_dir/stationary.json``.

    Parameters
    ----------
    run_dir : path
        A completed ``dnn.train`` run folder.
    lr : float, optional
        η_s; default: the schedule's final learning rate.
    momentum : float, optional
        β_s of the phase's heavy-ball steps; default: the run's training momentum.
    batch_size : int, optional
        S_s of the phase; default: the run's batch size.
    steps, burn_in, eval_examples, record_every, n_blocks, seed
        The phase (:func:`dnn.convnet.stationary.stationary_phase`).
    measure_examples, probes, power_iters
        The traces at θ̄ (:func:`dnn.convnet.stationary.measure_at_mean`).
    overwrite : bool
        Recompute even if a current ``stationary.json`` exists (a stale one, of an
        older schema, is always recomputed).
    quiet : bool
        Silence progress bars.

    Returns
    -------
    dict
        The contents of ``stationary.json``: see
        :func:`dnn.convnet.stationary.measure_stationary` (top-level ``schema_version``,
        ``status``, ``phase``, ``observed``, ``polyak``, ``identity``,
        ``diagnostics``, ``predicted``, ``ratios``, ...).
    """
    from dnn.convnet import stationary as dstat
    from dnn._runio import read_json

    from ._io import atomic_write_json

    run_dir = Path(run_dir)
    path = run_dir / STATIONARY_FILE
    if path.exists() and not overwrite:
        record = read_json(path)
        if is_current(record):
            return record
    record = dstat.measure_stationary(
        run_dir, lr=lr, steps=steps, burn_in=burn_in, eval_examples=eval_examples,
        record_every=record_every, n_blocks=n_blocks, measure_examples=measure_examples,
        probes=probes, power_iters=power_iters, seed=seed, quiet=quiet, momentum=momentum,
        batch_size=batch_size)
    atomic_write_json(path, record)
    return record
