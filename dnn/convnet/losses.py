"""Losses by name, on logits: ``"kld"``, ``"xent"`` and ``"logit_grad"``.

Each loss is a per-example function ``loss_fn(y_onehot, logits) -> (B,)`` written
with ``keras.ops``, so it runs inside JAX/TF autodiff (the estimators need the
per-example values) and inside ``model.fit``. The training objective is the mean
over the batch, L = (1/B) Σ_i ℓ_i, plus the model's L2 penalty.

``"kld"``
    ``keras.losses.kl_divergence(y, softmax(z))`` = Σ_k y_k log(y_k / p_k), with
    Keras clipping both arguments to [1e-7, 1]: the loss the paper trained with
    in Keras. For one-hot y it equals cross-entropy up to the clipping (each zero
    label adds 1e-7·log(1e-7/p_k), in [−1.6e-6, 0]), but it saturates at −log 1e-7
    ≈ 16.1 and its gradient vanishes once p_true < 1e-7.
``"xent"``
    Softmax cross-entropy from logits, −log softmax(z)_y (stable log-sum-exp).
``"logit_grad"``
    ‖softmax(z) − y‖², the multi-class Brier score. The paper (§5.2) trains with
    "the gradient of the log loss", "the difference in y and ŷ". For softmax
    cross-entropy ∂ℓ/∂z = softmax(z) − y, and a vector cannot be a loss, so we
    read it as the squared norm of that gradient; see ``shared/docs/theory.md``,
    section "DNN estimators", last bullet.
"""

from __future__ import annotations

from .backend import import_keras

__all__ = ["LOSSES", "check_loss", "get_loss", "keras_loss"]

#: Loss names accepted everywhere a loss is named.
LOSSES = ("kld", "xent", "logit_grad")


def check_loss(name):
    """Return ``name`` if it is a known loss; else raise ValueError listing the choices."""
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {name!r}")
    return name


def _kld(y_onehot, logits):
    keras = import_keras()
    return keras.losses.kl_divergence(y_onehot, keras.ops.softmax(logits, axis=-1))


def _xent(y_onehot, logits):
    keras = import_keras()
    return keras.losses.categorical_crossentropy(y_onehot, logits, from_logits=True)


def _logit_grad(y_onehot, logits):
    keras = import_keras()
    ops = keras.ops
    r = ops.softmax(logits, axis=-1) - ops.cast(y_onehot, logits.dtype)
    return ops.sum(r * r, axis=-1)


_FNS = {"kld": _kld, "xent": _xent, "logit_grad": _logit_grad}


def get_loss(name):
    """The per-example loss ``loss_fn(y_onehot, logits) -> (B,)`` for ``name``.

    Parameters
    ----------
    name : {"kld", "xent", "logit_grad"}

    Returns
    -------
    callable
        ``loss_fn(y_onehot, logits)``: ``y_onehot`` (B, K) float, ``logits`` (B, K)
        float32; returns the loss of each example, shape (B,). Pure keras.ops, so it
        can be differentiated, vmapped and jit-compiled by either backend.

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists the choices.
    """
    return _FNS[check_loss(name)]


def keras_loss(name):
    """A ``keras.losses.Loss`` averaging :func:`get_loss` over the batch, for ``model.compile``."""
    keras = import_keras()
    fn = get_loss(name)

    class _PerExampleMean(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return fn(y_true, y_pred)

    return _PerExampleMean(name=name, reduction="sum_over_batch_size")
