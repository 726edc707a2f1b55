"""The grid's configurations: presets, per-stage settings, run names, shards.

A :class:`Preset` fixes the model, data, schedule, seeds and the (loss, BS, LR)
grid, plus the settings of the estimate and stationary stages; :func:`grid_runs`
lists its runs in the canonical order that :func:`shard_runs` slices, and
:func:`run_name` names each run's folder ``<loss>_bs<BS>_lr<LR>_seed<seed>``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields

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
    "train_config",
]


def _check_momentum(value, name):
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not 0 <= value < 1):
        raise ValueError(f"{name} must be a number in [0, 1); got {value!r}")


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
    """Arguments of the stationary phase (see ``dnn.convnet.stationary.stationary_phase``)."""

    steps: int = 2000             # recorded SGD steps K
    burn_in: int | None = None    # steps before recording (None: steps // 4)
    record_every: int = 10        # steps between loss records
    n_blocks: int = 20            # blocks for the averages and batch-means SE
    eval_examples: int = 4096     # fixed evaluation subset of the training set
    lr: float | None = None       # η_s (None: the schedule's final LR)
    probes: int | None = None     # Hutchinson probes for tr H at θ̄ (None: >= 32)
    power_iters: int = 20         # power iterations for λ_max at θ̄
    momentum: float | None = None # heavy-ball β_s of the phase (None: the run's training β)
    batch_size: int | None = None # S_s of the phase (None: the run's batch size)

    def __post_init__(self):
        _check_optional_int(self.batch_size, "stationary batch_size")
        if self.momentum is not None:
            _check_momentum(self.momentum, "stationary momentum")
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
    momentum: float = 0.0                 # training heavy-ball β (0: plain SGD; grid --momentum)
    augment: bool = True                  # pad-crop-flip during training
    precision: str = "float32"
    data: str = "cifar10"                 # "cifar10" | "synthetic" | "fashion_mnist"
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
        _check_momentum(self.momentum, "momentum")

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
    # The paper's 3x3 grid on Fashion-MNIST, sized for 2 CPU cores: `grid --preset fashion
    # --loss kld` (18 runs) in <= 90 min with margin, i.e. <= ~250 s a run, all stages
    # included.  Measured (2 cores, 2026-12-06/07): an idle epoch of 10,000 images trains in
    # ~6-10 s and evaluating the 10,000 test images costs ~2 s; width 16 costs ~3x width 8,
    # so width 8.  The schedule keeps the paper's shape: LR / 10 after 50% and 79% of the
    # epochs (paper: 48%, 80%).  The training set is a class-balanced subset (first
    # n_train/10 of each class); tests use all 10,000 images.  No augmentation: 2,000
    # plain-SGD steps at BS 100 underfit (train ≈ test accuracy), where crop+flip cost 5
    # points (78.8% vs 83.6% test, BS 100, LR 0.08, seed 0); and without it the trained-to
    # loss is the finite sum whose Σ and H the estimate and stationary stages measure.
    # 16 epochs with milestones (8, 13) took ~105 min on an idle VM, hence 14.
    # The estimate uses 1,000 examples (the SE it reports says what that costs).  The
    # stationary phase runs at the final LR with S_s = 50 for every run.  At the run's own
    # S a BS-500 phase costs 5x a BS-100 one (compute-bound), which alone would take the
    # grid past 90 min.  The phases cannot be stationary here: the nets are still learning.
    # On BS 500 / LR 0.08 the frozen-BN loss fell from 0.83 to 0.63 over 6,000 steps at S 100
    # without levelling (the last 1,000 still -0.019, 5x the excess).  That drift does not
    # depend on S_s, while the excess goes as 1/S_s: S_s = 50 halves drift/excess against
    # S_s = 100 (10.9 -> 5.3 there) and halves the phase's cost.  The BN switch's transient
    # is over within 25 steps, so the burn-in is 250.  K = 1,000, the loss every 25 steps.
    "fashion": Preset(
        name="fashion", batch_sizes=(100, 200, 500), lrs=(0.08, 0.2, 0.5), seeds=(0, 1),
        epochs=14, milestones=(7, 11), depth=8, width=8, augment=False, data="fashion_mnist",
        n_train=10000, n_test=None,
        estimate=EstimateSettings(examples=1000, probes=16, power_iters=10),
        stationary=StationarySettings(steps=1000, burn_in=250, record_every=25, n_blocks=20,
                                      eval_examples=1024, probes=16, power_iters=10,
                                      batch_size=50),
    ),
}


def get_preset(preset):
    """A :class:`Preset` from its name (``"paper"``, ``"short"``, ``"smoke"``, ``"fashion"``) or itself.

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
    from dnn.convnet.losses import LOSSES

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


def train_config(preset, spec, backend=None, data_dir=None):
    """The ``dnn.TrainConfig`` of one run (``data_dir``: where to look for the data first)."""
    import dnn

    p = get_preset(preset)
    kwargs = dict(batch_size=spec.batch_size, lr=spec.lr, epochs=p.epochs, depth=p.depth,
                  width=p.width, shortcut=p.shortcut, l2=p.l2, momentum=p.momentum,
                  milestones=tuple(p.milestones), lr_decay=p.lr_decay, loss=spec.loss,
                  augment=p.augment, seed=spec.seed, backend=backend, precision=p.precision,
                  data=p.data, n_train=p.n_train, n_test=p.n_test, data_dir=data_dir)
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
