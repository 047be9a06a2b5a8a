"""Datamodules of optimlab: CIFAR-10 and Fashion-MNIST, held in memory as tensors.

See ``docs/architecture.md`` for the contract: batches ``(x, y)`` with ``x``
normalised float32 and ``y`` int64; attributes ``classes``, ``num_classes``,
``input_shape``, ``num_train`` and ``full_batch``.
"""

from datamodules.base import ImageDataModule, resolve_data_dir
from datamodules.cifar10 import CIFAR10DataModule
from datamodules.download import RemoteFile, Source
from datamodules.errors import DataFormatError, DataNotFoundError, DownloadError
from datamodules.fashion_mnist import FashionMNISTDataModule
from datamodules.loader import BatchLoader

__all__ = [
    "BatchLoader",
    "CIFAR10DataModule",
    "DataFormatError",
    "DataNotFoundError",
    "DownloadError",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "RemoteFile",
    "Source",
    "resolve_data_dir",
]
