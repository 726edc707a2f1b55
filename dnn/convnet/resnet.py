"""CIFAR ResNet v1 (He et al. 2016, §4.2) in Keras 3; the model outputs logits.

Architecture, for depth ``6n + 2``:

* 3×3 conv (``width`` filters) → BN → ReLU;
* three stages of ``n`` residual blocks with ``width``, ``2·width``, ``4·width``
  filters; the first block of stages 2 and 3 halves the resolution (stride 2).
  A block is ``conv3×3 → BN → ReLU → conv3×3 → BN``, added to the shortcut, then ReLU;
* global average pooling → dense layer with ``num_classes`` outputs, **no softmax**.

The model returns logits so that every loss in :mod:`dnn.convnet.losses` applies its own
(numerically stable) softmax, and so the estimators differentiate one function.
This differs from the Keras example, whose last layer is a softmax; the
trainable function is otherwise identical.

Shortcut variants:

``"projection"``
    The Keras CIFAR-10 ResNet example (``keras-io/examples/cifar10_resnet``,
    ResNet v1): when the shape changes, the shortcut is a strided 1×1 conv (no BN);
    convolutions keep their biases, as in that example. Depth 56 has 861,770
    parameters (857,706 trainable), the example's ≈0.86 M.
``"zero_pad"``
    He et al.'s option A: the shortcut subsamples with stride 2 and zero-pads the
    new channels, so it has no parameters; convolutions have no biases (a bias
    before BN is redundant with BN's offset). Depth 56 has 853,018 trainable
    parameters, the ≈0.85 M of He et al.'s Table 6 (plus 4,064 BN running statistics).

Kernel initialiser ``he_normal`` and an L2 penalty ``l2·‖W‖²`` on every conv and
dense kernel (not on biases or BN parameters), as in the Keras example.

References
----------
K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .backend import import_keras

__all__ = ["resnet", "SHORTCUTS", "check_depth"]

SHORTCUTS = ("projection", "zero_pad")


def check_depth(depth):
    """Validate a CIFAR ResNet depth (``6n + 2``, n ≥ 1) and return n."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, ..., 56, 110); got {depth!r}")
    return (int(depth) - 2) // 6


def _check_args(depth, shortcut, l2, num_classes, width, input_shape):
    n = check_depth(depth)
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}; got {shortcut!r}")
    if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not math.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2 must be a finite number >= 0; got {l2!r}")
    for name, v in (("num_classes", num_classes), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
    try:
        dims = tuple(input_shape)
    except TypeError:
        dims = ()
    if len(dims) != 3 or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1
                             for d in dims):
        raise ValueError(f"input_shape must be (height, width, channels), three integers >= 1; "
                         f"got {input_shape!r}")
    return n, tuple(int(d) for d in dims)


def resnet(depth=56, *, shortcut="projection", l2=1e-4, num_classes=10, width=16, seed=None,
           input_shape=(32, 32, 3)):
    """Build the CIFAR ResNet v1 of depth ``6n + 2``; inputs (B, *input_shape), outputs logits (B, num_classes).

    Parameters
    ----------
    depth : int
        Number of weight layers, ``6n + 2`` (20, 32, 44, 56, 110, ...; 8 and 14 for tests).
    shortcut : {"projection", "zero_pad"}
        ``"projection"``: 1×1-conv shortcuts where the shape changes, biases on
        convolutions (the Keras example). ``"zero_pad"``: He et al.'s parameter-free
        option A, no conv biases.
    l2 : float
        L2 coefficient λ: the model's loss gains ``λ Σ ‖W‖²`` over conv and dense kernels.
    num_classes : int
        Number of outputs.
    width : int
        Filters of the first stage (16 in the paper); stages use width, 2·width, 4·width.
    seed : int or None
        Seed of the initial weights (drawn with numpy, so identical on both
        backends). None draws a fresh seed.
    input_shape : tuple of 3 int
        (height, width, channels) of an image: (32, 32, 3) for CIFAR-10, (28, 28, 1)
        for Fashion-MNIST. Only the stem's kernel depends on it (3·3·channels·width
        weights); the stride-2 stages map 32→16→8 and 28→14→7 ('same' padding: a side
        s becomes ⌈s/2⌉), and global average pooling accepts any final size.

    Returns
    -------
    keras.Model
        Uncompiled; its output is logits in float32, even under a mixed-precision policy.

    Raises
    ------
    ValueError
        If depth is not 6n+2, shortcut is unknown, l2 < 0, width/num_classes < 1, or
        input_shape is not three positive integers.

    Examples
    --------
    >>> import dnn
    >>> dnn.resnet(56).count_params()
    861770
    >>> dnn.resnet(56, shortcut="zero_pad").count_params()
    857082

    Fashion-MNIST's one channel leaves 2·3·3·width = 144 fewer stem weights at width 8
    than the 20,266 of the (32, 32, 3) model:

    >>> dnn.resnet(8, width=8, input_shape=(28, 28, 1)).count_params()
    20122
    """
    n, input_shape = _check_args(depth, shortcut, l2, num_classes, width, input_shape)
    keras = import_keras()
    from ._layers import SeededHeNormal, ZeroPadShortcut

    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    layers = keras.layers
    n_kernels = [0]

    def init():
        # One independent stream per kernel, in construction order: (seed, kernel index).
        n_kernels[0] += 1
        return SeededHeNormal([seed, n_kernels[0]])
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    use_bias = shortcut == "projection"

    def conv(name, filters, kernel_size=3, strides=1, bias=use_bias):
        return layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=bias,
                             kernel_initializer=init(), kernel_regularizer=reg, name=name)

    def bn(name):
        return layers.BatchNormalization(name=name)

    # Explicit layer names make weight files independent of Keras' global name counters.
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Activation("relu", name="stem_relu")(bn("stem_bn")(conv("stem_conv", width)(inputs)))
    for stage in range(3):
        filters = width * 2**stage
        for block in range(n):
            p = f"s{stage + 1}b{block + 1}_"
            strides = 2 if (stage > 0 and block == 0) else 1
            y = conv(p + "conv1", filters, strides=strides)(x)
            y = layers.Activation("relu", name=p + "relu1")(bn(p + "bn1")(y))
            y = bn(p + "bn2")(conv(p + "conv2", filters)(y))
            if strides != 1:
                if shortcut == "projection":
                    # Keras example: 1x1 conv with bias, no BN on the shortcut.
                    x = conv(p + "shortcut", filters, kernel_size=1, strides=strides, bias=True)(x)
                else:
                    x = ZeroPadShortcut(filters, name=p + "shortcut")(x)
            x = layers.Activation("relu", name=p + "relu2")(layers.Add(name=p + "add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    # Logits in float32 so losses and curvature estimates are computed in full precision.
    logits = layers.Dense(num_classes, kernel_initializer=init(), kernel_regularizer=reg,
                          dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="resnet")

