"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 28 x 28 grayscale, 10 classes.

Read from the four official IDX files, gzip-compressed or not, in
``<data_dir>/fashion-mnist/``, ``<data_dir>/FashionMNIST/raw/`` (torchvision's
layout) or ``<data_dir>`` itself. Training statistics on the [0, 1] scale, computed
from the official training set: mean 0.2860, std 0.3530.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.base import ImageDataModule, Located
from datamodules.download import RemoteFile, Source, download_all
from datamodules.errors import DataNotFoundError
from datamodules.formats import read_idx_pair

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
SUBFOLDERS = ("fashion-mnist", "FashionMNIST/raw", ".")
OFFICIAL_SOURCE = Source(
    base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    files=(
        RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
)


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST as batches ``x: N x 1 x 28 x 28`` float32, ``y: N`` int64.

    Arguments are those of :class:`~datamodules.base.ImageDataModule`.
    """

    name = "Fashion-MNIST"
    classes = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )
    input_shape = (1, 28, 28)
    default_source = OFFICIAL_SOURCE

    def locate(self, root: Path) -> Located | None:
        for sub in SUBFOLDERS:
            folder = root / sub
            found = [_find(folder, name) for name in FILES]
            if not any(found):
                continue
            missing = [n for n, path in zip(FILES, found, strict=True) if path is None]
            if missing:
                raise DataNotFoundError(
                    f"{self.name} in {str(folder)!r} is incomplete: missing "
                    f"{', '.join(n + '[.gz]' for n in missing)}"
                )
            slow = any(path.suffix == ".gz" for path in found)
            return Located("idx", tuple(found[:2]), tuple(found[2:]), slow)
        return None

    def decode(self, located: Located) -> dict[str, np.ndarray]:
        train_x, train_y = read_idx_pair(*located.train)
        test_x, test_y = read_idx_pair(*located.test)
        return {"train_x": train_x, "train_y": train_y,
                "test_x": test_x, "test_y": test_y}

    def fetch(self, root: Path) -> None:
        download_all(self.source, root / "fashion-mnist")

    def expected_files(self) -> list[str]:
        names = ", ".join(f"{name}[.gz]" for name in FILES)
        return [f"{names}, all in one of fashion-mnist/, FashionMNIST/raw/ or the "
                "data directory itself"]


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None
