"""Losses against hand-written numpy formulas."""

import numpy as np
import pytest

import dnn
from dnn.convnet.backend import import_keras, to_numpy
from dnn.convnet.losses import LOSSES, get_loss, keras_loss

keras = import_keras()
EPS = 1e-7  # keras.config.epsilon(): Keras' KLD clips both arguments to [EPS, 1]


def np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def np_kld(y, z):
    yc, pc = np.clip(y, EPS, 1), np.clip(np_softmax(z), EPS, 1)
    return (yc * np.log(yc / pc)).sum(axis=1)


def np_xent(y, z):
    logsumexp = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    return logsumexp - (y * z).sum(axis=1)


def np_logit_grad(y, z):
    return ((np_softmax(z) - y) ** 2).sum(axis=1)


REFERENCE = {"kld": np_kld, "xent": np_xent, "logit_grad": np_logit_grad}


def batch(seed=0, b=16, k=10, scale=3.0):
    rng = np.random.default_rng(seed)
    z = (scale * rng.normal(size=(b, k))).astype(np.float32)
    y = np.eye(k, dtype=np.float32)[rng.integers(0, k, size=b)]
    return y, z


@pytest.mark.parametrize("name", LOSSES)
def test_per_example_loss_matches_numpy(name):
    y, z = batch()
    got = to_numpy(get_loss(name)(y, z))
    assert got.shape == (16,)
    np.testing.assert_allclose(got, REFERENCE[name](y.astype(np.float64), z.astype(np.float64)),
                               rtol=2e-5, atol=1e-6)


def test_hand_computed_values():
    # Two classes, logits (0, log 3): p = (1/4, 3/4), label 0.
    y = np.array([[1.0, 0.0]], np.float32)
    z = np.array([[0.0, np.log(3.0)]], np.float32)
    np.testing.assert_allclose(to_numpy(get_loss("xent")(y, z)), [np.log(4.0)], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(get_loss("logit_grad")(y, z)), [(0.75**2) * 2], rtol=1e-6)
    # KLD: the zero label is clipped to 1e-7: + 1e-7 log(1e-7 / 0.75).
    np.testing.assert_allclose(to_numpy(get_loss("kld")(y, z)), [np.log(4.0) + EPS * np.log(EPS / 0.75)],
                               rtol=1e-6)


def test_kld_equals_xent_up_to_clipping_but_saturates():
    y, z = batch(seed=1, scale=1.0)
    kld, xent = to_numpy(get_loss("kld")(y, z)), to_numpy(get_loss("xent")(y, z))
    # Each of the 9 zero labels adds 1e-7 log(1e-7/p) in [-1.6e-6, 0].
    assert np.all(np.abs(kld - xent) <= 9 * EPS * np.log(1 / EPS) + 1e-5)
    # Far-wrong logits: xent grows without bound, KLD stops at -log(1e-7).
    y = np.array([[1.0, 0.0]], np.float32)
    z = np.array([[0.0, 100.0]], np.float32)
    assert to_numpy(get_loss("xent")(y, z))[0] == pytest.approx(100.0, rel=1e-5)
    assert to_numpy(get_loss("kld")(y, z))[0] == pytest.approx(-np.log(EPS), rel=1e-4)


def test_xent_is_stable_for_huge_logits():
    y = np.eye(3, dtype=np.float32)[[0, 1]]
    z = np.array([[1000.0, 0.0, -1000.0], [0.0, 2000.0, 0.0]], np.float32)
    got = to_numpy(get_loss("xent")(y, z))
    assert np.all(np.isfinite(got)) and got == pytest.approx([0.0, 0.0], abs=1e-6)


def test_logit_grad_is_squared_norm_of_the_xent_logit_gradient():
    # The reading of the paper's "gradient of the log loss" (theory.md): the loss is
    # ||d xent / d z||^2. Check by finite differences of the numpy cross-entropy.
    y, z = batch(seed=2, b=3, k=4, scale=1.0)
    y, z = y.astype(np.float64), z.astype(np.float64)
    h = 1e-6
    grad = np.stack([(np_xent(y, z + h * e) - np_xent(y, z - h * e)) / (2 * h) for e in np.eye(4)], axis=1)
    np.testing.assert_allclose(to_numpy(get_loss("logit_grad")(y.astype(np.float32), z.astype(np.float32))),
                               (grad**2).sum(axis=1), rtol=1e-4)


@pytest.mark.parametrize("name", LOSSES)
def test_keras_loss_is_batch_mean(name):
    y, z = batch(seed=3)
    mean = float(to_numpy(keras_loss(name)(y, z)))
    assert mean == pytest.approx(float(REFERENCE[name](y, z).mean()), rel=2e-5)


@pytest.mark.parametrize("bad", ["mse", "KLD", "", None])
def test_unknown_loss_lists_choices(bad):
    with pytest.raises(ValueError, match="loss must be one of \\('kld', 'xent', 'logit_grad'\\)"):
        get_loss(bad)


def test_exported_from_package():
    assert dnn.LOSSES == LOSSES and dnn.get_loss("xent") is get_loss("xent")
