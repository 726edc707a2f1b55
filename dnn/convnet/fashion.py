"""Fashion-MNIST reader: four IDX files, SHA-256-verified over their decompressed bytes.

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) is 60,000 training and 10,000 test
28×28 grayscale images of 10 clothing classes, shipped as four gzipped IDX files.
The .gz bytes differ between sources (Debian's ``dataset-fashion-mnist`` package
recompressed them), so each file is checked by the SHA-256 of its **decompressed**
bytes (:data:`FASHION_MNIST_SHA256`, measured from the Debian package, whose
decompressed files are the upstream ones), before anything is decoded. A file may
be stored gzipped (``name.gz``, preferred when both exist) or decompressed (``name``).

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a big-endian
header, a magic number ``0x00000800 | ndim`` with type byte 0x08 = uint8, then
``ndim`` uint32 dimensions, then the uint8 data in C order. The parser checks all
of it: the magic number, the dimensions (images N×28×28, labels N), that the file
holds exactly the bytes the header announces, the label range 0..9, and that the
image and label files of a split agree on N.

This module imports only numpy; keras is imported only to download the files.

References
----------
H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017.
"""

from __future__ import annotations

import gzip
import hashlib
import numbers
import zlib
from pathlib import Path

import numpy as np

from .data import DataError, _keras_cache_dir

__all__ = [
    "FASHION_MNIST_URL",
    "FASHION_MNIST_SHA256",
    "FASHION_MNIST_SYSTEM_DIR",
    "load_fashion_mnist",
    "class_balanced_indices",
]

#: Where ``keras.datasets.fashion_mnist`` downloads the four .gz files from (Keras 3.15,
#: ``keras/src/datasets/fashion_mnist.py``).
FASHION_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
#: SHA-256 of each decompressed file (read at call time, so tests can substitute their own).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
#: Where ``apt-get install dataset-fashion-mnist`` puts the files (searched last).
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_SUBDIR = "fashion-mnist"  # keras.datasets' folder under the Keras cache
_SPLITS = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
           ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
_NAMES = tuple(name for split in _SPLITS for name in split)
_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801   # uint8 data, 3 and 1 dimensions
_SIDE = 28
_HOW_TO_GET = (
    "Get Fashion-MNIST in one of three ways: (1) `apt-get install dataset-fashion-mnist` "
    f"(installs the files in {FASHION_MNIST_SYSTEM_DIR}); (2) put the four files "
    f"({', '.join(n + '.gz' for n in _NAMES)}; gzipped or not) in ~/.keras/datasets/{_SUBDIR} "
    "or in a folder you pass as --data-dir (data_dir=); (3) run once with network access, "
    f"so that keras downloads them from {FASHION_MNIST_URL}."
)


def load_fashion_mnist(data_dir=None, *, download=True):
    """Load Fashion-MNIST as uint8 images (N, 28, 28, 1) and int64 labels (N,).

    Search order: ``data_dir``, then the Keras cache (``$KERAS_HOME/datasets/fashion-mnist``,
    default ``~/.keras/datasets/fashion-mnist``, where ``keras.datasets.fashion_mnist``
    leaves the files), then :data:`FASHION_MNIST_SYSTEM_DIR` (the Debian package).
    The first folder that holds all four files (each gzipped or not) is read. If none
    does, the four .gz files are downloaded with ``keras.utils.get_file`` from
    :data:`FASHION_MNIST_URL` into ``data_dir`` (or the Keras cache).

    Parameters
    ----------
    data_dir : str or path-like, optional
        Folder to look in first (and to download to).
    download : bool
        Whether to download when no folder holds the files.

    Returns
    -------
    ((x_train, y_train), (x_test, y_test))
        ``x``: uint8 (N, 28, 28, 1), 0 = background; ``y``: int64 (N,) in 0..9.
        N is 60,000 and 10,000 for the official files.

    Raises
    ------
    DataError
        No folder holds the files and the download is disabled or fails; or a file
        is truncated, not gzip, fails its SHA-256 check, or is not a valid IDX file.
        The message names the path and the three ways to get the data.
    TypeError
        ``download`` is not a bool.
    """
    from .._validate import flag

    download = flag(download, "download")
    dirs = ([Path(data_dir).expanduser()] if data_dir is not None else []) + [
        _keras_cache_dir() / _SUBDIR, Path(FASHION_MNIST_SYSTEM_DIR)]
    folder = next((d for d in dirs if all(_locate(d, n) for n in _NAMES)), None)
    if folder is None:
        if not download:
            raise DataError(_not_found(dirs, "download disabled"))
        folder = dirs[0] if data_dir is not None else _keras_cache_dir() / _SUBDIR
        try:
            _download(folder)
        except Exception as exc:  # any network/IO failure becomes one clear message
            raise DataError(_not_found(dirs, f"download failed: {exc}")) from exc
        if not all(_locate(folder, n) for n in _NAMES):
            raise DataError(_not_found(dirs, f"the download left no complete set in {folder}"))
    expected = FASHION_MNIST_SHA256   # looked up now, not at import: tests substitute it
    out = []
    for images_name, labels_name in _SPLITS:
        x_path, y_path = _locate(folder, images_name), _locate(folder, labels_name)
        x = _parse_idx(_verified_bytes(x_path, expected.get(images_name)), x_path, _IMAGE_MAGIC)
        y = _parse_idx(_verified_bytes(y_path, expected.get(labels_name)), y_path, _LABEL_MAGIC)
        if len(x) != len(y):
            raise DataError(f"{x_path} holds {len(x)} images but {y_path} holds {len(y)} labels; "
                            f"they are not one split. {_HOW_TO_GET}")
        if y.size and y.max() > 9:
            raise DataError(f"{y_path}: labels must be in 0..9; got values up to {y.max()}. "
                            f"{_HOW_TO_GET}")
        out.append((x[..., None], y.astype(np.int64)))
    return tuple(out)


def class_balanced_indices(labels, n, num_classes=10):
    """Indices of the first ``n // k`` examples of each of the ``k`` classes, in data-set order.

    Class ``c`` contributes its first ``n // k + (c < n % k)`` examples (so any
    ``n`` works and the first ``n % k`` classes get one more); the selected indices
    are returned sorted, i.e. in the data set's own order. Fashion-MNIST's files
    are already in a class-mixed order, so any prefix of the subset is itself
    close to balanced (``estimate`` and stationary stages use prefixes). The
    subset depends on ``n`` only: no random draw, the same images for every
    training seed (the seeds vary initialisation and batch order, not the data).

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Class of each example, in 0..k−1.
    n : int
        Subset size, 1 ≤ n ≤ N.
    num_classes : int
        k.

    Returns
    -------
    ndarray of int64, shape (n,)
        Increasing indices into ``labels``.

    Raises
    ------
    ValueError
        ``n`` not an integer in [1, N], or a class has fewer examples than its quota.

    Examples
    --------
    >>> y = np.array([0, 1, 1, 0, 2, 2, 0, 1, 2])
    >>> class_balanced_indices(y, 6, num_classes=3)
    array([0, 1, 2, 3, 4, 5])
    >>> np.bincount(y[class_balanced_indices(y, 4, num_classes=3)])
    array([2, 1, 1])
    """
    y = np.asarray(labels)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= len(y):
        raise ValueError(f"n must be an integer in [1, {len(y)}]; got {n!r}")
    quota = np.full(num_classes, n // num_classes) + (np.arange(num_classes) < n % num_classes)
    picked = []
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)
        if len(idx) < quota[c]:
            raise ValueError(f"class {c} has {len(idx)} examples, fewer than the {quota[c]} that "
                             f"a class-balanced subset of n={n} needs")
        picked.append(idx[: quota[c]])
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _locate(folder, name):
    """``folder/name.gz`` or else ``folder/name`` if it is a file; None otherwise."""
    for candidate in (Path(folder) / f"{name}.gz", Path(folder) / name):
        if candidate.is_file():
            return candidate
    return None


def _not_found(dirs, reason):
    where = ", ".join(str(d) for d in dirs)
    return (f"Fashion-MNIST not found: no folder holds all four files (looked in: {where}; "
            f"{reason}). {_HOW_TO_GET}")


def _download(folder):
    """Download the four .gz files into ``folder`` the way ``keras.datasets.fashion_mnist`` does.

    No ``file_hash`` is given: the loader checks the SHA-256 of the decompressed bytes,
    which is stronger than a hash of one particular compression.
    """
    from .backend import import_keras

    keras = import_keras()
    folder = Path(folder)
    for name in _NAMES:
        keras.utils.get_file(fname=f"{name}.gz", origin=f"{FASHION_MNIST_URL}{name}.gz",
                             cache_dir=str(folder.parent), cache_subdir=folder.name)


def _verified_bytes(path, sha256):
    """The decompressed bytes of ``path``, after their SHA-256 matched ``sha256``."""
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read or decompress it ({type(exc).__name__}: {exc}); the "
                        f"file is truncated or corrupt. Delete it. {_HOW_TO_GET}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is None or digest != sha256.lower():
        raise DataError(f"{path}: SHA-256 of the decompressed bytes is {digest}, expected {sha256}; "
                        f"the file is incomplete, corrupt or not the official one. Delete it. "
                        f"{_HOW_TO_GET}")
    return data


def _parse_idx(data, path, magic):
    """Decode verified IDX bytes: (N, 28, 28) uint8 images or (N,) uint8 labels."""
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: {len(data)} bytes, shorter than an IDX header ({header}); "
                        f"the file is truncated. {_HOW_TO_GET}")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: IDX magic number is {found:#010x}, expected {magic:#010x} "
                        f"({'images' if ndim == 3 else 'labels'}); not a Fashion-MNIST "
                        f"{'image' if ndim == 3 else 'label'} file. {_HOW_TO_GET}")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    if ndim == 3 and dims[1:] != (_SIDE, _SIDE):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected {_SIDE}x{_SIDE}. "
                        f"{_HOW_TO_GET}")
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) != header + size:
        raise DataError(f"{path}: the header announces {dims} ({header + size} bytes), the file "
                        f"holds {len(data)} bytes; it is truncated or corrupt. {_HOW_TO_GET}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()
