"""Custom Keras layers (imported lazily: importing this module imports keras).

``RandomPadCropFlip`` is the CIFAR augmentation of He et al. 2016: pad 4 pixels,
take a random 32×32 crop, flip horizontally with probability 1/2. It is written
with ``keras.ops`` gathers inside the compiled training step instead of Keras'
``ZeroPadding2D`` + ``RandomCrop`` + ``RandomFlip`` preprocessing layers: on an
H100 with the JAX backend those layers did not finish one epoch in ~200 s
(``shared/docs/anchors.md``), whereas a gather costs about as much as one tiny
memory copy. It is a gather, not a one-hot matmul, so pixel values are copied
exactly even where the GPU runs float32 matmuls in TF32.
"""

from __future__ import annotations

from .backend import import_keras

keras = import_keras()
ops = keras.ops

__all__ = ["RandomPadCropFlip", "ZeroPadShortcut"]


@keras.saving.register_keras_serializable(package="sgd_minima")
class RandomPadCropFlip(keras.layers.Layer):
    """Random ``pad``-pixel pad + crop + horizontal flip, active only with ``training=True``.

    The input is expected to be standardised already, so the default ``fill`` of 0
    pads with the per-channel training mean (CIFAR-10). ``fill`` is the constant
    padding value in standardised units: Fashion-MNIST pads with its black background,
    ``(0 − mean) / std``, as torchvision recipes do by padding before normalising.
    The random state lives in a ``SeedGenerator``,
    which is a (non-trainable) model variable, so checkpoints capture it and a
    resumed run draws the same augmentations as an uninterrupted one.
    """

    def __init__(self, pad=4, flip=True, seed=None, fill=0.0, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)
        self.flip = bool(flip)
        self.fill = float(fill)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if not training or (self.pad == 0 and not self.flip):
            return x
        p = self.pad
        b = ops.shape(x)[0]
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        hp, wp = h + 2 * p, w + 2 * p
        xp = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=self.fill)
        draws = keras.random.randint((b, 2), 0, 2 * p + 1, seed=self.seed_generator, dtype="int32")
        top, left = draws[:, 0], draws[:, 1]
        cols = ops.arange(w, dtype="int32")
        if self.flip:
            coin = keras.random.randint((b,), 0, 2, seed=self.seed_generator, dtype="int32")
            cols = ops.where(ops.expand_dims(coin, 1) == 1, (w - 1) - cols[None, :], cols[None, :])
        else:
            cols = ops.broadcast_to(cols[None, :], (b, w))
        rows = ops.expand_dims(top, 1) + ops.arange(h, dtype="int32")[None, :]          # (B, H)
        cols = ops.expand_dims(left, 1) + cols                                           # (B, W)
        base = ops.arange(b, dtype="int32") * (hp * wp)                                  # (B,)
        flat = (base[:, None, None] + rows[:, :, None] * wp + cols[:, None, :])          # (B, H, W)
        out = ops.take(ops.reshape(xp, (-1, c)), ops.reshape(flat, (-1,)), axis=0)
        return ops.reshape(out, (b, h, w, c))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "pad": self.pad, "flip": self.flip, "seed": self.seed,
                "fill": self.fill}


@keras.saving.register_keras_serializable(package="sgd_minima")
class ZeroPadShortcut(keras.layers.Layer):
    """He et al.'s option-A shortcut: stride-2 subsampling, then zero channels up to ``filters``.

    The new channels are split evenly before and after the existing ones, as in
    the common reference implementations; the split does not change the function
    class because the following convolutions are free to permute channels.
    """

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)

    def call(self, x):
        extra = self.filters - x.shape[-1]
        lo, hi = extra // 2, extra - extra // 2
        return ops.pad(x[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0], [lo, hi]])

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        return (n, None if h is None else (h + 1) // 2, None if w is None else (w + 1) // 2, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="sgd_minima")
class SeededHeNormal(keras.initializers.Initializer):
    """Keras' ``he_normal`` drawn with numpy from ``default_rng(seed)``.

    Same law as ``keras.initializers.HeNormal``: a normal with standard deviation
    ``sqrt(2 / fan_in) / 0.8796…`` truncated at ±2 of its standard deviations
    (the divisor restores the variance lost to truncation). Drawing on the host
    gives the same initial weights on every backend for a given seed, and avoids
    compiling one XLA random kernel per weight shape (about a second each on CPU
    with JAX).
    """

    def __init__(self, seed):
        self.seed = [int(s) for s in seed] if isinstance(seed, (list, tuple)) else int(seed)

    def __call__(self, shape, dtype=None):
        import math

        import numpy as np

        fan_in = math.prod(shape[:-1])
        rng = np.random.default_rng(self.seed)
        w = rng.standard_normal(shape)
        bad = np.abs(w) > 2
        while bad.any():  # resample outside ±2 sd: exactly a truncated normal
            w[bad] = rng.standard_normal(int(bad.sum()))
            bad = np.abs(w) > 2
        std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
        return keras.ops.convert_to_tensor((w * std).astype("float32"), dtype=dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}
