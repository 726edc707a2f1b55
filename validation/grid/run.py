"""Running a grid: train, estimate and measure the paper's (loss, BS, LR, seed) grid.

Every run lives in its own folder named after its configuration,
``<loss>_bs<BS>_lr<LR>_seed<seed>`` (e.g. ``kld_bs100_lr0.08_seed0``), and goes
through three stages, each of which leaves a file behind (:data:`validation.grid.stages.STAGES`):

1. ``dnn.train``          → ``run.json`` (status completed | diverged), history, weights;
2. ``dnn.estimate_run``   → ``estimates.json`` (tr Σ, tr H ± SE, λ_max, ...) at the final weights;
3. ``validation.stationary.run_stationary`` → ``stationary.json`` (observed vs predicted
   stationary excess loss).

The grid is idempotent: a stage whose file is valid is skipped, an invalid one
(truncated, ill-typed) is reported and redone, an interrupted training resumes
from its checkpoint, and a diverged run is recorded and the grid moves on.  A run
is worked on only under its file lock (:mod:`validation.grid.locking`), so any number
of invocations (processes, ``shard=(i, n)`` slices, Ray tasks via
:mod:`validation.grid.executors`) can share one output folder, each stage done once.
``shard=(i, n)`` runs the runs whose index in the canonical order is ≡ i (mod n).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict

from .presets import (_check_shard, _config_mismatch, get_preset, grid_runs, parse_shard,
                      shard_runs, train_config)

__all__ = ["run_grid", "format_summary", "GRID_FILE", "LOG_DIR"]

#: The merged state of every run any invocation touched, updated under a lock.
GRID_FILE = "grid.json"
#: One summary per grid invocation, never shared:
#: ``<out>/grid-logs/<UTC time>_<host>_<pid>_<random>.json``.
LOG_DIR = "grid-logs"


# ------------------------------------------------------------------ running a grid

#: Seconds between looks at runs that another process is working on (doubling, capped):
#: short enough not to idle long after they finish, long enough to cost nothing.
POLL_FIRST_S, POLL_MAX_S = 0.5, 10.0


def _check_out_dir(out_dir):
    from dnn._runio import check_output_dir

    return check_output_dir(out_dir, "out_dir")


def _jobs(p, runs, out, backend, compilation_cache, data_dir=None):
    from .stages import RunJob

    return [RunJob(name=r.name, out_dir=str(out), config=train_config(p, r, backend, data_dir),
                   estimate=p.estimate, stationary=p.stationary, seed=r.seed, backend=backend,
                   compilation_cache=compilation_cache) for r in runs]


def _refuse_other_configurations(jobs):
    """Refuse to mix grids before doing any work."""
    from .stages import check_stage_file

    for job in jobs:
        run, _ = check_stage_file(job.run_dir / "run.json", "train")
        if run is not None:
            bad = _config_mismatch(run["config"], asdict(job.config))
            if bad:
                raise ValueError(f"{job.run_dir} holds a run with a different configuration "
                                 f"(fields {bad}); use another output folder")


def _counts(entries):
    e = list(entries)
    return {"n_runs": len(e),
            "n_trained": sum("train" in x["ran"] for x in e),
            "n_skipped": sum(not x["ran"] and not x["failure"] for x in e),
            "n_completed": sum(x["status"] == "completed" and not x["failure"] for x in e),
            "n_diverged": sum(x["status"] == "diverged" for x in e),
            "n_failed": sum(bool(x["failure"]) for x in e)}


def _write_summaries(out, log_path, record):
    """Write this invocation's log and merge it into ``grid.json``, under the grid lock.

    Every write into ``out`` and ``out/grid-logs`` happens under this lock, so the stale
    temporary files that it removes can only be those of killed processes.
    """
    from dnn._runio import read_json, remove_stale_temps, utc_now

    from .._io import atomic_write_json
    from .locking import locked

    with locked(out, "grid"):
        removed = [str(p) for folder in (out, log_path.parent)
                   for p in remove_stale_temps(folder)]
        record["removed_temps"] += [p for p in removed if p not in record["removed_temps"]]
        atomic_write_json(log_path, record)
        try:
            merged = read_json(out / GRID_FILE)
        except (OSError, ValueError):
            merged = None
        if not isinstance(merged, dict) or not isinstance(merged.get("runs"), dict) \
                or not isinstance(merged.get("invocations"), dict):
            merged = {"runs": {}, "invocations": {}}
        log_name = log_path.name
        for name, entry in record["runs"].items():
            if entry["ran"] or entry["failure"] or name not in merged["runs"]:
                merged["runs"][name] = {"status": entry["status"], "ran": entry["ran"],
                                        "failure": entry["failure"], "by": log_name}
        merged["invocations"][log_name] = {
            k: record[k] for k in ("preset", "host", "pid", "shard", "executor", "started")}
        merged["invocations"][log_name].update(
            finished=record.get("finished"), **{k: record[k] for k in _counts([])})
        merged["updated"] = utc_now()
        merged.update(_counts(_as_entry(v) for v in merged["runs"].values()))
        atomic_write_json(out / GRID_FILE, merged)


def _as_entry(v):
    return {"ran": v.get("ran") or [], "failure": v.get("failure"), "status": v.get("status")}


def run_grid(preset, out_dir, *, backend=None, losses=None, shard=None, quiet=False,
             compilation_cache=True, executor="local", address=None, max_retries=3,
             data_dir=None):
    """Train, estimate and measure every run of a grid (or of one shard of it).

    Any number of invocations may share ``out_dir`` (processes on one machine, one
    per GPU; Slurm array tasks; Ray workers): each run is worked on only by the
    holder of its file lock (:mod:`validation.grid.locking`), an invocation that finds a
    run locked goes on with the others and comes back to it at the end (waiting
    until the holder lets go), so when every invocation has returned, every run is
    done, each stage once.

    Parameters
    ----------
    preset : {"paper", "short", "smoke"} or Preset
        The grid and its recipe.
    out_dir : path
        Folder holding one sub-folder per run.
    backend : {"jax", "tensorflow"}, optional
        Keras backend (set before keras is imported; default ``$KERAS_BACKEND``, else jax).
    data_dir : str or path, optional
        Folder searched first for the data set's files (CIFAR-10, Fashion-MNIST), before
        the Keras cache and the system folder; not part of a run's identity.
    losses : sequence of str or "a,b", optional
        Losses to run (default: the preset's, ``kld`` and ``logit_grad``).
    shard : (i, n) or "i/n", optional
        Run only shard i of n (0-based); the n shards partition the grid.
    quiet : bool
        Silence the progress display.
    compilation_cache : bool
        On JAX, keep compiled programs in ``out_dir/.jax_cache`` (unless a
        persistent cache is already configured), so runs sharing loss, batch size
        and architecture compile once.
    executor : {"local", "ray"}
        ``"local"``: the runs one after the other in this process.  ``"ray"``: one
        Ray task per run (:class:`validation.executors.RayExecutor`).
    address : str, optional
        With ``executor="ray"``: the cluster to join (default: a local Ray).
    max_retries : int
        With ``executor="ray"``: resubmissions of a task whose worker died.

    Returns
    -------
    dict
        This invocation's summary, also written to
        ``out_dir/grid-logs/<time>_<host>_<pid>_<random>.json``
        (one file per invocation, never shared) and merged, under a lock, into
        ``out_dir/grid.json`` (the latest state of every run any invocation touched).
        Keys: the preset, shard, executor, host, pid; ``runs``: per run ``status``
        (run.json's: completed | diverged), ``ran`` (stages done by this invocation),
        ``seconds``, ``invalid_files`` (stage files that did not count, by path, redone),
        ``failure`` (None or stage, path, error, traceback); ``failures`` (the
        failed runs' entries), ``invalid_files``, ``removed_temps``; counts
        ``n_runs``, ``n_trained``, ``n_skipped``, ``n_completed``, ``n_diverged``
        (a recorded outcome of training, not a failure) and ``n_failed``.

    Raises
    ------
    ValueError
        Unknown preset, loss or executor, bad shard, ``out_dir`` naming a file, or a
        run folder holding a different configuration (use another ``out_dir``).
        All checked before any work.
    validation.executors.MissingRayError
        ``executor="ray"`` without Ray installed.
    """
    import os
    import platform
    import uuid

    from .executors import make_executor
    from .stages import inspect_run, is_done

    p = get_preset(preset)
    shard = parse_shard(shard) if isinstance(shard, str) else (
        None if shard is None else _check_shard(shard))
    runs = shard_runs(grid_runs(p, losses), shard)
    out = _check_out_dir(out_dir)
    pool = make_executor(executor, address=address, max_retries=max_retries, quiet=quiet)
    import dnn
    from dnn._runio import utc_now
    from dnn.convnet.backend import current_backend

    # Keras cannot switch backends in-process: with none named, keep the one in use.
    backend = dnn.set_backend(backend or current_backend())
    jobs = _jobs(p, runs, out, backend, compilation_cache, data_dir)
    _refuse_other_configurations(jobs)
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    started = utc_now()
    # host and pid name the invocation; the random tail keeps two in one process apart
    log_path = out / LOG_DIR / (f"{started.replace(':', '').replace('+0000', 'Z')}_"
                                f"{platform.node()}_{os.getpid()}_{uuid.uuid4().hex[:6]}.json")
    record = {"preset": p.name, "preset_config": asdict(p), "backend": backend,
              "jax_compilation_cache": (str(out / ".jax_cache")
                                        if compilation_cache and backend == "jax" else None),
              "shard": None if shard is None else list(shard), "executor": executor,
              "host": platform.node(), "pid": os.getpid(), "started": started,
              "runs": {}, "failures": [], "invalid_files": [], "removed_temps": [],
              **_counts([])}
    entries = {}

    def finish(entry):
        entries[entry["name"]] = entry
        record["runs"] = {j.name: entries[j.name] for j in jobs if j.name in entries}
        record["failures"] = [e for e in record["runs"].values() if e["failure"]]
        record["invalid_files"] = [f for e in record["runs"].values() for f in e["invalid_files"]]
        record["removed_temps"] = sorted({t for e in record["runs"].values()
                                          for t in e["removed_temps"]}
                                         | set(record["removed_temps"]))
        record.update(_counts(record["runs"].values()))

    t_grid = time.perf_counter()
    todo = []
    for job in jobs:
        state = inspect_run(job.run_dir)
        if is_done(state):   # read-only look; work (and its checks) happen under the lock
            finish({"name": job.name, "outcome": "done", "run_dir": str(job.run_dir),
                    "status": state["status"], "ran": [], "seconds": {}, "invalid_files": [],
                    "removed_temps": [], "failure": None})
        else:
            todo.append(job)
    _write_summaries(out, log_path, record)
    with pool, tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="run",
                    desc=f"grid {p.name}", disable=quiet, dynamic_ncols=True) as bar:
        record.update(pool.describe())
        delay = POLL_FIRST_S
        while todo:
            busy = []
            for job, entry in pool.map(todo):
                if entry["outcome"] == "locked":
                    busy.append(job)   # someone else is on it: come back once the rest is done
                    continue
                finish(entry)
                bar.set_postfix_str(job.name)
                bar.update(1)
                record["wall_time_s"] = time.perf_counter() - t_grid
                _write_summaries(out, log_path, record)
            if busy:
                time.sleep(delay)
                delay = min(2 * delay, POLL_MAX_S)
            todo = busy
    record["finished"] = utc_now()
    record["wall_time_s"] = time.perf_counter() - t_grid
    record["summary_file"] = str(log_path)
    _write_summaries(out, log_path, record)
    for f in record["invalid_files"]:
        warnings.warn(f"{f['path']}: {f['problem']}; redone (the old file is {f['moved_to']})",
                      RuntimeWarning, stacklevel=2)
    return record


def format_summary(record):
    """The end-of-grid summary in words: counts, then each failure, redone file and divergence.

    Examples
    --------
    >>> rec = {"preset": "smoke", "n_runs": 2, "n_trained": 1, "n_skipped": 1,
    ...        "n_completed": 1, "n_diverged": 0, "n_failed": 1, "invalid_files": [],
    ...        "removed_temps": [], "summary_file": "runs/grid-logs/x.json",
    ...        "runs": {"a": {"status": "completed", "failure": None},
    ...                 "b": {"status": "completed", "failure": {"stage": "estimate",
    ...                       "path": "runs/b/estimates.json", "error": "ValueError: nan"}}}}
    >>> print(format_summary(rec))
    grid smoke: 2 runs: 1 completed, 0 diverged, 1 FAILED (1 trained now, 1 already done)
      FAILED b at stage estimate (runs/b/estimates.json): ValueError: nan
    details: runs/grid-logs/x.json
    """
    lines = [f"grid {record['preset']}: {record['n_runs']} runs: "
             f"{record['n_completed']} completed, "
             f"{record['n_diverged']} diverged, "
             f"{record['n_failed']} {'FAILED' if record['n_failed'] else 'failed'} "
             f"({record['n_trained']} trained now, {record['n_skipped']} already done)"]
    for name, e in record["runs"].items():
        f = e.get("failure")
        if f:
            lines.append(f"  FAILED {name} at stage {f['stage']} ({f['path']}): {f['error']}")
    for f in record["invalid_files"]:
        lines.append(f"  redone {f['path']}: {f['problem']} (old file kept as {f['moved_to']})")
    for t in record["removed_temps"]:
        lines.append(f"  removed stale temporary file {t}")
    diverged = [n for n, e in record["runs"].items() if e.get("status") == "diverged"]
    if diverged:
        lines.append(f"  diverged (a recorded outcome of training, not a failure): "
                     f"{', '.join(diverged)}")
    lines.append(f"details: {record['summary_file']}")
    return "\n".join(lines)
