"""The explicit quadratic model of the stationary-phase test (importable, or run as a script).

A linear model without bias, f(x) = xᵀθ (keras ``Dense(1, use_bias=False)``),
with the half squared error ℓ_i = ½(x_iᵀθ − y_i)², so that
L(θ) = (1/2N)‖Xθ − y‖² exactly as in ``theory.least_squares_stationary``.
The measurement goes through the same code path as the ResNet:
``dnn.stationary.sgd_stationary`` (BN-free here, but the same wrapper model,
measuring optimizer, sampler and recorder) and
``dnn.stationary.summarize_stationary``.

Run as ``python quadratic_case.py BACKEND`` it prints the result as JSON, so
the other Keras backend can be checked in a fresh process.  :func:`replay`
repeats the same SGD in float64 numpy (same seed, same draws), an independent
reference for the per-step ‖ĝ_k‖² and ‖v_k‖² the phase records.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

# Problem: N = 64 examples, d = 4, H eigenvalues 0.49..0.96; η = 0.3, S = 4.
# There the exact finite-sum law (fourth-moment noise, discrete time) predicts an
# excess loss 32 % above Wang's continuous (η/4S) tr Σ, so the test can tell them apart.
N, D, LR, BATCH = 64, 4, 0.3, 4
STEPS, BURN_IN, RECORD_EVERY, N_BLOCKS, SEED = 6000, 200, 2, 20, 1

# Heavy ball at β = 0.9: η = 0.05 is the effective rate η/(1 − β) = 0.5, where the exact
# law is 28 % above (12) at that rate.  Every mode is underdamped (ηh > (1 − √β)²), so
# its amplitude decays as β^{k/2}: 1000 steps of burn-in are e^{-53}, and blocks of
# 600 steps span many of the ~20-step correlation times of ‖v‖².
MOMENTUM, MOMENTUM_LR, MOMENTUM_STEPS, MOMENTUM_BURN_IN = 0.9, 0.05, 12000, 1000


def problem():
    """(X, y) in float32: Gaussian design with unequal column scales, noisy linear targets."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)) @ np.diag([1.0, 0.9, 0.8, 0.7])
    y = x @ rng.normal(size=D) + rng.normal(size=N)
    return x.astype(np.float32), y.astype(np.float32)


def replay(burn_in, steps, lr=LR, momentum=0.0):
    """‖ĝ_k‖² and ‖v_{k+1}‖² of the recorded steps, and θ after them, by float64 numpy.

    Heavy ball v ← βv − ηĝ, θ ← θ + v from θ = 0, v = 0, drawing the minibatches
    exactly as ``dnn.stationary.sgd_stationary`` does (one
    ``rng.integers(0, N, size=S)`` per step, burn-in included).
    """
    import numpy as np

    x, y = (a.astype(np.float64) for a in problem())
    rng = np.random.default_rng(SEED)
    theta = np.zeros(D)
    v = np.zeros(D)
    sq = np.empty(steps)
    vsq = np.empty(steps)
    for k in range(burn_in + steps):
        idx = rng.integers(0, N, size=BATCH)
        g = x[idx].T @ (x[idx] @ theta - y[idx]) / BATCH
        v = momentum * v - lr * g
        if k >= burn_in:
            sq[k - burn_in] = g @ g
            vsq[k - burn_in] = v @ v
        theta = theta + v
    return sq, vsq, theta


def run(backend=None, momentum=0.0, loop="auto", steps=None):
    """Measure the stationary phase on the quadratic; returns a JSON-ready dict.

    ``momentum=0``: plain SGD at η = LR; else heavy ball at η = MOMENTUM_LR with
    MOMENTUM_STEPS (or ``steps``) recorded steps.
    """
    if backend is not None:
        os.environ.setdefault("KERAS_BACKEND", backend)
    import numpy as np

    import theory
    from dnn.convnet.backend import import_keras
    from dnn.convnet.stationary import SAMPLER, sgd_stationary, summarize_stationary

    keras = import_keras()
    ops = keras.ops
    x, y = problem()
    lr = LR if momentum == 0 else MOMENTUM_LR
    steps = steps or (STEPS if momentum == 0 else MOMENTUM_STEPS)
    burn_in = BURN_IN if momentum == 0 else MOMENTUM_BURN_IN
    exact = theory.least_squares_stationary(x.astype(float), y.astype(float), lr, BATCH,
                                            replacement=(SAMPLER == "iid_with_replacement"),
                                            momentum=momentum)

    inputs = keras.Input((D,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False,
                                                   kernel_initializer="zeros")(inputs))

    def half_squared_error(y_true, y_pred):
        # per example ½(xᵀθ − y)²; Keras averages over the batch: L = (1/2N)‖Xθ − y‖²
        return 0.5 * ops.sum(ops.square(y_pred - ops.cast(y_true, y_pred.dtype)), axis=-1)

    phase = sgd_stationary(model, x, y[:, None], half_squared_error, lr=lr, batch_size=BATCH,
                           steps=steps, burn_in=burn_in, momentum=momentum,
                           record_every=RECORD_EVERY, n_blocks=N_BLOCKS, seed=SEED, loop=loop)
    summary = summarize_stationary(phase)
    theta_bar = np.asarray(model.trainable_variables[0].value, dtype=float)[:, 0]
    return {
        "backend": keras.backend.backend(),
        "status": phase["status"],
        "observed": summary["observed"],
        "polyak": summary["polyak"],
        "identity": summary["identity"],
        "diagnostics": summary["diagnostics"],
        "lr": lr,
        "momentum": phase["momentum"],
        "loop": phase["loop"],
        "grad_sqnorm": phase["grad_sqnorm"],
        "step_sqnorm": phase["step_sqnorm"],
        "burn_in": phase["burn_in"],
        "stationary_check": summary["diagnostics"]["stationary"],
        "exact": exact.expected_excess_loss,
        "wang_continuous": float(theory.expected_loss_wang(np.trace(exact.grad_cov), lr,
                                                           BATCH, momentum=momentum)),
        "loss_star": exact.loss_star,
        "loss_at_mean": phase["loss_at_mean"],
        "loss_at_mean_direct": float(0.5 * np.mean((x @ theta_bar - y) ** 2)),
        "theta_bar_minus_star": (theta_bar - exact.minimizer).tolist(),
        "steps": phase["steps"],
        "sampler": phase["sampler"],
    }


def other_backend(backend):
    """The Keras backend that is not ``backend`` (JAX or TensorFlow)."""
    return "tensorflow" if backend == "jax" else "jax"


def run_in_fresh_process(backend, *args):
    """:func:`run` on ``backend`` in a new Python process; its JSON result as a dict.

    Keras cannot switch backends in-process, so the other backend's check runs this
    file as a script, with the repository on ``PYTHONPATH``.  ``args`` are the
    script's MOMENTUM and STEPS.
    """
    here = Path(__file__).resolve().parent
    root = here.parents[2]
    env = {**os.environ, "KERAS_BACKEND": backend,
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(here / "quadratic_case.py"), backend,
                          *map(str, args)], env=env, capture_output=True, text=True,
                         timeout=600, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    # python quadratic_case.py BACKEND [MOMENTUM [STEPS]]
    args = sys.argv[1:]
    print(json.dumps(run(args[0] if args else None,
                         momentum=float(args[1]) if len(args) > 1 else 0.0,
                         steps=int(args[2]) if len(args) > 2 else None)))
