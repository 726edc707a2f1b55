r"""The stationary measurement around a trained network: the phase and its statistics.

After training, heavy-ball SGD (the run's momentum β, 0 for plain SGD) continues
at a fixed learning rate η_s and batch size S with batch norm frozen; the phase
records per step the squared length of the step it took, ‖v_k‖² = ‖θ_k − θ_{k−1}‖²,
and of the minibatch gradient it stepped with, ‖ĝ_k‖², and the observed excess
loss is

.. math:: \widehat{\Delta} = \frac{1+\beta}{4\eta_s}\,\overline{\|v\|^2}
          \;\overset{\beta=0}{=}\; \frac{\eta_s}{4}\,\overline{\|\hat g\|^2}
          \qquad(\text{theory.md, "A θ*-free measurement" and "Momentum"}),

which needs neither θ* nor a loss evaluation.  This module is the one home of
that measurement: the phase (:func:`sgd_stationary`, :func:`stationary_phase`),
the pure-numpy statistics of its record (:mod:`dnn.stationary_stats` and
:mod:`dnn.stationary_summary`, re-exported here), and one call that does both for
a trained run (:func:`measure_stationary`).  :mod:`validation.stationary` only
calls :func:`measure_stationary` and writes ``stationary.json``;
:mod:`validation.report` reads the statistics from there.

Why the estimator holds.  Let x = θ − a for any fixed a and v' = βv − ηĝ the step.
Stationarity of E‖x‖², E[x·v] and the update give three equations:
2E[x·v'] + E‖v'‖² = 0 (from ‖x + v'‖²), E[x·v] = E[x·v'] + E‖v'‖² (from
(x + v')·v'), and E[x·v'] = βE[x·v] − ηE[x·∇L] (E[ĝ | θ] = ∇L).  Eliminating
E[x·v] and E[x·v'] gives E[(θ − a)·∇L] = ((1+β)/(2η))·E‖v‖², exactly, for any
loss; at β = 0, v = −ηĝ and this is (η/2)·E‖ĝ‖².  For a quadratic L with minimiser
θ*, (θ − θ*)·∇L = 2(L − L*), hence E[L − L*] = ((1+β)/(4η))·E‖v‖², in discrete
time and with state-dependent noise.  On a network it assumes the loss is
quadratic over the fluctuation scale and a fixed function of θ (BN frozen).  The
identity ratio E[(θ − θ̄)·ĝ] / (((1+β)/(2η))·E‖v‖²) is reported as a diagnostic
only: it falls below 1 when ‖θ − θ̄‖² keeps growing along flat directions that
carry almost no loss, which does not bias the excess loss.

The second column, kept for comparison, is the Polyak method: mean_k L(θ_k) −
L(θ̄) with a block correction for L(θ̄) − L(E θ) (:func:`polyak_excess_loss`).

Conventions
-----------
* **Batch norm frozen.** Every forward pass (the SGD steps and the loss
  measurements) runs batch norm in inference mode with the running statistics
  of the end of training, so the loss is a fixed function of θ.  BN's γ and β
  stay trainable.
* **Heavy ball** (no augmentation): v_{k+1} = βv_k − η_s ĝ_k, θ_{k+1} = θ_k + v_{k+1}
  (Keras' SGD with momentum β), v = 0 at the start of the burn-in, which lets the
  velocity equilibrate; ĝ_k is the mean gradient of the training objective (data
  loss + L2 penalty) over S examples drawn **i.i.d. with replacement** from the
  training set, so E[ĝ | θ] = ∇L(θ) and Cov(ĝ) = Σ/S (c_S = 1/S).
* **Blocks.** After ``burn_in`` steps the K recorded steps are cut into B
  contiguous blocks.  Per step: ‖ĝ_k‖², ‖v_{k+1}‖² and (θ_k − a)·ĝ_k (a = θ at the
  start of recording, so the float32 sums stay small).  Per block: the mean of the
  iterates θ̄_b and the gradient sum G_b = Σ_{k∈b} ĝ_k, kept on the device;
  θ̄ = mean_b θ̄_b.  Every ``record_every`` steps L(θ_k) is measured on a fixed
  evaluation subset, for the Polyak column and the loss-drift check.  No extra
  forward or backward pass is spent on ‖ĝ‖² or ‖v‖².

Two engines run the steps, with the same minibatch draws (all drawn up front per
block from one ``numpy`` Generator) and the same record:

* **JAX** (default there): one jitted ``lax.scan`` per block over
  ``model.stateless_call``, compiled once per architecture and batch size in the
  process and reused by every later run (:mod:`dnn.convnet._stationary_jax`);
* **TensorFlow**, and JAX with ``loop="per_step"``: one ``train_on_batch`` per
  step with a measuring Keras optimizer (:mod:`dnn.convnet._stationary_keras`).
  TensorFlow keeps this per-step path; the tests check both backends on a
  linear model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validate import int_at_least, positive_float
from .._validate import momentum as check_momentum
from .. import stationary_stats as _stats
from .. import stationary_summary as _summary
from ..stationary_stats import *  # noqa: F401,F403  (one import for callers)
from ..stationary_summary import *  # noqa: F401,F403

__all__ = [
    *_stats.__all__,
    *_summary.__all__,
    # the phase (keras, imported lazily)
    "SAMPLER",
    "LOOPS",
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

#: Values of ``sgd_stationary``'s ``loop``: one compiled scan per block (JAX), or one
#: ``train_on_batch`` per step (any backend; the TensorFlow path and the reference).
LOOPS = ("auto", "compiled", "per_step")


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


def _offset_dot(theta, theta_bar, velocity):
    """(θ − θ̄)·v in float64, summed over variables."""
    return float(sum(np.vdot(np.asarray(t, np.float64) - tb, np.asarray(v, np.float64))
                     for t, tb, v in zip(theta, theta_bar, velocity)))


def _engine_class(keras, loop):
    backend = keras.backend.backend()
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS}; got {loop!r}")
    if loop == "auto":
        loop = "compiled" if backend == "jax" else "per_step"
    if loop == "compiled":
        if backend != "jax":
            raise ValueError(f"loop='compiled' needs the jax backend; the keras backend is "
                             f"{backend!r} (use loop='per_step' or 'auto')")
        from ._stationary_jax import JaxStationaryEngine as Engine
    else:
        from ._stationary_keras import KerasStationaryEngine as Engine
    return loop, Engine


def sgd_stationary(model, x, y, loss, *, lr, batch_size, steps, burn_in=None, momentum=0.0,
                   eval_x=None, eval_y=None, record_every=10, n_blocks=20, eval_batch=1024,
                   seed=0, quiet=True, loop="auto"):
    r"""Run heavy-ball SGD at fixed η from ``model``'s weights and record the stationary phase.

    The backend-agnostic driver used for every model, from the linear model of the
    tests to ResNet-56: it draws the minibatches, feeds them to an engine block by
    block (:mod:`dnn.convnet._stationary_jax`'s compiled scan on JAX, or
    :mod:`dnn.convnet._stationary_keras`'s per-step loop) and computes θ̄ and the
    block geometry.  See the module docstring for the conventions (BN frozen, i.i.d.
    minibatches with replacement, blocks) and :func:`summarize_stationary` for the
    statistics of the returned record.

    Parameters
    ----------
    model : keras.Model
        A built model; modified in place, and left holding θ̄ on return.
    x, y : array_like
        Training data (the finite sum SGD samples from).
    loss : callable
        ``loss(y_true, y_pred) -> (batch,)`` per-example data loss in ``keras.ops``;
        the regularisation losses of ``model`` (its L2 penalty) are added, as Keras does.
    lr : float
        η_s > 0.
    batch_size : int
        S, 1 <= S.
    steps : int
        K, the recorded steps; rounded up to a multiple of ``n_blocks * record_every``.
    burn_in : int, optional
        Steps run before recording; default ``steps // 4``.
    momentum : float
        Heavy-ball β in [0, 1): v_{k+1} = βv_k − ηĝ_k, θ_{k+1} = θ_k + v_{k+1}, with
        v = 0 at the start of the burn-in (0: plain SGD).
    eval_x, eval_y : array_like, optional
        Evaluation subset on which L is measured (Polyak column, loss drift);
        default the training data.
    record_every : int
        Steps between recorded losses (‖ĝ‖² and ‖v‖² are recorded at every step).
    n_blocks : int
        B >= 2 blocks for the block averages, batch means and the drift checks
        (which need B >= 8).
    eval_batch : int
        Largest chunk of the evaluation subset per forward pass.
    seed : int
        Seed of the minibatch draws.
    quiet : bool
        Silence the progress bar.
    loop : {"auto", "compiled", "per_step"}
        ``"compiled"``: one jitted ``lax.scan`` per block, compiled once per
        architecture and batch size in the process (JAX only); ``"per_step"``: one
        ``train_on_batch`` per step (any backend); ``"auto"``: compiled on JAX,
        per-step on TensorFlow.  Both draw the same minibatches.

    Returns
    -------
    dict
        ``status`` ("completed" or "diverged"); per recorded step ``grad_sqnorm``
        (‖ĝ_k‖²), ``step_sqnorm`` (‖v_{k+1}‖² = ‖θ_{k+1} − θ_k‖²) and
        ``anchored_dot`` ((θ_k − a)·ĝ_k); per block ``block_offset_dot``
        ((θ̄ − a)·G_b) and ``block_losses`` (L(θ̄_b)); ``sqdist_start`` and
        ``sqdist_end`` (‖θ − θ̄‖² at the first recorded step and after the last);
        ``veldot_start`` and ``veldot_end`` ((θ − θ̄)·v there); ``losses``
        (recorded L(θ_k)), ``record_steps``, ``loss_at_start``, ``loss_at_mean``
        (L(θ̄)), ``mean_weights`` (θ̄ as float32 arrays, one per trainable
        variable), and the settings (``lr``, ``momentum``, ``batch_size``,
        ``steps``, ``burn_in``, ``record_every``, ``n_blocks``, ``eval_examples``,
        ``n_data``, ``replacement``, ``sampler``, ``seed``, ``loop``,
        ``wall_time_s``).

    Raises
    ------
    ValueError
        A bad lr, batch_size, steps, burn_in, momentum, record_every, n_blocks,
        eval_batch or loop, mismatched data lengths, or ``loop="compiled"`` off JAX.
    """
    from .backend import import_keras

    keras = import_keras()
    lr = positive_float(lr, "lr")
    momentum = check_momentum(momentum)
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
    loop, Engine = _engine_class(keras, loop)
    # Whole blocks of whole recording intervals, so batch means line up with θ̄_b.
    unit = n_blocks * record_every
    steps = unit * math.ceil(steps / unit)
    block_len = steps // n_blocks

    t0 = time.perf_counter()
    engine = Engine(model, x, y, loss, lr=lr, momentum=momentum, batch_size=s,
                    record_every=record_every, block_len=block_len, eval_x=eval_x,
                    eval_y=eval_y, eval_batch=eval_batch)
    rng = np.random.default_rng(seed)

    def draw(m):
        # one draw per step, in time order: the stream does not depend on the engine
        return np.stack([rng.integers(0, n, size=s) for _ in range(m)])

    losses, block_means, block_grad_sums = [], [], []
    per_step = {k: [] for k in ("grad_sqnorm", "step_sqnorm", "anchored_dot")}
    anchor = velocity_start = None
    status = "completed"
    loss_at_start = engine.eval_loss()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        tqdm = None
    bar = (tqdm(total=burn_in + steps, desc="stationary SGD", disable=quiet, leave=False)
           if tqdm else None)
    try:
        done = 0
        while done < burn_in:
            m = min(block_len, burn_in - done)
            if engine.run(draw(m), m, record=False) is None:
                status = "diverged"
                break
            done += m
            if bar is not None:
                bar.update(m)
        if status == "completed":
            # a = θ_0: the identity holds for any fixed a; this one keeps θ − a small
            anchor = engine.weights()
            velocity_start = engine.velocity()
            engine.set_anchor(anchor)
        for _ in range(n_blocks if status == "completed" else 0):
            out = engine.run(draw(block_len), block_len, record=True)
            if out is None:
                status = "diverged"
                break
            for k, series in per_step.items():
                series.extend(np.asarray(out[k], dtype=float).tolist())
            losses.extend(out["losses"])
            block_means.append(out["block_mean"])
            block_grad_sums.append(out["grad_sum"])
            if bar is not None:
                bar.update(block_len)
    finally:
        if bar is not None:
            bar.close()

    out = {
        "status": status, "lr": lr, "momentum": momentum, "batch_size": s, "steps": steps,
        "burn_in": burn_in, "record_every": record_every, "n_blocks": n_blocks,
        "eval_examples": int(len(eval_x)), "n_data": n, "replacement": True,
        "sampler": SAMPLER, "seed": int(seed), "loop": loop, "loss_at_start": loss_at_start,
        "record_steps": [], "losses": [], "grad_sqnorm": [], "step_sqnorm": [],
        "anchored_dot": [], "block_offset_dot": [], "block_losses": [], "sqdist_start": None,
        "sqdist_end": None, "veldot_start": None, "veldot_end": None, "loss_at_mean": None,
        "mean_weights": None,
    }
    if status == "completed":
        theta_end = engine.weights()
        theta_bar, dots, sq_start, sq_end = _block_geometry(anchor, block_means,
                                                            block_grad_sums, theta_end)
        del block_grad_sums
        block_losses = [engine.eval_loss(wb) for wb in block_means]
        mean = [t.astype(np.float32) for t in theta_bar]
        veldot_end = _offset_dot(theta_end, theta_bar, engine.velocity())
        engine.assign(mean)
        out.update(record_steps=[burn_in + record_every * (r + 1)
                                 for r in range(steps // record_every)],
                   losses=losses, **per_step, block_offset_dot=dots,
                   block_losses=block_losses, sqdist_start=sq_start, sqdist_end=sq_end,
                   veldot_start=_offset_dot(anchor, theta_bar, velocity_start),
                   veldot_end=veldot_end, loss_at_mean=engine.eval_loss(), mean_weights=mean)
    else:
        engine.assign(engine.weights())
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
                     record_every=10, n_blocks=20, eval_batch=1024, seed=0, quiet=True,
                     momentum=None, batch_size=None):
    """Stationary phase of a trained run: heavy-ball SGD at η_s from its final weights.

    Continues SGD with the run's momentum β (unless ``momentum`` overrides it) at
    the fixed learning rate η_s and the run's batch size for ``steps`` recorded
    steps (after ``burn_in``, which starts from v = 0 and lets the velocity
    equilibrate), with batch norm frozen in inference mode, recording ‖ĝ‖² and
    ‖v‖² at every step and the training
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
    momentum : float, optional
        β_s in [0, 1); default (None) the training run's ``config.momentum``.
    batch_size : int, optional
        S_s of the phase; default (None) the run's batch size.  The predictions use
        the phase's S_s, so any S_s is a fair test; a common S_s gives every run of a
        grid the same cost per step.

    Returns
    -------
    dict
        :func:`sgd_stationary`'s record plus ``loss_name``, ``precision``,
        ``lr_source`` ("final schedule LR" or "given"), ``momentum_source``
        ("training run" or "given"), ``batch_size_source`` ("training run" or
        "given"), ``train_batch_size`` and ``train_momentum``.  The loaded model is left
        holding θ̄ (use :func:`measure_at_mean` next).
    """
    run = load_for_stationary(run)
    config, model, (x, y) = run.config, run.model, run.train
    from .losses import get_loss

    lr_source = "given"
    if lr is None:
        lr = final_lr(config)
        lr_source = "final schedule LR"
    train_momentum = float(getattr(config, "momentum", 0.0) or 0.0)
    momentum_source = "given"
    if momentum is None:
        momentum, momentum_source = train_momentum, "training run"
    batch_size_source = "given"
    if batch_size is None:
        batch_size, batch_size_source = int(config.batch_size), "training run"
    m = min(int_at_least(eval_examples, "eval_examples", 1), len(x))
    k = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else int(y.max()) + 1
    y1 = _one_hot(y, k)
    out = sgd_stationary(model, x, y1, get_loss(config.loss), lr=lr,
                         batch_size=batch_size, steps=steps, burn_in=burn_in,
                         momentum=momentum, eval_x=x[:m], eval_y=y1[:m],
                         record_every=record_every, n_blocks=n_blocks, eval_batch=eval_batch,
                         seed=seed, quiet=quiet)
    out.update(loss_name=config.loss, precision=getattr(config, "precision", "float32"),
               lr_source=lr_source, momentum_source=momentum_source,
               train_momentum=train_momentum, batch_size_source=batch_size_source,
               train_batch_size=int(config.batch_size))
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
    "observed": "theta-free: ((1+momentum)/(4 lr)) mean_k |v_k|^2 over the recorded steps, "
                "v_k = theta_k - theta_{k-1} the heavy-ball step; at momentum 0, v = -lr g and "
                "this is (lr/4) mean_k |g_k|^2, g_k the minibatch gradient stepped with "
                "(objective incl. L2, whole training set); SE by batch means over the blocks; "
                "exact for a quadratic loss at stationarity",
    "momentum": "heavy ball v' = momentum v - lr g, theta' = theta + v', v = 0 at the start "
                "of the burn-in; momentum = the training run's unless overridden",
    "polyak": "mean_k L(theta_k) - L(theta_bar) + (mean_b L(theta_bar_b) - L(theta_bar))/(B-1) "
              "on the fixed evaluation subset; SE by batch means",
    "identity": "E[(theta - theta_bar).g] / (((1+momentum)/(2 lr)) E|v|^2): diagnostic only, "
                "1 at stationarity for any loss",
    "stationary": "no drift of the loss, of |g|^2 and (with momentum) of |v|^2 between the "
                  "halves (|z| < 4) and n_eff >= max(20, B) for the series the estimate "
                  "averages",
    "predictions": "(12) (lr c_S/(4(1-momentum))) tr Sigma and (6) the same with "
                   "(tr H_data + L2 trace): the continuous limits at the effective rate "
                   "lr/(1-momentum), traces measured at theta_bar on the evaluation subset; "
                   "discrete correction lr lambda_max/(2(1+momentum))",
}


def measure_stationary(run, *, lr=None, steps=2000, burn_in=None, eval_examples=2048,
                       record_every=10, n_blocks=20, measure_examples=None, probes=None,
                       power_iters=20, seed=0, quiet=True, momentum=None, batch_size=None):
    """The whole stationary measurement of a trained run, as a JSON-ready record.

    Runs :func:`stationary_phase`, measures tr Σ, tr H, the L2 trace and λ_max at
    θ̄ (:func:`measure_at_mean`, same evaluation subset unless ``measure_examples``)
    when the phase completed, and adds :func:`summarize_stationary`'s statistics.
    This is the one entry point :mod:`validation.stationary` calls.

    Parameters
    ----------
    run : path or loaded run
        A completed ``dnn.train`` run folder or loaded run.
    lr, steps, burn_in, eval_examples, record_every, n_blocks, seed, quiet, momentum, batch_size
        Passed to :func:`stationary_phase` (``momentum=None``: the run's β;
        ``batch_size=None``: the run's S).
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
                             n_blocks=n_blocks, seed=seed, quiet=quiet, momentum=momentum,
                             batch_size=batch_size)
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
