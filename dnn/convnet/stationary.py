r"""The stationary measurement around a trained network: the phase and its statistics.

After training, plain SGD continues at a fixed learning rate η_s and batch size S
with batch norm frozen; the phase records per step the squared norm of the
minibatch gradient it stepped with, ‖ĝ_k‖², and the observed excess loss is

.. math:: \widehat{\Delta} = \frac{\eta_s}{4}\,\overline{\|\hat g\|^2}
          \qquad(\text{theory.md, "A θ*-free measurement"}),

which needs neither θ* nor a loss evaluation.  This module is the one home of
that measurement: the Keras phase (:func:`sgd_stationary`,
:func:`stationary_phase`), the pure-numpy statistics of its record
(:mod:`dnn.stationary_stats` and :mod:`dnn.stationary_summary`, re-exported
here), and one call that
does both for a trained run (:func:`measure_stationary`).
:mod:`validation.stationary` only calls :func:`measure_stationary` and writes
``stationary.json``; :mod:`validation.report` reads the statistics from there.

Why the estimator holds.  For SGD θ' = θ − ηĝ and any fixed a, stationarity of
E‖θ − a‖² gives E[(θ − a)·∇L(θ)] = (η/2)·E‖ĝ‖² exactly, for any loss (it uses
only E[ĝ | θ] = ∇L(θ)).  For a quadratic L with minimiser θ*,
(θ − θ*)·∇L = 2(L − L*), hence E[L − L*] = (η/4)·E‖ĝ‖², in discrete time and
with state-dependent noise.  On a network it assumes the loss is quadratic over
the fluctuation scale and a fixed function of θ (BN frozen).  The identity
ratio E[(θ − θ̄)·ĝ] / ((η/2)·E‖ĝ‖²) is reported as a diagnostic only: it falls
below 1 when ‖θ − θ̄‖² keeps growing along flat directions that carry almost no
loss, which does not bias the excess loss.

The second column, kept for comparison, is the Polyak method: mean_k L(θ_k) −
L(θ̄) with a block correction for L(θ̄) − L(E θ) (:func:`polyak_excess_loss`).

Conventions
-----------
* **Batch norm frozen.** Every forward pass (the SGD steps and the loss
  measurements) runs batch norm in inference mode with the running statistics
  of the end of training, so the loss is a fixed function of θ.  BN's γ and β
  stay trainable.
* **Plain SGD** (momentum 0, no augmentation): θ_{k+1} = θ_k − η_s ĝ_k, with ĝ_k
  the mean gradient of the training objective (data loss + L2 penalty) over S
  examples drawn **i.i.d. with replacement** from the training set, so
  E[ĝ | θ] = ∇L(θ) and Cov(ĝ) = Σ/S (c_S = 1/S).
* **Blocks.** After ``burn_in`` steps the K recorded steps are cut into B
  contiguous blocks.  Per step: ‖ĝ_k‖² and (θ_k − a)·ĝ_k (a = θ at the start of
  recording, so the float32 sums stay small).  Per block: the mean of the
  iterates θ̄_b and the gradient sum G_b = Σ_{k∈b} ĝ_k, kept on the device inside
  the optimizer (as Keras keeps EMA weights); θ̄ = mean_b θ̄_b.  Every
  ``record_every`` steps L(θ_k) is measured on a fixed evaluation subset, for
  the Polyak column and the loss-drift check.  No extra forward or backward
  pass is spent on ‖ĝ‖².

Backend-agnostic: a wrapper model forcing ``training=False`` and a Keras
optimizer subclass written in ``keras.ops``, trained with ``train_on_batch``;
the same code runs on JAX and TensorFlow (tests check both on a linear model).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validate import int_at_least, positive_float
from .. import stationary_stats as _stats
from .. import stationary_summary as _summary
from ..stationary_stats import *  # noqa: F401,F403  (one import for callers)
from ..stationary_summary import *  # noqa: F401,F403

__all__ = [
    *_stats.__all__,
    *_summary.__all__,
    # the phase (keras, imported lazily)
    "SAMPLER",
    "sgd_stationary",
    "StationaryRun",
    "load_for_stationary",
    "final_lr",
    "stationary_phase",
    "measure_at_mean",
    "measure_stationary",
]

#: How the stationary phase draws minibatches (matches ``theory`` with ``replacement=True``).
SAMPLER = "iid_with_replacement"


# ------------------------------------------------------------------ the phase (keras)

_CLASSES = {}


def _classes(keras):
    """The wrapper model and the measuring optimizer, built once per process (keras is lazy)."""
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

    class StationarySGD(keras.optimizers.Optimizer):
        """Plain SGD that also measures the gradient it steps with.

        Per step, before the update: ``grad_sqnorm`` ← ‖ĝ‖² and ``anchored_dot`` ←
        (θ − a)·ĝ over all variables (a = ``anchors``), and ``grad_sums`` += ĝ.
        After it, ``averages`` ← running mean of the iterates since ``iterations``
        was 0 (avg ← avg + (θ_new − avg)/(t + 1)).  The caller resets
        ``iterations`` and ``grad_sums`` at each block start and sets ``anchors``
        once.  Written in keras.ops, so it runs inside the compiled train step on
        every backend; on JAX the variables are read through the stateless scope.
        """

        def __init__(self, learning_rate, **kwargs):
            super().__init__(learning_rate=learning_rate, name="stationary_sgd", **kwargs)

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self.averages = [self.add_variable_from_reference(v, name="average")
                             for v in variables]
            self.anchors = [self.add_variable_from_reference(v, name="anchor")
                            for v in variables]
            self.grad_sums = [self.add_variable_from_reference(v, name="grad_sum")
                              for v in variables]
            self.grad_sqnorm = self.add_variable((), initializer="zeros", dtype="float32",
                                                 name="grad_sqnorm")
            self.anchored_dot = self.add_variable((), initializer="zeros", dtype="float32",
                                                  name="anchored_dot")

        def apply(self, grads, trainable_variables=None):
            if trainable_variables is not None and not self.built:
                self.build(list(trainable_variables))
            variables = (self._trainable_variables if trainable_variables is None
                         else list(trainable_variables))
            sq = ops.zeros((), "float32")
            dot = ops.zeros((), "float32")
            for g, v in zip(grads, variables):
                if g is None:
                    continue
                i = self._get_variable_index(v)
                g32 = ops.cast(g, "float32")
                sq = ops.add(sq, ops.sum(ops.square(g32)))
                # θ − a, not θ: the float32 sum of θ·ĝ would bury the small (θ − θ̄)·ĝ
                delta = ops.subtract(ops.cast(v, "float32"),
                                     ops.cast(self.anchors[i], "float32"))
                dot = ops.add(dot, ops.sum(ops.multiply(delta, g32)))
                s = self.grad_sums[i]
                self.assign(s, ops.add(s, ops.cast(g, s.dtype)))
            self.assign(self.grad_sqnorm, sq)
            self.assign(self.anchored_dot, dot)
            return super().apply(grads, trainable_variables)

        def update_step(self, gradient, variable, learning_rate):
            lr = ops.cast(learning_rate, variable.dtype)
            new = ops.subtract(variable, ops.multiply(ops.cast(gradient, variable.dtype), lr))
            self.assign(variable, new)
            avg = self.averages[self._get_variable_index(variable)]
            count = ops.cast(self.iterations + 1, variable.dtype)
            self.assign(avg, ops.add(avg, ops.divide(ops.subtract(new, avg), count)))

    _CLASSES["model"], _CLASSES["opt"] = InferenceModeModel, StationarySGD
    return InferenceModeModel, StationarySGD


def _chunks(n, max_chunk):
    k = max(1, math.ceil(n / max_chunk))
    # near-equal chunks: at most two distinct shapes, hence at most two compilations
    return np.array_split(np.arange(n), k)


def _block_geometry(anchor, block_means, block_grad_sums, theta_end):
    """θ̄ and the per-block offsets c_b = (θ̄ − a)·G_b, ‖θ_0 − θ̄‖², ‖θ_K − θ̄‖² (float64).

    Each argument is a list (over blocks, for the two middle ones) of per-variable arrays.
    """
    theta_bar = [np.mean([bm[i] for bm in block_means], axis=0, dtype=np.float64)
                 for i in range(len(anchor))]
    offset = [tb - np.asarray(a, np.float64) for tb, a in zip(theta_bar, anchor)]
    dots = [float(sum(np.vdot(o, np.asarray(g, np.float64)) for o, g in zip(offset, gs)))
            for gs in block_grad_sums]
    sq_start = float(sum(np.vdot(o, o) for o in offset))
    sq_end = float(sum(np.sum((np.asarray(t, np.float64) - tb) ** 2)
                       for t, tb in zip(theta_end, theta_bar)))
    return theta_bar, dots, sq_start, sq_end


def sgd_stationary(model, x, y, loss, *, lr, batch_size, steps, burn_in=None, eval_x=None,
                   eval_y=None, record_every=10, n_blocks=20, eval_batch=1024, seed=0,
                   quiet=True):
    r"""Run plain SGD at fixed η from ``model``'s weights and record the stationary phase.

    The backend-agnostic core used for every model, from the linear model of the
    tests to ResNet-56.  See the module docstring for the conventions (BN frozen,
    i.i.d. minibatches with replacement, blocks) and :func:`summarize_stationary`
    for the statistics of the returned record.

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
        Evaluation subset on which L is measured (Polyak column, loss drift);
        default the training data.
    record_every : int
        Steps between recorded losses (‖ĝ‖² is recorded at every step).
    n_blocks : int
        B >= 2 blocks for the block averages, batch means and the drift checks
        (which need B >= 8).
    eval_batch : int
        Largest chunk of the evaluation subset per forward pass.
    seed : int
        Seed of the minibatch draws.
    quiet : bool
        Silence the progress bar.

    Returns
    -------
    dict
        ``status`` ("completed" or "diverged"); per recorded step ``grad_sqnorm``
        (‖ĝ_k‖²) and ``anchored_dot`` ((θ_k − a)·ĝ_k); per block
        ``block_offset_dot`` ((θ̄ − a)·G_b) and ``block_losses`` (L(θ̄_b));
        ``sqdist_start`` and ``sqdist_end`` (‖θ − θ̄‖² at the first recorded step
        and after the last); ``losses`` (recorded L(θ_k)), ``record_steps``,
        ``loss_at_start``, ``loss_at_mean`` (L(θ̄)), ``mean_weights`` (θ̄ as float32
        arrays, one per trainable variable), and the settings (``lr``,
        ``batch_size``, ``steps``, ``burn_in``, ``record_every``, ``n_blocks``,
        ``eval_examples``, ``n_data``, ``replacement``, ``sampler``, ``seed``,
        ``wall_time_s``).
    """
    from .backend import import_keras, to_numpy

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

    Wrapper, StationarySGD = _classes(keras)
    wrapped = Wrapper(model)
    opt = StationarySGD(lr)
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

    def host(vs):
        return [to_numpy(v).astype(np.float32) for v in vs]

    def set_weights(ws):
        for v, w in zip(variables, ws):
            v.assign(w)

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    losses, record_steps, block_means, block_grad_sums = [], [], [], []
    grad_sqnorm = np.zeros(steps)
    anchored_dot = np.zeros(steps)
    anchor = None
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
            j = k - burn_in                 # index of the recorded step, < 0 in the burn-in
            if j == 0:
                # a = θ_0: the identity holds for any fixed a; this one keeps θ − a small
                anchor = host(variables)
                # from the host copy: assigning v.value would alias one device buffer
                # in two variables, which JAX refuses to donate twice
                for a, w in zip(opt.anchors, anchor):
                    a.assign(w)
            if j >= 0 and j % block_len == 0:
                # block start: restart the running mean and the gradient sum on the device
                opt.iterations.assign(0)
                for g in opt.grad_sums:
                    g.assign(ops.zeros_like(g.value))
            idx = rng.integers(0, n, size=s)
            batch_loss = float(wrapped.train_on_batch(x[idx], y[idx], return_dict=True)["loss"])
            if not math.isfinite(batch_loss):
                status = "diverged"
                break
            if j < 0:
                if bar is not None:
                    bar.update(1)
                continue
            grad_sqnorm[j] = float(to_numpy(opt.grad_sqnorm))
            anchored_dot[j] = float(to_numpy(opt.anchored_dot))
            if not (math.isfinite(grad_sqnorm[j]) and math.isfinite(anchored_dot[j])):
                status = "diverged"
                break
            done = j + 1
            if done % record_every == 0:
                value = eval_loss()
                if not math.isfinite(value):
                    status = "diverged"
                    break
                losses.append(value)
                record_steps.append(k + 1)
            if done % block_len == 0:
                block_means.append(host(opt.averages))
                block_grad_sums.append(host(opt.grad_sums))
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
        "grad_sqnorm": [], "anchored_dot": [], "block_offset_dot": [], "block_losses": [],
        "sqdist_start": None, "sqdist_end": None, "loss_at_mean": None, "mean_weights": None,
    }
    if status == "completed":
        theta_bar, dots, sq_start, sq_end = _block_geometry(anchor, block_means,
                                                            block_grad_sums, host(variables))
        del block_grad_sums
        block_losses = []
        for wb in block_means:
            set_weights(wb)
            block_losses.append(eval_loss())
        mean = [t.astype(np.float32) for t in theta_bar]
        set_weights(mean)
        out.update(grad_sqnorm=grad_sqnorm.tolist(), anchored_dot=anchored_dot.tolist(),
                   block_offset_dot=dots, block_losses=block_losses, sqdist_start=sq_start,
                   sqdist_end=sq_end, loss_at_mean=eval_loss(), mean_weights=mean)
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

    Accepts a path, a :class:`StationaryRun`, or whatever :func:`dnn.convnet.train.load_run`
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
    frozen in inference mode, recording ‖ĝ‖² at every step and the training
    loss (data loss + L2 penalty, on the first ``eval_examples`` training
    examples, the subset ``dnn.estimate_run`` uses) every ``record_every`` steps.
    See :func:`sgd_stationary` for the returned raw record and
    :func:`summarize_stationary` for its statistics.

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


_CONVENTIONS = {
    "bn": "inference mode (running statistics frozen) for SGD steps and measurements",
    "loss": "training objective: mean data loss + L2 penalty",
    "observed": "theta-free: (lr/4) mean_k |g_k|^2 over the recorded steps, g_k the minibatch "
                "gradient stepped with (objective incl. L2, whole training set); SE by batch "
                "means over the blocks; exact for a quadratic loss at stationarity",
    "polyak": "mean_k L(theta_k) - L(theta_bar) + (mean_b L(theta_bar_b) - L(theta_bar))/(B-1) "
              "on the fixed evaluation subset; SE by batch means",
    "identity": "E[(theta - theta_bar).g] / ((lr/2) E|g|^2): diagnostic only, 1 at "
                "stationarity for any loss",
    "stationary": "no drift of the loss and of |g|^2 between the halves (|z| < 4) and "
                  "n_eff(|g|^2) >= max(20, B)",
    "predictions": "(12) (lr c_S/4) tr Sigma and (6) (lr c_S/4) (tr H_data + L2 trace), "
                   "traces measured at theta_bar on the evaluation subset",
}


def measure_stationary(run, *, lr=None, steps=2000, burn_in=None, eval_examples=2048,
                       record_every=10, n_blocks=20, measure_examples=None, probes=None,
                       power_iters=20, seed=0, quiet=True):
    """The whole stationary measurement of a trained run, as a JSON-ready record.

    Runs :func:`stationary_phase`, measures tr Σ, tr H, the L2 trace and λ_max at
    θ̄ (:func:`measure_at_mean`, same evaluation subset unless ``measure_examples``)
    when the phase completed, and adds :func:`summarize_stationary`'s statistics.
    This is the one entry point :mod:`validation.stationary` calls.

    Parameters
    ----------
    run : path or loaded run
        A completed ``dnn.train`` run folder or loaded run.
    lr, steps, burn_in, eval_examples, record_every, n_blocks, seed, quiet
        Passed to :func:`stationary_phase`.
    measure_examples, probes, power_iters
        Passed to :func:`measure_at_mean` (``examples``, ``probes``, ``power_iters``).

    Returns
    -------
    dict
        ``schema_version`` (:data:`SCHEMA_VERSION`), ``status``, ``conventions``,
        ``phase`` (the raw record without the weights), ``at_mean`` (the
        measurement at θ̄, or None), the keys of :func:`summarize_stationary`, and
        ``wall_time_s``.
    """
    t0 = time.perf_counter()
    run = load_for_stationary(run)
    phase = stationary_phase(run, lr=lr, steps=steps, burn_in=burn_in,
                             eval_examples=eval_examples, record_every=record_every,
                             n_blocks=n_blocks, seed=seed, quiet=quiet)
    at_mean = None
    if phase["status"] == "completed":
        at_mean = measure_at_mean(run, phase, examples=measure_examples, probes=probes,
                                  power_iters=power_iters, seed=seed, quiet=quiet)
    summary = summarize_stationary(phase, at_mean)
    return {
        "schema_version": SCHEMA_VERSION,
        "status": phase["status"],
        "conventions": {**_CONVENTIONS, "sampler": phase.get("sampler")},
        "phase": {k: v for k, v in phase.items() if k != "mean_weights"},
        "at_mean": at_mean,
        **{k: v for k, v in summary.items() if k != "status"},
        "wall_time_s": time.perf_counter() - t0,
    }
