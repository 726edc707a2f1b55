r"""The stationary phase on JAX: a compiled step, compiled once per architecture and batch size.

:func:`dnn.convnet.stationary.sgd_stationary` drives the phase block by block;
this engine runs each block without Python work per step and without a host
synchronisation inside it:

* **the step** (one jitted function): ĝ_k = ∇[mean_i ℓ(f(x_i; θ_k), y_i) + Σ
  model.losses] over the drawn minibatch, from ``model.stateless_call(trainable,
  non_trainable, x, training=False, return_losses=True)``: batch norm frozen, and
  the L2 penalty enters ĝ exactly as in Keras' ``compute_loss`` (the model's
  regularisation losses, summed).  Then v_{k+1} = β v_k − η ĝ_k,
  θ_{k+1} = θ_k + v_{k+1} (Keras' SGD update), recording ‖ĝ_k‖², ‖v_{k+1}‖² and
  (θ_k − a)·ĝ_k, and summing θ_{k+1} − a and ĝ_k over the block.  Every
  ``record_every``-th step, L on the fixed evaluation subset: a second compiled
  program (forward passes only), or a ``lax.cond`` inside the scanned block.
* **the block**: on an accelerator, one ``lax.scan`` of the step over the block
  (one call per block).  On CPU the same compiled step is dispatched
  asynchronously from a Python loop and the block's outputs are fetched once at
  its end: XLA:CPU emits the backward convolutions of a loop body as naive loops
  (their ``dim_labels`` are not canonicalised there), so a scanned ResNet step ran
  3.3× slower than the dispatched one (smoke model, 2 cores), and unrolling steps
  into one call cost 70 % more compilation for no speed.  ``scan_blocks`` picks.
* **indices** are drawn on the host, one ``rng.integers`` per step, up front for
  each block (by the driver: the same stream as the per-step path), and gathered
  from the device-resident training set inside the step.  The burn-in runs through
  the same functions without loss evaluations; a short last burn-in chunk is
  masked, so it costs no second compilation.

**Compiled once per model shape, not once per run.**  The jitted functions live
in a small LRU cache keyed by (backend, the model's architecture: a digest of its
abstract forward pass, which fixes every variable's shape and dtype, the loss
function, the batch size; the record interval and block length are not part of
the per-step program).  They call the model only while
being traced, through a holder that points at the current model during each call
and is cleared afterwards, so the cache keeps no model alive, and a second run of
the same architecture (a new model object, other weights) reuses the compiled
program.  η and β are traced arguments: any learning rate or momentum reuses it
too.  :data:`TRACES` counts the traces (the tests use it).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

__all__ = ["JaxStationaryEngine", "TRACES", "cache_clear", "architecture_key"]

#: Number of times each compiled function was traced in this process (a retrace is a
#: recompilation): ``{"step": n, "block": n, "eval": n}``.
TRACES = {"step": 0, "block": 0, "eval": 0}

#: Entries kept: one per (architecture, loss, S) met recently.  A grid uses one
#: architecture, a loss or two and three batch sizes.
CACHE_SIZE = 8

_CACHE: OrderedDict = OrderedDict()
_LOCK = threading.Lock()


def cache_clear():
    """Forget every compiled stationary program (the next phase compiles afresh)."""
    with _LOCK:
        _CACHE.clear()


def architecture_key(model, example_shape, dtype="float32"):
    """A digest that is equal for two models computing the same function of their weights.

    The SHA-256 of the printed jaxpr of ``model.stateless_call(trainable,
    non_trainable, x, training=False, return_losses=True)`` on abstract inputs: every
    operation, shape, dtype and constant scalar (the L2 coefficient, BN's ε) of the
    forward pass and its regularisation losses, and nothing else (layer names, seeds
    and initialisers do not enter it).  About 0.1 s for a ResNet-8, 1 s for a
    ResNet-56: cheaper than ``model.to_json()``, which imports TensorFlow (4 s).
    None if the model cannot be traced abstractly (then nothing is shared).
    """
    import jax

    params = [jax.ShapeDtypeStruct(tuple(v.shape), v.dtype) for v in model.trainable_variables]
    state = [jax.ShapeDtypeStruct(tuple(v.shape), v.dtype)
             for v in model.non_trainable_variables]
    x = jax.ShapeDtypeStruct((1,) + tuple(example_shape), dtype)

    def forward(p, s, xb):
        out, _, losses = model.stateless_call(p, s, xb, training=False, return_losses=True)
        return out, losses

    try:
        text = str(jax.make_jaxpr(forward)(params, state, x))
    except Exception:  # noqa: BLE001 - a model that cannot be traced abstractly shares nothing
        return None
    return hashlib.sha256(text.encode()).hexdigest()


class _Holder:
    """The model the traced Python functions call; set only for the duration of a call."""

    def __init__(self):
        self.model = None
        # held through a call: a trace must see the model its caller set
        self.lock = threading.RLock()


def _build(holder, loss_fn):
    """The jitted functions of one cache entry: one step, a block of steps, the loss."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    f32 = jnp.float32

    def objective_parts(params, state, x, y):
        y_pred, _, losses = holder.model.stateless_call(params, state, x, training=False,
                                                        return_losses=True)
        per_example = jnp.asarray(loss_fn(y, y_pred), dtype=f32)
        # Keras' compute_loss: every additional loss (the L2 penalties) summed, once
        reg = sum((jnp.sum(jnp.asarray(l, f32)) for l in losses), jnp.zeros((), f32))
        return per_example, reg

    def objective(params, state, x, y):
        per_example, reg = objective_parts(params, state, x, y)
        return jnp.mean(per_example) + reg

    def eval_loss(params, state, ex, ey, ew):
        TRACES["eval"] += 1

        def chunk(total, c):
            x, y, w = c
            per_example, reg = objective_parts(params, state, x, y)
            return total + jnp.sum(w * per_example), reg

        # forward passes only: their convolutions compile well inside a loop
        total, regs = lax.scan(chunk, jnp.zeros((), f32), (ex, ey, ew))
        return total / jnp.sum(ew) + regs[0]

    grad_fn = jax.value_and_grad(objective)

    def step(carry, i, on, anchor, state, x_all, y_all, lr, beta):
        params, velocity, dev_sum, grad_sum, finite = carry
        loss, g = grad_fn(params, state, jnp.take(x_all, i, axis=0), jnp.take(y_all, i, axis=0))
        g = [jnp.asarray(gi, p.dtype) for gi, p in zip(g, params)]
        gsq = sum(jnp.vdot(gi, gi) for gi in g)
        # θ − a, not θ: the float32 sum of θ·ĝ would bury the small (θ − θ̄)·ĝ
        dot = sum(jnp.vdot(p - a, gi) for p, a, gi in zip(params, anchor, g))
        new_v = [beta * v - lr * gi for v, gi in zip(velocity, g)]   # Keras' SGD, momentum β
        new_p = [p + v for p, v in zip(params, new_v)]
        vsq = sum(jnp.vdot(v, v) for v in new_v)
        keep = lambda new, old: jnp.where(on, new, old)  # noqa: E731 (masked pad steps)
        params = [keep(n, o) for n, o in zip(new_p, params)]
        velocity = [keep(n, o) for n, o in zip(new_v, velocity)]
        dev_sum = [keep(s + (p - a), s) for s, p, a in zip(dev_sum, new_p, anchor)]
        grad_sum = [keep(s + gi, s) for s, gi in zip(grad_sum, g)]
        ok = jnp.isfinite(loss) & jnp.isfinite(gsq) & jnp.isfinite(dot) & jnp.isfinite(vsq)
        return (params, velocity, dev_sum, grad_sum, finite & (ok | ~on)), (gsq, vsq, dot)

    def one(carry, i, anchor, state, x_all, y_all, lr, beta):
        """One step on the minibatch of indices ``i`` (S,): no block length in its shapes."""
        TRACES["step"] += 1
        return step(carry, i, jnp.array(True), anchor, state, x_all, y_all, lr, beta)

    def block(carry, idx, n_active, do_eval, anchor, state, x_all, y_all, lr, beta, ex, ey,
              ew):
        """Every step of a block in one ``lax.scan``, L where ``do_eval`` (for accelerators)."""
        TRACES["block"] += 1

        def body(c, xs):
            k, ev = xs
            c, row = step(c, idx[k], k < n_active, anchor, state, x_all, y_all, lr, beta)
            value = lax.cond(ev, lambda p: eval_loss(p, state, ex, ey, ew),
                             lambda p: jnp.full((), jnp.nan, f32), c[0])
            return c, row + (value,)

        return lax.scan(body, carry, (jnp.arange(idx.shape[0]), do_eval))

    return jax.jit(one), jax.jit(block), jax.jit(eval_loss)


def _programs(model, loss_fn, batch_size, example_shape, dtype):
    import keras

    arch = architecture_key(model, example_shape, dtype)
    if arch is None:
        holder = _Holder()
        return holder, _build(holder, loss_fn)
    # the record interval and block length are not baked into the per-step program
    key = (keras.backend.backend(), arch, loss_fn, int(batch_size))
    with _LOCK:
        entry = _CACHE.get(key)
        if entry is None:
            holder = _Holder()
            entry = _CACHE[key] = (holder, _build(holder, loss_fn))
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(key)
    return entry


def _padded_chunks(x, y, max_chunk):
    """(x, y, w) as (C, c, ...) arrays: C near-equal chunks of c <= max_chunk, padding weight 0."""
    n = len(x)
    c = -(-n // max(1, -(-n // max_chunk)))
    n_chunks = -(-n // c)
    pad = n_chunks * c - n
    idx = np.concatenate([np.arange(n), np.zeros(pad, dtype=np.int64)])
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    return (x[idx].reshape((n_chunks, c) + x.shape[1:]),
            y[idx].reshape((n_chunks, c) + y.shape[1:]), w.reshape(n_chunks, c))


class JaxStationaryEngine:
    """Runs blocks of the stationary phase as compiled calls (see the module docstring).

    The interface the driver uses (shared with the per-step Keras engine):
    ``eval_loss(weights=None)``, ``run(idx, n_active, record)``, ``set_anchor``,
    ``weights()``, ``velocity()``, ``assign(weights)``.  State (θ, v) lives on the
    device between calls; the model's variables are written only by ``assign``.

    ``scan_blocks``: one ``lax.scan`` over a block's steps (one call per block), or a
    Python loop over the steps without host synchronisation (one asynchronous call of
    the compiled step per step).  Default: the scan on an accelerator, the loop on
    CPU, where a convolution's gradient inside a loop body compiles badly (module
    docstring).  Same program per step, same record either way.
    """

    def __init__(self, model, x, y, loss, *, lr, momentum, batch_size, record_every,
                 block_len, eval_x, eval_y, eval_batch, scan_blocks=None):
        import jax
        import jax.numpy as jnp

        self._model = model
        x = np.asarray(x)
        self._holder, (self._one, self._block, self._eval) = _programs(
            model, loss, batch_size, x.shape[1:], x.dtype)
        self.scan_blocks = (jax.default_backend() != "cpu" if scan_blocks is None
                            else bool(scan_blocks))
        self.record_every, self.block_len, self.batch_size = record_every, block_len, batch_size
        self._params = [jnp.array(v.value) for v in model.trainable_variables]
        self._velocity = [jnp.zeros_like(p) for p in self._params]
        self._anchor = [jnp.array(p) for p in self._params]
        self._state = [jnp.array(v.value) for v in model.non_trainable_variables]
        self._x, self._y = jnp.asarray(x), jnp.asarray(y)
        self._evalset = tuple(jnp.asarray(a) for a in _padded_chunks(eval_x, eval_y, eval_batch))
        self._lr = np.float32(lr)
        self._beta = np.float32(momentum)

    def _call(self, fn, *args):
        with self._holder.lock:
            self._holder.model = self._model
            try:
                return fn(*args)
            finally:
                self._holder.model = None   # the cache must not keep the model alive

    def eval_loss(self, weights=None):
        """L on the evaluation subset at the current θ, or at ``weights`` (host arrays)."""
        import jax.numpy as jnp

        params = self._params if weights is None else [jnp.asarray(w) for w in weights]
        return float(self._call(self._eval, params, self._state, *self._evalset))

    def run(self, idx, n_active, record):
        """Advance ``len(idx)`` <= block_len steps, the first ``n_active`` of them for real.

        Returns None if a step was not finite, else (with ``record``) per step
        ``grad_sqnorm``, ``step_sqnorm``, ``anchored_dot``, ``losses`` (one per
        ``record_every`` steps), ``block_mean`` (θ̄_b, the mean of θ_{k+1} over the
        block) and ``grad_sum`` (G_b = Σ ĝ_k), host arrays per variable; ``{}``
        without ``record``.
        """
        import jax.numpy as jnp

        m = self.block_len                       # one shape per phase: the tail is masked
        full = np.zeros((m, self.batch_size), np.int32)
        full[:len(idx)] = idx
        n_on = np.int32(n_active)
        do_eval = ((np.arange(m) + 1) % self.record_every == 0) & bool(record)
        zeros = [jnp.zeros_like(p) for p in self._params]
        carry = (self._params, self._velocity, zeros, list(zeros), jnp.array(True))
        consts = (self._anchor, self._state, self._x, self._y, self._lr, self._beta)
        if self.scan_blocks:
            carry, rows = self._call(self._block, carry, jnp.asarray(full), n_on,
                                     jnp.asarray(do_eval),
                                     *consts, *self._evalset)
            gsq, vsq, dot, values = (np.asarray(r)[:int(n_active)] for r in rows)
            losses = values[do_eval[:int(n_active)]]
        else:
            outs, values = [], []
            for k in range(int(n_active)):       # asynchronous dispatch: no host sync in here
                carry, row = self._call(self._one, carry, full[k], *consts)
                outs.append(row)
                if do_eval[k]:                   # the loss program, compiled once, apart
                    values.append(self._call(self._eval, carry[0], self._state,
                                             *self._evalset))
            gsq, vsq, dot = (np.asarray(jnp.stack([o[i] for o in outs])) for i in range(3))
            losses = np.asarray(jnp.stack(values)) if values else np.zeros(0)
        params, velocity, dev_sum, grad_sum, finite = carry
        self._params, self._velocity = params, velocity
        if not bool(finite) or not np.all(np.isfinite(losses)):
            return None
        if not record:
            return {}
        k = int(n_active)
        return {"grad_sqnorm": gsq.astype(np.float64), "step_sqnorm": vsq.astype(np.float64),
                "anchored_dot": dot.astype(np.float64),
                "losses": losses.astype(np.float64).tolist(),
                # θ̄_b = a + (1/m) Σ_k (θ_{k+1} − a): the small deviations summed, not θ
                "block_mean": [(np.asarray(a, np.float64) + np.asarray(s, np.float64) / k)
                               .astype(np.float32) for a, s in zip(self._anchor, dev_sum)],
                "grad_sum": [np.asarray(g) for g in grad_sum]}

    def set_anchor(self, anchor):
        import jax.numpy as jnp

        self._anchor = [jnp.asarray(a) for a in anchor]

    def weights(self):
        return [np.asarray(p, np.float32) for p in self._params]

    def velocity(self):
        return [np.asarray(v, np.float32) for v in self._velocity]

    def assign(self, weights):
        import jax.numpy as jnp

        for v, w in zip(self._model.trainable_variables, weights):
            v.assign(w)
        self._params = [jnp.asarray(w) for w in weights]
