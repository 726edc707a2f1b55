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
reference for the per-step ‖ĝ_k‖² the Keras optimizer records.
"""

import json
import os
import sys

# Problem: N = 64 examples, d = 4, H eigenvalues 0.49..0.96; η = 0.3, S = 4.
# There the exact finite-sum law (fourth-moment noise, discrete time) predicts an
# excess loss 32 % above Wang's continuous (η/4S) tr Σ, so the test can tell them apart.
N, D, LR, BATCH = 64, 4, 0.3, 4
STEPS, BURN_IN, RECORD_EVERY, N_BLOCKS, SEED = 6000, 200, 2, 20, 1


def problem():
    """(X, y) in float32: Gaussian design with unequal column scales, noisy linear targets."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)) @ np.diag([1.0, 0.9, 0.8, 0.7])
    y = x @ rng.normal(size=D) + rng.normal(size=N)
    return x.astype(np.float32), y.astype(np.float32)


def replay(burn_in, steps):
    """‖ĝ_k‖² of the recorded steps, and θ after them, by plain float64 numpy SGD.

    Draws the minibatches exactly as ``dnn.stationary.sgd_stationary`` does (one
    ``rng.integers(0, N, size=S)`` per step, burn-in included) from θ = 0.
    """
    import numpy as np

    x, y = (a.astype(np.float64) for a in problem())
    rng = np.random.default_rng(SEED)
    theta = np.zeros(D)
    sq = np.empty(steps)
    for k in range(burn_in + steps):
        idx = rng.integers(0, N, size=BATCH)
        g = x[idx].T @ (x[idx] @ theta - y[idx]) / BATCH
        if k >= burn_in:
            sq[k - burn_in] = g @ g
        theta = theta - LR * g
    return sq, theta


def run(backend=None):
    """Measure the stationary phase on the quadratic; returns a JSON-ready dict."""
    if backend is not None:
        os.environ.setdefault("KERAS_BACKEND", backend)
    import numpy as np

    import theory
    from dnn.convnet.backend import import_keras
    from dnn.convnet.stationary import SAMPLER, sgd_stationary, summarize_stationary

    keras = import_keras()
    ops = keras.ops
    x, y = problem()
    exact = theory.least_squares_stationary(x.astype(float), y.astype(float), LR, BATCH,
                                            replacement=(SAMPLER == "iid_with_replacement"))

    inputs = keras.Input((D,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False,
                                                   kernel_initializer="zeros")(inputs))

    def half_squared_error(y_true, y_pred):
        # per example ½(xᵀθ − y)²; Keras averages over the batch: L = (1/2N)‖Xθ − y‖²
        return 0.5 * ops.sum(ops.square(y_pred - ops.cast(y_true, y_pred.dtype)), axis=-1)

    phase = sgd_stationary(model, x, y[:, None], half_squared_error, lr=LR, batch_size=BATCH,
                           steps=STEPS, burn_in=BURN_IN, record_every=RECORD_EVERY,
                           n_blocks=N_BLOCKS, seed=SEED)
    summary = summarize_stationary(phase)
    theta_bar = np.asarray(model.trainable_variables[0].value, dtype=float)[:, 0]
    return {
        "backend": keras.backend.backend(),
        "status": phase["status"],
        "observed": summary["observed"],
        "polyak": summary["polyak"],
        "identity": summary["identity"],
        "diagnostics": summary["diagnostics"],
        "lr": LR,
        "grad_sqnorm": phase["grad_sqnorm"],
        "burn_in": phase["burn_in"],
        "stationary_check": summary["diagnostics"]["stationary"],
        "exact": exact.expected_excess_loss,
        "wang_continuous": float(theory.expected_loss_wang(np.trace(exact.grad_cov), LR,
                                                           BATCH)),
        "loss_star": exact.loss_star,
        "loss_at_mean": phase["loss_at_mean"],
        "loss_at_mean_direct": float(0.5 * np.mean((x @ theta_bar - y) ** 2)),
        "theta_bar_minus_star": (theta_bar - exact.minimizer).tolist(),
        "steps": phase["steps"],
        "sampler": phase["sampler"],
    }


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else None)))
