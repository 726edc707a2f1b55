"""The paper's training recipe: ResNet on CIFAR-10 with SGD, resumable, with provenance.

Recipe (He et al. 2016 §4.2 as used by the paper): plain SGD (momentum 0, as the
theory assumes), the learning rate divided by 10 after 60 and 100 of 125
epochs, L2 1e-4, per-channel standardisation, pad-4 crop + flip augmentation,
loss ``"kld"``. Batch size and learning rate are required.

Conventions:

* **Epochs** are counted from 1 in files. A milestone ``m`` means "after m
  completed epochs": with milestones (60, 100) epochs 1–60 use η, 61–100 η/10,
  101–125 η/100.
* **Batches**: each epoch is a fresh permutation of the training set, drawn from
  ``numpy.random.default_rng([seed, epoch_index])``, cut into ``n_train // batch_size``
  full batches; the remainder (< one batch) is skipped that epoch, so every step
  has exactly ``batch_size`` examples (the S of the theory).
* **Train loss/accuracy** in the history are Keras' running means over the epoch,
  in training mode (batch-norm batch statistics, augmentation on); ``loss``
  includes the L2 penalty, ``data_loss`` does not. ``val_*`` are on the test set,
  inference mode, after the epoch.
* **Resume**: after every epoch the run folder gets a checkpoint holding all model
  variables (weights, BN statistics, the augmentation RNG state), the optimizer
  variables (step count, momentum) and the history. Rerunning the same command
  resumes from it; since batches are a function of (seed, epoch) and every
  random state is restored, the resumed history equals an uninterrupted one
  (bitwise on CPU, where XLA is deterministic).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import time
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from .. import _runio
from .backend import BACKENDS, import_keras, set_backend, to_numpy
from .data import channel_stats, load_cifar10, standardize, synthetic_cifar
from .fashion import class_balanced_indices, load_fashion_mnist
from .losses import check_loss
from .resnet import SHORTCUTS, check_depth

__all__ = ["TrainConfig", "train", "load_run", "LoadedRun", "read_run_json", "PRECISIONS",
           "DATA_SOURCES"]

PRECISIONS = ("float32", "mixed_bfloat16")
DATA_SOURCES = ("cifar10", "synthetic", "fashion_mnist")
# Synthetic train and test sets use fixed, different seeds: the same data for every
# training seed (the paper's seeds vary initialisation and batch order, not the data).
_SYNTH_TRAIN_SEED, _SYNTH_TEST_SEED = 1, 2
_FULL = {"cifar10": (50000, 10000), "synthetic": (50000, 10000), "fashion_mnist": (60000, 10000)}
# (image shape, augmentation pad) per source; why pad 2 for 28x28: dnn.convnet.data.augmentation.
_IMAGES = {"cifar10": ((32, 32, 3), 4), "synthetic": ((32, 32, 3), 4), "fashion_mnist": ((28, 28, 1), 2)}

RUN_JSON, HISTORY_JSON, HISTORY_CSV = "run.json", "history.json", "history.csv"
CHECKPOINT, WEIGHTS = "checkpoint.npz", "final.weights.h5"
HISTORY_COLUMNS = ("epoch", "lr", "loss", "data_loss", "accuracy", "val_loss", "val_data_loss",
                   "val_accuracy", "seconds", "train_seconds", "images_per_s")
_SCHEMA = 1


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the run folder stores it as ``run.json["config"]``).

    Parameters
    ----------
    batch_size : int
        Images per SGD step, S (≥ 1, ≤ number of training images).
    lr : float
        Learning rate η of epoch 1 (> 0).
    epochs : int
        Number of epochs (125 in the paper).
    depth, width : int
        ResNet depth (6n+2; 56 in the paper) and first-stage filters (16).
    shortcut : {"projection", "zero_pad"}
        See :func:`dnn.resnet`.
    l2 : float
        L2 coefficient λ on conv/dense kernels (1e-4).
    momentum : float
        Heavy-ball momentum μ in [0, 1); 0 = plain SGD, as the theory assumes.
    milestones : tuple of int
        Completed-epoch counts after which the learning rate is multiplied by
        ``lr_decay`` (60, 100); strictly increasing, ≥ 1.
    lr_decay : float
        Factor in (0, 1] applied at each milestone (0.1).
    loss : {"kld", "xent", "logit_grad"}
        See :mod:`dnn.convnet.losses`.
    augment : bool
        Random crop of the padded image (pad 4; 2 for Fashion-MNIST) + horizontal flip
        during training (see :func:`dnn.convnet.data.augmentation`).
    seed : int
        Seeds initialisation, batch order and augmentation (≥ 0).
    backend : {"jax", "tensorflow"} or None
        None: ``$KERAS_BACKEND``, else jax. :func:`train` stores the resolved name.
    precision : {"float32", "mixed_bfloat16"}
        Keras dtype policy; variables and logits stay float32 either way.
    data : {"cifar10", "synthetic", "fashion_mnist"}
        CIFAR-10 (:func:`dnn.load_cifar10`), :func:`dnn.synthetic_cifar`, or
        Fashion-MNIST (:func:`dnn.load_fashion_mnist`, 28×28×1; the model is built
        for the data's image shape).
    n_train, n_test : int or None
        Use the first n images of each split (None: all, 50,000 / 10,000;
        the synthetic set has the same default sizes). Fashion-MNIST (60,000 /
        10,000) takes a class-balanced training subset instead: the first n/10
        images of each class, in file order (:func:`dnn.convnet.fashion.class_balanced_indices`).
    data_dir : str or None
        Where the data set is (see the loaders). A location, not part of
        the run's identity: it may change between a run and its resumption.
    """

    batch_size: int
    lr: float
    epochs: int = 125
    depth: int = 56
    width: int = 16
    shortcut: str = "projection"
    l2: float = 1e-4
    momentum: float = 0.0
    milestones: tuple = (60, 100)
    lr_decay: float = 0.1
    loss: str = "kld"
    augment: bool = True
    seed: int = 0
    backend: Optional[str] = None
    precision: str = "float32"
    data: str = "cifar10"
    n_train: Optional[int] = None
    n_test: Optional[int] = None
    data_dir: Optional[str] = None

    def __post_init__(self):
        def bad(name, want):
            raise ValueError(f"{name} must be {want}; got {getattr(self, name)!r}")

        if not _is_int(self.batch_size) or self.batch_size < 1:
            bad("batch_size", "an integer >= 1")
        if not _is_real(self.lr) or not math.isfinite(self.lr) or self.lr <= 0:
            bad("lr", "a finite number > 0")
        if not _is_int(self.epochs) or self.epochs < 1:
            bad("epochs", "an integer >= 1")
        check_depth(self.depth)
        if not _is_int(self.width) or self.width < 1:
            bad("width", "an integer >= 1")
        if self.shortcut not in SHORTCUTS:
            bad("shortcut", f"one of {SHORTCUTS}")
        if not _is_real(self.l2) or not math.isfinite(self.l2) or self.l2 < 0:
            bad("l2", "a finite number >= 0")
        if not _is_real(self.momentum) or not 0 <= self.momentum < 1:
            bad("momentum", "a number in [0, 1)")
        try:
            ms = tuple(self.milestones)
        except TypeError:
            bad("milestones", "a sequence of integers")
        if not all(_is_int(m) and m >= 1 for m in ms) or any(b <= a for a, b in zip(ms, ms[1:])):
            bad("milestones", "strictly increasing integers >= 1")
        object.__setattr__(self, "milestones", tuple(int(m) for m in ms))
        if not _is_real(self.lr_decay) or not 0 < self.lr_decay <= 1:
            bad("lr_decay", "a number in (0, 1]")
        check_loss(self.loss)
        if not isinstance(self.augment, bool):
            # TypeError, not coercion: bool("False") is True.
            raise TypeError(f"augment must be True or False; got {self.augment!r}")
        if not _is_int(self.seed) or self.seed < 0:
            bad("seed", "an integer >= 0")
        if self.backend is not None and self.backend not in BACKENDS:
            bad("backend", f"one of {BACKENDS} or None")
        if self.precision not in PRECISIONS:
            bad("precision", f"one of {PRECISIONS}")
        if self.data not in DATA_SOURCES:
            bad("data", f"one of {DATA_SOURCES}")
        full = _FULL[self.data]
        for name, cap in (("n_train", full[0]), ("n_test", full[1])):
            v = getattr(self, name)
            capped = self.data != "synthetic"
            if v is not None and (not _is_int(v) or v < 1 or (capped and v > cap)):
                bad(name, f"None or an integer in [1, {cap}] for data={self.data!r}" if capped
                    else "None or an integer >= 1")
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", str(self.data_dir))
        if self.batch_size > self.train_size:
            raise ValueError(f"batch_size must be <= the number of training images ({self.train_size}); "
                             f"got {self.batch_size}")

    @property
    def train_size(self):
        """Number of training images the run uses."""
        return self.n_train if self.n_train is not None else _FULL[self.data][0]

    @property
    def test_size(self):
        """Number of test images the run evaluates on."""
        return self.n_test if self.n_test is not None else _FULL[self.data][1]

    def lr_at(self, epoch):
        """Learning rate of the 0-based ``epoch``: ``lr · lr_decay^(number of milestones ≤ epoch)``."""
        return float(self.lr * self.lr_decay ** sum(epoch >= m for m in self.milestones))

    def to_dict(self):
        """A JSON-ready dict of all fields."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; known keys are {sorted(names)}")
        return cls(**d)


# --------------------------------------------------------------------------- data


class _Data(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def _prepare_data(config):
    """Standardised float32 train/test images and int64 labels, as :func:`train` sees them."""
    if config.data in ("cifar10", "fashion_mnist"):
        load = load_cifar10 if config.data == "cifar10" else load_fashion_mnist
        (x_tr, y_tr), (x_te, y_te) = load(config.data_dir)
        keep = (slice(config.train_size) if config.data == "cifar10" or config.train_size >= len(y_tr)
                else class_balanced_indices(y_tr, config.train_size))
        x_tr, y_tr = x_tr[keep], y_tr[keep]
        x_te, y_te = x_te[: config.test_size], y_te[: config.test_size]
    else:
        x_tr, y_tr = synthetic_cifar(config.train_size, seed=_SYNTH_TRAIN_SEED)
        x_te, y_te = synthetic_cifar(config.test_size, seed=_SYNTH_TEST_SEED)
    mean, std = channel_stats(x_tr)
    return _Data(standardize(x_tr, mean, std), y_tr, standardize(x_te, mean, std), y_te, mean, std)


def _batches(x, y, batch_size, seed, start_epoch, epochs):
    """All training batches from ``start_epoch`` on, in order: a pure function of (seed, epoch)."""
    steps = len(x) // batch_size
    for epoch in range(start_epoch, epochs):
        perm = np.random.default_rng([seed, epoch]).permutation(len(x))
        for s in range(steps):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            yield x[idx], y[idx]


def _one_hot(y, k=10):
    return np.eye(k, dtype=np.float32)[y]


# --------------------------------------------------------------------------- model


class _policy:
    """Temporarily set the global Keras dtype policy (model construction reads it)."""

    def __init__(self, keras, name):
        self.keras, self.name = keras, name

    def __enter__(self):
        self.old = self.keras.config.dtype_policy()
        self.keras.config.set_dtype_policy(self.name)

    def __exit__(self, *exc):
        self.keras.config.set_dtype_policy(self.old)
        return False


def _build(config, keras, *, for_training, fill=0.0):
    """The ResNet and, for training, it behind the augmentation (padding with ``fill``)."""
    from .resnet import resnet

    shape, pad = _IMAGES[config.data]
    with _policy(keras, config.precision if for_training else "float32"):
        net = resnet(config.depth, shortcut=config.shortcut, l2=config.l2, width=config.width,
                     seed=config.seed, input_shape=shape)
        if not for_training:
            return net, net
        inputs = keras.Input(shape=shape, name="image")
        x = inputs
        if config.augment:
            from .data import augmentation

            x = augmentation(seed=config.seed, pad=pad, fill=fill)(x)
        model = keras.Model(inputs, net(x), name="train_model")
    return net, model


# --------------------------------------------------------------------------- checkpoints


def _save_checkpoint(path, model, meta):
    arrays = {f"model_{i}": to_numpy(v) for i, v in enumerate(model.variables)}
    arrays.update({f"opt_{i}": to_numpy(v) for i, v in enumerate(model.optimizer.variables)})
    arrays["meta"] = np.array(json.dumps(_runio._jsonable(meta)))
    with _runio.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            # Like the JSON files: on disk before the rename, so a crash cannot leave a
            # checkpoint.npz that names complete but holds nothing.
            f.flush()
            os.fsync(f.fileno())


def _load_checkpoint(path, model):
    try:
        return _read_checkpoint(path, model)
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise _runio.RunFileError(path, f"checkpoint is unreadable or incomplete "
                                  f"({type(exc).__name__}: {exc})", _DELETE_CHECKPOINT) from None
    except ValueError as exc:
        if isinstance(exc, _runio.RunFileError) or str(exc).startswith(str(path)):
            raise
        raise _runio.RunFileError(path, f"checkpoint is unreadable or incomplete ({exc})",
                                  _DELETE_CHECKPOINT) from None


_DELETE_CHECKPOINT = ("delete it and rerun the same train command: the run restarts from "
                      "epoch 1 (the files hold nothing else to resume from)")


def _read_checkpoint(path, model):
    with np.load(path, allow_pickle=False) as ck:
        meta = json.loads(str(ck["meta"]))
        if not isinstance(meta, dict) or not {"config", "epochs_completed", "history"} <= set(meta):
            raise _runio.RunFileError(path, "checkpoint metadata lacks config/epochs_completed/"
                                      "history", _DELETE_CHECKPOINT)
        for prefix, variables in (("model", model.variables), ("opt", model.optimizer.variables)):
            n = sum(1 for k in ck.files if k.startswith(prefix + "_"))
            if n != len(variables):
                raise ValueError(f"{path}: checkpoint holds {n} {prefix} variables, the model has "
                                 f"{len(variables)}; it does not belong to this configuration")
            for i, v in enumerate(variables):
                a = ck[f"{prefix}_{i}"]
                if tuple(a.shape) != tuple(v.shape):
                    raise ValueError(f"{path}: {prefix} variable {i} ({v.path}) has shape {tuple(v.shape)}, "
                                     f"checkpoint has {a.shape}")
                v.assign(a)
    return meta


def _same_config(saved, config, where):
    a, b = saved.to_dict(), config.to_dict()
    a.pop("data_dir"), b.pop("data_dir")
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    if diff:
        detail = "; ".join(f"{k}: saved {s!r}, given {g!r}" for k, (s, g) in diff.items())
        raise ValueError(f"{where} holds a run with a different config ({detail}); "
                         f"use a new run_dir, or rerun with the saved config to resume")


# --------------------------------------------------------------------------- train


def train(config, run_dir, *, quiet=False, _callbacks=()):
    """Train (or resume, or return) the run ``config`` in the folder ``run_dir``.

    Files in ``run_dir`` (all written atomically):

    * ``run.json``: ``config`` (backend resolved), ``status`` ("running" until the
      end, then "completed" or "diverged"), ``epochs_completed``, ``diverged_epoch``,
      ``final`` (last history row), ``data`` (source, sizes, standardisation mean/std),
      ``n_params``, ``versions``, ``backend``, ``device``, ``git_commit``, ``git_dirty``,
      ``wall_time_s`` (all sessions), ``sessions`` and ``files``;
    * ``history.json`` (``{"columns": [...], "epochs": [row, ...]}``) and ``history.csv``,
      one row per epoch with :data:`HISTORY_COLUMNS`, rewritten after every epoch;
    * ``checkpoint.npz`` after every finite epoch; ``final.weights.h5`` (Keras weights
      of the ResNet, without the augmentation layer) when training completes.

    Parameters
    ----------
    config : TrainConfig
    run_dir : str or path-like
        Created if missing. If it holds ``run.json`` the config must match
        (``data_dir`` excepted); a completed or diverged run is returned as is, an
        unfinished one resumes after its last checkpointed epoch.
    quiet : bool
        No progress bars.

    Returns
    -------
    dict
        The contents of ``run.json``.

    A ``completed`` run whose ``final.weights.h5`` is missing or unreadable is not
    returned as is: the weights are rebuilt from ``checkpoint.npz`` (which holds every
    variable after the last epoch) without training, and ``run.json`` records
    ``weights_restored_from_checkpoint``.  Leftover ``.*.tmp`` files of a killed
    write are removed when the folder is opened.  The folder is created only once
    the data has loaded, so a missing or corrupt data set leaves nothing behind.

    Raises
    ------
    ValueError
        Config differs from the one saved in ``run_dir``; backend conflicts with an
        already-imported keras; batch size larger than the training set; ``run_dir``
        (or a parent) is a file.
    TypeError
        ``config`` is not a TrainConfig, or ``quiet`` is not a bool.
    dnn.RunFileError
        ``run.json`` or ``checkpoint.npz`` is corrupt, or the final weights are lost
        with no checkpoint to rebuild them from (a ValueError; the message names the
        file and what to delete).
    dnn.DataError
        The data set (CIFAR-10 or Fashion-MNIST) is missing or corrupt.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    if not isinstance(quiet, bool):
        raise TypeError(f"quiet must be True or False; got {quiet!r}")
    t_start = time.perf_counter()
    started = _runio.utc_now()
    backend = set_backend(config.backend)
    config = dataclasses.replace(config, backend=backend)
    run_dir = _runio.check_output_dir(run_dir, "run_dir")
    _runio.remove_stale_temps(run_dir)      # leftovers of a killed write are never read
    run_path = run_dir / RUN_JSON
    previous = None
    if run_path.exists():
        previous = read_run_json(run_dir)
        _same_config(TrainConfig.from_dict(previous["config"]), config, str(run_dir))
        status = previous.get("status")
        if status == "diverged":
            return previous
        if status == "completed":
            if _weights_readable(run_dir / WEIGHTS):
                return previous
            # Final weights deleted or corrupt: rebuild them from the last checkpoint
            # below (it holds every variable after the last epoch), never a dead end.
            if not (run_dir / CHECKPOINT).exists():
                raise _runio.RunFileError(
                    run_dir / WEIGHTS, "missing or unreadable, and there is no "
                    f"{CHECKPOINT} to restore it from", f"delete {run_dir} and rerun train to "
                    "retrain the run")

    # Data first (numpy only): a missing or corrupt data set fails before keras is imported.
    data = _prepare_data(config)
    if config.batch_size > len(data.x_train):  # TrainConfig checks this too; data is the final word
        raise ValueError(f"batch_size must be <= the number of training images ({len(data.x_train)}); "
                         f"got {config.batch_size}")
    keras = import_keras()
    from . import _callbacks as cb
    from .losses import get_loss, keras_loss

    # Only now, with the data loaded: a missing or corrupt data set leaves no empty folder.
    run_dir.mkdir(parents=True, exist_ok=True)
    y_train, y_test = _one_hot(data.y_train), _one_hot(data.y_test)

    # Every random draw is seeded explicitly (weights, batch order, augmentation), so no
    # global seeding is needed (keras.utils.set_random_seed would also import TensorFlow).
    # Fashion-MNIST pads with its black background (raw 0), CIFAR-10 with the mean (0).
    fill = float(-data.mean[0] / data.std[0]) if config.data == "fashion_mnist" else 0.0
    net, model = _build(config, keras, for_training=True, fill=fill)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum),
        loss=keras_loss(config.loss),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                 keras.metrics.MeanMetricWrapper(get_loss(config.loss), name="data_loss")],
    )
    model.optimizer.build(model.trainable_variables)

    history, start_epoch = [], 0
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists():
        meta = _load_checkpoint(ckpt_path, model)
        _same_config(TrainConfig.from_dict(meta["config"]), config, str(ckpt_path))
        history, start_epoch = meta["history"], int(meta["epochs_completed"])

    info = {
        "schema": _SCHEMA,
        "kind": "dnn.train",
        "status": "running",
        "config": config.to_dict(),
        "epochs_completed": start_epoch,
        "diverged_epoch": None,
        "final": history[-1] if history else None,
        "data": {"source": config.data, "n_train": int(len(data.x_train)), "n_test": int(len(data.x_test)),
                 "input_shape": list(_IMAGES[config.data][0]),
                 "subset": ("first n_train/10 of each class, in file order"
                            if config.data == "fashion_mnist" else "first n_train"),
                 "standardize": "per channel, (x - mean) / std, training-set statistics",
                 "mean": data.mean.tolist(), "std": data.std.tolist(),
                 "augment": ({"pad": _IMAGES[config.data][1], "flip": True, "fill": fill}
                             if config.augment else None),
                 "steps_per_epoch": len(data.x_train) // config.batch_size,
                 "shuffle": "numpy.random.default_rng([seed, epoch_index]).permutation, remainder dropped"},
        "n_params": {"trainable": int(sum(np.prod(v.shape) for v in net.trainable_variables)),
                     "non_trainable": int(sum(np.prod(v.shape) for v in net.non_trainable_variables))},
        **{k: v for k, v in _runio.provenance(backend).items()},
        "wall_time_s": (previous or {}).get("wall_time_s", 0.0),
        "sessions": (previous or {}).get("sessions", []),
        "files": {"history_json": HISTORY_JSON, "history_csv": HISTORY_CSV, "checkpoint": CHECKPOINT,
                  "weights": WEIGHTS},
    }
    session = {"started": started, "start_epoch": start_epoch}

    def write_run(**updates):
        info.update(updates)
        info["wall_time_s"] = (previous or {}).get("wall_time_s", 0.0) + (time.perf_counter() - t_start)
        session.update(ended=_runio.utc_now(), end_epoch=info["epochs_completed"])
        info["sessions"] = (previous or {}).get("sessions", []) + [dict(session)]
        _runio.atomic_write_json(run_path, info)

    write_run()
    steps = len(data.x_train) // config.batch_size
    nan_cb = cb.StopOnNaN()

    def on_epoch(epoch, logs, timing):
        row = {"epoch": epoch + 1, "lr": config.lr_at(epoch)}
        for k in HISTORY_COLUMNS[2:8]:
            row[k] = float(logs[k]) if k in logs else None
        row.update(seconds=timing["seconds"], train_seconds=timing["train_seconds"],
                   images_per_s=steps * config.batch_size / max(timing["train_seconds"], 1e-12))
        history.append(row)
        diverged = nan_cb.diverged_epoch is not None or not math.isfinite(row["loss"])
        if diverged:
            nan_cb.diverged_epoch = epoch if nan_cb.diverged_epoch is None else nan_cb.diverged_epoch
            model.stop_training = True
        else:
            # Checkpoint first: it carries the history, so a crash between the two writes loses nothing.
            _save_checkpoint(ckpt_path, model, {"config": config.to_dict(), "epochs_completed": epoch + 1,
                                                "history": history})
        _runio.atomic_write_json(run_dir / HISTORY_JSON, {"columns": list(HISTORY_COLUMNS), "epochs": history})
        _runio.atomic_write_csv(run_dir / HISTORY_CSV, history, HISTORY_COLUMNS)
        write_run(epochs_completed=epoch + 1, final=row)

    callbacks = [keras.callbacks.LearningRateScheduler(lambda epoch, lr: config.lr_at(epoch)), nan_cb]
    if not quiet:
        callbacks.append(cb.Progress(config.epochs, steps))
    callbacks += [cb.EpochRecorder(on_epoch), *_callbacks]

    if start_epoch < config.epochs:
        try:
            model.fit(
                _batches(data.x_train, y_train, config.batch_size, config.seed, start_epoch, config.epochs),
                steps_per_epoch=steps,
                epochs=config.epochs,
                initial_epoch=start_epoch,
                validation_data=(data.x_test, y_test),
                validation_batch_size=min(len(data.x_test), 1000),
                callbacks=callbacks,
                shuffle=False,  # batches are already shuffled, reproducibly, by _batches
                verbose=0,
            )
        except BaseException as exc:
            # Status stays "running": the folder is resumable from its last checkpoint.
            write_run(interrupted={"at": _runio.utc_now(), "error": f"{type(exc).__name__}: {exc}"})
            raise

    if nan_cb.diverged_epoch is not None:
        write_run(status="diverged", diverged_epoch=nan_cb.diverged_epoch + 1,
                  diverged_batch=nan_cb.diverged_batch)
        return info
    with _runio.atomic_path(run_dir / WEIGHTS, suffix=".weights.h5") as tmp:
        net.save_weights(str(tmp))
    info.pop("interrupted", None)
    if previous is not None and previous.get("status") == "completed":
        info["weights_restored_from_checkpoint"] = _runio.utc_now()
    write_run(status="completed")
    return info


def read_run_json(run_dir):
    """``run_dir/run.json`` as a dict with a ``config`` mapping, or :class:`dnn.RunFileError`."""
    path = Path(run_dir) / RUN_JSON
    fix = (f"delete it and rerun the same train command (it resumes from {CHECKPOINT} "
           "if there is one)")
    info = _runio.read_json(path, fix=fix)
    if not isinstance(info, dict):
        raise _runio.RunFileError(path, f"expected a JSON object, got {type(info).__name__}", fix)
    if not isinstance(info.get("config"), dict):
        raise _runio.RunFileError(path, "has no 'config' object", fix)
    try:
        TrainConfig.from_dict(info["config"])
    except (TypeError, ValueError) as exc:
        raise _runio.RunFileError(path, f"its config is invalid ({exc})", fix) from None
    return info


def _weights_readable(path):
    """True if ``path`` is an HDF5 file that opens (a truncated one does not)."""
    if not path.is_file():
        return False
    try:
        import h5py

        with h5py.File(path, "r"):
            return True
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- load


class LoadedRun(NamedTuple):
    """A finished run: its config, the ResNet with final weights, and its standardised data.

    ``train`` and ``test`` are ``(x, y)``: x float32 (N, H, W, C) standardised with
    the training statistics exactly as in training (no augmentation), y int64 (N,).
    The model is built in float32 whatever the training precision.
    """

    config: TrainConfig
    model: object
    train: tuple
    test: tuple

    @property
    def x_train(self):
        return self.train[0]

    @property
    def y_train(self):
        return self.train[1]

    @property
    def x_test(self):
        return self.test[0]

    @property
    def y_test(self):
        return self.test[1]


def load_run(run_dir):
    """Load a completed run written by :func:`train`.

    Uses the current Keras backend (weights files are backend-independent), so a
    run trained with one backend can be measured with the other.

    Raises
    ------
    ValueError
        ``run_dir`` is missing, not a directory or has no ``run.json``, or the run did
        not complete (diverged or unfinished).
    dnn.RunFileError
        ``run.json`` or ``final.weights.h5`` is corrupt or the weights are missing (the
        message names the file and says how to restore it).
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ValueError(f"run_dir: {run_dir} does not exist; train a run there first")
    if not run_dir.is_dir():
        raise ValueError(f"run_dir: {run_dir} is not a directory")
    path = run_dir / RUN_JSON
    if not path.exists():
        raise ValueError(f"run_dir {str(run_dir)!r} has no {RUN_JSON}; train a run there first")
    info = read_run_json(run_dir)
    config = TrainConfig.from_dict(info["config"])
    status = info.get("status")
    if status != "completed":
        extra = f" at epoch {info.get('diverged_epoch')}" if status == "diverged" else ""
        fix = ("it cannot be measured; train a new run with a smaller lr" if status == "diverged"
               else "rerun the same train command to finish it")
        raise ValueError(f"run in {str(run_dir)!r} is {status!r}{extra}, not 'completed'; {fix}")
    weights = run_dir / WEIGHTS
    if not _weights_readable(weights):
        state = "is missing" if not weights.exists() else "is unreadable (truncated or corrupt)"
        raise _runio.RunFileError(weights, f"the run is 'completed' but its final weights {state}",
                                  f"rerun the same train command to restore them from {CHECKPOINT}")
    keras = import_keras()
    net, _ = _build(config, keras, for_training=False)
    try:
        net.load_weights(str(weights))
    except (OSError, ValueError, KeyError) as exc:
        raise _runio.RunFileError(weights, f"cannot load the final weights ({type(exc).__name__}: "
                                  f"{exc})", f"delete it and rerun the same train command to "
                                  f"restore it from {CHECKPOINT}") from None
    data = _prepare_data(config)
    return LoadedRun(config, net, (data.x_train, data.y_train), (data.x_test, data.y_test))
