"""Where the runs of a grid execute: in this process, or as Ray tasks on a cluster.

An executor takes :class:`validation.stages.RunJob` s and yields ``(job, entry)``
pairs as the jobs finish, ``entry`` being :func:`validation.stages.run_job`'s
result.  Both executors call the same ``run_job``, which takes the run's file lock
and writes into the same idempotent folder layout, so executors, shards and plain
processes can share one output folder.

* :class:`LocalExecutor`: one run after the other in this process.
* :class:`RayExecutor`: one Ray task per run (``num_gpus=1`` when the cluster has
  GPUs, so each task gets a GPU of its own; ``num_gpus=0`` otherwise), retried up to
  ``max_retries`` times if its worker process dies.  Ray is imported only here.
"""

from __future__ import annotations

from .stages import run_job

__all__ = ["EXECUTORS", "LocalExecutor", "RayExecutor", "MissingRayError", "make_executor",
           "RAY_INSTALL_HINT"]

#: Executor names accepted by ``run_grid(executor=...)`` and ``sgd-minima grid --executor``.
EXECUTORS = ("local", "ray")

RAY_INSTALL_HINT = "pip install -e '.[cluster]'"


class MissingRayError(ImportError):
    """``executor="ray"`` was asked for but Ray is not installed."""


class LocalExecutor:
    """Run the jobs one after the other in this process."""

    name = "local"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def describe(self):
        return {"executor": "local"}

    def map(self, jobs):
        for job in jobs:
            yield job, run_job(job)


def _ray_task(job):
    # Runs in a Ray worker: the Keras backend comes from runtime_env (set before any
    # import of keras); run_job sets it again and fails loudly on a mismatch.
    return run_job(job)


class RayExecutor:
    """Run each job as a Ray task.

    Parameters
    ----------
    address : str, optional
        A running cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``).
        Default: the Ray instance this process already initialised, else a new
        local one (stopped again at the end).
    max_retries : int
        Times Ray resubmits a task whose worker died (crash, ``SIGKILL``, lost
        node).  The run resumes from its last checkpoint, since the dead worker's
        file lock is released by the operating system.
    quiet : bool
        Keep Ray's startup messages and worker logs off the terminal.

    Raises
    ------
    MissingRayError
        Ray is not installed.
    """

    name = "ray"

    def __init__(self, address=None, max_retries=3, quiet=False):
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0; got {max_retries!r}")
        try:
            import ray
        except ImportError:
            raise MissingRayError(f"executor 'ray' needs Ray, which is not installed: "
                                  f"{RAY_INSTALL_HINT}") from None
        self._ray = ray
        self.address = address
        self.max_retries = max_retries
        self.quiet = quiet
        self._started = False
        self.num_gpus = 0

    def __enter__(self):
        import logging

        ray = self._ray
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False,
                     log_to_driver=not self.quiet,
                     logging_level=logging.WARNING if self.quiet else logging.INFO)
            self._started = True
        # One GPU per task when there are GPUs: a run is one model, and JAX/TF would
        # otherwise each claim every GPU of the node.
        self.num_gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        return self

    def __exit__(self, *exc):
        if self._started:
            self._ray.shutdown()
            self._started = False
        return False

    def describe(self):
        return {"executor": "ray", "address": self.address, "num_gpus_per_task": self.num_gpus,
                "max_retries": self.max_retries}

    def map(self, jobs):
        ray = self._ray
        remote = ray.remote(_ray_task)
        refs = {}
        for job in jobs:
            env = {"KERAS_BACKEND": job.backend}
            if job.backend == "tensorflow":
                env["TF_ENABLE_ONEDNN_OPTS"] = "0"  # as dnn.set_backend does, see there
            ref = remote.options(num_cpus=1, num_gpus=self.num_gpus,
                                 max_retries=self.max_retries, retry_exceptions=False,
                                 runtime_env={"env_vars": env}, name=f"grid:{job.name}"
                                 ).remote(job)
            refs[ref] = job
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                job = refs.pop(ref)
                try:
                    entry = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    # Retries exhausted (or the task could not run at all): a failure of
                    # this run, reported like any other; the grid goes on.
                    entry = {"name": job.name, "outcome": "done", "run_dir": str(job.run_dir),
                             "status": None, "ran": [], "seconds": {}, "invalid_files": [],
                             "removed_temps": [], "host": None, "pid": None,
                             "failure": {"stage": "worker", "path": str(job.run_dir),
                                         "error": f"{type(exc).__name__}: "
                                                  f"{' '.join(str(exc).split())[:500]}",
                                         "traceback": str(exc)}}
                yield job, entry


def make_executor(name, *, address=None, max_retries=3, quiet=False):
    """The executor called ``name`` (``"local"`` or ``"ray"``).

    Raises
    ------
    ValueError
        Unknown name, or ``address`` given for the local executor.
    MissingRayError
        ``"ray"`` without Ray installed.
    """
    if name not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}; got {name!r}")
    if name == "local":
        if address is not None:
            raise ValueError(f"address is only used with executor='ray'; got address={address!r} "
                             f"with executor='local'")
        return LocalExecutor()
    return RayExecutor(address=address, max_retries=max_retries, quiet=quiet)
