"""Autodiff primitives for the estimators on the TensorFlow backend.

Same contract as ``dnn._jax_ops.JaxOps`` (batch norm in inference mode, batches
weighted with w_i in {0, 1} so one trace serves every batch, sums over the batch).

- HVP: ``tf.autodiff.ForwardAccumulator`` around a ``GradientTape`` (forward over
  reverse).
- Per-example gradients: ``tf.vectorized_map`` of a one-example gradient. TF's
  vectoriser has no batched rule for ``Conv2DBackpropFilter`` and runs that op
  in a ``while_loop`` (it logs "uses a while_loop"); the result is exact, only
  slower than JAX's ``vmap``. Tests compare it with an explicit Python loop.

A oneDNN bug on CPU (TensorFlow 2.21): the filter gradient of a strided 1×1
convolution with few channels (e.g. 2→4 or 8→16 channels at 32×32 or 16×16,
stride 2) corrupts the heap and aborts the process when the batch size is odd.
So on CPU each example's gradient is taken on a batch of two copies of it (the
mean of two equal losses has the same gradient), and ``batch_shape`` rounds
batches up to an even length (the extra example has weight 0). On a GPU,
neither is needed.
"""

from __future__ import annotations

import weakref

import numpy as np

__all__ = ["TfOps"]


class TfOps:
    """Traced loss/gradient, HVP and per-example gradient norms of one model.

    Parameters
    ----------
    model : keras.Model
        A built model on the TensorFlow backend.
    loss_fn : callable
        ``loss_fn(y_true, y_pred) -> (batch,)`` per-example losses (``keras.ops``).
    """

    backend = "tensorflow"

    def __init__(self, model, loss_fn):
        import tensorflow as tf

        # weak: a cache keyed by the model must not keep it alive
        self._model = weakref.ref(model)
        mref = self._model
        self.shapes = [tuple(v.shape) for v in model.trainable_variables]
        self.names = [v.path for v in model.trainable_variables]
        self._dtypes = [v.dtype for v in model.trainable_variables]
        # the tf.Variables themselves: what tapes and accumulators watch
        variables = [v.value for v in model.trainable_variables]
        zero = tf.UnconnectedGradients.ZERO

        def forward(x, y):
            out = mref()(x, training=False)
            losses = tf.cast(loss_fn(y, out), tf.float32)
            correct = tf.cast(tf.equal(tf.argmax(out, axis=-1, output_type=y.dtype), y),
                              tf.float32)
            return losses, correct

        def loss_grad(x, y, w):
            with tf.GradientTape() as tape:
                losses, correct = forward(x, y)
                loss_sum = tf.reduce_sum(w * losses)
            grad = tape.gradient(loss_sum, variables, unconnected_gradients=zero)
            return loss_sum, tf.reduce_sum(w * correct), grad

        def hvp(x, y, w, v):
            with tf.autodiff.ForwardAccumulator(variables, v) as acc:
                with tf.GradientTape() as tape:
                    losses, _ = forward(x, y)
                    loss = tf.reduce_sum(w * losses) / tf.reduce_sum(w)
                grad = tape.gradient(loss, variables, unconnected_gradients=zero)
            return acc.jvp(grad, unconnected_gradients=zero)

        def vhv(x, y, w, v):
            hv = hvp(x, y, w, v)
            return tf.add_n([tf.reduce_sum(a * b) for a, b in zip(v, hv)])

        # see the module docstring: odd batches crash oneDNN's strided 1x1 filter gradient
        self._cpu = not tf.config.list_physical_devices("GPU")
        copies = 2 if self._cpu else 1

        def per_example(x, y, w):
            def one(args):
                xi, yi = args
                with tf.GradientTape() as tape:
                    losses, correct = forward(tf.stack([xi] * copies), tf.stack([yi] * copies))
                    loss = tf.reduce_mean(losses)          # = l_i: the copies are equal
                grads = tape.gradient(loss, variables, unconnected_gradients=zero)
                sq = tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads])
                return loss, correct[0], sq, grads

            losses, correct, sq, grads = tf.vectorized_map(one, (x, y))
            grad_sum = [tf.tensordot(w, g, axes=1) for g in grads]
            return w * sq, grad_sum, tf.reduce_sum(w * losses), tf.reduce_sum(w * correct)

        # reduce_retracing: shapes are fixed by padding, so each traces once
        self._loss_grad = tf.function(loss_grad, reduce_retracing=True)
        self._hvp = tf.function(hvp, reduce_retracing=True)
        self._vhv = tf.function(vhv, reduce_retracing=True)
        self._per_example = tf.function(per_example, reduce_retracing=True)
        self._tf = tf

    def batch_shape(self, batch_size: int) -> int:
        """Length to pad a batch of ``batch_size`` to (even on CPU, see the module docstring)."""
        return batch_size + batch_size % 2 if self._cpu else batch_size

    def _inputs(self, x, y, w):
        tf = self._tf
        return (tf.convert_to_tensor(x), tf.convert_to_tensor(np.asarray(y, dtype=np.int64)),
                tf.convert_to_tensor(np.asarray(w, dtype=np.float32)))

    def _cast(self, v):
        return [self._tf.convert_to_tensor(np.asarray(a, dtype=dt))
                for a, dt in zip(v, self._dtypes)]

    def loss_grad(self, x, y, w):
        """Σ w_i l_i, Σ w_i·[correct_i], and Σ w_i ∇l_i (list of ndarray)."""
        loss_sum, n_correct, grad = self._loss_grad(*self._inputs(x, y, w))
        return float(loss_sum), float(n_correct), [g.numpy() for g in grad]

    def hvp(self, x, y, w, v):
        """H v for H the Hessian of the weighted-mean loss Σ w_i l_i / Σ w_i."""
        return [a.numpy() for a in self._hvp(*self._inputs(x, y, w), self._cast(v))]

    def vhv(self, x, y, w, v):
        """vᵀ H v."""
        return float(self._vhv(*self._inputs(x, y, w), self._cast(v)))

    def per_example(self, x, y, w):
        """(w_i ‖∇l_i‖² per example, Σ w_i ∇l_i, Σ w_i l_i, Σ w_i·[correct_i])."""
        sq, grad_sum, loss_sum, n_correct = self._per_example(*self._inputs(x, y, w))
        return (sq.numpy().astype(np.float64), [g.numpy() for g in grad_sum],
                float(loss_sum), float(n_correct))
