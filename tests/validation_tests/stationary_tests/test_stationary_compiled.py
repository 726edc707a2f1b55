"""The compiled stationary loop (JAX): compiled once per architecture, same record as per-step.

Checks that a second phase of the same architecture (a new model object) reuses
the compiled programs and gives a bitwise identical record from the same weights
and seed; that η and β do not recompile; that the compiled loop, its scan variant
and the per-step Keras path record the same steps from the same draws; that the
architecture key ignores names and seeds but not the function; and that the cache
keeps no model alive.  A linear model keeps each phase under a few seconds.
"""

import gc
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import quadratic_case as q  # noqa: E402


@pytest.fixture(scope="module")
def keras():
    from dnn.convnet.backend import import_keras

    k = import_keras()
    if k.backend.backend() != "jax":
        pytest.skip("the compiled loop is the JAX engine; TensorFlow keeps the per-step path")
    return k


def _linear(keras):
    inputs = keras.Input((q.D,))
    return keras.Model(inputs, keras.layers.Dense(1, use_bias=False,
                                                  kernel_initializer="zeros")(inputs))


def _loss(keras):
    ops = keras.ops

    def half_squared_error(y_true, y_pred):
        return 0.5 * ops.sum(ops.square(y_pred - ops.cast(y_true, y_pred.dtype)), axis=-1)
    return half_squared_error


LOSS = {}


def _phase(keras, model=None, **kw):
    from dnn.convnet.stationary import sgd_stationary

    loss = LOSS.setdefault("fn", _loss(keras))   # one function object: one cache entry
    x, y = q.problem()
    args = dict(lr=q.LR, batch_size=q.BATCH, steps=400, burn_in=50, record_every=2,
                n_blocks=8, seed=3)
    args.update(kw)
    return sgd_stationary(model if model is not None else _linear(keras), x, y[:, None], loss,
                          **args)


def test_second_phase_of_the_same_architecture_does_not_recompile(keras):
    from dnn.convnet._stationary_jax import TRACES

    first = _phase(keras)
    before = dict(TRACES)
    second = _phase(keras)                               # a new model object, same weights
    assert TRACES == before, (before, TRACES)
    assert first["loop"] == second["loop"] == "compiled"
    for key in ("grad_sqnorm", "step_sqnorm", "anchored_dot", "losses", "block_losses"):
        assert first[key] == second[key], key            # bitwise: same program, same draws
    for a, b in zip(first["mean_weights"], second["mean_weights"]):
        np.testing.assert_array_equal(a, b)
    # η and β are arguments of the compiled program, not constants in it
    _phase(keras, lr=0.1, momentum=0.5)
    assert TRACES == before
    # ... while a new batch size is a new program (the counter does count)
    _phase(keras, batch_size=q.BATCH + 1)
    assert TRACES["step"] > before["step"]


def test_compiled_and_per_step_loops_record_the_same_steps(keras):
    a = _phase(keras, momentum=0.9, lr=0.05, loop="compiled")
    b = _phase(keras, momentum=0.9, lr=0.05, loop="per_step")
    assert (a["loop"], b["loop"]) == ("compiled", "per_step")
    for key in ("grad_sqnorm", "step_sqnorm", "anchored_dot", "losses", "block_losses"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-7, err_msg=key)
    for key in ("sqdist_start", "sqdist_end", "veldot_start", "veldot_end", "loss_at_mean"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-8), key


def test_scanned_block_matches_the_dispatched_steps(keras):
    from dnn.convnet._stationary_jax import JaxStationaryEngine

    x, y = q.problem()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, q.N, size=(20, q.BATCH))
    outs = []
    for scan in (False, True):
        e = JaxStationaryEngine(_linear(keras), x, y[:, None], LOSS.setdefault("fn", _loss(keras)),
                                lr=0.05, momentum=0.9, batch_size=q.BATCH, record_every=4,
                                block_len=20, eval_x=x, eval_y=y[:, None], eval_batch=1024,
                                scan_blocks=scan)
        e.run(idx[:7], 7, record=False)                  # a masked burn-in tail
        outs.append(e.run(idx, 20, record=True))
    a, b = outs
    assert len(a["losses"]) == len(b["losses"]) == 5
    for key in ("grad_sqnorm", "step_sqnorm", "anchored_dot", "losses"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)
    for u, v in zip(a["block_mean"] + a["grad_sum"], b["block_mean"] + b["grad_sum"]):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


def test_architecture_key_ignores_names_and_seeds_but_not_the_function(keras):
    import dnn
    from dnn.convnet._stationary_jax import architecture_key

    shape = (32, 32, 3)
    key = lambda m: architecture_key(m, shape)  # noqa: E731
    assert key(dnn.resnet(8, width=4, seed=0)) == key(dnn.resnet(8, width=4, seed=1))
    assert key(dnn.resnet(8, width=4, seed=0)) != key(dnn.resnet(8, width=4, seed=0, l2=2e-4))
    assert key(dnn.resnet(8, width=4)) != key(dnn.resnet(8, width=8))
    # auto-generated layer names (dense, dense_1, ...) do not enter the key
    assert architecture_key(_linear(keras), (q.D,)) == architecture_key(_linear(keras), (q.D,))


def test_the_cache_keeps_no_model_alive(keras):
    model = _linear(keras)
    ref = weakref.ref(model)
    _phase(keras, model=model)
    del model
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("kwargs, match", [
    ({"momentum": 1.0}, r"momentum must be a number in \[0, 1\); got 1\.0"),
    ({"momentum": float("nan")}, r"momentum must be .* got nan"),
    ({"momentum": -0.1}, r"momentum must be .* got -0\.1"),
    ({"momentum": True}, r"momentum must be .* got True"),
    ({"loop": "scan"}, r"loop must be one of .* got 'scan'"),
])
def test_bad_phase_arguments_name_the_argument(keras, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _phase(keras, **kwargs)


@pytest.mark.parametrize("given, expected, source", [(None, 8, "training run"),
                                                      (3, 3, "given")])
def test_stationary_phase_batch_size_defaults_to_the_runs_and_can_be_overridden(
        keras, given, expected, source):
    from types import SimpleNamespace

    from dnn.convnet.stationary import stationary_phase

    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = rng.integers(0, 10, size=32)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(inputs))
    config = SimpleNamespace(loss="kld", batch_size=8, momentum=0.0, precision="float32")
    phase = stationary_phase((config, model, (x, y)), lr=0.01, steps=32, burn_in=0,
                             record_every=2, n_blocks=8, batch_size=given)
    assert phase["status"] == "completed"
    assert (phase["batch_size"], phase["batch_size_source"]) == (expected, source)
    assert phase["train_batch_size"] == 8
