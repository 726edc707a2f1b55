"""The Keras 3 ResNet pipeline: model, data, losses, training, measurement, stationary phase.

Modules: ``backend`` (choosing Keras's backend), ``_layers``, ``resnet``, ``losses``,
``data`` (CIFAR-10, synthetic images, preprocessing), ``fashion`` (Fashion-MNIST),
``train`` and ``_callbacks``, ``measure`` (tr Σ, tr H, λ_max of a trained run),
``stationary`` (the SGD phase around a trained network, run by ``_stationary_jax``,
a compiled loop, or ``_stationary_keras``, one Keras step at a time), and ``_jax_ops`` /
``_tf_ops`` (per-backend autodiff primitives).
It may import :mod:`theory` and ``dnn``'s shared modules (``estimators``,
``stationary_stats``, ``stationary_summary``, ``_runio``, ``_validate``), never
:mod:`dnn.exact` or ``validation``.  Importing this package imports no keras; the
public names are re-exported, lazily, by :mod:`dnn`.
"""
