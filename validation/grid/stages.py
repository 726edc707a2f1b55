"""One run of the grid: its three stage files, and doing the missing stages under the run's lock.

A run folder goes through three stages, each of which leaves one file behind
(:data:`STAGES`): ``dnn.train`` → ``run.json``, ``dnn.estimate_run`` →
``estimates.json``, ``validation.stationary.run_stationary`` → ``stationary.json``.
A stage counts as done only if its file parses as a JSON object holding the keys
(of the types) listed in :data:`STAGES`; anything else (truncated, overwritten,
ill-typed) is reported by path, moved aside to ``<file>.invalid`` and the stage
redone.  :func:`run_job` does the missing stages of one run while holding the
run's lock (:class:`validation.locking.RunLock`), so that whatever runs it (this
process, another ``grid`` process, a Ray worker) each stage is done once.
"""

from __future__ import annotations

import os
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .locking import RunLock

__all__ = ["Stage", "STAGES", "RUN_STATUSES", "RunJob", "check_stage_file", "inspect_run",
           "is_done", "run_job"]


@dataclass(frozen=True)
class Stage:
    """A stage of a run and the file that proves it done."""

    name: str        # "train" | "estimate" | "stationary"
    filename: str    # written into the run folder when the stage ends
    required: tuple  # ((key, type), ...) the file's JSON object must hold


#: The stages in order, with the keys each stage file must have to count as done.
#: (The single source of truth: the grid, its tests and its summary all read it.)
STAGES = (
    Stage("train", "run.json", (("status", str), ("config", dict))),
    Stage("estimate", "estimates.json",
          (("trace_grad_cov", dict), ("trace_hessian", dict), ("lambda_max", dict))),
    Stage("stationary", "stationary.json", (("status", str), ("phase", dict),
                                            ("schema_version", int))),
)
_BY_NAME = {s.name: s for s in STAGES}

#: The values ``run.json["status"]`` may take (``dnn.train``).
RUN_STATUSES = ("running", "completed", "diverged")


def check_stage_file(path, stage):
    """Read a stage file and say whether it counts as done.

    Parameters
    ----------
    path : path
        The file (``run_dir / stage.filename``).
    stage : Stage or str
        The stage, or its name.

    Returns
    -------
    (dict or None, str or None)
        ``(contents, None)`` for a valid file, ``(None, None)`` for a missing one and
        ``(None, problem)`` for one that exists but does not count (the problem in words).

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "stationary.json"
    >>> check_stage_file(p, "stationary")
    (None, None)
    >>> _ = p.write_text('{"status": "completed", "phase": [1]}')
    >>> check_stage_file(p, "stationary")
    (None, "key 'phase' is a list, not a dict")
    """
    stage = _BY_NAME[stage] if isinstance(stage, str) else stage
    path = Path(path)
    if not path.exists():
        return None, None
    from dnn._runio import read_json

    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})"
    if not isinstance(data, dict):
        return None, f"holds a JSON {type(data).__name__}, not an object"
    for key, kind in stage.required:
        if key not in data:
            return None, f"key {key!r} is missing"
        if not isinstance(data[key], kind):
            return None, f"key {key!r} is a {_json_type(data[key])}, not a {kind.__name__}"
    if stage.name == "train" and data["status"] not in RUN_STATUSES:
        return None, f"status {data['status']!r} is not one of {RUN_STATUSES}"
    return data, None


def _json_type(value):
    return {dict: "dict", list: "list", str: "str", bool: "bool", int: "int",
            float: "float", type(None): "null"}.get(type(value), type(value).__name__)


def inspect_run(run_dir):
    """The state of a run folder: each stage's valid contents (or None) and the invalid files.

    Returns
    -------
    dict
        ``{"status": run.json's status or None, "files": {stage: dict or None},
        "invalid": [(path, problem), ...]}``.
    """
    run_dir = Path(run_dir)
    files, invalid = {}, []
    for stage in STAGES:
        data, problem = check_stage_file(run_dir / stage.filename, stage)
        files[stage.name] = data
        if problem is not None:
            invalid.append((run_dir / stage.filename, problem))
    status = files["train"]["status"] if files["train"] else None
    return {"status": status, "files": files, "invalid": invalid}


def is_done(state):
    """Whether a run needs no more work: diverged, or completed with every stage file valid."""
    return state["status"] == "diverged" or (
        state["status"] == "completed" and all(state["files"][s.name] for s in STAGES))


@dataclass(frozen=True)
class RunJob:
    """Everything a worker (this process, another one, a Ray task) needs to finish one run.

    Picklable and self-contained: the worker imports nothing of the grid's presets.
    """

    name: str                    # run folder name, also the lock's name
    out_dir: str                 # the grid's output folder
    config: object               # dnn.TrainConfig of the run
    estimate: object             # validation.grid.EstimateSettings
    stationary: object           # validation.grid.StationarySettings
    seed: int                    # seed of the estimators and of the stationary phase
    backend: str                 # Keras backend, set before keras is imported
    compilation_cache: bool = True   # JAX persistent compilation cache in out_dir/.jax_cache

    @property
    def run_dir(self):
        return Path(self.out_dir) / self.name


def run_job(job):
    """Do the missing stages of one run, holding its lock; never waits for the lock.

    Parameters
    ----------
    job : RunJob

    Returns
    -------
    dict
        ``{"outcome": "locked", "owner": ...}`` if another process holds the run's
        lock (nothing was touched; come back later).  Otherwise the run's entry:
        ``name``, ``run_dir``, ``status`` (run.json's, at the end), ``ran`` (stages
        done by this call, in order), ``seconds`` per stage, ``invalid_files``
        (``{"path", "problem", "moved_to"}``: stage files that did not count and were
        redone), ``removed_temps`` (stale temporary files deleted), ``failure``
        (``None`` or ``{"stage", "path", "error", "traceback"}``), ``host``, ``pid``.
        Exceptions of a stage are caught and returned as ``failure`` so that the
        grid moves on to the next run; ``KeyboardInterrupt`` propagates.
    """
    lock = RunLock(job.out_dir, job.name)
    if not lock.try_acquire():
        return {"name": job.name, "outcome": "locked", "owner": lock.owner()}
    try:
        return _work(job)
    finally:
        lock.release()


def _work(job):
    import dnn
    from dnn._runio import remove_stale_temps

    run_dir = job.run_dir
    entry = {"name": job.name, "outcome": "done", "run_dir": str(run_dir), "status": None,
             "ran": [], "seconds": {}, "invalid_files": [], "removed_temps": [],
             "failure": None, "host": platform.node(), "pid": os.getpid()}
    stage = STAGES[0]
    try:
        dnn.set_backend(job.backend)
        # Only the lock holder writes here, so any temporary file is a killed writer's.
        entry["removed_temps"] = [str(p) for p in remove_stale_temps(run_dir)]
        state = inspect_run(run_dir)
        for path, problem in state["invalid"]:
            aside = path.with_name(path.name + ".invalid")
            os.replace(path, aside)  # kept for a post-mortem, out of the way of the stage
            entry["invalid_files"].append({"path": str(path), "problem": problem,
                                           "moved_to": str(aside)})
        if entry["invalid_files"]:
            state = inspect_run(run_dir)
        if job.compilation_cache and job.backend == "jax":
            enable_jax_compilation_cache(Path(job.out_dir) / ".jax_cache")

        if state["status"] not in ("completed", "diverged"):
            t0 = time.perf_counter()
            dnn.train(job.config, run_dir, quiet=True)
            _ran(entry, stage.name, t0)
            state = inspect_run(run_dir)
        entry["status"] = state["status"]
        if state["status"] == "diverged":
            return entry      # a recorded outcome: nothing to estimate or measure
        if state["status"] != "completed":
            raise RuntimeError(f"training ended with status {state['status']!r}")

        stage = _BY_NAME["estimate"]
        if state["files"]["estimate"] is None:
            t0 = time.perf_counter()
            e = job.estimate
            dnn.estimate_run(run_dir, examples=e.examples, probes=e.probes,
                             batch_size=e.batch_size, power_iters=e.power_iters,
                             seed=job.seed, quiet=True)
            _ran(entry, stage.name, t0)

        stage = _BY_NAME["stationary"]
        if state["files"]["stationary"] is None:
            from .. import stationary as vstat

            t0 = time.perf_counter()
            s = job.stationary
            res = vstat.run_stationary(
                run_dir, lr=s.lr, steps=s.steps, burn_in=s.burn_in,
                eval_examples=s.eval_examples, record_every=s.record_every,
                n_blocks=s.n_blocks, probes=s.probes, power_iters=s.power_iters,
                seed=job.seed, quiet=True, momentum=getattr(s, "momentum", None),
                batch_size=getattr(s, "batch_size", None))
            _ran(entry, stage.name, t0)
            entry["stationary_status"] = res.get("status")
        # A stage that returned without leaving a valid file would loop forever otherwise.
        final = inspect_run(run_dir)
        if not is_done(final):
            missing = [s.filename for s in STAGES if final["files"][s.name] is None]
            raise RuntimeError(f"stage files still missing or invalid after the run: {missing}")
    except Exception as exc:  # one run's failure must not stop the grid; reported at the end
        entry["failure"] = {"stage": stage.name, "path": str(run_dir / stage.filename),
                            "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
                            "traceback": traceback.format_exc()}
    return entry


def _ran(entry, name, t0):
    entry["ran"].append(name)
    entry["seconds"][name] = time.perf_counter() - t0


def enable_jax_compilation_cache(path):
    """Turn on JAX's persistent compilation cache in ``path`` unless one is configured.

    Runs that share architecture, loss and batch size compile identical XLA
    programs (weights are arguments, not constants), so with the cache each is
    compiled once per grid instead of once per run: tens of seconds per run on
    CPU, several on a GPU.  Processes sharing an output folder share the cache; a
    entry read while another process writes it fails to decompress, and JAX then
    warns and compiles instead.  Returns the cache folder in use.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    Path(path).mkdir(parents=True, exist_ok=True)
    cc.set_cache_dir(str(path))
    cc.reset_cache()  # takes effect even if this process compiled something already
    return str(path)
