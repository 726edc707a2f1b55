"""Several grid invocations on one output folder share the work: each stage of each run once.

Fast tests use fake stages (``grid_helpers.install``) and threads; the slow ones start
two and four real ``sgd-minima grid --preset smoke --loss kld`` processes on one
folder and compare every number with a single-process run.
"""

import threading
import time

import pytest
from grid_helpers import (
    assert_each_stage_once,
    assert_same_results,
    install,
    read,
    reference_grid,
    run_processes,
)

from validation.grid import get_preset, grid_runs, run_grid
from validation.grid.run import _jobs
from validation.grid.locking import RunLock
from validation.grid.stages import STAGES, _work

KLD = [r.name for r in grid_runs("smoke", "kld")]


def test_threads_on_one_folder_do_each_stage_once(monkeypatch, tmp_path):
    calls = install(monkeypatch, delay=0.02)
    results = [None] * 4

    def invoke(i):
        results[i] = run_grid("smoke", tmp_path, losses="kld", quiet=True,
                              compilation_cache=False)

    threads = [threading.Thread(target=invoke, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(r is not None and r["n_failed"] == 0 for r in results)
    assert sorted(calls) == sorted((s.name, n) for n in KLD for s in STAGES)
    ran = sorted((s, n) for r in results for n, e in r["runs"].items() for s in e["ran"])
    assert ran == sorted(calls)                      # the logs account for every call
    merged = read(tmp_path / "grid.json")
    assert len(merged["invocations"]) == 4 and merged["n_completed"] == len(KLD)
    assert len(list((tmp_path / "grid-logs").glob("*.json"))) == 4
    assert not list((tmp_path / ".locks").glob("*.owner.json"))   # every lock let go


def test_a_locked_run_is_left_for_later_and_found_done(monkeypatch, tmp_path):
    # Another "process" holds the lock of run 0 and finishes it (with the same fake stages)
    # while the grid works on the others; the grid must come back, see it done, redo nothing.
    calls = install(monkeypatch)
    other = RunLock(tmp_path, KLD[0])
    assert other.try_acquire()
    released = {}

    def finish_and_release():
        time.sleep(1.0)   # long enough for the grid to find run 0 locked and move on
        job = _jobs(get_preset("smoke"), grid_runs("smoke", "kld")[:1], tmp_path, "jax",
                    False)[0]
        released["entry"] = _work(job)   # the holder's own work, under its lock
        released["at"] = time.perf_counter()
        other.release()

    t = threading.Thread(target=finish_and_release)
    t.start()
    res = run_grid("smoke", tmp_path, losses="kld", quiet=True, compilation_cache=False)
    t.join()
    assert time.perf_counter() >= released["at"]
    assert released["entry"]["ran"] == ["train", "estimate", "stationary"]
    assert res["runs"][KLD[0]]["ran"] == [] and res["runs"][KLD[0]]["status"] == "completed"
    assert all(res["runs"][n]["ran"] == ["train", "estimate", "stationary"] for n in KLD[1:])
    assert sorted(calls) == sorted((s.name, n) for n in KLD for s in STAGES)


@pytest.fixture(scope="module")
def concurrent(tmp_path_factory):
    """The smoke/kld grid by two and by four processes at once, and the one-process reference.

    Cost on 2 CPU cores: about 1 min for each grid of six runs, 25 s for the reference.
    """
    ref = reference_grid(tmp_path_factory)
    out = {}
    for n in (2, 4):
        folder = tmp_path_factory.mktemp(f"grid_{n}procs")
        codes, outputs, seconds = run_processes(folder, n)
        out[n] = (folder, codes, outputs, seconds)
    return ref, out


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 4])
def test_processes_share_one_folder(concurrent, n):
    (ref, ref_names, ref_seconds), runs = concurrent
    folder, codes, outputs, seconds = runs[n]
    print(f"\n{n} processes, {len(KLD)} runs: {seconds:.0f} s "
          f"(one process, {len(ref_names)} runs: {ref_seconds:.0f} s)")
    assert codes == [0] * n, outputs
    for stdout, _ in outputs:
        assert "0 failed" in stdout.splitlines()[0]
    epochs = get_preset("smoke").epochs
    logs = assert_each_stage_once(folder, KLD, epochs)
    assert len(logs) == n
    assert sum(bool(e["ran"]) for log in logs for e in log["runs"].values()) == len(KLD)
    merged = read(folder / "grid.json")
    assert len(merged["invocations"]) == n and merged["n_completed"] == len(KLD)
    assert_same_results(ref, folder, ref_names)
    if n == 4:   # the runs outside the reference: two processes and four agree
        assert_same_results(runs[2][0], folder, KLD)
