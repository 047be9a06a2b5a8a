"""Writers of tiny data sets in the official file formats, for the data tests.

Each writer produces the exact byte layout the authors publish (IDX, CIFAR-10
binary records, CIFAR-10 python pickles, the ``.tar.gz`` archives), filled with
deterministic pseudo-random pixels and balanced labels, so the tests can check
that what is read back equals what was written.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_BATCHES = (*(f"data_batch_{k}" for k in range(1, 6)), "test_batch")


def images_and_labels(n: int, shape: tuple[int, ...], seed: int):
    """``n`` uint8 images of ``shape`` and labels cycling through 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes holding ``array``."""
    header = bytes([0, 0, 0x08, array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + dims + array.astype(np.uint8).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_fashion(folder: Path, n_train: int = 100, n_test: int = 20, gz: bool = True):
    """The four Fashion-MNIST IDX files; returns the arrays written."""
    train_x, train_y = images_and_labels(n_train, (28, 28), seed=1)
    test_x, test_y = images_and_labels(n_test, (28, 28), seed=2)
    for name, array in zip(FASHION_FILES, (train_x, train_y, test_x, test_y),
                           strict=True):
        write(folder / name, idx_bytes(array), gz)
    return train_x, train_y, test_x, test_y


def cifar_records(images: np.ndarray, labels: np.ndarray) -> bytes:
    """CIFAR-10 binary records: label byte then the 3 x 32 x 32 planes."""
    flat = images.reshape(len(images), -1)
    return np.concatenate([labels[:, None].astype(np.uint8), flat], axis=1).tobytes()


class _Python2StylePickler(pickle._Pickler):
    """Writes bytes and text as Python 2 ``str`` opcodes (``SHORT_BINSTRING`` /
    ``BINSTRING``), the way the official CIFAR-10 pickles (made with Python 2)
    store them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def cifar_pickle(images: np.ndarray, labels: np.ndarray, protocol: int | None = None):
    """A CIFAR-10 python batch: the dict the official pickles hold.

    ``protocol=None`` imitates the official files: protocol 2 as Python 2 wrote
    it (bytes as ``str`` opcodes, arrays rebuilt by
    ``numpy.core.multiarray._reconstruct``); an int pickles with Python 3.
    """
    batch = {
        b"batch_label": b"synthetic batch",
        b"labels": [int(label) for label in labels],
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    if protocol is not None:
        return pickle.dumps(batch, protocol=protocol)
    buffer = io.BytesIO()
    _Python2StylePickler(buffer, protocol=2).dump(batch)
    return buffer.getvalue().replace(
        b"cnumpy._core.multiarray\n_reconstruct\n",
        b"cnumpy.core.multiarray\n_reconstruct\n",
    )


def write_cifar(folder: Path, kind: str = "bin", per_batch: int = 20, n_test: int = 10,
                gz: bool = False):
    """The six CIFAR-10 batches in ``kind`` ``"bin"`` or ``"py"`` under ``folder``.

    Returns ``(train_x, train_y, test_x, test_y)`` as written.
    """
    train_x, train_y = images_and_labels(5 * per_batch, (3, 32, 32), seed=3)
    test_x, test_y = images_and_labels(n_test, (3, 32, 32), seed=4)
    for k, name in enumerate(CIFAR_BATCHES):
        if name == "test_batch":
            x, y = test_x, test_y
        else:
            x = train_x[k * per_batch : (k + 1) * per_batch]
            y = train_y[k * per_batch : (k + 1) * per_batch]
        if kind == "bin":
            write(folder / f"{name}.bin", cifar_records(x, y), gz)
        else:
            write(folder / name, cifar_pickle(x, y))
    return train_x, train_y, test_x, test_y


def tar_gz(source_folder: Path, archive: Path) -> Path:
    """Pack ``source_folder`` as ``<its name>/...`` into a ``.tar.gz``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source_folder, arcname=source_folder.name)
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(buffer.getvalue())
    return archive
