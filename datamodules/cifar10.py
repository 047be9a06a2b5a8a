"""CIFAR-10 (Krizhevsky, 2009): 32 x 32 colour images, 10 classes.

Read, in this order of preference, from ``<data_dir>/cifar-10-batches-bin/``
(``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin``, each also
accepted as ``.bin.gz``), ``<data_dir>/cifar-10-batches-py/`` (pickled batches,
read with a restricted unpickler), or the official archives
``cifar-10-binary.tar.gz`` / ``cifar-10-python.tar.gz``, unpacked on first use
beside the archive or, when that folder is read-only, into the cache folder. The
number of test records is whatever the test file holds. Training statistics on the
[0, 1] scale, computed from the official training set: mean (0.4914, 0.4822,
0.4465), std (0.2470, 0.2435, 0.2616).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from datamodules import cache
from datamodules.base import ImageDataModule, Located
from datamodules.download import RemoteFile, Source, download_all, unpack_archive
from datamodules.errors import DataNotFoundError
from datamodules.formats import read_cifar_bin, read_cifar_pickle

BIN_DIR = "cifar-10-batches-bin"
PY_DIR = "cifar-10-batches-py"
BIN_ARCHIVE = "cifar-10-binary.tar.gz"
PY_ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_BATCH = "test_batch"
OFFICIAL_SOURCE = Source(
    base_url="https://www.cs.toronto.edu/~kriz",
    files=(RemoteFile(BIN_ARCHIVE, "c32a1d4ab5d03f1284b67883e8d87530"),),
)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 as batches ``x: N x 3 x 32 x 32`` float32, ``y: N`` int64.

    Args:
        augment: random crop of 32 x 32 from the image padded by 4 zero pixels, and
            a random horizontal flip, drawn per image from the seed and applied to
            whole training batches (never to validation or test batches).
        **kwargs: those of :class:`~datamodules.base.ImageDataModule`.
    """

    name = "CIFAR-10"
    classes = (
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    )
    input_shape = (3, 32, 32)
    default_source = OFFICIAL_SOURCE

    def __init__(self, *args, augment: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.augment = bool(augment)

    def locate(self, root: Path) -> Located | None:
        found = _batches(root / BIN_DIR, ".bin", "bin") or _batches(
            root / PY_DIR, "", "py"
        )
        if found is not None:
            return found
        for archive, member_dir, suffix, kind in (
            (BIN_ARCHIVE, BIN_DIR, ".bin", "bin"),
            (PY_ARCHIVE, PY_DIR, "", "py"),
        ):
            if (root / archive).is_file():
                names = [name + suffix for name in (*TRAIN_BATCHES, TEST_BATCH)]
                folder = unpack_archive(
                    root / archive, member_dir, names, _unpack_dir(root, archive)
                )
                return _batches(folder, suffix, kind)
        return None

    def decode(self, located: Located) -> dict[str, np.ndarray]:
        read = read_cifar_bin if located.kind == "bin" else read_cifar_pickle
        train = [read(path) for path in located.train]
        test_x, test_y = read(located.test[0])
        return {
            "train_x": np.concatenate([x for x, _ in train]),
            "train_y": np.concatenate([y for _, y in train]),
            "test_x": np.ascontiguousarray(test_x),
            "test_y": test_y,
        }

    def fetch(self, root: Path) -> None:
        download_all(self.source, root)

    def expected_files(self) -> list[str]:
        batches = ", ".join(f"{n}.bin[.gz]" for n in (*TRAIN_BATCHES, TEST_BATCH))
        return [
            f"{BIN_DIR}/ with {batches}",
            f"{PY_DIR}/ with {', '.join((*TRAIN_BATCHES, TEST_BATCH))}",
            BIN_ARCHIVE,
            PY_ARCHIVE,
        ]


def _batches(folder: Path, suffix: str, kind: str) -> Located | None:
    if not folder.is_dir():
        return None
    paths, missing = [], []
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        candidates = [folder / f"{name}{suffix}", folder / f"{name}{suffix}.gz"]
        if kind == "py":
            candidates = candidates[:1]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            missing.append(candidates[0].name)
        paths.append(path)
    if len(missing) == len(paths):
        return None
    if missing:
        raise DataNotFoundError(
            f"CIFAR-10 in {str(folder)!r} is incomplete: missing {', '.join(missing)}"
        )
    slow = any(path.suffix == ".gz" for path in paths) or kind == "py"
    return Located(kind, tuple(paths[:5]), (paths[5],), slow)


def _unpack_dir(root: Path, archive: str) -> Path:
    if os.access(root, os.W_OK):
        return root
    key = cache.fingerprint([root / archive], "unpacked")
    return cache.cache_dir() / "unpacked" / key
