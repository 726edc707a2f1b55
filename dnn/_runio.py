"""Run-folder I/O: atomic writes and provenance (versions, backend, device, git commit).

Every file in a run folder is written to a temporary file in the same folder and
then moved into place with :func:`os.replace`, so a reader (or a resumed run)
never sees a half-written file, even after a crash.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_csv",
    "atomic_path",
    "read_json",
    "remove_stale_temps",
    "check_output_dir",
    "RunFileError",
    "provenance",
    "git_info",
    "library_versions",
    "device_description",
    "utc_now",
]


class RunFileError(ValueError):
    """A file of a run folder is unreadable or malformed; the message names it and the fix.

    Raised instead of the reader's own error (``JSONDecodeError``, ``BadZipFile``, an
    h5py ``OSError``), which would not say which file is broken or what to do.
    """

    def __init__(self, path, problem, fix):
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}; {fix}")


def check_output_dir(path, name="out"):
    """Check that the folder ``path`` exists or can be created; return it as a Path.

    Nothing is created, so a command that fails later leaves no empty folder behind.

    Raises
    ------
    ValueError
        ``path`` (or a parent) exists and is not a directory, or the nearest existing
        parent is not writable; the message starts with ``name``.
    """
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise ValueError(f"{name}: {p} exists and is not a directory")
        return p
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name}: cannot create {p}: {parent} exists and is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: cannot create {p}: {parent} is not writable")
    return p


class atomic_path:
    """Context manager yielding a temporary path next to ``path``; on success it replaces ``path``.

    ``suffix`` keeps the file extension for writers that insist on one
    (e.g. Keras' ``save_weights`` needs ``.weights.h5``).
    """

    def __init__(self, path, suffix=""):
        self.path = Path(path)
        self.suffix = suffix

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=f".tmp{self.suffix}",
                                   dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            # mkstemp creates 0600 files; give the result the usual umask-based mode.
            os.chmod(self.tmp, 0o666 & ~_UMASK)
            os.replace(self.tmp, self.path)
            _fsync_dir(self.path.parent)
        else:
            self.tmp.unlink(missing_ok=True)
        return False


def _fsync_dir(folder):
    """Make a rename durable: fsync the folder's entry table (POSIX; a no-op elsewhere)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; the rename still happened
        pass
    finally:
        os.close(fd)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask is process-global, so never toggle it later


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, ``os.replace``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj):
    """Map NaN/inf to strings, since strict JSON has no such numbers (a diverged loss is NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def from_jsonable(obj):
    """The inverse of :func:`_jsonable` for floats: the strings ``"nan"``, ``"inf"``,
    ``"-inf"`` that :func:`atomic_write_json` stored become floats again, at any depth."""
    if isinstance(obj, dict):
        return {k: from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    if isinstance(obj, str) and obj in _NON_FINITE:
        return _NON_FINITE[obj]
    return obj


def atomic_write_json(path, obj):
    """Write ``obj`` as indented JSON atomically; non-finite floats become ``"nan"``/``"inf"``."""
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_write_csv(path, rows, columns):
    """Write a list of dicts as CSV with the given column order, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _jsonable(row.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


def remove_stale_temps(folder):
    """Delete the ``.<name>.*.tmp*`` files that an interrupted atomic write left in ``folder``.

    :class:`atomic_path` removes its temporary file when the writer raises, but a process
    that is killed (SIGKILL, power loss) never runs that cleanup.  Such leftovers are never
    read (the real file is only ever replaced whole), so deleting them is always safe as
    long as no writer is active in ``folder``; callers hold the run's lock.

    Parameters
    ----------
    folder : str or Path
        A run folder; a missing folder is fine (nothing to remove).

    Returns
    -------
    list of Path
        The files removed, sorted.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in sorted(folder.glob(".*.tmp*")):
        # Same pattern atomic_path creates: ".{name}.{random}.tmp{suffix}".
        if p.is_file() and ".tmp" in p.name:
            try:
                p.unlink()
            except FileNotFoundError:  # another cleaner got there first
                continue
            removed.append(p)
    return removed


def read_json(path, *, fix="delete it and rerun the command that writes it"):
    """Read a JSON file written by :func:`atomic_write_json`.

    Raises
    ------
    RunFileError
        The file is not valid UTF-8 JSON (truncated, overwritten); the message names
        the path and ``fix``.
    OSError
        The file cannot be opened (its message names the path).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFileError(path, f"not valid JSON ({exc})", fix) from None


def utc_now():
    """Current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_info(start=None):
    """``{"commit": sha or None, "dirty": bool or None}`` for the repository holding this package."""
    where = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha or None, "dirty": bool(status.strip())}


def library_versions(backend=None):
    """Versions of python and of the libraries that affect numerical results."""
    names = ["numpy", "keras", "h5py"]
    if backend in (None, "jax"):
        names += ["jax", "jaxlib"]
    if backend in (None, "tensorflow"):
        names += ["tensorflow", "tensorflow-cpu"]
    out = {"python": platform.python_version(), "sgd-minima": _version("sgd-minima")}
    for name in names:
        v = _version(name)
        if v is not None:
            out[name] = v
    return out


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def device_description(backend):
    """A short description of the accelerator the backend computes on, e.g. ``"gpu: NVIDIA H100 80GB HBM3"``.

    Only inspects a backend that is already imported, so it never imports one.
    """
    try:
        if backend == "jax" and "jax" in sys.modules:
            import jax

            d = jax.devices()[0]
            return f"{d.platform}: {getattr(d, 'device_kind', '') or d.platform} (x{jax.device_count()})"
        if backend == "tensorflow" and "tensorflow" in sys.modules:
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
                return f"gpu: {name} (x{len(gpus)})"
            return f"cpu: {platform.processor() or platform.machine()}"
    except Exception as exc:  # provenance must never abort a run
        return f"unknown ({type(exc).__name__}: {exc})"
    return "unknown"


def provenance(backend):
    """Everything a run folder records about where it ran."""
    g = git_info()
    return {
        "versions": library_versions(backend),
        "backend": backend,
        "device": device_description(backend),
        "git_commit": g["commit"],
        "git_dirty": g["dirty"],
        "host": platform.node(),
        "platform": platform.platform(),
        "argv": list(sys.argv),
    }
