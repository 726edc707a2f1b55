"""``run_grid(executor="ray")`` on a local two-CPU Ray: same results as one process, and a
worker killed mid-run (SIGKILL from outside, as a lost node would) is retried and resumes.
"""

import json
import os
import signal
import threading
import time

import pytest
from grid_helpers import REFERENCE_SHARD, assert_same_results, read, reference_grid

from validation.grid import get_preset, run_grid
from validation.grid.locking import LOCK_DIR

pytestmark = pytest.mark.slow


def _kill_the_holder(out, name, killed, stop):
    """SIGKILL the process holding ``name``'s lock once it has trained at least one epoch."""
    owner_path = out / LOCK_DIR / f"{name}.owner.json"
    history = out / name / "history.json"
    while not stop.is_set():
        try:
            owner = read(owner_path)
            epochs = len(read(history)["epochs"])
        except (OSError, ValueError):
            owner, epochs = None, 0
        if owner and epochs >= 1 and owner["pid"] != os.getpid():
            os.kill(owner["pid"], signal.SIGKILL)
            killed.update(owner, epochs_before_kill=epochs)
            return
        time.sleep(0.05)


def test_ray_matches_one_process_and_survives_a_killed_worker(tmp_path_factory, tmp_path):
    import ray   # here, not at collection: the default executor never imports Ray

    ref, names, _ = reference_grid(tmp_path_factory)   # one run per Ray task slot
    out = tmp_path / "runs"
    killed, stop = {}, threading.Event()
    killer = threading.Thread(target=_kill_the_holder, args=(out, names[0], killed, stop))
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        killer.start()
        res = run_grid("smoke", out, losses="kld", shard=REFERENCE_SHARD, executor="ray",
                       quiet=True)
    finally:
        stop.set()
        killer.join()
        ray.shutdown()
    print(f"\nray grid of {len(names)} runs with one killed worker: "
          f"{time.perf_counter() - t0:.0f} s; killed {json.dumps(killed)}")

    assert res["executor"] == "ray" and res["num_gpus_per_task"] == 0
    assert res["n_failed"] == 0 and sorted(res["runs"]) == sorted(names)
    assert killed, "the killer never saw the run being worked on"
    victim = res["runs"][names[0]]
    assert victim["pid"] != killed["pid"]          # finished by the retry, in another worker
    with pytest.raises(ProcessLookupError):        # and the first worker is really gone
        os.kill(killed["pid"], 0)
    epochs = get_preset("smoke").epochs
    for name in names:
        hist = [r["epoch"] for r in read(out / name / "history.json")["epochs"]]
        assert hist == list(range(1, epochs + 1))   # every epoch once, none repeated
        sessions = read(out / name / "run.json")["sessions"]
        assert sessions[0]["start_epoch"] == 0 and sessions[-1]["end_epoch"] == epochs
    assert_same_results(ref, out, names)
