"""Stationary phase: plain SGD at a fixed learning rate around a trained network.

After training, SGD is continued at a fixed learning rate η_s and batch size S
for K steps, and the training loss is recorded at regular intervals together
with the Polyak average θ̄ of the iterates.  :mod:`validation.stationary` turns
the raw record into the observed stationary excess loss and compares it with
theory; this module only runs SGD and measures losses.

Conventions
-----------
* **Batch norm frozen.** Every forward pass (the SGD steps and the loss
  measurements) runs batch norm in inference mode, with the running statistics
  of the end of training.  The loss is then a fixed function of θ (in training
  mode it would depend on the other examples of the batch), which is what the
  stationary theory describes.  BN's γ and β remain trainable.
* **Plain SGD** (momentum 0, no augmentation): θ_{k+1} = θ_k − η_s ĝ_k, with ĝ_k
  the mean gradient of the training objective (data loss + L2 penalty) over a
  batch of S examples drawn **i.i.d. with replacement** from the (un-augmented)
  training set, so that Cov(ĝ) = Σ/S exactly (c_S = 1/S).
* **Loss** L(θ): the same objective, evaluated on a fixed evaluation subset of
  the training set (all of it if it is small enough).
* **Averages.** After ``burn_in`` steps, the K recorded steps are cut into B
  contiguous blocks; the running mean of the iterates over each block is kept on
  the device (inside the optimizer, as Keras keeps EMA weights), giving block
  averages θ̄_b and θ̄ = mean_b θ̄_b.  L(θ̄_b) and L(θ̄) are measured at the end.

Backend-agnostic: a wrapper model forcing ``training=False`` and a Keras
optimizer subclass whose update step (SGD plus the running mean of the iterates)
is written in ``keras.ops``, trained with ``train_on_batch``; the same code runs
on the JAX and TensorFlow backends (tests check both on an explicit quadratic).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._validate import int_at_least, positive_float

__all__ = ["stationary_phase", "sgd_stationary", "load_for_stationary", "measure_at_mean",
           "final_lr", "StationaryRun", "SAMPLER"]

#: How the stationary phase draws minibatches (matches ``theory`` with ``replacement=True``).
SAMPLER = "iid_with_replacement"


_CLASSES = {}


def _classes(keras):
    """The wrapper model and averaging optimizer, built once per process (keras is lazy)."""
    if _CLASSES:
        return _CLASSES["model"], _CLASSES["opt"]
    ops = keras.ops

    class InferenceModeModel(keras.Model):
        """Calls ``inner`` with ``training=False`` always: BN uses running statistics.

        Gradients still flow to every trainable variable of ``inner`` (γ, β
        included); the running statistics are never updated.
        """

        def __init__(self, inner, **kwargs):
            super().__init__(**kwargs)
            self.inner = inner

        def call(self, x, training=False):
            return self.inner(x, training=False)

    class AveragingSGD(keras.optimizers.Optimizer):
        """Plain SGD that also keeps the running mean of the iterates since ``iterations`` was 0.

        avg ← avg + (θ_new − avg)/(t + 1), with t = ``iterations`` before the step;
        setting ``iterations`` to 0 starts a new average.  Written in keras.ops, so
        it runs inside the compiled train step on every backend.
        """

        def __init__(self, learning_rate, **kwargs):
            super().__init__(learning_rate=learning_rate, name="averaging_sgd", **kwargs)

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self.averages = [self.add_variable_from_reference(v, name="average")
                             for v in variables]

        def update_step(self, gradient, variable, learning_rate):
            lr = ops.cast(learning_rate, variable.dtype)
            new = ops.subtract(variable, ops.multiply(ops.cast(gradient, variable.dtype), lr))
            self.assign(variable, new)
            avg = self.averages[self._get_variable_index(variable)]
            count = ops.cast(self.iterations + 1, variable.dtype)
            self.assign(avg, ops.add(avg, ops.divide(ops.subtract(new, avg), count)))

    _CLASSES["model"], _CLASSES["opt"] = InferenceModeModel, AveragingSGD
    return InferenceModeModel, AveragingSGD


def _chunks(n, max_chunk):
    k = max(1, math.ceil(n / max_chunk))
    # near-equal chunks: at most two distinct shapes, hence at most two compilations
    return np.array_split(np.arange(n), k)


def sgd_stationary(model, x, y, loss, *, lr, batch_size, steps, burn_in=None, eval_x=None,
                   eval_y=None, record_every=10, n_blocks=20, eval_batch=1024, seed=0,
                   quiet=True):
    r"""Run plain SGD at fixed η from ``model``'s weights and record the stationary phase.

    This is the backend-agnostic core used for every model, from the explicit
    quadratic of the tests to ResNet-56.  See the module docstring for the
    conventions (BN frozen, i.i.d. minibatches with replacement, averages).

    Parameters
    ----------
    model : keras.Model
        A built model; modified in place, and left holding θ̄ on return.
    x, y : array_like
        Training data (the finite sum SGD samples from).
    loss : callable
        ``loss(y_true, y_pred) -> (batch,)`` per-example data loss in ``keras.ops``;
        regularisation losses of ``model`` are added by Keras.
    lr : float
        η_s > 0.
    batch_size : int
        S, 1 <= S.
    steps : int
        K, the recorded steps; rounded up to a multiple of ``n_blocks * record_every``.
    burn_in : int, optional
        Steps run before recording; default ``steps // 4``.
    eval_x, eval_y : array_like, optional
        Evaluation subset on which L is measured; default the training data.
    record_every : int
        Steps between recorded losses.
    n_blocks : int
        B >= 2 blocks for the block averages and batch means.
    eval_batch : int
        Largest chunk of the evaluation subset per forward pass.
    seed : int
        Seed of the minibatch draws.
    quiet : bool
        Silence the progress bar.

    Returns
    -------
    dict
        ``status`` ("completed" or "diverged"), ``losses`` (recorded L(θ_k)),
        ``record_steps``, ``loss_at_start``, ``block_losses`` (L(θ̄_b)),
        ``loss_at_mean`` (L(θ̄)), ``mean_weights`` (θ̄ as a list of float32 arrays,
        one per trainable variable), and the settings (``lr``, ``batch_size``,
        ``steps``, ``burn_in``, ``record_every``, ``n_blocks``, ``eval_examples``,
        ``n_data``, ``replacement``, ``sampler``, ``seed``, ``wall_time_s``).
    """
    from .backend import import_keras

    keras = import_keras()
    lr = positive_float(lr, "lr")
    x = np.asarray(x)
    y = np.asarray(y)
    n = int_at_least(len(x), "number of training examples", 1)
    if len(y) != n:
        raise ValueError(f"x and y must have the same length; got {n} and {len(y)}")
    s = int_at_least(batch_size, "batch_size", 1)
    steps = int_at_least(steps, "steps", 1)
    record_every = int_at_least(record_every, "record_every", 1)
    n_blocks = int_at_least(n_blocks, "n_blocks", 2)
    burn_in = steps // 4 if burn_in is None else int_at_least(burn_in, "burn_in", 0)
    eval_batch = int_at_least(eval_batch, "eval_batch", 1)
    if eval_x is None:
        eval_x, eval_y = x, y
    eval_x = np.asarray(eval_x)
    eval_y = np.asarray(eval_y)
    if len(eval_x) == 0 or len(eval_x) != len(eval_y):
        raise ValueError(f"eval_x and eval_y must be non-empty and of equal length; got "
                         f"{len(eval_x)} and {len(eval_y)}")
    # Whole blocks of whole recording intervals, so batch means line up with θ̄_b.
    unit = n_blocks * record_every
    steps = unit * math.ceil(steps / unit)
    block_len = steps // n_blocks

    Wrapper, AveragingSGD = _classes(keras)
    wrapped = Wrapper(model)
    opt = AveragingSGD(lr)
    wrapped.compile(optimizer=opt, loss=loss, jit_compile="auto")
    variables = wrapped.trainable_variables
    ops = keras.ops
    # Device-resident evaluation chunks: they are reused at every record.
    eval_chunks = [(ops.convert_to_tensor(eval_x[idx]), ops.convert_to_tensor(eval_y[idx]),
                    len(idx)) for idx in _chunks(len(eval_x), eval_batch)]

    def eval_loss():
        tot = 0.0
        for xe, ye, m in eval_chunks:
            tot += m * float(wrapped.test_on_batch(xe, ye, return_dict=True)["loss"])
        return tot / len(eval_x)

    def set_weights(ws):
        for v, w in zip(variables, ws):
            v.assign(w)

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    losses, record_steps, block_means = [], [], []
    status = "completed"
    loss_at_start = eval_loss()
    total = burn_in + steps
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        tqdm = None
    bar = tqdm(total=total, desc="stationary SGD", disable=quiet, leave=False) if tqdm else None
    try:
        for k in range(total):
            if k >= burn_in and (k - burn_in) % block_len == 0:
                # start of a block: restart the on-device running mean
                opt.iterations.assign(0)
            idx = rng.integers(0, n, size=s)
            batch_loss = float(wrapped.train_on_batch(x[idx], y[idx], return_dict=True)["loss"])
            if not math.isfinite(batch_loss):
                status = "diverged"
                break
            done = k + 1 - burn_in
            if done > 0 and done % record_every == 0:
                value = eval_loss()
                if not math.isfinite(value):
                    status = "diverged"
                    break
                losses.append(value)
                record_steps.append(k + 1)
            if done > 0 and done % block_len == 0:
                block_means.append([np.array(ops.convert_to_numpy(a.value), dtype=np.float64)
                                    for a in opt.averages])
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    out = {
        "status": status, "lr": lr, "batch_size": s, "steps": steps, "burn_in": burn_in,
        "record_every": record_every, "n_blocks": n_blocks, "eval_examples": int(len(eval_x)),
        "n_data": n, "replacement": True, "sampler": SAMPLER, "seed": int(seed),
        "loss_at_start": loss_at_start, "record_steps": record_steps, "losses": losses,
        "block_losses": [], "loss_at_mean": None, "mean_weights": None,
    }
    if status == "completed":
        block_losses = []
        for wb in block_means:
            set_weights([w.astype(np.float32) for w in wb])
            block_losses.append(eval_loss())
        mean = [np.mean([wb[i] for wb in block_means], axis=0).astype(np.float32)
                for i in range(len(variables))]
        set_weights(mean)
        out["block_losses"] = block_losses
        out["loss_at_mean"] = eval_loss()
        out["mean_weights"] = mean
    out["wall_time_s"] = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------ trained runs

@dataclass(frozen=True)
class StationaryRun:
    """What the stationary phase needs from a trained run."""

    config: object        # dnn.TrainConfig
    model: object         # keras.Model with the run's final weights (then θ̄)
    train: tuple          # (x float32 standardised, y int labels)
    run_dir: Path | None  # the run folder, when loaded from one


def load_for_stationary(run):
    """A trained run as a :class:`StationaryRun`; ``run`` is a folder or a loaded run.

    Accepts a path, a :class:`StationaryRun`, or whatever :func:`dnn.train.load_run`
    returns (an object with ``config``, ``model`` and ``train``, or the
    equivalent tuple).
    """
    if isinstance(run, StationaryRun):
        return run
    run_dir = None
    if isinstance(run, (str, Path)):
        from .train import load_run

        run_dir = Path(run)
        run = load_run(run_dir)
    if isinstance(run, tuple) and not hasattr(run, "config"):
        config, model, train = run[0], run[1], run[2]
    else:
        config, model, train = run.config, run.model, run.train
        run_dir = getattr(run, "run_dir", run_dir)
    return StationaryRun(config, model, (np.asarray(train[0]), np.asarray(train[1])),
                         None if run_dir is None else Path(run_dir))


def final_lr(config):
    """The learning rate of the schedule's last epoch, ``config.lr_at(config.epochs - 1)``."""
    return float(config.lr_at(config.epochs - 1))


def _one_hot(y, k):
    out = np.zeros((len(y), k), np.float32)
    out[np.arange(len(y)), np.asarray(y, dtype=np.int64)] = 1.0
    return out


def stationary_phase(run, *, lr=None, steps=2000, burn_in=None, eval_examples=2048,
                     record_every=10, n_blocks=20, eval_batch=1024, seed=0, quiet=True):
    """Stationary phase of a trained run: plain SGD at η_s from its final weights.

    Continues SGD with momentum 0 at the fixed learning rate η_s and the run's
    batch size for ``steps`` recorded steps (after ``burn_in``), with batch norm
    frozen in inference mode for the SGD steps and for the measurements, so the
    loss is a fixed function of θ.  The training loss (data loss + L2 penalty,
    on the first ``eval_examples`` training examples, the subset
    ``dnn.estimate_run`` uses) is recorded every ``record_every`` steps, and the
    Polyak average θ̄ of the iterates is formed in ``n_blocks`` blocks.  See
    :func:`sgd_stationary` for the returned raw record; statistics live in
    :mod:`validation.stationary`.

    Parameters
    ----------
    run : path or loaded run
        A ``dnn.train`` run folder, or the result of ``dnn.load_run``.
    lr : float, optional
        η_s; default the schedule's final learning rate.
    steps : int
        K recorded steps (rounded up to a multiple of ``n_blocks * record_every``).
    burn_in : int, optional
        Steps before recording (default ``steps // 4``): the switch from training-
        to inference-mode BN moves the minimum slightly.
    eval_examples : int
        Size of the fixed evaluation subset (clamped to the training set).
    record_every, n_blocks, eval_batch, seed, quiet
        As in :func:`sgd_stationary`.

    Returns
    -------
    dict
        :func:`sgd_stationary`'s record plus ``loss_name``, ``precision`` and
        ``lr_source`` ("final schedule LR" or "given").  The loaded model is left
        holding θ̄ (use :func:`measure_at_mean` next).
    """
    run = load_for_stationary(run)
    config, model, (x, y) = run.config, run.model, run.train
    from .losses import get_loss

    lr_source = "given"
    if lr is None:
        lr = final_lr(config)
        lr_source = "final schedule LR"
    m = min(int_at_least(eval_examples, "eval_examples", 1), len(x))
    k = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else int(y.max()) + 1
    y1 = _one_hot(y, k)
    out = sgd_stationary(model, x, y1, get_loss(config.loss), lr=lr,
                         batch_size=config.batch_size, steps=steps, burn_in=burn_in,
                         eval_x=x[:m], eval_y=y1[:m], record_every=record_every,
                         n_blocks=n_blocks, eval_batch=eval_batch, seed=seed, quiet=quiet)
    out.update(loss_name=config.loss, precision=getattr(config, "precision", "float32"),
               lr_source=lr_source)
    return out


def measure_at_mean(run, phase, *, examples=None, probes=None, batch_size=256, power_iters=20,
                    seed=0, quiet=True):
    """tr Σ, tr H (± SE), L2 trace and λ_max at θ̄ via ``dnn.measure``.

    ``run`` must be the loaded run whose model :func:`stationary_phase` left at
    θ̄ (the weights are re-assigned from ``phase["mean_weights"]`` to be sure).
    Measured on the first ``examples`` training examples (default: the phase's
    evaluation subset), with ``probes`` Hutchinson probes (default: at least 32,
    so that tr H has a usable SE even on a small subset).
    """
    from .measure import measure

    run = load_for_stationary(run)
    config, model, (x, y) = run.config, run.model, run.train
    if phase.get("mean_weights") is not None:
        for v, w in zip(model.trainable_variables, phase["mean_weights"]):
            v.assign(w)
    m = phase["eval_examples"] if examples is None else min(int(examples), len(x))
    bs = min(batch_size, m)
    if probes is None:
        probes = max(32, math.ceil(m / bs))
    # by name, as dnn.estimate_run does: the same compiled programs (and cache entries)
    return measure(model, x[:m], y[:m], loss=config.loss, batch_size=bs,
                   n_probes=probes, power_iters=power_iters, seed=seed, quiet=quiet)

