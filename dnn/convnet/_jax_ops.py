"""Autodiff primitives for the estimators on the JAX backend.

All functions run the model through ``stateless_call(..., training=False)``, so
batch norm uses its running statistics and every example's loss depends on that
example only (theory.md: per-example gradients are undefined in training mode).

A batch carries weights w_i (1 for real examples, 0 for padding), so that every
batch has the same shape and each function compiles once per model and batch
size. Batch results are *sums* Σ_i w_i(·) so that batches combine by addition;
the Hessian is that of the weighted mean Σ_i w_i l_i / Σ_i w_i.
"""

from __future__ import annotations

import weakref

import numpy as np

__all__ = ["JaxOps"]


class JaxOps:
    """Compiled loss/gradient, HVP and per-example gradient norms of one model.

    Parameters
    ----------
    model : keras.Model
        A built model on the JAX backend.
    loss_fn : callable
        ``loss_fn(y_true, y_pred) -> (batch,)`` per-example losses, written with
        ``keras.ops``; the data loss is their mean (no regularisation losses).
    """

    backend = "jax"

    def __init__(self, model, loss_fn):
        import jax
        import jax.numpy as jnp

        # weak: a cache keyed by the model must not keep it alive
        self._model = weakref.ref(model)
        mref = self._model
        self.shapes = [tuple(v.shape) for v in model.trainable_variables]
        self.names = [v.path for v in model.trainable_variables]
        self._dtypes = [v.dtype for v in model.trainable_variables]

        def forward(params, state, x, y):
            out, _ = mref().stateless_call(params, state, x, training=False)
            losses = jnp.asarray(loss_fn(y, out), dtype=jnp.float32)
            correct = (jnp.argmax(out, axis=-1) == y).astype(jnp.float32)
            return losses, correct

        def weighted_sum(params, state, x, y, w):
            losses, correct = forward(params, state, x, y)
            return jnp.sum(w * losses), jnp.sum(w * correct)

        def mean_loss(params, state, x, y, w):
            return weighted_sum(params, state, x, y, w)[0] / jnp.sum(w)

        def loss_grad(params, state, x, y, w):
            (loss_sum, n_correct), grad = jax.value_and_grad(weighted_sum, has_aux=True)(
                params, state, x, y, w)
            return loss_sum, n_correct, grad

        def hvp(params, state, x, y, w, v):
            # forward-over-reverse: one jvp of the gradient (theory.md)
            def grad_fn(p):
                return jax.grad(mean_loss)(p, state, x, y, w)
            return jax.jvp(grad_fn, (params,), (v,))[1]

        def vhv(params, state, x, y, w, v):
            hv = hvp(params, state, x, y, w, v)
            return sum(jnp.vdot(a, b) for a, b in zip(v, hv))

        def one_example(params, state, xi, yi):
            losses, correct = forward(params, state, xi[None], yi[None])
            return losses[0], correct[0]

        def per_example(params, state, x, y, w):
            (losses, correct), grads = jax.vmap(
                jax.value_and_grad(one_example, has_aux=True),
                in_axes=(None, None, 0, 0))(params, state, x, y)
            sqnorms = sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in grads)
            grad_sum = [jnp.tensordot(w, g, axes=1) for g in grads]
            return w * sqnorms, grad_sum, jnp.sum(w * losses), jnp.sum(w * correct)

        self._loss_grad = jax.jit(loss_grad)
        self._hvp = jax.jit(hvp)
        self._vhv = jax.jit(vhv)
        self._per_example = jax.jit(per_example)

    def batch_shape(self, batch_size: int) -> int:
        """Length to pad a batch of ``batch_size`` to (no constraint on JAX)."""
        return batch_size

    # Current variable values are read on every call, so the compiled functions
    # stay valid after weights change (they are arguments, not constants).
    def _state(self):
        m = self._model()
        return ([v.value for v in m.trainable_variables],
                [v.value for v in m.non_trainable_variables])

    def _cast(self, v):
        return [np.asarray(a, dtype=dt) for a, dt in zip(v, self._dtypes)]

    def loss_grad(self, x, y, w):
        """Σ w_i l_i, Σ w_i·[correct_i], and Σ w_i ∇l_i (list of ndarray)."""
        p, s = self._state()
        loss_sum, n_correct, grad = self._loss_grad(p, s, x, y, w)
        return float(loss_sum), float(n_correct), [np.asarray(g) for g in grad]

    def hvp(self, x, y, w, v):
        """H v for H the Hessian of the weighted-mean loss Σ w_i l_i / Σ w_i."""
        p, s = self._state()
        return [np.asarray(a) for a in self._hvp(p, s, x, y, w, self._cast(v))]

    def vhv(self, x, y, w, v):
        """vᵀ H v, computed on the device (only a scalar comes back)."""
        p, s = self._state()
        return float(self._vhv(p, s, x, y, w, self._cast(v)))

    def per_example(self, x, y, w):
        """(w_i ‖∇l_i‖² per example, Σ w_i ∇l_i, Σ w_i l_i, Σ w_i·[correct_i])."""
        p, s = self._state()
        sq, grad_sum, loss_sum, n_correct = self._per_example(p, s, x, y, w)
        return (np.asarray(sq, dtype=np.float64), [np.asarray(g) for g in grad_sum],
                float(loss_sum), float(n_correct))
