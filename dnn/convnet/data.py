"""CIFAR-10 reader (hash-verified), a synthetic CIFAR-shaped data set, and preprocessing.

(The Fashion-MNIST reader is :mod:`dnn.convnet.fashion`; it shares :class:`DataError`
and the preprocessing here.)

Pickle can execute code, so **nothing is unpickled before its bytes are
verified**: the official archive ``cifar-10-python.tar.gz`` against its MD5
(``c58f30108f718f92721af3b95e74349a``, published with the data set), or each file
of an extracted ``cifar-10-batches-py/`` folder against the per-file MD5s that
torchvision publishes (``torchvision/datasets/cifar.py``). As a second layer the
unpickler only resolves the numpy globals needed to rebuild an ndarray.

This module imports only numpy; keras is imported only to download the archive
or to build the augmentation layer.
"""

from __future__ import annotations

import hashlib
import io
import numbers
import os
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "CIFAR10_URL",
    "CIFAR10_MD5",
    "CIFAR10_FILE_MD5",
    "load_cifar10",
    "synthetic_cifar",
    "channel_stats",
    "standardize",
    "augmentation",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: MD5 of the official archive (https://www.cs.toronto.edu/~kriz/cifar.html).
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
#: MD5 of each file inside ``cifar-10-batches-py/`` (as listed by torchvision).
CIFAR10_FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
_ARCHIVE = "cifar-10-python.tar.gz"
_FOLDER = "cifar-10-batches-py"
_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_FILES = ("test_batch",)


class DataError(ValueError):
    """The data set is missing, corrupt, or fails its hash check."""


# --------------------------------------------------------------------------- CIFAR-10


def load_cifar10(data_dir=None, *, expected_md5=None, download=True):
    """Load CIFAR-10 as uint8 images (N, 32, 32, 3) and int64 labels (N,).

    Search order: ``data_dir`` (the archive itself, a folder holding
    ``cifar-10-python.tar.gz``, a folder holding ``cifar-10-batches-py/``, or that
    folder itself), then the Keras cache (``$KERAS_HOME/datasets``, default
    ``~/.keras/datasets``, including what ``keras.datasets.cifar10`` leaves there),
    then a download with ``keras.utils.get_file`` into ``data_dir`` (or the Keras cache).
    An archive is preferred over an extracted folder in the same place.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Where to look first (and where to download to).
    expected_md5 : str or mapping, optional
        Override of the known hashes, for tests that build their own small archive:
        a string is the MD5 of the archive; a mapping ``{file name: MD5}`` covers the
        six batch files of an extracted folder. With an override the official sizes
        (50,000 / 10,000) are not enforced and nothing is downloaded.
    download : bool
        Whether to download when nothing is found.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        ``x``: uint8 (N, 32, 32, 3); ``y``: int64 (N,) in 0..9.

    Raises
    ------
    DataError
        Data not found (and download impossible; the message says where to put
        the file), hash mismatch, unreadable/corrupt archive, or malformed batches.
    """
    from .._validate import flag

    download = flag(download, "download")
    official = expected_md5 is None
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir).expanduser())
    dirs.append(_keras_cache_dir())
    found = _find(dirs)
    if found is None:
        if not download or not official:
            raise DataError(_not_found_message(dirs, reason="download disabled"))
        dest = dirs[0] if data_dir is not None else _keras_cache_dir()
        try:
            path = _download(dest)
        except Exception as exc:  # any network/IO failure becomes one clear message
            raise DataError(_not_found_message(dirs, reason=f"download failed: {exc}")) from exc
        found = ("archive", Path(path))
    kind, path = found
    if kind == "archive":
        md5 = CIFAR10_MD5 if official else expected_md5
        if not isinstance(md5, str):
            raise DataError(f"expected_md5 for an archive must be a string; got {type(md5).__name__}")
        blobs = _read_archive(path, md5)
    else:
        md5s = CIFAR10_FILE_MD5 if official else expected_md5
        if not hasattr(md5s, "get"):
            raise DataError(f"{path} is an extracted folder; expected_md5 must map file names to MD5s, "
                            f"got {type(md5s).__name__}")
        blobs = _read_folder(path, md5s)
    x_train, y_train = _stack(blobs, _TRAIN_FILES, path)
    x_test, y_test = _stack(blobs, _TEST_FILES, path)
    if official and (len(x_train), len(x_test)) != (50000, 10000):
        raise DataError(f"{path}: expected 50000 training and 10000 test images; "
                        f"got {len(x_train)} and {len(x_test)}")
    return (x_train, y_train), (x_test, y_test)


def _keras_cache_dir():
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "datasets"


def _find(dirs):
    for d in dirs:
        if d.is_file():
            return ("archive", d)
        for name in (_ARCHIVE, "cifar-10-batches-py.tar.gz"):  # the latter: keras.datasets' name
            if (d / name).is_file():
                return ("archive", d / name)
        for sub in (d / _FOLDER, d / f"{_FOLDER}_extracted" / _FOLDER, d):
            if (sub / "data_batch_1").is_file():
                return ("folder", sub)
    return None


def _not_found_message(dirs, reason):
    where = ", ".join(str(d) for d in dirs)
    return (f"CIFAR-10 not found (looked in: {where}; {reason}). Download {_ARCHIVE} "
            f"(MD5 {CIFAR10_MD5}) from {CIFAR10_URL} and put it at {dirs[0] / _ARCHIVE}, "
            f"or pass data_dir= the folder that holds it.")


def _download(dest):
    """Download the official archive into ``dest`` with keras (which checks the MD5 too)."""
    from .backend import import_keras

    keras = import_keras()
    dest = Path(dest)
    return keras.utils.get_file(fname=_ARCHIVE, origin=CIFAR10_URL, file_hash=CIFAR10_MD5,
                                hash_algorithm="md5", cache_dir=str(dest.parent),
                                cache_subdir=dest.name)


def _md5(data_or_path):
    h = hashlib.md5()
    if isinstance(data_or_path, (bytes, bytearray)):
        h.update(data_or_path)
    else:
        with open(data_or_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _read_archive(path, md5):
    digest = _md5(path)
    if digest != md5.lower():
        raise DataError(f"{path}: MD5 is {digest}, expected {md5}; the archive is corrupt, incomplete "
                        f"or not the official one. Delete it and download it again from {CIFAR10_URL}.")
    blobs = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if member.isfile() and name.parent.name == _FOLDER and name.name in _TRAIN_FILES + _TEST_FILES:
                    blobs[name.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: cannot read the archive ({type(exc).__name__}: {exc}); it is corrupt") from exc
    missing = [f for f in _TRAIN_FILES + _TEST_FILES if f not in blobs]
    if missing:
        raise DataError(f"{path}: archive lacks {_FOLDER}/{missing}")
    return {name: _unpickle(data, f"{path}:{name}") for name, data in blobs.items()}


def _read_folder(folder, md5s):
    blobs = {}
    for name in _TRAIN_FILES + _TEST_FILES:
        f = Path(folder) / name
        if not f.is_file():
            raise DataError(f"{folder}: missing batch file {name}")
        data = f.read_bytes()
        expected = md5s.get(name)
        if expected is None or _md5(data) != expected.lower():
            raise DataError(f"{f}: MD5 is {_md5(data)}, expected {expected}; refusing to unpickle an "
                            f"unverified file. Use the official archive from {CIFAR10_URL}.")
        blobs[name] = _unpickle(data, str(f))
    return blobs


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Defence in depth after the hash check: resolve only what an ndarray pickle needs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how a Python 3 protocol-2 pickle stores bytes; a pure function
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def _unpickle(data, where):
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:
        raise DataError(f"{where}: not a valid CIFAR batch pickle ({type(exc).__name__}: {exc})") from exc


def _stack(blobs, names, where):
    xs, ys = [], []
    for name in names:
        d = blobs[name]
        if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
            raise DataError(f"{where}:{name}: expected a dict with b'data' and b'labels'")
        x = np.asarray(d[b"data"])
        y = np.asarray(d[b"labels"])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (x.shape[0],):
            raise DataError(f"{where}:{name}: data must be uint8 (N, 3072) with N labels; "
                            f"got {x.dtype} {x.shape} and labels {y.shape}")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{where}:{name}: labels must be in 0..9; got range [{y.min()}, {y.max()}]")
        # CIFAR stores each row as 3 planes of 32x32 (channels first).
        xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(y.astype(np.int64))
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


# --------------------------------------------------------------------------- synthetic


def synthetic_cifar(n, seed):
    """A learnable CIFAR-shaped data set: class-dependent colour and stripes plus noise.

    Image i of class c is
    ``128 + 12·colour_c + 16·jitter_i + 24·stripes_c(phase_i) + 40·noise_i``,
    rounded and clipped to uint8, where ``colour_c`` is a fixed RGB offset,
    ``jitter_i`` a per-image N(0, I₃) colour shift (so colour alone is an imperfect
    cue), ``stripes_c`` a sinusoidal grating with a class-specific orientation and
    frequency and a random phase (a texture, visible to a convolution + global
    pooling network anywhere in the image), and ``noise_i`` i.i.d. N(0, 1) per pixel.
    The class templates are fixed for all seeds, so sets drawn with different
    seeds come from the same distribution (use different seeds for train and test).

    Parameters
    ----------
    n : int
        Number of images, ≥ 1.
    seed : int
        Seed for labels, phases and noise. For a given seed, the first k images
        are the same whatever ``n`` is.

    Returns
    -------
    x : ndarray of uint8, shape (n, 32, 32, 3)
    y : ndarray of int64, shape (n,)
        Labels, uniform on 0..9.

    Examples
    --------
    >>> x, y = synthetic_cifar(4, seed=0)
    >>> x.shape, x.dtype, y.dtype
    ((4, 32, 32, 3), dtype('uint8'), dtype('int64'))
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    # Fixed templates: same classes for every seed.
    t = np.random.default_rng(20160610)
    colour = t.normal(size=(10, 3)).astype(np.float32)
    angle = np.pi * (np.arange(10) / 10 + t.uniform(0, 0.05, 10))
    freq = t.uniform(0.25, 0.9, 10)  # radians per pixel
    # Separate streams for labels, phases and noise, so the first k images do not
    # depend on n: a smaller set is a prefix of a larger one with the same seed.
    y = np.random.default_rng([seed, 0]).integers(0, 10, size=n).astype(np.int64)
    phase = np.random.default_rng([seed, 1]).uniform(0, 2 * np.pi, size=n)
    jitters = np.random.default_rng([seed, 3]).standard_normal((n, 3)).astype(np.float32)
    noise = np.random.default_rng([seed, 2])
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    x = np.empty((n, 32, 32, 3), np.uint8)
    for s in range(0, n, 4096):  # chunks keep the float temporaries small
        c = y[s:s + 4096]
        proj = np.cos(angle[c])[:, None, None] * xx + np.sin(angle[c])[:, None, None] * yy
        stripes = np.sin(freq[c][:, None, None] * proj + phase[s:s + 4096, None, None]).astype(np.float32)
        jitter = jitters[s:s + 4096, None, None, :]
        img = (128 + 12 * colour[c][:, None, None, :] + 16 * jitter + 24 * stripes[..., None]
               + 40 * noise.standard_normal((len(c), 32, 32, 3), dtype=np.float32))
        x[s:s + 4096] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return x, y


# --------------------------------------------------------------------------- preprocessing


def channel_stats(x):
    """Per-channel mean and standard deviation (float64, shape (C,)) of images (N, H, W, C).

    C is 3 (RGB: CIFAR-10, synthetic) or 1 (grayscale: Fashion-MNIST).
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images must have shape (N, H, W, C) with C = 1 or 3; got {x.shape}")
    c = x.shape[-1]
    # Two passes over chunks: no float64 copy of a whole data set, no E[x²] − E[x]² cancellation.
    chunks = [x[s:s + 8192].reshape(-1, c) for s in range(0, len(x), 8192)]
    n = x.size // c
    mean = sum(ch.sum(axis=0, dtype=np.float64) for ch in chunks) / n
    var = sum(np.square(ch - mean).sum(axis=0) for ch in chunks) / n
    return mean, np.sqrt(var)


def standardize(x, mean, std):
    """Per-channel standardisation ``(x − mean) / std`` in float32 (statistics from the training set)."""
    mean = np.asarray(mean, np.float64)
    std = np.asarray(std, np.float64)
    c = np.shape(x)[-1]
    if mean.shape != (c,) or std.shape != (c,) or not np.all(std > 0):
        raise ValueError(f"mean and std must have shape ({c},) (the images' channels) with std > 0; "
                         f"got {mean} and {std}")
    out = np.empty(np.shape(x), np.float32)
    # Chunked so a 50k-image set needs no float64 copy.
    for s in range(0, len(x), 8192):
        out[s:s + 8192] = ((np.asarray(x[s:s + 8192], np.float32) - mean.astype(np.float32))
                           / std.astype(np.float32))
    return out


def augmentation(seed=None, pad=4, flip=True, fill=0.0):
    """The training augmentation layer (``pad``-pixel pad + random crop, horizontal flip).

    A Keras layer that runs on the device inside the compiled step and is the
    identity when ``training=False``; see :class:`dnn.convnet._layers.RandomPadCropFlip`
    for why it is not built from Keras' preprocessing layers. ``fill`` is the padding
    value in standardised units (0: the training mean).

    What :func:`dnn.train` uses:

    * CIFAR-10 (32×32): pad 4, flip, fill 0 (He et al. 2016 §4.2; the paper).
    * Fashion-MNIST (28×28): pad 2, flip, fill = the black background
      ``(0 − mean) / std``. Pad 2 (shifts of ≤ 2 px, 7% of the side): the items are
      centred and fill the frame, so pad 4 would crop off sleeves and toes, and the
      short CPU schedules leave few epochs to absorb strong augmentation. Flips:
      every class is defined up to mirror image (a shirt, a bag, a left or right
      sneaker is the same class), so a flip never changes the label; the standard
      Fashion-MNIST recipes (e.g. Zhong et al. 2020, random erasing) use flip + crop.
      Footwear in the data faces left (the shaft's mass is top right in 100% of the
      first 2,000 training sneakers and ankle boots, 92% of sandals), so flipped shoes
      are views the test set lacks; they still carry the right label, and keeping the
      flip keeps the paper's recipe, so the grid differs from it in the data only.
    """
    from ._layers import RandomPadCropFlip
    from .._validate import flag

    flip = flag(flip, "flip")
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral) or pad < 0:
        raise ValueError(f"pad must be an integer >= 0; got {pad!r}")
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real) or not np.isfinite(fill):
        raise ValueError(f"fill must be a finite number; got {fill!r}")
    return RandomPadCropFlip(pad=pad, flip=flip, seed=seed, fill=float(fill), name="augment")
