"""ResNet architecture: parameter counts against closed forms, shapes, variants, bad inputs."""

import math

import numpy as np
import pytest

import dnn
from dnn.convnet.backend import import_keras, to_numpy

keras = import_keras()


def expected_counts(depth, width=16, shortcut="projection", num_classes=10):
    """Independent closed form of (trainable, non-trainable) parameter counts.

    Convolutions: 3x3 kernels, one per layer; every conv is followed by a BN with
    2 trainable (gamma, beta) and 2 non-trainable (moving mean, variance) numbers
    per channel. "projection" adds a bias per conv and two 1x1 shortcut convs.
    """
    n = (depth - 2) // 6
    w = [width, 2 * width, 4 * width]
    convs = [(3, width)]  # (in, out) of each 3x3 conv
    for s in range(3):
        for b in range(n):
            cin = w[s - 1] if (s > 0 and b == 0) else w[s]
            convs += [(cin, w[s]), (w[s], w[s])]
    kernels = sum(9 * i * o for i, o in convs)
    channels = sum(o for _, o in convs)  # one BN (and one bias) per 3x3 conv
    trainable = kernels + 2 * channels + w[2] * num_classes + num_classes
    if shortcut == "projection":
        trainable += channels + sum(i * o + o for i, o in [(w[0], w[1]), (w[1], w[2])])
    return trainable, 2 * channels


def counts(model):
    size = lambda vs: sum(math.prod(v.shape) for v in vs)  # noqa: E731
    return size(model.trainable_variables), size(model.non_trainable_variables)


@pytest.mark.parametrize("shortcut,trainable,total", [
    ("projection", 857_706, 861_770),   # Keras CIFAR-10 ResNet example, ResNet56 v1
    ("zero_pad", 853_018, 857_082),     # He et al. option A: "0.85M" counts trainable parameters
])
def test_resnet56_parameter_counts(shortcut, trainable, total):
    model = dnn.resnet(56, shortcut=shortcut, seed=0)
    assert counts(model) == expected_counts(56, shortcut=shortcut)
    assert counts(model)[0] == trainable and model.count_params() == total
    # The published approximate sizes: 0.86 M (Keras example), 0.85 M (He et al. Table 6).
    approx = {"projection": (total, 0.86e6), "zero_pad": (trainable, 0.85e6)}[shortcut]
    assert abs(approx[0] - approx[1]) < 0.005e6


def test_resnet20_matches_keras_example():
    # The Keras example prints 274,442 parameters for ResNet20 v1.
    assert dnn.resnet(20, seed=0).count_params() == 274_442


@pytest.mark.parametrize("depth,width,shortcut", [(8, 4, "projection"), (14, 8, "zero_pad"), (20, 2, "zero_pad")])
def test_small_variants_match_closed_form(depth, width, shortcut):
    model = dnn.resnet(depth, width=width, shortcut=shortcut, num_classes=7, seed=0)
    assert counts(model) == expected_counts(depth, width, shortcut, num_classes=7)


@pytest.mark.parametrize("shortcut", ["projection", "zero_pad"])
def test_output_is_float32_logits_of_right_shape(shortcut):
    model = dnn.resnet(8, width=4, shortcut=shortcut, num_classes=7, seed=0)
    x = np.random.default_rng(0).normal(size=(5, 32, 32, 3)).astype("float32")
    out = to_numpy(model(x, training=False))
    assert out.shape == (5, 7) and out.dtype == np.float32
    # Logits, not probabilities: rows do not sum to one.
    assert not np.allclose(out.sum(axis=1), 1.0)
    # 6n+2 weight layers on the main path (1x1 shortcut convs excluded).
    main = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))
            and not l.name.endswith("shortcut")]
    assert len(main) == 8


def test_zero_pad_has_no_biases_and_parameter_free_shortcut():
    model = dnn.resnet(14, width=4, shortcut="zero_pad", seed=0)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs and all(not l.use_bias for l in convs)
    shortcuts = [l for l in model.layers if l.name.endswith("shortcut")]
    assert len(shortcuts) == 2 and all(not l.weights for l in shortcuts)
    # Option A: every second pixel, zero channels split around the originals.
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 4)).astype("float32")
    y = to_numpy(shortcuts[0](x))
    assert y.shape == (2, 4, 4, 8)
    np.testing.assert_array_equal(y[..., 2:6], x[:, ::2, ::2, :])
    assert not y[..., :2].any() and not y[..., 6:].any()


def test_projection_has_1x1_shortcut_convs():
    model = dnn.resnet(8, width=4, seed=0)
    sc = [l for l in model.layers if l.name.endswith("shortcut")]
    assert [l.kernel_size for l in sc] == [(1, 1), (1, 1)] and all(l.strides == (2, 2) for l in sc)


def test_l2_penalty_is_on_kernels_only():
    model = dnn.resnet(8, width=4, l2=1e-3, seed=0)
    kernels = [l.kernel for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    expected = 1e-3 * sum(float(np.sum(np.square(to_numpy(k)))) for k in kernels)
    got = float(sum(to_numpy(v) for v in model.losses))
    assert got == pytest.approx(expected, rel=1e-5)
    assert not dnn.resnet(8, width=4, l2=0.0, seed=0).losses


def test_init_is_seeded_and_he_scaled():
    a, b, c = (dnn.resnet(56, shortcut="zero_pad", seed=s) for s in (3, 3, 4))
    wa, wb, wc = ([to_numpy(v) for v in m.trainable_variables] for m in (a, b, c))
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert not all(np.array_equal(x, y) for x, y in zip(wa, wc))
    # A stage-3 kernel: 3*3*64*64 = 36,864 draws with variance 2/fan_in (He init).
    k = to_numpy(a.get_layer("s3b5_conv2").kernel).ravel()
    fan_in = 3 * 3 * 64
    # A normal truncated at 2 sd has kurtosis 2.36 (a normal's is 3), so the SE of the
    # sample variance is var*sqrt(1.36/n); 4 SE: false alarm ~6e-5.
    se = (2 / fan_in) * math.sqrt(1.36 / k.size)
    assert abs(k.var() - 2 / fan_in) < 4 * se
    # Truncated at 2 of the untruncated sd = sqrt(2/fan_in)/0.8796.
    assert np.abs(k).max() <= 2 * math.sqrt(2 / fan_in) / 0.87962566103423978 + 1e-6


def test_mixed_bfloat16_policy_keeps_float32_logits_and_variables():
    old = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = dnn.resnet(8, width=4, seed=0)
    finally:
        keras.config.set_dtype_policy(old)
    out = model(np.zeros((2, 32, 32, 3), "float32"))
    assert str(out.dtype) == "float32"
    assert all(str(v.dtype) == "float32" for v in model.trainable_variables)


@pytest.mark.parametrize("depth", [7, 9, 56.0, True, 2, -4, "56"])
def test_bad_depth_raises(depth):
    with pytest.raises(ValueError, match="depth must be 6n\\+2"):
        dnn.resnet(depth)


@pytest.mark.parametrize("kw,match", [
    ({"shortcut": "identity"}, "shortcut must be one of"),
    ({"l2": -1e-4}, "l2 must be"),
    ({"width": 0}, "width must be"),
    ({"num_classes": 0}, "num_classes must be"),
])
def test_bad_arguments_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        dnn.resnet(8, **kw)


def test_augmentation_is_a_random_crop_and_flip_of_the_padded_image():
    from dnn.convnet.data import augmentation

    x = np.random.default_rng(0).normal(size=(16, 32, 32, 3)).astype("float32")
    layer = augmentation(seed=5)
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
    y = to_numpy(layer(x, training=True))
    xp = np.pad(x, [(0, 0), (4, 4), (4, 4), (0, 0)])
    seen = set()
    for i in range(len(x)):
        matches = [(t, l, f) for t in range(9) for l in range(9) for f in (0, 1)
                   if np.array_equal(xp[i, t:t + 32, l:l + 32][:, ::-1] if f else xp[i, t:t + 32, l:l + 32], y[i])]
        assert len(matches) == 1, f"image {i} is not exactly one crop/flip of its padded input"
        seen.add(matches[0])
    assert len(seen) > 8  # 16 images, 162 possible (offset, flip): not all the same
    # Seeded: a fresh layer with the same seed draws the same crops.
    y2 = to_numpy(augmentation(seed=5)(x, training=True))
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("shortcut", ["projection", "zero_pad"])
def test_fashion_input_shape_changes_only_the_stem(shortcut):
    # Grayscale 28x28: the stem kernel loses 2 of 3 input channels (2*9*width weights);
    # the stride-2 stages give 28 -> 14 -> 7 and global pooling takes the 7x7 map.
    model = dnn.resnet(8, width=4, shortcut=shortcut, input_shape=(28, 28, 1), seed=0)
    trainable, frozen = expected_counts(8, 4, shortcut)
    assert counts(model) == (trainable - 2 * 9 * 4, frozen)
    assert [model.get_layer(f"s{s}b1_add").output.shape[1:3] for s in (1, 2, 3)] == [(28, 28), (14, 14), (7, 7)]
    out = to_numpy(model(np.zeros((3, 28, 28, 1), "float32"), training=False))
    assert out.shape == (3, 10) and np.isfinite(out).all()


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 0), (28.0, 28, 1), "28x28x1", None, (28, 28, True)])
def test_bad_input_shape_raises(shape):
    with pytest.raises(ValueError, match="input_shape must be \\(height, width, channels\\)"):
        dnn.resnet(8, width=4, input_shape=shape)
