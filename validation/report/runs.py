"""Read a grid's run folders back: every usable run, and every folder or file that was not."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._format import _num

__all__ = [
    "RunScan",
    "scan_runs",
    "load_runs",
]

# ------------------------------------------------------------------- loading

_NAME = re.compile(r"^(?P<loss>[a-z_]+)_bs(?P<bs>\d+)_lr(?P<lr>[0-9.e+-]+)_seed(?P<seed>\d+)$")


def _read(path, notes, label):
    """A JSON file of a usable run, or None; a present but unreadable file is noted."""
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        notes.append((label, f"{path.name} unreadable ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}); the run is used without it"))
        return None


# Key aliases in history records, so the report reads any history.json layout
# dnn.train has written (list of per-epoch dicts or dict of columns).
def _history_columns(h):
    """``{"epoch", "train_acc", "val_acc", "seconds"}`` arrays from a ``history.json``, or None.

    The file is ``dnn.train``'s ``{"columns": [...], "epochs": [row, ...]}``; epochs
    are 1-based (epoch k is the state after k passes over the data).
    """
    if not isinstance(h, dict) or not isinstance(h.get("epochs"), list):
        return None
    rows = [r for r in h["epochs"] if isinstance(r, dict)]
    if not rows or any(k not in rows[0] for k in ("accuracy", "val_accuracy")):
        return None

    def col(key):
        return np.array([_num(r.get(key)) for r in rows])

    ep = col("epoch") if "epoch" in rows[0] else np.arange(1, len(rows) + 1)
    return {"epoch": ep, "train_acc": col("accuracy"), "val_acc": col("val_accuracy"),
            "seconds": col("seconds") if "seconds" in rows[0] else None}


@dataclass(frozen=True)
class RunScan:
    """What :func:`scan_runs` found under a runs folder."""

    root: Path
    runs: list                                   # usable runs (see load_runs)
    skipped: list = field(default_factory=list)  # (folder name, why) of unusable sub-folders
    notes: list = field(default_factory=list)    # (run name, what) for files of usable runs

    def lines(self):
        """One human-readable line per skipped folder and per note."""
        return ([f"skipped {self.root / name}: {why}" for name, why in self.skipped]
                + [f"note {self.root / name}: {what}" for name, what in self.notes])


#: Folders the grid itself keeps next to the runs.  They are its bookkeeping, never
#: runs, so listing them as "skipped" on every report would only bury real problems.
_GRID_FOLDERS = frozenset({".jax_cache", ".locks", "grid-logs"})


def _run_record(d, notes):
    """(record, None) for a usable run folder ``d``, else (None, why it is skipped)."""
    if d.name.startswith("."):
        return None, "hidden folder, not a run"
    path = d / "run.json"
    if not path.is_file():
        return None, "no run.json"
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
    except (OSError, ValueError) as exc:
        return None, f"run.json unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})"
    if not isinstance(run, dict):
        return None, f"run.json holds a {type(run).__name__}, not a JSON object"
    cfg = run.get("config") if isinstance(run.get("config"), dict) else {}
    m = _NAME.match(d.name)
    loss = cfg.get("loss", m and m["loss"])
    bs = cfg.get("batch_size", m and m["bs"])
    lr = cfg.get("lr", m and m["lr"])
    seed = cfg.get("seed", m and m["seed"])
    if loss is None or bs is None or lr is None:
        return None, ("run.json has no config with loss, batch_size and lr, and the folder "
                      "name is not <loss>_bs<BS>_lr<LR>_seed<seed>")
    try:
        bs, lr = int(bs), float(lr)
        seed = None if seed is None else int(seed)
    except (TypeError, ValueError):
        return None, f"batch_size {bs!r}, lr {lr!r} or seed {seed!r} is not a number"
    if not (bs >= 1 and math.isfinite(lr) and lr > 0):
        return None, f"batch_size {bs} or lr {lr} is out of range"
    stationary = _read(d / "stationary.json", notes, d.name)
    if stationary is not None:
        from ..stationary import is_current

        if not isinstance(stationary, dict):
            notes.append((d.name, "stationary.json is not a JSON object; the run is used "
                                  "without it"))
            stationary = None
        elif not is_current(stationary):
            notes.append((d.name, "stationary.json is of an older schema (no theta-free "
                                  "estimate); delete it and rerun the grid to redo the "
                                  "stationary stage; the run is used without it"))
            stationary = None
    raw_history = _read(d / "history.json", notes, d.name)
    history = _history_columns(raw_history)
    if raw_history is not None and history is None:
        notes.append((d.name, "history.json has no epochs with accuracy and val_accuracy; "
                              "the run is used without its learning curve"))
    estimates = _read(d / "estimates.json", notes, d.name)
    if estimates is not None and not isinstance(estimates, dict):
        notes.append((d.name, "estimates.json is not a JSON object; the run is used without it"))
        estimates = None
    if stationary is not None and not isinstance(stationary, dict):
        stationary = None
    return {
        "name": d.name, "dir": str(d), "loss": str(loss), "batch_size": bs, "lr": lr,
        "seed": seed, "status": run.get("status"), "config": cfg, "run": run,
        "history": history, "estimates": estimates, "stationary": stationary,
    }, None


def scan_runs(runs_dir):
    """Every usable run folder under ``runs_dir``, and every folder that is not, with why.

    A sub-folder is usable when its ``run.json`` is a readable JSON object whose
    ``config`` (or, failing that, the folder name ``<loss>_bs<BS>_lr<LR>_seed<seed>``)
    gives the loss, batch size and learning rate.  Plain files (``grid.json``) are
    not folders and are ignored, and so are the grid's own folders (``.jax_cache``,
    ``.locks``, ``grid-logs``).  Unreadable optional files of a usable run
    (``history.json``, ``estimates.json``, ``stationary.json``) and stationary
    records of an older schema become notes; the run is used without them.

    Returns
    -------
    RunScan
        ``runs`` (dicts, see :func:`load_runs`), ``skipped`` and ``notes``.

    Raises
    ------
    FileNotFoundError
        If ``runs_dir`` does not exist.
    NotADirectoryError
        If it is a file.
    """
    root = Path(runs_dir)
    if not root.exists():
        raise FileNotFoundError(f"runs_dir {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"runs_dir {str(root)!r} is a file, not a folder of runs")
    runs, skipped, notes = [], [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in _GRID_FOLDERS):
        rec, why = _run_record(d, notes)
        if rec is None:
            skipped.append((d.name, why))
        else:
            runs.append(rec)
    return RunScan(root=root, runs=runs, skipped=skipped, notes=notes)


def _require_runs(scan):
    if scan.runs:
        return scan
    if not scan.skipped:
        raise ValueError(f"runs_dir {str(scan.root)!r} holds no run folders (it has no "
                         f"sub-folder)")
    shown = "; ".join(f"{name}: {why}" for name, why in scan.skipped[:5])
    more = f"; and {len(scan.skipped) - 5} more" if len(scan.skipped) > 5 else ""
    raise ValueError(f"runs_dir {str(scan.root)!r} holds no usable run folders "
                     f"({len(scan.skipped)} skipped: {shown}{more})")


def load_runs(runs_dir):
    """Every usable run folder under ``runs_dir`` as a dict of its saved results.

    Each record has ``name``, ``loss``, ``batch_size``, ``lr``, ``seed``,
    ``status``, ``config``, ``run`` (run.json), ``history`` (columns, see below,
    or None), ``estimates`` and ``stationary`` (dicts or None; ``stationary`` only
    of the current schema).  :func:`scan_runs` also says what was skipped.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If ``runs_dir`` does not exist or is a file.
    ValueError
        If it holds no usable run folder (the message lists the skipped ones).
    """
    return _require_runs(scan_runs(runs_dir)).runs
