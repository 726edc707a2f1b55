"""Fashion-MNIST: the IDX reader on files the tests write, the search order, the download
fallback, the real files where installed, and training on Fashion-shaped data."""

import gzip
import hashlib
import json

import numpy as np
import pytest

import dnn
from dnn.convnet import fashion
from dnn.convnet.data import DataError, channel_stats, standardize
from dnn.convnet.fashion import class_balanced_indices

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# The table (SHA-256 of the decompressed files, measured from the Debian package),
# copied here rather than read from the module, so a changed constant fails the real-data test.
OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
HOW_TO_GET = ("apt-get install dataset-fashion-mnist", "--data-dir",
              "https://storage.googleapis.com/tensorflow/tf-keras-datasets/")


def idx(array):
    """IDX bytes written independently of the reader: magic 0x0000080<ndim>, big-endian dims, data."""
    a = np.ascontiguousarray(array, np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + a.tobytes()


def make_set(n_train=40, n_test=20, seed=0):
    """Raw IDX bytes of a small Fashion-shaped data set, and its truth."""
    rng = np.random.default_rng(seed)
    x_tr = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    x_te = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    y_tr = np.arange(n_train) % 10          # every class present
    rng.shuffle(y_tr)
    y_te = rng.integers(0, 10, size=n_test)
    blobs = dict(zip(NAMES, (idx(x_tr), idx(y_tr), idx(x_te), idx(y_te))))
    return blobs, ((x_tr, y_tr), (x_te, y_te))


def write(folder, blobs, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in blobs.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def trust(monkeypatch, blobs):
    """Make the loader expect these files' hashes (how a small file passes the check)."""
    monkeypatch.setattr(fashion, "FASHION_MNIST_SHA256",
                        {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()})


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """An empty Keras cache and system folder, so only what a test writes is found."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(fashion, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "system")
    return tmp_path


def check(result, truth):
    (x_tr, y_tr), (x_te, y_te) = result
    (tx_tr, ty_tr), (tx_te, ty_te) = truth
    assert x_tr.shape == (len(tx_tr), 28, 28, 1) and x_tr.dtype == np.uint8
    assert x_te.shape == (len(tx_te), 28, 28, 1) and y_tr.dtype == np.int64 and y_te.dtype == np.int64
    np.testing.assert_array_equal(x_tr[..., 0], tx_tr)
    np.testing.assert_array_equal(y_tr, ty_tr)
    np.testing.assert_array_equal(x_te[..., 0], tx_te)
    np.testing.assert_array_equal(y_te, ty_te)


# --------------------------------------------------------------------------- reader


@pytest.mark.parametrize("gz", [True, False])
def test_reads_gzipped_or_decompressed_files(nowhere, monkeypatch, gz):
    blobs, truth = make_set()
    trust(monkeypatch, blobs)
    folder = write(nowhere / "data", blobs, gz=gz)
    check(dnn.load_fashion_mnist(folder, download=False), truth)


def test_a_mix_of_gzipped_and_decompressed_files_is_fine(nowhere, monkeypatch):
    blobs, truth = make_set()
    trust(monkeypatch, blobs)
    folder = write(nowhere / "data", {k: blobs[k] for k in NAMES[:2]})
    write(folder, {k: blobs[k] for k in NAMES[2:]}, gz=False)
    check(dnn.load_fashion_mnist(folder, download=False), truth)


def test_official_hashes_refuse_other_files_and_name_path_and_remedies(nowhere):
    blobs, _ = make_set()
    folder = write(nowhere / "data", blobs)
    with pytest.raises(DataError) as err:
        dnn.load_fashion_mnist(folder, download=False)
    msg = str(err.value)
    assert str(folder / "train-images-idx3-ubyte.gz") in msg and "SHA-256" in msg
    assert OFFICIAL_SHA256["train-images-idx3-ubyte"] in msg
    assert all(way in msg for way in HOW_TO_GET)


def test_hash_is_checked_before_decoding(nowhere, monkeypatch):
    # A wrong magic number in a file whose hash is not vouched for: the hash error wins.
    blobs, _ = make_set()
    trust(monkeypatch, blobs)
    blobs["t10k-labels-idx1-ubyte"] = b"\x00\x00\x08\x03" + blobs["t10k-labels-idx1-ubyte"][4:]
    folder = write(nowhere / "data", blobs)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: SHA-256"):
        dnn.load_fashion_mnist(folder, download=False)


def test_truncated_gzip_is_a_data_error(nowhere, monkeypatch):
    blobs, _ = make_set()
    trust(monkeypatch, blobs)
    folder = write(nowhere / "data", blobs)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])       # an interrupted download
    with pytest.raises(DataError) as err:
        dnn.load_fashion_mnist(folder, download=False)
    assert str(path) in str(err.value) and "truncated or corrupt" in str(err.value)
    assert all(way in str(err.value) for way in HOW_TO_GET)


def test_garbage_that_is_not_gzip(nowhere, monkeypatch):
    blobs, _ = make_set()
    trust(monkeypatch, blobs)
    folder = write(nowhere / "data", blobs)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: cannot read or decompress"):
        dnn.load_fashion_mnist(folder, download=False)


# Each corruption is vouched for by the (patched) hash, so the IDX parser must catch it.
@pytest.mark.parametrize("name,corrupt,match", [
    ("train-images-idx3-ubyte", lambda b: b[:-28],
     "header announces \\(40, 28, 28\\) \\(31376 bytes\\), the file holds 31348"),
    ("train-labels-idx1-ubyte", lambda b: b + b"\x00", "truncated or corrupt"),
    ("train-images-idx3-ubyte", lambda b: b[:5], "shorter than an IDX header"),
    ("train-images-idx3-ubyte", lambda b: b"\x00\x00\x08\x01" + b[4:], "magic number is 0x00000801, "
                                                                       "expected 0x00000803"),
    ("t10k-labels-idx1-ubyte", lambda b: b"\x00\x00\x09\x01" + b[4:], "magic number is 0x00000901"),
    ("train-images-idx3-ubyte", lambda b: idx(np.zeros((40, 32, 32))), "images are 32x32, expected 28x28"),
    ("train-labels-idx1-ubyte", lambda b: idx(np.full(40, 10)), "labels must be in 0..9; got values up to 10"),
    ("t10k-labels-idx1-ubyte", lambda b: idx(np.zeros(19)), "holds 20 images but .* holds 19 labels"),
])
def test_malformed_idx_files_are_named(nowhere, monkeypatch, name, corrupt, match):
    blobs, _ = make_set()
    blobs[name] = corrupt(blobs[name])
    trust(monkeypatch, blobs)
    folder = write(nowhere / "data", blobs, gz=False)
    with pytest.raises(DataError, match=match) as err:
        dnn.load_fashion_mnist(folder, download=False)
    assert str(folder / name) in str(err.value)


# --------------------------------------------------------------------------- where the files are


def test_search_order_data_dir_then_keras_cache_then_system(nowhere, monkeypatch):
    # Three different sets; only the trusted one passes the hash check, so reading any
    # other folder than the expected one fails.
    sets = [make_set(seed=s) for s in range(3)]
    data_dir = write(nowhere / "data", sets[0][0])
    cache = write(nowhere / "keras_home" / "datasets" / "fashion-mnist", sets[1][0])
    write(nowhere / "system", sets[2][0])
    trust(monkeypatch, sets[0][0])
    check(dnn.load_fashion_mnist(data_dir, download=False), sets[0][1])
    trust(monkeypatch, sets[1][0])
    check(dnn.load_fashion_mnist(download=False), sets[1][1])
    # An incomplete folder is passed over: the next complete one is read.
    (cache / "t10k-labels-idx1-ubyte.gz").unlink()
    trust(monkeypatch, sets[2][0])
    check(dnn.load_fashion_mnist(download=False), sets[2][1])
    check(dnn.load_fashion_mnist(nowhere / "empty", download=False), sets[2][1])


def test_nothing_found_names_every_place_and_the_remedies(nowhere):
    with pytest.raises(DataError) as err:
        dnn.load_fashion_mnist(nowhere / "mine", download=False)
    msg = str(err.value)
    assert "download disabled" in msg and str(nowhere / "mine") in msg
    assert str(nowhere / "keras_home" / "datasets" / "fashion-mnist") in msg and str(nowhere / "system") in msg
    assert all(way in msg for way in HOW_TO_GET)
    with pytest.raises(TypeError, match="download must be True or False"):
        dnn.load_fashion_mnist(nowhere, download="no")


def test_download_fallback_uses_keras_get_file_and_its_origin(nowhere, monkeypatch):
    from dnn.convnet.backend import import_keras

    keras = import_keras()
    blobs, truth = make_set()
    trust(monkeypatch, blobs)
    calls = []

    def fake_get_file(fname, origin, cache_dir, cache_subdir, **kw):
        calls.append((fname, origin, cache_dir, cache_subdir))
        folder = nowhere / cache_dir / cache_subdir
        write(folder, {fname[:-3]: blobs[fname[:-3]]})
        return str(folder / fname)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    check(dnn.load_fashion_mnist(), truth)
    base = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
    assert sorted(c[1] for c in calls) == sorted(base + n + ".gz" for n in NAMES)
    cache = nowhere / "keras_home" / "datasets"
    assert {(c[2], c[3]) for c in calls} == {(str(cache), "fashion-mnist")}
    # keras.datasets.fashion_mnist downloads from the same place (read from its source).
    import inspect

    from keras.src.datasets import fashion_mnist
    assert base in inspect.getsource(fashion_mnist)
    # Found in the cache now: no second download.
    check(dnn.load_fashion_mnist(), truth)
    assert len(calls) == 4


def test_download_into_data_dir_and_a_failed_download(nowhere, monkeypatch):
    from dnn.convnet.backend import import_keras

    keras = import_keras()
    calls = []

    def offline(*args, **kwargs):
        calls.append(kwargs)
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError) as err:
        dnn.load_fashion_mnist(nowhere / "mine")
    assert "download failed" in str(err.value) and "name resolution" in str(err.value)
    assert calls[0]["cache_dir"] == str(nowhere) and calls[0]["cache_subdir"] == "mine"


# --------------------------------------------------------------------------- the real files


def _real_dir():
    for d in (fashion._keras_cache_dir() / "fashion-mnist", fashion.FASHION_MNIST_SYSTEM_DIR):
        if all(fashion._locate(d, n) for n in NAMES):
            return d
    return None


@pytest.mark.skipif(_real_dir() is None, reason="Fashion-MNIST not installed "
                    "(apt-get install dataset-fashion-mnist)")
def test_the_real_files():
    folder = _real_dir()
    for name in NAMES:       # independent of the reader: gzip + hashlib on the files themselves
        path = fashion._locate(folder, name)
        data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == OFFICIAL_SHA256[name], path
    (x, y), (xt, yt) = dnn.load_fashion_mnist(download=False)
    assert x.shape == (60000, 28, 28, 1) and xt.shape == (10000, 28, 28, 1) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10
    # A prefix of the class-balanced subset is close to balanced: the files are class-mixed.
    sub = class_balanced_indices(y, 10000)
    assert np.bincount(y[sub]).tolist() == [1000] * 10
    assert np.bincount(y[sub[:2000]]).min() > 150


# --------------------------------------------------------------------------- preprocessing


def test_class_balanced_indices():
    y = np.array([3, 0, 1, 0, 2, 1, 0, 3, 2, 1, 0, 2])
    idx_ = class_balanced_indices(y, 8, num_classes=4)
    assert idx_.tolist() == [0, 1, 2, 3, 4, 5, 7, 8]       # first two of each class, file order
    assert class_balanced_indices(y, 5, num_classes=4).tolist() == [0, 1, 2, 3, 4]  # class 0 gets 2
    with pytest.raises(ValueError, match="class 3 has 2 examples, fewer than the 3"):
        class_balanced_indices(y, 12, num_classes=4)
    for bad in (0, 13, 2.0, True):
        with pytest.raises(ValueError, match="n must be an integer in \\[1, 12\\]"):
            class_balanced_indices(y, bad, num_classes=4)


def test_grayscale_standardisation_uses_training_statistics():
    x = np.random.default_rng(0).integers(0, 256, size=(50, 28, 28, 1), dtype=np.uint8)
    mean, std = channel_stats(x)
    assert mean.shape == std.shape == (1,)
    np.testing.assert_allclose(mean, x.mean(), rtol=1e-12)
    np.testing.assert_allclose(std, x.astype(float).std(), rtol=1e-12)
    z = standardize(x, mean, std)
    assert z.shape == x.shape and z.dtype == np.float32
    with pytest.raises(ValueError, match="mean and std must have shape \\(1,\\)"):
        standardize(x, np.zeros(3), np.ones(3))


# --------------------------------------------------------------------------- model and training


def test_config_accepts_fashion_and_names_bad_sizes():
    c = dnn.TrainConfig(batch_size=100, lr=0.08, data="fashion_mnist")
    assert (c.train_size, c.test_size) == (60000, 10000)
    assert dnn.TrainConfig(batch_size=100, lr=0.08, data="fashion_mnist", n_train=60000).train_size == 60000
    for kw, match in [({"n_train": 60001}, "n_train must be None or an integer in \\[1, 60000\\] "
                       "for data='fashion_mnist'; got 60001"),
                      ({"n_test": 10001}, "n_test must be .*10000.*got 10001"),
                      ({"n_train": 0}, "n_train must be"),
                      ({"n_train": 50, "batch_size": 100}, "batch_size must be <= .*\\(50\\)")]:
        with pytest.raises(ValueError, match=match):
            dnn.TrainConfig(**{"batch_size": 100, "lr": 0.08, "data": "fashion_mnist", **kw})


def test_augmentation_pads_with_the_given_fill():
    from dnn.convnet.backend import to_numpy
    from dnn.convnet.data import augmentation

    x = np.random.default_rng(0).normal(size=(12, 28, 28, 1)).astype("float32")
    y = to_numpy(augmentation(seed=3, pad=2, fill=-0.8)(x, training=True))
    xp = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], constant_values=-0.8)
    for i in range(len(x)):
        crops = [xp[i, t:t + 28, l:l + 28] for t in range(5) for l in range(5)]
        assert any(np.array_equal(c, y[i]) or np.array_equal(c[:, ::-1], y[i]) for c in crops), i
    with pytest.raises(ValueError, match="pad must be an integer >= 0; got -1"):
        augmentation(pad=-1)
    with pytest.raises(ValueError, match="fill must be a finite number; got nan"):
        augmentation(fill=float("nan"))


@pytest.mark.slow
def test_one_epoch_on_fashion_shaped_files(nowhere, monkeypatch):
    blobs, ((x_tr, y_tr), _) = make_set(n_train=200, n_test=50, seed=4)
    trust(monkeypatch, blobs)
    folder = write(nowhere / "data", blobs)
    config = dnn.TrainConfig(batch_size=20, lr=0.05, epochs=1, depth=8, width=4, milestones=(1,),
                             data="fashion_mnist", n_train=100, data_dir=str(folder), seed=0)
    info = dnn.train(config, nowhere / "run", quiet=True)
    assert info["status"] == "completed"
    saved = json.loads((nowhere / "run" / "run.json").read_text())
    data = saved["data"]
    assert data["source"] == "fashion_mnist" and data["input_shape"] == [28, 28, 1]
    assert (data["n_train"], data["n_test"], data["steps_per_epoch"]) == (100, 50, 5)
    assert "of each class" in data["subset"] and len(data["mean"]) == 1
    keep = class_balanced_indices(y_tr, 100)
    assert data["mean"][0] == pytest.approx(x_tr[keep].mean(), rel=1e-9)   # subset's statistics
    assert data["augment"]["fill"] == pytest.approx(-data["mean"][0] / data["std"][0])
    expected_params = dnn.resnet(8, width=4, input_shape=(28, 28, 1), seed=0).count_params()
    assert sum(saved["n_params"].values()) == expected_params
    run = dnn.load_run(nowhere / "run")
    assert run.x_train.shape == (100, 28, 28, 1) and run.x_test.shape == (50, 28, 28, 1)
    assert np.bincount(run.y_train).tolist() == [10] * 10
    assert np.isfinite(saved["final"]["val_loss"])
