"""Tiny networks, brute-force references and the cross-backend worker for the estimator tests.

No tests live here. The test modules load this file by path; run as a script it
is the worker of the cross-backend test: it builds the tiny network on the
backend given by ``KERAS_BACKEND``, loads the weights the parent wrote, and
prints the quantities the parent compares as one JSON line.

References are independent of ``dnn.convnet._jax_ops`` / ``dnn.convnet._tf_ops``: the Hessian is
``jax.hessian`` of the flattened parameters (JAX) or ``GradientTape.jacobian`` of
the gradient (TF), never a forward-mode HVP; per-example gradients come from an
explicit Python loop over single examples.
"""

from __future__ import annotations

import json
import sys

import numpy as np

INPUT_SHAPE = (6, 6, 2)
N_CLASSES = 4
L2 = 1e-3


def keras_module():
    from dnn.convnet.backend import import_keras
    return import_keras()


def xent(y_true, logits):
    """Per-example softmax cross-entropy of integer labels, in keras.ops (smooth, both backends)."""
    ops = keras_module().ops
    z = ops.cast(logits, "float32")
    picked = ops.take_along_axis(z, ops.expand_dims(ops.cast(y_true, "int32"), 1), axis=1)[:, 0]
    return ops.logsumexp(z, axis=-1) - picked


def tiny_model(seed=0):
    """Conv(3x3, no bias) + BN + ReLU + GAP + Dense + ReLU + Dense logits: 164 trainable parameters.

    L2 on the kernels; BN running statistics set away from (0, 1) so that
    inference mode differs visibly from training mode.
    """
    keras = keras_module()
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    reg = keras.regularizers.L2(L2)
    inp = keras.Input(INPUT_SHAPE)
    h = layers.Conv2D(4, 3, padding="same", use_bias=False, kernel_regularizer=reg)(inp)
    h = layers.BatchNormalization()(h)
    h = layers.Activation("relu")(h)
    h = layers.GlobalAveragePooling2D()(h)
    h = layers.Dense(8, activation="relu", kernel_regularizer=reg)(h)
    out = layers.Dense(N_CLASSES, kernel_regularizer=reg)(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(seed + 100)
    bn = next(la for la in model.layers if isinstance(la, layers.BatchNormalization))
    bn.moving_mean.assign(rng.normal(0, 0.3, 4).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 4).astype("float32"))
    bn.gamma.assign(rng.uniform(0.5, 1.5, 4).astype("float32"))
    bn.beta.assign(rng.normal(0, 0.2, 4).astype("float32"))
    return model


def tiny_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *INPUT_SHAPE)).astype("float32")
    y = rng.integers(0, N_CLASSES, size=n).astype("int32")
    return x, y


def _backend():
    return keras_module().backend.backend()


def ref_hessian(model, x, y, loss=xent):
    """Exact Hessian (d, d) of the mean loss over (x, y), inference-mode BN, float64 out."""
    if _backend() == "jax":
        import jax
        import jax.numpy as jnp
        from jax.flatten_util import ravel_pytree

        params = [v.value for v in model.trainable_variables]
        state = [v.value for v in model.non_trainable_variables]
        flat, unravel = ravel_pytree(params)

        def f(theta):
            out, _ = model.stateless_call(unravel(theta), state, x, training=False)
            return jnp.mean(loss(y, out))
        # jit: un-jitted jax.hessian of a conv net takes ~15 s on CPU, jitted ~1 s
        return np.asarray(jax.jit(jax.hessian(f))(flat), dtype=np.float64)
    import tensorflow as tf

    variables = [v.value for v in model.trainable_variables]
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            l_mean = tf.reduce_mean(loss(tf.constant(y), model(x, training=False)))
        g = tf.concat([tf.reshape(a, [-1]) for a in inner.gradient(l_mean, variables)], 0)
    jac = outer.jacobian(g, variables, experimental_use_pfor=True)
    return np.concatenate([np.reshape(j.numpy(), (g.shape[0], -1)) for j in jac], axis=1).astype(
        np.float64)


def ref_per_example_grads(model, x, y, loss=xent):
    """(N, d) per-example gradients by an explicit loop over batches of one (float64 out)."""
    rows = []
    if _backend() == "jax":
        import jax
        import jax.numpy as jnp

        params = [v.value for v in model.trainable_variables]
        state = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def grad1(p, xi, yi):
            def f(q):
                out, _ = model.stateless_call(q, state, xi, training=False)
                return jnp.sum(loss(yi, out))
            return jax.grad(f)(p)
        for i in range(len(x)):
            g = grad1(params, x[i:i + 1], y[i:i + 1])
            rows.append(np.concatenate([np.ravel(a) for a in g]))
    else:
        import tensorflow as tf

        variables = [v.value for v in model.trainable_variables]
        for i in range(len(x)):
            # two copies, mean loss: same gradient, and avoids the odd-batch oneDNN
            # crash described in dnn/_tf_ops.py
            xi, yi = np.repeat(x[i:i + 1], 2, axis=0), np.repeat(y[i:i + 1], 2, axis=0)
            with tf.GradientTape() as tape:
                li = tf.reduce_mean(loss(tf.constant(yi), model(xi, training=False)))
            rows.append(np.concatenate([np.ravel(a.numpy()) for a in tape.gradient(li, variables)]))
    return np.asarray(rows, dtype=np.float64)


def flat(arrays):
    return np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in arrays])


def quantities(model, x, y, probe):
    """The numbers compared across backends, computed with this backend's dnn ops."""
    from dnn.convnet.measure import model_ops

    ops = model_ops(model, xent)
    w = np.ones(len(x), np.float32)
    loss_sum, _, grad = ops.loss_grad(x, y, w)
    sq, grad_sum, _, _ = ops.per_example(x, y, w)
    n = len(x)
    hv = ops.hvp(x, y, w, [probe[i:j].reshape(s) for s, i, j in _slices(ops.shapes)])
    return {
        "loss": loss_sum / n,
        "grad_norm": float(np.linalg.norm(flat(grad)) / n),
        "hvp": flat(hv).tolist(),
        "trace_grad_cov": float(np.mean(sq) - np.sum(flat(grad_sum) ** 2) / n ** 2),
        "n_params": int(sum(np.prod(s) for s in ops.shapes)),
    }


def _slices(shapes):
    i = 0
    for s in shapes:
        n = int(np.prod(s))
        yield s, i, i + n
        i += n


def build(kind, seed=0):
    """The networks of the cross-backend test: "tiny" (156 parameters) or "resnet" (dnn.resnet, depth 8, width 2)."""
    if kind == "tiny":
        return tiny_model(seed)
    from dnn.convnet.resnet import resnet
    keras = keras_module()
    keras.utils.set_random_seed(seed)
    model = resnet(8, width=2, l2=1e-4)
    # running statistics away from (0, 1), so that inference mode matters
    rng = np.random.default_rng(seed + 200)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
    return model


def data_for(kind, n, seed=0):
    if kind == "tiny":
        return tiny_data(n, seed)
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 32, 32, 3)).astype("float32"),
            rng.integers(0, 10, size=n).astype("int32"))


def main(argv):
    """``python backend_helpers.py DIR KIND...``: for each KIND, read DIR/KIND.npz and
    DIR/KIND.weights.h5 and print one line ``RESULT {json}``."""
    folder = argv[0]
    for kind in argv[1:]:
        data = np.load(f"{folder}/{kind}.npz")
        model = build(kind, seed=1)              # a different init, overwritten by the load
        model.load_weights(f"{folder}/{kind}.weights.h5")
        out = quantities(model, data["x"], data["y"], data["probe"])
        out.update(kind=kind, backend=_backend())
        print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
