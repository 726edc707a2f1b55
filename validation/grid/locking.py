"""Operating-system file locks that let any number of grid processes share one output folder.

Each run of a grid has a lock file ``<out>/.locks/<run>.lock``.  A process works on a
run folder only while it holds that lock (``filelock.FileLock``: ``flock`` on POSIX,
``LockFileEx`` on Windows), so the three stages of a run are done once, by one
process, whatever mix of ``sgd-minima grid`` processes, shards and Ray workers points
at the folder.  The operating system drops the lock when its holder dies (crash,
``SIGKILL``, a lost Ray worker), so a killed process never leaves a run blocked; the
next holder resumes the run from its files.  While held, ``<run>.owner.json`` says who
holds it (host, pid, since): for people, and for tests that kill the holder.

The folder must be on a file system with working locks: a local disk, or NFS v4 /
Lustre / GPFS with locking enabled.  Where ``flock`` is unsupported, ``filelock``
falls back to a marker file that a killed holder leaves behind (delete
``<out>/.locks`` when no grid process is running), or use ``--shard`` instead.
"""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOCK_DIR", "RunLock", "locked"]

#: Folder of the lock files, inside the grid's output folder (hidden: not a run).
LOCK_DIR = ".locks"


class RunLock:
    """The lock of one name (a run, or the grid summary) in an output folder.

    Parameters
    ----------
    out_dir : path
        The grid's output folder; the lock lives in ``out_dir/.locks``.
    name : str
        What is locked, e.g. the run's folder name.

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> a, b = RunLock(out, "kld_bs16_lr0.05_seed0"), RunLock(out, "kld_bs16_lr0.05_seed0")
    >>> a.try_acquire(), b.try_acquire()     # a second holder is refused, not blocked
    (True, False)
    >>> a.owner()["pid"] == os.getpid()
    True
    >>> a.release(); b.try_acquire()
    True
    >>> b.release()
    """

    def __init__(self, out_dir, name):
        from filelock import FileLock

        folder = Path(out_dir) / LOCK_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{name}.lock"
        self.owner_path = folder / f"{name}.owner.json"
        # Two FileLock objects on one path exclude each other even inside one process
        # (flock is per open file), which is what makes the doctest above meaningful.
        # Not thread-local: a RunLock is one holder, whichever thread releases it.
        self._lock = FileLock(str(self.path), thread_local=False)

    def try_acquire(self) -> bool:
        """Take the lock if it is free; ``False`` at once if someone else holds it."""
        from filelock import Timeout

        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        self._write_owner()
        return True

    def acquire(self, timeout=-1):
        """Wait for the lock (``timeout`` seconds, -1: forever); raises ``filelock.Timeout``."""
        self._lock.acquire(timeout=timeout)
        self._write_owner()

    def release(self):
        """Release the lock (and remove the owner note)."""
        self.owner_path.unlink(missing_ok=True)
        self._lock.release()

    def owner(self):
        """``{"host", "pid", "since"}`` of the current holder, or ``None`` (not held, unreadable)."""
        from dnn._runio import read_json

        try:
            return read_json(self.owner_path)
        except (OSError, ValueError):
            return None

    def _write_owner(self):
        from dnn._runio import atomic_write_json, utc_now

        atomic_write_json(self.owner_path, {"host": platform.node(), "pid": os.getpid(),
                                            "since": utc_now()})

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False


@contextmanager
def locked(out_dir, name):
    """Hold the lock ``name`` of ``out_dir`` for a ``with`` block (waits for it)."""
    with RunLock(out_dir, name) as lock:
        yield lock
