"""The grid runner: train, estimate and measure the paper's (loss, BS, LR, seed) grid.

Every run lives in its own folder named after its configuration,
``<loss>_bs<BS>_lr<LR>_seed<seed>`` (e.g. ``kld_bs100_lr0.08_seed0``), and goes
through three stages, each of which leaves a file behind (:data:`validation.stages.STAGES`):

1. ``dnn.train``          → ``run.json`` (status completed | diverged), history, weights;
2. ``dnn.estimate_run``   → ``estimates.json`` (tr Σ, tr H ± SE, λ_max, ...) at the final weights;
3. ``validation.stationary.run_stationary`` → ``stationary.json`` (observed vs predicted
   stationary excess loss).

The grid is idempotent: a stage whose file is valid is skipped, an invalid one
(truncated, ill-typed) is reported and redone, an interrupted training resumes
from its checkpoint, and a diverged run is recorded and the grid moves on.  A run
is worked on only under its file lock (:mod:`validation.locking`), so any number
of invocations (processes, ``shard=(i, n)`` slices, Ray tasks via
:mod:`validation.executors`) can share one output folder, each stage done once.
``shard=(i, n)`` runs the runs whose index in the canonical order is ≡ i (mod n).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields

__all__ = [
    "EstimateSettings",
    "StationarySettings",
    "Preset",
    "PRESETS",
    "RunSpec",
    "get_preset",
    "parse_shard",
    "grid_runs",
    "shard_runs",
    "run_name",
    "run_grid",
    "format_summary",
    "train_config",
    "GRID_FILE",
    "LOG_DIR",
]

#: The merged state of every run any invocation touched, updated under a lock.
GRID_FILE = "grid.json"
#: One summary per grid invocation, never shared:
#: ``<out>/grid-logs/<UTC time>_<host>_<pid>_<random>.json``.
LOG_DIR = "grid-logs"


def _check_optional_int(value, name):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be None or an integer >= 1; got {value!r}")


@dataclass(frozen=True)
class EstimateSettings:
    """Arguments of ``dnn.estimate_run`` for each completed run."""

    examples: int | None = None   # first training examples used (None: all)
    probes: int | None = None     # Hutchinson probes (None: one per batch)
    batch_size: int = 256         # examples per HVP / per-example-gradient batch
    power_iters: int = 20         # power iterations for λ_max

    def __post_init__(self):
        _check_optional_int(self.examples, "examples")
        _check_optional_int(self.probes, "probes")
        _check_optional_int(self.batch_size, "batch_size")
        _check_optional_int(self.power_iters, "power_iters")


@dataclass(frozen=True)
class StationarySettings:
    """Arguments of the stationary phase (see ``dnn.stationary.stationary_phase``)."""

    steps: int = 2000             # recorded SGD steps K
    burn_in: int | None = None    # steps before recording (None: steps // 4)
    record_every: int = 10        # steps between loss records
    n_blocks: int = 20            # blocks for the averages and batch-means SE
    eval_examples: int = 4096     # fixed evaluation subset of the training set
    lr: float | None = None       # η_s (None: the schedule's final LR)
    probes: int | None = None     # Hutchinson probes for tr H at θ̄ (None: >= 32)
    power_iters: int = 20         # power iterations for λ_max at θ̄

    def __post_init__(self):
        for name in ("steps", "record_every", "eval_examples"):
            _check_optional_int(getattr(self, name), name)
        if self.burn_in is not None and (not isinstance(self.burn_in, int) or self.burn_in < 0):
            raise ValueError(f"burn_in must be None or an integer >= 0; got {self.burn_in!r}")
        if not isinstance(self.n_blocks, int) or self.n_blocks < 2:
            raise ValueError(f"n_blocks must be an integer >= 2; got {self.n_blocks!r}")
        if self.lr is not None and (isinstance(self.lr, bool)
                                    or not isinstance(self.lr, (int, float))
                                    or not math.isfinite(self.lr) or self.lr <= 0):
            raise ValueError(f"stationary lr must be None or a finite number > 0; got {self.lr!r}")
        _check_optional_int(self.probes, "probes")
        _check_optional_int(self.power_iters, "power_iters")


@dataclass(frozen=True)
class Preset:
    """A grid: configurations × seeds × losses, and the training recipe they share.

    The configurations are ``configs`` if given, else the product
    ``batch_sizes × lrs``.  The recipe fields mirror ``dnn.TrainConfig``.
    """

    name: str
    batch_sizes: tuple = ()               # S values of the product grid
    lrs: tuple = ()                       # η values of the product grid
    seeds: tuple = (0,)                   # one run per seed
    losses: tuple = ("kld", "logit_grad") # default losses (one figure each)
    configs: tuple | None = None          # explicit ((S, η), ...) instead of the product
    epochs: int = 125                     # training epochs
    milestones: tuple = (60, 100)         # epochs at which the LR is multiplied by lr_decay
    lr_decay: float = 0.1
    depth: int = 56                       # ResNet depth, 6n+2
    width: int = 16                       # filters of the first stage
    shortcut: str = "projection"
    l2: float = 1e-4                      # L2 coefficient λ (Keras: λ Σ w²)
    momentum: float = 0.0                 # plain SGD, as the theory assumes
    augment: bool = True                  # pad-crop-flip during training
    precision: str = "float32"
    data: str = "cifar10"                 # "cifar10" | "synthetic"
    n_train: int | None = None            # None: the whole training set
    n_test: int | None = None
    estimate: EstimateSettings = field(default_factory=EstimateSettings)
    stationary: StationarySettings = field(default_factory=StationarySettings)

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"name must be a non-empty string; got {self.name!r}")
        pairs = self.configurations()
        if not pairs:
            raise ValueError(f"preset {self.name!r} has no configurations")
        for s, lr in pairs:
            if not isinstance(s, int) or s < 1:
                raise ValueError(f"batch sizes must be integers >= 1; got {s!r}")
            if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
                raise ValueError(f"learning rates must be > 0; got {lr!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be non-empty and distinct; got {self.seeds!r}")
        if not self.losses:
            raise ValueError("losses must not be empty")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1; got {self.epochs!r}")

    def configurations(self):
        """The (batch size, learning rate) pairs, in canonical order."""
        if self.configs is not None:
            return tuple((int(s), float(lr)) for s, lr in self.configs)
        return tuple((int(s), float(lr)) for s in self.batch_sizes for lr in self.lrs)


# The paper: Luo & Wang, Sec. 5: ResNet-56 on CIFAR-10, plain SGD, LR / 10 at 60 and 100.
PRESETS = {
    "paper": Preset(
        name="paper", batch_sizes=(100, 200, 500), lrs=(0.08, 0.2, 0.5),
        seeds=(0, 1, 2, 3, 4), epochs=125, milestones=(60, 100),
        estimate=EstimateSettings(examples=None),
        stationary=StationarySettings(steps=2000, record_every=10, n_blocks=20,
                                      eval_examples=4096),
    ),
    # A GPU check of about 5 minutes: the real model and data, two epochs.
    "short": Preset(
        name="short", configs=((100, 0.08), (200, 0.16)), seeds=(0,), epochs=2,
        milestones=(1,), estimate=EstimateSettings(examples=5000),
        stationary=StationarySettings(steps=400, record_every=10, n_blocks=10,
                                      eval_examples=2048),
    ),
    # CI on 2 CPU cores: a depth-8, width-4 ResNet on synthetic CIFAR-shaped data,
    # sized so that 12 runs, their estimates, stationary phases and the report fit
    # in about 3 minutes.  Two configurations share BS/LR = 320 and one is 4x away,
    # so every colour class and the curve-distance statistics are exercised.
    "smoke": Preset(
        name="smoke", configs=((16, 0.05), (32, 0.1), (32, 0.025)), seeds=(0, 1),
        epochs=4, milestones=(3,), depth=8, width=4, augment=False, data="synthetic",
        n_train=512, n_test=256,
        estimate=EstimateSettings(examples=64, probes=2, batch_size=64, power_iters=3),
        # 8 blocks: the drift check needs at least 8 block means to estimate its SE.
        stationary=StationarySettings(steps=160, burn_in=40, record_every=2, n_blocks=8,
                                      eval_examples=64, probes=2, power_iters=3),
    ),
}


def get_preset(preset):
    """A :class:`Preset` from its name (``"paper"``, ``"short"``, ``"smoke"``) or itself.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the choices.
    """
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}; got {preset!r}")
    return PRESETS[preset]


def parse_shard(text):
    """Parse ``"i/n"`` (0 <= i < n) into ``(i, n)``; ``None`` passes through.

    Examples
    --------
    >>> parse_shard("1/4")
    (1, 4)
    >>> parse_shard(None) is None
    True

    Raises
    ------
    ValueError
        If the text is not two integers ``i/n`` with n >= 1 and 0 <= i < n.
    """
    if text is None:
        return None
    if isinstance(text, tuple):
        return _check_shard(text)
    parts = str(text).strip().split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        i, n = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"shard must look like 'i/n' with integers 0 <= i < n (0-based), "
                         f"e.g. '0/4'; got {text!r}") from None
    return _check_shard((i, n))


def _check_shard(shard):
    try:
        i, n = shard
    except (TypeError, ValueError):
        raise ValueError(f"shard must be a pair (i, n); got {shard!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (i, n)):
        raise ValueError(f"shard must hold integers; got {shard!r}")
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard i/n needs n >= 1 and 0 <= i < n (0-based); got {i}/{n}")
    return i, n


def _fmt_lr(lr):
    return f"{lr:g}"


def run_name(loss, batch_size, lr, seed):
    """Folder name of a run: ``<loss>_bs<S>_lr<η>_seed<seed>``.

    Examples
    --------
    >>> run_name("kld", 100, 0.08, 0)
    'kld_bs100_lr0.08_seed0'
    """
    return f"{loss}_bs{int(batch_size)}_lr{_fmt_lr(float(lr))}_seed{int(seed)}"


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid."""

    loss: str
    batch_size: int
    lr: float
    seed: int

    @property
    def name(self):
        return run_name(self.loss, self.batch_size, self.lr, self.seed)


def _check_losses(losses):
    if losses is None:
        return None
    if isinstance(losses, str):
        losses = tuple(x.strip() for x in losses.split(",") if x.strip())
    losses = tuple(losses)
    if not losses:
        raise ValueError("losses must name at least one loss; got an empty list")
    from dnn.losses import LOSSES

    for name in losses:
        if name not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {name!r}")
    if len(set(losses)) != len(losses):
        raise ValueError(f"losses must be distinct; got {losses!r}")
    return losses


def grid_runs(preset, losses=None):
    """All runs of a preset in canonical order (loss, configuration, seed).

    Raises
    ------
    ValueError
        Unknown preset or loss.
    """
    p = get_preset(preset)
    losses = _check_losses(losses) or _check_losses(p.losses)
    return [RunSpec(loss, s, lr, seed) for loss in losses for s, lr in p.configurations()
            for seed in p.seeds]


def shard_runs(runs, shard):
    """The runs of shard ``(i, n)``: those whose canonical index is ≡ i (mod n).

    Round-robin, so every shard gets a mix of batch sizes (hence similar work).
    """
    if shard is None:
        return list(runs)
    i, n = _check_shard(shard)
    return [r for k, r in enumerate(runs) if k % n == i]


def train_config(preset, spec, backend=None):
    """The ``dnn.TrainConfig`` of one run."""
    import dnn

    p = get_preset(preset)
    kwargs = dict(batch_size=spec.batch_size, lr=spec.lr, epochs=p.epochs, depth=p.depth,
                  width=p.width, shortcut=p.shortcut, l2=p.l2, momentum=p.momentum,
                  milestones=tuple(p.milestones), lr_decay=p.lr_decay, loss=spec.loss,
                  augment=p.augment, seed=spec.seed, backend=backend, precision=p.precision,
                  data=p.data, n_train=p.n_train, n_test=p.n_test)
    names = {f.name for f in fields(dnn.TrainConfig)}
    return dnn.TrainConfig(**{k: v for k, v in kwargs.items() if k in names})


def _normalise(d):
    return json.loads(json.dumps(d, default=str))


# Fields that may legitimately differ between invocations of the same run.
_VOLATILE = {"backend", "data_dir"}


def _config_mismatch(saved, expected):
    """Names of the fields where a saved run's config differs from the one the grid wants."""
    a, b = _normalise(saved), _normalise(expected)
    return sorted(k for k in b if k not in _VOLATILE and k in a and a[k] != b[k])


# ------------------------------------------------------------------ running a grid

#: Seconds between looks at runs that another process is working on (doubling, capped):
#: short enough not to idle long after they finish, long enough to cost nothing.
POLL_FIRST_S, POLL_MAX_S = 0.5, 10.0


def _check_out_dir(out_dir):
    from dnn._runio import check_output_dir

    return check_output_dir(out_dir, "out_dir")


def _jobs(p, runs, out, backend, compilation_cache):
    from .stages import RunJob

    return [RunJob(name=r.name, out_dir=str(out), config=train_config(p, r, backend),
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

    from ._io import atomic_write_json
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
             compilation_cache=True, executor="local", address=None, max_retries=3):
    """Train, estimate and measure every run of a grid (or of one shard of it).

    Any number of invocations may share ``out_dir`` (processes on one machine, one
    per GPU; Slurm array tasks; Ray workers): each run is worked on only by the
    holder of its file lock (:mod:`validation.locking`), an invocation that finds a
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
    from dnn.backend import current_backend

    # Keras cannot switch backends in-process: with none named, keep the one in use.
    backend = dnn.set_backend(backend or current_backend())
    jobs = _jobs(p, runs, out, backend, compilation_cache)
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
