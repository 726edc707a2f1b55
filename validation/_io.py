"""Result folders for the synthetic experiments: atomic writes and provenance.

The atomic writers live in :mod:`dnn._runio` (keras-free at import) so that the
DNN run folders and these share one implementation: write a temporary file in the
target's folder, ``fsync`` it, ``os.replace`` it onto the target, then ``fsync`` the
folder, so that after a crash or power loss the target is either the old file or
the whole new one, never a prefix.  :func:`save_figure` follows the same recipe
for matplotlib's own writer.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from dnn._runio import atomic_path, atomic_write_json, atomic_write_text, git_info, utc_now

__all__ = ["atomic_write_json", "atomic_write_text", "save_figure", "synthetic_provenance"]

_SYNTHETIC_LIBS = ("numpy", "scipy", "sdeint", "matplotlib", "tqdm")


def save_figure(fig, path) -> Path:
    """Save a matplotlib figure atomically (PNG, 150 dpi)."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        _fsync_file(tmp)  # savefig closes without fsync; the rename must not outrun the data
    return path


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def synthetic_provenance(config: dict, seeds) -> dict:
    """Resolved config, library versions, backend, device, git commit and seeds of a numpy run."""
    versions = {"python": platform.python_version()}
    for name in ("sgd-minima",) + _SYNTHETIC_LIBS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    g = git_info()
    return {
        "config": config,
        "seeds": seeds,
        "versions": versions,
        "backend": "numpy",
        "device": f"cpu: {platform.processor() or platform.machine()}",
        "git_commit": g["commit"],
        "git_dirty": g["dirty"],
        "argv": list(sys.argv),
        "created": utc_now(),
    }
