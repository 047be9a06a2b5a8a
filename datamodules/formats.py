"""Readers for the files Fashion-MNIST and CIFAR-10 are published as.

Each reader returns ``(images, labels)`` as numpy arrays: ``images`` uint8 of shape
``N x C x H x W`` and ``labels`` int64 of shape ``N``. The number of records is read
from the file, never assumed. Anything a file holds that its format does not allow
raises :class:`~datamodules.errors.DataFormatError` naming the file and the problem.

Formats:

- IDX (Fashion-MNIST), plain or gzip-compressed: a big-endian header (magic number
  ``0x00000803`` for images, ``0x00000801`` for labels, then one uint32 per
  dimension) followed by the uint8 values, row-major.
- CIFAR-10 binary batches (``*.bin``, or ``*.bin.gz``): records of 3,073 bytes, one
  label byte then 1,024 red, 1,024 green and 1,024 blue bytes.
- CIFAR-10 python batches: pickled dicts holding ``data`` (uint8 array,
  ``N x 3072``) and ``labels`` (list of ints). They are read by
  :class:`RestrictedUnpickler`, which builds only dicts, lists, strings, bytes,
  numbers and plain numeric numpy arrays, so a pickle cannot run code.
"""

from __future__ import annotations

import _codecs
import gzip
import io
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.errors import DataFormatError

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
CIFAR_IMAGE_SHAPE = (3, 32, 32)
CIFAR_RECORD_BYTES = 1 + 3 * 32 * 32
NUM_CLASSES = 10


def read_bytes(path: Path) -> bytearray:
    """Read a whole file, decompressing it when its name ends in ``.gz``."""
    try:
        with open(path, "rb") as handle:
            if path.suffix != ".gz":
                # read straight into a writable buffer: no second copy
                buffer = bytearray(os.fstat(handle.fileno()).st_size)
                size = handle.readinto(buffer)
                return buffer if size == len(buffer) else buffer[:size]
            raw = handle.read()
    except IsADirectoryError:
        raise DataFormatError(path, "is a directory, expected a file") from None
    try:
        return bytearray(gzip.decompress(raw))
    except (OSError, EOFError, zlib.error) as error:
        raise DataFormatError(
            path, f"is not a complete gzip file ({error}); delete it and fetch it again"
        ) from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes whose magic number must be ``magic``."""
    raw = read_bytes(path)
    kind = "images" if magic == IDX_IMAGES_MAGIC else "labels"
    if len(raw) < 4:
        raise DataFormatError(path, f"is truncated: {len(raw)} bytes, no IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataFormatError(
            path,
            f"wrong magic number 0x{found:08x}; IDX {kind} files start with "
            f"0x{magic:08x}",
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(path, f"is truncated inside its {header}-byte header")
    dims = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) < expected:
        raise DataFormatError(
            path,
            f"is truncated: the header announces shape {dims} ({expected} bytes) but "
            f"the file holds {len(raw)} bytes",
        )
    if len(raw) > expected:
        raise DataFormatError(
            path,
            f"holds {len(raw) - expected} bytes more than its header (shape {dims}) "
            "announces",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, ...]:
    """Read an IDX images file and its labels file (Fashion-MNIST, 28 x 28)."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataFormatError(
            images_path,
            f"wrong image size: images of shape {images.shape[1:]}, expected (28, 28)",
        )
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if labels.ndim != 1:
        raise DataFormatError(labels_path, f"labels of shape {labels.shape}, not 1-D")
    _check_counts(images_path, len(images), labels_path, len(labels))
    _check_labels(labels_path, labels)
    return images[:, None], labels.astype(np.int64)


def read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch (``*.bin`` or ``*.bin.gz``)."""
    raw = read_bytes(path)
    count, remainder = divmod(len(raw), CIFAR_RECORD_BYTES)
    if count == 0 and remainder == 0:
        raise DataFormatError(path, "is empty: no CIFAR-10 records")
    if remainder:
        raise DataFormatError(
            path,
            f"is truncated or of the wrong image size: {len(raw)} bytes is not a "
            f"whole number of {CIFAR_RECORD_BYTES}-byte records (label + 3x32x32)",
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(count, CIFAR_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    _check_labels(path, labels)
    return records[:, 1:].reshape(count, *CIFAR_IMAGE_SHAPE), labels


def read_cifar_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch with :class:`RestrictedUnpickler`."""
    raw = read_bytes(path)
    try:
        batch = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except RefusedPickle as error:
        raise DataFormatError(path, f"refused pickle content: {error}") from None
    except Exception as error:  # noqa: BLE001 - any failure means a corrupt pickle
        raise DataFormatError(
            path, f"is not a readable CIFAR-10 pickle ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(batch, dict):
        raise DataFormatError(path, f"holds a {type(batch).__name__}, expected a dict")
    batch = {_text(key): value for key, value in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataFormatError(path, "has no 'data' entry holding a 2-D uint8 array")
    if data.shape[1] != CIFAR_RECORD_BYTES - 1:
        raise DataFormatError(
            path,
            f"wrong image size: rows of {data.shape[1]} values, expected 3072 "
            "(3 x 32 x 32)",
        )
    if not isinstance(labels, list) or not all(type(x) is int for x in labels):
        raise DataFormatError(path, "has no 'labels' entry holding a list of ints")
    _check_counts(path, len(data), path, len(labels))
    labels_array = np.asarray(labels, dtype=np.int64)
    _check_labels(path, labels_array)
    return data.reshape(len(data), *CIFAR_IMAGE_SHAPE), labels_array


def _text(key: Any) -> Any:
    return key.decode("latin1") if isinstance(key, bytes) else key


def _check_counts(images_path: Path, n_images: int, labels_path: Path, n_labels: int):
    if n_images != n_labels:
        where = images_path if images_path == labels_path else labels_path
        raise DataFormatError(
            where,
            f"image and label counts differ: {n_images} images ({images_path.name}) "
            f"but {n_labels} labels ({labels_path.name})",
        )
    if n_images == 0:
        raise DataFormatError(images_path, "holds no images")


def _check_labels(path: Path, labels: np.ndarray) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)]
        first = int(np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))[0])
        raise DataFormatError(
            path,
            f"label {int(bad[0])} at record {first} is outside 0-{NUM_CLASSES - 1} "
            f"({len(bad)} such labels)",
        )


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asks for something a CIFAR-10 batch never holds."""


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise RefusedPickle(f"array subtype {subtype!r} is not allowed")
    return np.ndarray.__new__(np.ndarray, shape, _dtype(dtype))


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str | bytes) or len(spec) > 4:
        raise RefusedPickle(f"dtype {spec!r} is not allowed")
    # always a fresh copy: the BUILD opcode that follows calls __setstate__ on it,
    # which must never reach numpy's shared built-in dtype instances
    dtype = np.dtype(_text(spec), False, True)
    if dtype.kind not in "biuf":
        raise RefusedPickle(f"dtype {dtype} is not a plain numeric dtype")
    return dtype


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise RefusedPickle("only latin1 text may be encoded to bytes")
    return _codecs.encode(text, "latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits only what the CIFAR-10 python batches contain.

    The batches are dicts of lists, strings, bytes and ints plus numpy uint8
    arrays. Pickle rebuilds arrays by calling ``numpy.core.multiarray._reconstruct``
    with ``numpy.ndarray`` and a ``numpy.dtype``; Python 3 pickles of protocol 2 also
    call ``_codecs.encode(text, "latin1")`` for bytes. Those four globals are
    replaced by checked versions (plain ndarrays of numeric dtypes only); every
    other global is refused, so no pickle can run code while it is read.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _dtype,
        ("_codecs", "encode"): _latin1_encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        allowed = self._ALLOWED.get((module, name))
        if allowed is None:
            raise RefusedPickle(
                f"global {module}.{name} is not allowed in a CIFAR-10 batch"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("persistent ids are not allowed")
