"""Measure tr Σ, tr H, λ_max and the loss of a Keras model on a data set.

This module only wires a model to the estimators of :mod:`dnn.estimators`: the
backend module (``dnn._jax_ops`` or ``dnn._tf_ops``) supplies the gradient, the
Hessian-vector product and per-example gradient square norms, all with batch
norm in inference mode and all of the *data* loss L = (1/N) Σ_i l_i (the model's
L2 penalty is excluded and reported separately as 2λ·n_weights).

Batching: the evaluation set is permuted once with ``seed`` and cut into batches
of ``batch_size``. The last, shorter batch is padded to full size with repeated
examples of weight 0, so every batch has one shape and each compiled function
is built once; padded examples contribute nothing to any sum.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
import weakref
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import estimators as est
from .._validate import int_at_least, positive_float
from .backend import import_keras

__all__ = ["estimate_run", "l2_regularised_weights", "measure", "model_ops"]

ESTIMATES_FILE = "estimates.json"
SCHEMA_VERSION = 1
# ‖g_i‖ <= 1e-6 counts as a zero per-example gradient. Saturated outputs under a clipped
# loss give exactly 0 on JAX and in a plain TF tape, but TF's vectorized_map leaves
# float32 round-off of ‖g_i‖ ≈ 1e-8 there (ResNet-8, logits ~5e5); a healthy example's
# gradient is orders of magnitude above 1e-6.
ZERO_GRAD_SQNORM = 1e-12
# An estimate is degenerate when at least this fraction of examples has a zero
# gradient: tr Σ, tr H and λ_max then describe a flat, saturated region.
DEGENERATE_FRACTION = 0.5

# model -> {loss key: ops}; weak keys so that cached compiled functions die with the model
_OPS_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_ops(model, loss):
    """Backend dispatch: the compiled primitives for ``model`` and ``loss`` on the active backend.

    Returns a ``dnn._jax_ops.JaxOps`` or ``dnn._tf_ops.TfOps`` (same methods:
    ``loss_grad``, ``hvp``, ``vhv``, ``per_example``, ``batch_shape``; attributes
    ``shapes``, ``names``), cached per model and loss so each function compiles once.

    Parameters
    ----------
    model : keras.Model
    loss : str or callable
        A name known to :mod:`dnn.convnet.losses` (``"kld"``, ``"xent"``, ``"logit_grad"``),
        or ``loss(y, outputs) -> (batch,)`` per-example losses in ``keras.ops``
        taking *integer* labels y (names are one-hot encoded for dnn.convnet.losses).

    Raises
    ------
    ValueError
        If the keras backend is neither ``"jax"`` nor ``"tensorflow"``, or the loss is unknown.
    """
    keras = import_keras()

    backend = keras.backend.backend()
    loss_fn = _resolve_loss(loss)
    per_model = _OPS_CACHE.setdefault(model, {})
    key = (backend, loss if isinstance(loss, str) else id(loss_fn))
    if key not in per_model:
        if backend == "jax":
            from ._jax_ops import JaxOps as Ops
        elif backend == "tensorflow":
            from ._tf_ops import TfOps as Ops
        else:
            raise ValueError(f"keras backend must be 'jax' or 'tensorflow' for the estimators; "
                             f"got {backend!r}")
        per_model[key] = Ops(model, loss_fn)
    return per_model[key]


def l2_regularised_weights(model) -> list[tuple[str, float, int]]:
    """(variable path, λ, number of weights) for every trainable variable with an L2 penalty.

    Reads ``variable.regularizer`` (Keras 3 stores a layer's kernel/bias
    regulariser on the variable). ``L1L2`` counts its L2 part; the L1 part has
    zero Hessian almost everywhere.

    Raises
    ------
    ValueError
        For a regulariser whose Hessian is unknown (not L2 / L1L2).
    """
    keras = import_keras()

    out = []
    for v in model.trainable_variables:
        reg = getattr(v, "regularizer", None)
        if reg is None:
            continue
        if isinstance(reg, (keras.regularizers.L2, keras.regularizers.L1L2)):
            lam = float(reg.l2)
            if lam > 0:
                out.append((v.path, lam, int(np.prod(v.shape))))
        elif isinstance(reg, keras.regularizers.L1):
            continue
        else:
            raise ValueError(f"regulariser of {v.path} must be L1, L2 or L1L2 to know its "  # noqa: TRY004
                             f"Hessian; got {type(reg).__name__}")
    return out


def measure(model, x, y, *, loss, batch_size: int = 256, n_probes: int | None = None,
            target_rel_se: float | None = None, max_probes: int = 10_000,
            power_iters: int = 20, power_tol: float = 1e-3, power_examples: int | None = 4096,
            two_batch_factor: int = 4, seed: int = 0, quiet: bool = True) -> dict:
    r"""Loss, accuracy, tr Σ, tr H, λ_max and the two-batch noise of a model on (x, y).

    All quantities are of the data loss L = (1/N) Σ_i l_i with batch norm in
    inference mode (theory.md, "DNN estimators"):

    - ``trace_grad_cov``: exact tr Σ = (1/N) Σ_i ‖g_i‖² − ‖ḡ‖² from per-example
      gradients (centred, divide by N), with both terms.
    - ``trace_hessian``: Hutchinson, one fresh Rademacher probe per batch,
      ``n_probes`` HVPs (default: one pass over the batches), mean ± SE.
      ``data_loss_only: true``; add ``l2_trace_contribution`` (2λ·n_weights) for
      the regularised objective.
    - ``lambda_max``: power iteration on the Hessian of the first
      ``power_examples`` examples of the permuted set (None: all).
    - ``two_batch``: McCandlish's estimator from the per-batch gradient sums of
      the tr Σ pass (no extra cost): B_small = batch_size, B_big =
      ``two_batch_factor``·batch_size (cut to the number of full batches),
      disjoint batches without replacement; None with fewer than 2 full batches.

    Parameters
    ----------
    model : keras.Model
        Built model on the active backend; its output feeds ``loss``.
    x : ndarray, shape (N, ...)
        Inputs as the model takes them (already standardised).
    y : ndarray of int, shape (N,)
        Class labels.
    loss : str or callable
        See :func:`model_ops`.
    batch_size : int
        Examples per batch (one HVP each; per-example gradients are held for a
        whole batch at once, batch_size × n_params floats). Clamped to N.
    n_probes : int, optional
        Hutchinson probes (>= 1); default one per batch.
    target_rel_se : float, optional
        Continue Hutchinson until SE <= target_rel_se·|mean| (``max_probes`` cap).
    power_iters : int
        Maximum power iterations (0 skips λ_max; 1 is raised to 2, the fewest
        that can test convergence).
    power_tol : float
        Relative change of the Rayleigh quotient at which power iteration stops.
    power_examples : int or None
        Examples in the power-iteration Hessian.
    two_batch_factor : int
        B_big / B_small, >= 2.
    seed : int
        Seeds the example permutation, the probes and the power-iteration start.
    quiet : bool
        Silence the progress bars.

    Returns
    -------
    dict
        JSON-ready (NaN written as None)::

            n_examples, batch_size, n_params, backend, seed, loss_name,
            loss            mean data loss (no L2),     accuracy,
            l2_penalty      λ Σ w² over regularised weights,
            grad_norm       ‖ḡ‖,
            trace_grad_cov  {trace, mean_example_sqnorm, mean_grad_sqnorm,
                             n_examples, sampling_se, convention: "centred, divide by N"},
            trace_hessian   {mean, se, n_hvp, converged, target_rel_se,
                             n_examples, data_loss_only: true},
            l2_trace_contribution {value: 2λ·n_weights, n_weights, l2: [λ, ...]},
            lambda_max      {value, n_iters, n_hvp, converged, rel_change,
                             n_examples} or None,
            two_batch       {trace_cov, trace_cov_se, grad_sqnorm, grad_sqnorm_se,
                             noise_scale, noise_scale_se, n_pairs, b_small, b_big,
                             n_data, negative, reliable, convention} or None,
            n_zero_grad     examples with ‖g_i‖ <= zero_grad_threshold (1e-6),
            degenerate      True when >= half the examples have a zero gradient, or
                            the gradient and tr H are exactly 0: the outputs are
                            saturated (e.g. batch-norm running statistics near their
                            initial values after too little training, huge logits, a
                            clipped loss), so the numbers describe no minimum;
                            degenerate_reason says why (None when not degenerate);
                            a RuntimeWarning is issued too,
            timings         {per_example_s, hutchinson_s, power_s, total_s,
                             per_example_first_batch_s, per_example_s_per_batch,
                             hvp_first_batch_s, hvp_s_per_batch}  (seconds; the
                             first batch includes compilation)

    Raises
    ------
    ValueError
        On invalid arguments, non-finite weights, or a non-finite gradient/HVP.
    """
    x, y = _check_data(x, y)
    n = len(x)
    batch_size = min(int_at_least(batch_size, "batch_size", 1), n)
    if n_probes is not None:
        n_probes = int_at_least(n_probes, "n_probes", 1)
    if target_rel_se is not None:
        positive_float(target_rel_se, "target_rel_se")
        int_at_least(max_probes, "max_probes", 2)
    power_iters = int_at_least(power_iters, "power_iters", 0)
    positive_float(power_tol, "power_tol")
    if power_examples is not None:
        power_examples = int_at_least(power_examples, "power_examples", 1)
    two_batch_factor = int_at_least(two_batch_factor, "two_batch_factor", 2)
    seed = int_at_least(seed, "seed", 0)
    if not isinstance(quiet, bool):
        raise TypeError(f"quiet must be True or False; got {quiet!r}")
    _check_weights(model)

    t_start = time.perf_counter()
    ops = model_ops(model, loss)
    rng = np.random.default_rng(seed)
    data = _Batches(x, y, batch_size, ops.batch_shape(batch_size), rng)

    pe = _per_example_pass(ops, data, two_batch_factor, quiet)
    t_pe = time.perf_counter() - t_start

    t0 = time.perf_counter()
    trace_h, hvp_times = _hutchinson_pass(ops, data, rng, n_probes, target_rel_se, max_probes,
                                          quiet)
    t_hutch = time.perf_counter() - t0

    t0 = time.perf_counter()
    lam = None
    if power_iters > 0:
        lam = _power_pass(ops, data, rng, power_iters, power_tol, power_examples, quiet)
    t_pow = time.perf_counter() - t0

    l2_groups = l2_regularised_weights(model)
    lam_of = {p: lam_ for p, lam_, _ in l2_groups}
    l2_penalty = sum(lam_of[v.path] * float(np.sum(np.asarray(v.value, dtype=np.float64) ** 2))
                     for v in model.trainable_variables if v.path in lam_of)

    keras = import_keras()
    gct = pe["grad_cov"]
    degenerate, reason = _degeneracy(pe["n_zero_grad"], n, gct, trace_h)
    if degenerate:
        warnings.warn(f"degenerate estimate: {reason}", RuntimeWarning, stacklevel=2)
    return est._jsonable({
        "n_examples": n,
        "batch_size": batch_size,
        "n_params": int(sum(np.prod(s) for s in ops.shapes)),
        "backend": keras.backend.backend(),
        "seed": seed,
        "loss": pe["loss_sum"] / n,
        "loss_name": loss if isinstance(loss, str) else getattr(loss, "__name__", repr(loss)),
        "accuracy": pe["n_correct"] / n,
        "l2_penalty": l2_penalty,
        "grad_norm": math.sqrt(gct.mean_grad_sqnorm),
        "trace_grad_cov": gct.as_dict(),
        "trace_hessian": {**trace_h.as_dict(), "n_examples": n, "data_loss_only": True},
        "l2_trace_contribution": {
            "value": sum(est.l2_trace_contribution(lam_, k) for _, lam_, k in l2_groups),
            "n_weights": sum(k for _, _, k in l2_groups),
            "l2": sorted(set(lam_of.values()))},
        "lambda_max": lam,
        "two_batch": pe["two_batch"],
        "n_zero_grad": pe["n_zero_grad"],
        "zero_grad_threshold": math.sqrt(ZERO_GRAD_SQNORM),
        "degenerate": degenerate,
        "degenerate_reason": reason,
        "timings": {
            "per_example_s": t_pe, "hutchinson_s": t_hutch, "power_s": t_pow,
            "total_s": time.perf_counter() - t_start,
            # the first call includes tracing/compilation; the steady state excludes it
            "per_example_first_batch_s": pe["times"][0],
            "per_example_s_per_batch": _steady(pe["times"]),
            "hvp_first_batch_s": hvp_times[0] if hvp_times else None,
            "hvp_s_per_batch": _steady(hvp_times),
        },
    })


class _Batches:
    """The evaluation set, permuted once and cut into batches padded to one shape."""

    def __init__(self, x, y, batch_size, padded, rng):
        perm = rng.permutation(len(x))
        self.x, self.y, self.size, self.padded = x, y, batch_size, padded
        self.index = [perm[i:i + batch_size] for i in range(0, len(x), batch_size)]
        self.counts = np.array([len(b) for b in self.index], dtype=float)

    def arrays(self, idx):
        """(x, y, w) of a batch: padded by repeating its own examples, with weight 0."""
        full = np.resize(idx, self.padded)
        w = np.zeros(self.padded, np.float32)
        w[:len(idx)] = 1.0
        return self.x[full], self.y[full], w


def _per_example_pass(ops, data, two_batch_factor, quiet):
    """Loss, accuracy, tr Σ and the two-batch estimate from one pass of per-example gradients."""
    bs, n = data.size, len(data.x)
    # B_big = factor * B_small, the factor cut to the number of full batches
    factor = min(two_batch_factor, int(np.sum(data.counts == bs)))
    times, sqnorms, loss_sum, n_correct, total, n_zero = [], [], 0.0, 0.0, None, 0
    small, big, group, group_small = [], [], None, []
    with tqdm(total=len(data.index), desc="per-example gradients", disable=quiet,
              leave=False) as bar:
        for b, idx in enumerate(data.index):
            t0 = time.perf_counter()
            sq, gsum, lsum, ncorr = ops.per_example(*data.arrays(idx))
            times.append(time.perf_counter() - t0)
            if not (np.all(np.isfinite(sq)) and math.isfinite(lsum)):
                raise ValueError(f"gradient is not finite on evaluation batch {b} "
                                 f"(examples {idx[:5].tolist()}...); loss sum {lsum}")
            sqnorms.append(sq[:len(idx)])
            n_zero += int(np.sum(np.asarray(sq[:len(idx)], dtype=np.float64) <= ZERO_GRAD_SQNORM))
            loss_sum += lsum
            n_correct += ncorr
            total = gsum if total is None else [a + g for a, g in zip(total, gsum)]
            if len(idx) == bs and factor >= 2:   # two-batch: disjoint full batches
                group_small.append(_sqnorm(gsum) / bs ** 2)
                group = gsum if group is None else [a + g for a, g in zip(group, gsum)]
                if len(group_small) == factor:
                    small.append(float(np.mean(group_small)))
                    big.append(_sqnorm(group) / (factor * bs) ** 2)
                    group, group_small = None, []
            bar.update()
    two_batch = None
    if big:
        two_batch = est.two_batch_noise(np.asarray(small), np.asarray(big), bs, factor * bs,
                                        n_data=n).as_dict()
    return {"grad_cov": est.grad_cov_trace(np.concatenate(sqnorms), total),
            "loss_sum": loss_sum, "n_correct": n_correct, "two_batch": two_batch,
            "times": times, "n_zero_grad": n_zero}


def _degeneracy(n_zero, n, gct, trace_h):
    """(degenerate, plain reason or None) of a measurement; see :func:`measure`."""
    if n_zero >= DEGENERATE_FRACTION * n:
        return True, (f"{n_zero} of {n} examples have a zero per-example gradient "
                      f"(norm <= {math.sqrt(ZERO_GRAD_SQNORM):g}): the model's outputs are "
                      "saturated under the loss (typically an under-trained network whose "
                      "batch-norm running statistics are still near their initial values, "
                      "giving huge logits that the clipped loss flattens), so grad norm, "
                      "tr Sigma, tr H and lambda_max describe a flat region, not a minimum; "
                      "train longer (or check the run) before estimating")
    if gct.mean_example_sqnorm == 0.0 and trace_h.mean == 0.0:
        return True, ("every per-example gradient and every Hessian probe is exactly zero; "
                      "the loss is flat at these weights, so there is nothing to measure")
    return False, None


def _hutchinson_pass(ops, data, rng, n_probes, target_rel_se, max_probes, quiet):
    """tr H with one fresh probe per batch; vᵀHv is formed on the device."""
    times = []

    def vhv(v, idx):
        t0 = time.perf_counter()
        out = ops.vhv(*data.arrays(idx), v)
        times.append(time.perf_counter() - t0)
        return out

    total = None if target_rel_se is not None else (n_probes or len(data.index))
    with tqdm(total=total, desc="Hutchinson tr H", disable=quiet, leave=False) as bar:
        trace_h = est.hutchinson_trace(
            vhv, ops.shapes, n_probes=n_probes, batches=data.index, batch_weights=data.counts,
            rng=rng, target_rel_se=target_rel_se, max_probes=max_probes, quadratic_form=True,
            callback=lambda k: bar.update())
    return trace_h, times


def _power_pass(ops, data, rng, power_iters, power_tol, power_examples, quiet):
    """λ_max of the Hessian of the first ``power_examples`` (permuted) examples."""
    n = len(data.x)
    n_pow = n if power_examples is None else min(power_examples, n)
    batches = data.index[:math.ceil(n_pow / data.size)]
    with tqdm(total=power_iters, desc="power iteration", disable=quiet, leave=False) as bar:
        eig = est.top_hessian_eigenvalue(
            lambda v, idx: ops.hvp(*data.arrays(idx), v), ops.shapes, rng=rng,
            max_iters=max(power_iters, 2), tol=power_tol, batches=batches,
            batch_weights=[len(b) for b in batches], callback=lambda k: bar.update())
    return {**eig.as_dict(), "n_examples": int(sum(len(b) for b in batches))}


def estimate_run(run_dir, *, examples: int | None = None, probes: int | None = None,
                 batch_size: int = 256, seed: int = 0, quiet: bool = False, **measure_kwargs) -> dict:
    """Measure a trained run on its first ``examples`` training examples; write ``estimates.json``.

    Loads ``dnn.convnet.train.load_run(run_dir)`` (config, model with final weights,
    standardised data), calls :func:`measure` with the run's loss, and writes
    ``run_dir/estimates.json`` atomically.

    Parameters
    ----------
    run_dir : path
        A folder written by ``dnn.train``.
    examples : int, optional
        Evaluate on the first ``examples`` training examples (default all).
    probes : int, optional
        Hutchinson probes (``n_probes`` of :func:`measure`); default one per batch.
    batch_size, seed, quiet, **measure_kwargs
        Passed to :func:`measure` (``target_rel_se``, ``power_iters``,
        ``power_examples``, ``two_batch_factor``, ...).

    Returns
    -------
    dict
        The contents of ``estimates.json``: :func:`measure`'s dict plus
        ``schema_version``, ``run_dir``, ``evaluation`` {split, examples, of},
        ``train_config`` and ``provenance``.

    Raises
    ------
    ValueError
        If ``examples`` is not in [1, number of training examples], ``run_dir`` is
        missing or not a directory, or as :func:`measure`.
    dnn.RunFileError
        A run file (run.json, final.weights.h5) is corrupt; the message names it.

    Warns
    -----
    RuntimeWarning
        The estimate is degenerate (``estimates.json`` gets ``degenerate: true`` and
        the reason; see :func:`measure`).
    """
    from dataclasses import asdict

    from .. import _runio
    from .train import load_run

    run_dir = Path(run_dir)
    if not isinstance(quiet, bool):
        raise TypeError(f"quiet must be True or False; got {quiet!r}")
    run = load_run(run_dir)       # names a missing/non-directory run_dir and broken files
    _runio.remove_stale_temps(run_dir)   # a killed earlier estimate's leftovers
    config, model, (x_train, y_train) = run.config, run.model, run.train
    n_train = len(x_train)
    if examples is not None:
        if isinstance(examples, bool) or not isinstance(examples, numbers.Integral) \
                or not 1 <= examples <= n_train:
            raise ValueError(f"examples must be an integer in [1, {n_train}] (the training set "
                             f"size); got {examples!r}")
        x_train, y_train = x_train[:examples], y_train[:examples]
    result = measure(model, x_train, y_train, loss=config.loss, batch_size=batch_size,
                     n_probes=probes, seed=seed, quiet=quiet, **measure_kwargs)
    keras = import_keras()
    out = {
        "schema_version": SCHEMA_VERSION,
        "run_dir": str(run_dir),
        "created": _runio.utc_now(),
        "evaluation": {"split": "train", "examples": len(x_train), "of": n_train,
                       "first_examples": True},
        "train_config": config.to_dict() if hasattr(config, "to_dict") else asdict(config),
        **result,
        "provenance": _runio.provenance(keras.backend.backend()),
    }
    _runio.atomic_write_json(run_dir / ESTIMATES_FILE, out)
    return out


# -------------------------------------------------------------------------- helpers

def _resolve_loss(loss):
    """A per-example loss on *integer* labels: names from dnn.convnet.losses get one-hot inside."""
    if isinstance(loss, str):
        from .losses import get_loss

        fn = get_loss(loss)          # ValueError listing the names if unknown
        ops = import_keras().ops

        def on_labels(y, logits):
            # inside the compiled function, so the encoding costs nothing per batch
            return fn(ops.one_hot(ops.cast(y, "int32"), logits.shape[-1]), logits)
        on_labels.__name__ = loss
        return on_labels
    if callable(loss):
        return loss
    raise ValueError(f"loss must be a loss name or a callable; got {loss!r}")


def _check_data(x, y):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x must hold at least one example; got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"y must be 1-D integer labels of length len(x)={len(x)}; got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class labels; got dtype {y.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise ValueError("x must be finite; it contains NaN or inf")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x, y.astype(np.int32)


def _check_weights(model):
    for v in model.variables:
        a = np.asarray(v.value)
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"model weights must be finite; {v.path} contains "
                             f"{a[~np.isfinite(a)].ravel()[0]}")


def _sqnorm(arrays) -> float:
    return float(sum(np.sum(np.asarray(a, dtype=np.float64) ** 2) for a in arrays))


def _steady(times):
    if not times:
        return None
    return float(np.median(times[1:])) if len(times) > 1 else float(times[0])
