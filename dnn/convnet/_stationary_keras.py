r"""The stationary phase, one ``train_on_batch`` per step: the TensorFlow path, and the reference.

The engine behind :func:`dnn.convnet.stationary.sgd_stationary` on the
TensorFlow backend (``loop="per_step"``; on JAX the compiled loop of
:mod:`dnn.convnet._stationary_jax` is the default, and this one stays available
as its reference and the benchmark's baseline).  A wrapper model forces
``training=False`` (batch norm frozen) and a Keras optimizer subclass, written in
``keras.ops`` so that it runs inside the compiled train step on every backend,
takes the heavy-ball step v ← βv − ηĝ, θ ← θ + v (Keras' SGD update) and records
‖ĝ‖², ‖v‖² and (θ − a)·ĝ on the device.  ĝ is the gradient of Keras' training
objective: the compiled loss plus the model's regularisation losses.  Python runs
once per step; the Keras train and test functions compile once per phase.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["KerasStationaryEngine"]

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
        """Heavy-ball SGD that also measures the gradient it steps with and the step.

        Per step, before the update: ``grad_sqnorm`` ← ‖ĝ‖², ``step_sqnorm`` ←
        ‖βv − ηĝ‖² (the step about to be taken) and ``anchored_dot`` ← (θ − a)·ĝ over
        all variables (a = ``anchors``), and ``grad_sums`` += ĝ.  The update is
        v ← βv − ηĝ, θ ← θ + v; then ``averages`` ← running mean of the iterates
        since ``iterations`` was 0 (avg ← avg + (θ_new − avg)/(t + 1)).  The caller
        resets ``iterations`` and ``grad_sums`` at each block start and sets
        ``anchors`` once.
        """

        def __init__(self, learning_rate, momentum=0.0, **kwargs):
            super().__init__(learning_rate=learning_rate, name="stationary_sgd", **kwargs)
            self.momentum = float(momentum)

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
            # v_0 = 0 at the start of the phase; the burn-in lets it equilibrate
            self.velocities = [self.add_variable_from_reference(v, name="velocity")
                               for v in variables]
            self.grad_sqnorm, self.step_sqnorm, self.anchored_dot = (
                self.add_variable((), initializer="zeros", dtype="float32", name=n)
                for n in ("grad_sqnorm", "step_sqnorm", "anchored_dot"))

        def _step(self, v, g, lr):
            return ops.subtract(ops.multiply(ops.cast(self.momentum, v.dtype), v),
                                ops.multiply(g, lr))

        def apply(self, grads, trainable_variables=None):
            if trainable_variables is not None and not self.built:
                self.build(list(trainable_variables))
            variables = (self._trainable_variables if trainable_variables is None
                         else list(trainable_variables))
            sq = ops.zeros((), "float32")
            vsq = ops.zeros((), "float32")
            dot = ops.zeros((), "float32")
            lr = ops.cast(self.learning_rate, "float32")
            for g, v in zip(grads, variables):
                if g is None:
                    continue
                i = self._get_variable_index(v)
                g32 = ops.cast(g, "float32")
                sq = ops.add(sq, ops.sum(ops.square(g32)))
                step = self._step(ops.cast(self.velocities[i], "float32"), g32, lr)
                vsq = ops.add(vsq, ops.sum(ops.square(step)))
                # θ − a, not θ: the float32 sum of θ·ĝ would bury the small (θ − θ̄)·ĝ
                delta = ops.subtract(ops.cast(v, "float32"),
                                     ops.cast(self.anchors[i], "float32"))
                dot = ops.add(dot, ops.sum(ops.multiply(delta, g32)))
                s = self.grad_sums[i]
                self.assign(s, ops.add(s, ops.cast(g, s.dtype)))
            self.assign(self.grad_sqnorm, sq)
            self.assign(self.step_sqnorm, vsq)
            self.assign(self.anchored_dot, dot)
            return super().apply(grads, trainable_variables)

        def update_step(self, gradient, variable, learning_rate):
            i = self._get_variable_index(variable)
            lr = ops.cast(learning_rate, variable.dtype)
            step = self._step(self.velocities[i], ops.cast(gradient, variable.dtype), lr)
            self.assign(self.velocities[i], step)
            new = ops.add(variable, step)
            self.assign(variable, new)
            avg = self.averages[i]
            count = ops.cast(self.iterations + 1, variable.dtype)
            self.assign(avg, ops.add(avg, ops.divide(ops.subtract(new, avg), count)))

    _CLASSES["model"], _CLASSES["opt"] = InferenceModeModel, StationarySGD
    return InferenceModeModel, StationarySGD


def _chunks(n, max_chunk):
    k = max(1, math.ceil(n / max_chunk))
    # near-equal chunks: at most two distinct shapes, hence at most two compilations
    return np.array_split(np.arange(n), k)


class KerasStationaryEngine:
    """Runs the stationary phase one ``train_on_batch`` per step (same interface as the JAX engine)."""

    def __init__(self, model, x, y, loss, *, lr, momentum, batch_size, record_every,
                 block_len, eval_x, eval_y, eval_batch):
        from .backend import import_keras

        keras = import_keras()
        ops = keras.ops
        Wrapper, StationarySGD = _classes(keras)
        self._wrapped = Wrapper(model)
        self._opt = StationarySGD(lr, momentum)
        self._wrapped.compile(optimizer=self._opt, loss=loss, jit_compile="auto")
        self._variables = self._wrapped.trainable_variables
        self._x, self._y = x, y
        self.record_every, self.block_len = record_every, block_len
        self._n_eval = len(eval_x)
        # Device-resident evaluation chunks: they are reused at every record.
        self._eval_chunks = [(ops.convert_to_tensor(eval_x[i]), ops.convert_to_tensor(eval_y[i]),
                              len(i)) for i in _chunks(len(eval_x), eval_batch)]
        self._built = False

    def _ensure_built(self):
        if not self._built:
            self._opt.build(self._variables)
            self._built = True

    def eval_loss(self, weights=None):
        if weights is not None:
            self.assign(weights)
        tot = 0.0
        for xe, ye, m in self._eval_chunks:
            tot += m * float(self._wrapped.test_on_batch(xe, ye, return_dict=True)["loss"])
        return tot / self._n_eval

    def run(self, idx, n_active, record):
        from .backend import import_keras, to_numpy

        ops = import_keras().ops
        self._ensure_built()
        opt = self._opt
        if record:
            # block start: restart the running mean and the gradient sum on the device
            opt.iterations.assign(0)
            for g in opt.grad_sums:
                g.assign(ops.zeros_like(g.value))
        n = int(n_active)
        gsq, vsq, dot, losses = np.zeros(n), np.zeros(n), np.zeros(n), []
        for k in range(n):
            i = idx[k]
            batch_loss = float(self._wrapped.train_on_batch(self._x[i], self._y[i],
                                                            return_dict=True)["loss"])
            if not math.isfinite(batch_loss):
                return None
            if not record:
                continue
            gsq[k] = float(to_numpy(opt.grad_sqnorm))
            vsq[k] = float(to_numpy(opt.step_sqnorm))
            dot[k] = float(to_numpy(opt.anchored_dot))
            if not all(math.isfinite(v) for v in (gsq[k], vsq[k], dot[k])):
                return None
            if (k + 1) % self.record_every == 0:
                value = self.eval_loss()
                if not math.isfinite(value):
                    return None
                losses.append(value)
        if not record:
            return {}
        return {"grad_sqnorm": gsq, "step_sqnorm": vsq, "anchored_dot": dot, "losses": losses,
                "block_mean": _host(opt.averages), "grad_sum": _host(opt.grad_sums)}

    def set_anchor(self, anchor):
        self._ensure_built()
        # from the host copy: assigning v.value would alias one device buffer in two
        # variables, which JAX refuses to donate twice
        for a, w in zip(self._opt.anchors, anchor):
            a.assign(w)

    def weights(self):
        return _host(self._variables)

    def velocity(self):
        self._ensure_built()
        return _host(self._opt.velocities)

    def assign(self, weights):
        for v, w in zip(self._variables, weights):
            v.assign(w)


def _host(vs):
    from .backend import to_numpy

    return [to_numpy(v).astype(np.float32) for v in vs]
