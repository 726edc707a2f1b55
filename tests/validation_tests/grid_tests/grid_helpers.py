"""Shared by the grid tests: fake stages, CLI subprocesses, the reference run and comparisons.

* :func:`install`: fast stand-ins for the three grid stages, to test the grid's
  bookkeeping without training.  Each fake writes the same stage file as the real
  stage (the keys the grid checks, :data:`validation.grid.stages.STAGES`) and records its
  call, so a test can count how often each stage ran and make one of them fail.
* :func:`reference_grid`: ``sgd-minima grid --preset smoke --loss kld --shard 0/3`` in one
  process, built once per pytest session and shared by the concurrency and Ray tests.
* :func:`assert_same_results`: two grids' run folders hold the same numbers.
"""

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

#: History columns that are computed results (the others are timings).
RESULT_COLUMNS = ("epoch", "lr", "loss", "data_loss", "accuracy", "val_loss", "val_data_loss",
                  "val_accuracy")


def install(monkeypatch, *, fail=None, delay=0.0):
    """Replace ``dnn.train``, ``dnn.estimate_run`` and ``run_stationary`` by fakes.

    Parameters
    ----------
    fail : (stage, run name) or None
        Make that stage of that run raise ``ValueError("injected failure")``.
    delay : float
        Seconds each fake stage sleeps (so that concurrent invocations overlap).

    Returns
    -------
    list of (stage, run name)
        Filled with every call, in order (thread-safe).
    """
    import dnn
    import validation.stationary as vstat
    from dnn._runio import atomic_write_json
    from validation.grid import stages

    calls, guard = [], threading.Lock()

    def called(stage, run_dir):
        with guard:
            calls.append((stage, run_dir.name))
        time.sleep(delay)
        if fail == (stage, run_dir.name):
            raise ValueError("injected failure")

    def train(config, run_dir, quiet=False):
        called("train", run_dir)
        info = {"status": "completed", "config": asdict(config)}
        atomic_write_json(run_dir / "run.json", info)
        return info

    def estimate_run(run_dir, **kwargs):
        called("estimate", run_dir)
        rec = {k: {"value": 1.0} for k in ("trace_grad_cov", "trace_hessian", "lambda_max")}
        atomic_write_json(run_dir / "estimates.json", rec)
        return rec

    def run_stationary(run_dir, **kwargs):
        called("stationary", run_dir)
        rec = {"status": "completed", "phase": {"lr": kwargs.get("lr")}, "schema_version": 2}
        atomic_write_json(run_dir / "stationary.json", rec)
        return rec

    monkeypatch.setattr(dnn, "train", train)
    monkeypatch.setattr(dnn, "estimate_run", estimate_run)
    monkeypatch.setattr(vstat, "run_stationary", run_stationary)
    monkeypatch.setattr(stages, "enable_jax_compilation_cache", lambda path: None)
    return calls


def grid_command(out, *extra):
    """The ``sgd-minima grid`` command line of the shared smoke/kld grid."""
    code = "import sys; from validation.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, "grid", "--preset", "smoke", "--loss", "kld",
            "--out", str(out), "--quiet", *extra]


def start(out, *extra):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(grid_command(out, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def run_processes(out, n, *extra, timeout=900):
    """Start ``n`` grid processes on ``out`` at once; wait; return (codes, outputs, seconds)."""
    t0 = time.perf_counter()
    procs = [start(out, *extra) for _ in range(n)]
    try:
        results = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:   # none left behind if a wait timed out or the test was interrupted
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in procs], results, time.perf_counter() - t0


#: The shard of the smoke/kld grid that the single-process reference runs: runs 0 and 3,
#: one of each batch size (two runs keep the reference cheap; the concurrency tests check
#: the other four by comparing two- and four-process grids with each other).
REFERENCE_SHARD = (0, 3)


def reference_grid(tmp_path_factory):
    """Shard :data:`REFERENCE_SHARD` of the smoke/kld grid by one process, once per session.

    Returns the folder, the run names and the wall time (a marker file says it is done).
    """
    from validation.grid import grid_runs, shard_runs

    root = tmp_path_factory.getbasetemp() / "grid_reference"
    done = root / "seconds.json"
    names = [r.name for r in shard_runs(grid_runs("smoke", "kld"), REFERENCE_SHARD)]
    if not done.exists():
        out = root / "runs"
        i, n = REFERENCE_SHARD
        codes, results, seconds = run_processes(out, 1, "--shard", f"{i}/{n}")
        assert codes == [0], results
        done.write_text(json.dumps({"seconds": seconds}))
    return root / "runs", names, json.loads(done.read_text())["seconds"]


def read(path):
    with open(path) as f:
        return json.load(f)


def assert_same_results(a, b, names):
    """Runs ``names`` of grids ``a`` and ``b``: same configs, statuses, histories and numbers.

    Bitwise equality is expected (fixed seeds, the same XLA programs on the same
    machine); a 1e-12 relative tolerance absorbs nothing else.
    """
    import pytest

    for name in names:
        ra, rb = read(a / name / "run.json"), read(b / name / "run.json")
        assert ra["status"] == rb["status"] == "completed", name
        ra["config"].pop("data_dir", None), rb["config"].pop("data_dir", None)
        assert ra["config"] == rb["config"], name
        ha = read(a / name / "history.json")["epochs"]
        hb = read(b / name / "history.json")["epochs"]
        assert len(ha) == len(hb), name
        assert [r[c] for r in ha for c in RESULT_COLUMNS] == pytest.approx(
            [r[c] for r in hb for c in RESULT_COLUMNS], rel=1e-12, abs=0), name
        ea, eb = read(a / name / "estimates.json"), read(b / name / "estimates.json")
        for key, field in (("trace_grad_cov", "trace"), ("trace_hessian", "mean"),
                           ("trace_hessian", "se"), ("lambda_max", "value")):
            assert ea[key][field] == pytest.approx(eb[key][field], rel=1e-12, abs=0), (name, key)
        sa, sb = read(a / name / "stationary.json"), read(b / name / "stationary.json")
        assert sa["status"] == sb["status"]
        assert sa["observed"]["value"] == pytest.approx(sb["observed"]["value"], rel=1e-12,
                                                        abs=0), name
        assert sa["phase"]["losses"] == pytest.approx(sb["phase"]["losses"], rel=1e-12, abs=0)


def assert_each_stage_once(out, names, planned_epochs):
    """Across every invocation's log, each stage of each run ran once; each epoch trained once."""
    logs = [read(p) for p in sorted((Path(out) / "grid-logs").glob("*.json"))]
    ran = {n: [] for n in names}
    for log in logs:
        for name, entry in log["runs"].items():
            ran[name] += entry["ran"]
    for name in names:
        assert sorted(ran[name]) == sorted(["train", "estimate", "stationary"]), (name, ran[name])
        epochs = [r["epoch"] for r in read(Path(out) / name / "history.json")["epochs"]]
        assert epochs == list(range(1, planned_epochs + 1)), (name, epochs)
        info = read(Path(out) / name / "run.json")
        assert info["epochs_completed"] == planned_epochs
        assert [(s["start_epoch"], s["end_epoch"]) for s in info["sessions"]] == [
            (0, planned_epochs)], name          # trained in one go, by one process
    return logs
