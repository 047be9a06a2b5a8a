"""The part both datamodules share: data directory, splits, statistics, loaders.

A subclass says which files make up its data set and how to read them
(:meth:`ImageDataModule.locate`, :meth:`ImageDataModule.decode`, and how to fetch
them); this class does the rest:

1. resolve the data directory (``data_dir``, else ``$OPTIMLAB_DATA``, else
   ``./data``), downloading the files when they are missing and ``download=True``;
2. decode the files once into uint8 tensors (memoised in the process, and cached
   as ``.npy`` in the cache folder when decoding is slow);
3. compute the training set's per-channel mean and std (cached);
4. split a stratified, seeded validation set off the training set, then take the
   stratified, seeded subset of what remains when ``subset`` is given;
5. hand out :class:`~datamodules.loader.BatchLoader` objects. Under a trainer on an
   accelerator the tensors are moved to its device once, in ``setup``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor

from datamodules import cache
from datamodules.download import Source
from datamodules.errors import DataNotFoundError, invalid_argument
from datamodules.loader import BatchLoader
from datamodules.split import derive_seed, stratified_split

log = logging.getLogger(__name__)

BatchSize = int | Literal["full"]
EVAL_BATCH_FLOOR = 1024


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """``data_dir``, else ``$OPTIMLAB_DATA`` when set and not empty, else ``./data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("OPTIMLAB_DATA"):
        return Path(os.environ["OPTIMLAB_DATA"]).expanduser()
    return Path("data")


@dataclass(frozen=True)
class Located:
    """The files found for a data set, and the reader to use on them."""

    kind: str
    train: tuple[Path, ...]
    test: tuple[Path, ...]
    slow_to_decode: bool = False

    @property
    def paths(self) -> tuple[Path, ...]:
        return self.train + self.test


class ImageDataModule(L.LightningDataModule):
    """Base of the image datamodules; see the module docstring.

    Args:
        data_dir: folder holding the data set (see :func:`resolve_data_dir`).
        batch_size: training batch size, or ``"full"`` for full-batch training: one
            epoch is one pass over the whole training split in chunks of at most
            ``chunk_size`` rows, over which the model accumulates one step.
        val_size: validation images held out of the training set (stratified).
        subset: keep only this fraction (float in (0, 1]) or count (int) of the
            training split, stratified; ``None`` keeps all.
        seed: seeds the split, the subset, the shuffling and the augmentation.
        normalize: subtract the training mean and divide by the training std
            per channel; otherwise pixels are only scaled to [0, 1].
        download: fetch the files from ``source`` when they are missing.
        chunk_size: rows per chunk in full-batch mode, and the most rows per
            evaluation batch (see :attr:`eval_batch_size`).
        source: where to download from (default: the official addresses).
    """

    name: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    input_shape: ClassVar[tuple[int, int, int]]
    default_source: ClassVar[Source]
    augment: bool = False

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        batch_size: BatchSize = 128,
        val_size: int = 5000,
        subset: float | int | None = None,
        seed: int = 0,
        normalize: bool = True,
        download: bool = False,
        chunk_size: int = 4096,
        source: Source | None = None,
    ) -> None:
        super().__init__()
        _check_batch_size(batch_size)
        _check_int("val_size", val_size, 0)
        _check_subset(subset)
        _check_int("seed", seed, 0)
        _check_int("chunk_size", chunk_size, 1)
        self.data_dir = resolve_data_dir(data_dir)
        self.batch_size = batch_size
        self.val_size = val_size
        self.subset = subset
        self.seed = seed
        self.normalize = normalize
        self.download = download
        self.chunk_size = chunk_size
        self.source = source or self.default_source
        self._data: dict[str, Tensor] | None = None
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None

    # -- the subclass's part ----------------------------------------------------

    def locate(self, root: Path) -> Located | None:
        """The files under ``root``, or ``None`` when none of a known layout exist."""
        raise NotImplementedError

    def decode(self, located: Located) -> dict[str, np.ndarray]:
        """Read ``train_x``, ``train_y``, ``test_x``, ``test_y`` from the files."""
        raise NotImplementedError

    def fetch(self, root: Path) -> None:
        """Download the files from ``self.source`` into ``root``."""
        raise NotImplementedError

    def expected_files(self) -> list[str]:
        """The file names to mention when nothing was found."""
        raise NotImplementedError

    # -- public attributes --------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def full_batch(self) -> bool:
        return self.batch_size == "full"

    @property
    def eval_batch_size(self) -> int:
        """Rows per validation/test batch: ``max(batch_size, 1024)``, at most
        ``chunk_size`` (``chunk_size`` in full-batch mode). Evaluation needs no
        gradients, so larger batches only save time."""
        if self.full_batch:
            return self.chunk_size
        return min(self.chunk_size, max(int(self.batch_size), EVAL_BATCH_FLOOR))

    @property
    def num_train(self) -> int:
        return len(self._splits()["train"])

    @property
    def num_val(self) -> int:
        return len(self._splits()["val"])

    @property
    def num_test(self) -> int:
        return len(self._splits()["test_y"])

    def check_sizes(self) -> None:
        """Read the data and check ``val_size`` and ``subset`` against its size.

        Raises the ``ValueError`` naming the field that :meth:`setup` would raise,
        but before a trainer starts (the decoded data is kept for ``setup``).
        """
        self._splits()

    # -- Lightning hooks ----------------------------------------------------------

    def prepare_data(self) -> None:
        self.find_files()

    def setup(self, stage: str | None = None) -> None:
        data = self._splits()
        device = self._target_device()
        if data["train_x"].device != device:
            log.info("moving %s to %s", self.name, device)
            self._data = {key: value.to(device) for key, value in data.items()}

    def train_dataloader(self) -> BatchLoader:
        data = self._splits()
        size = self.chunk_size if self.full_batch else self.batch_size
        return BatchLoader(
            data["train_x"], data["train_y"], data["train"], size,
            mean=self.mean, std=self.std, shuffle=not self.full_batch,
            augment=self.augment, seed=derive_seed(self.seed, "loader"),
        )

    def val_dataloader(self) -> BatchLoader | list:
        data = self._splits()
        if len(data["val"]) == 0:
            return []
        return self._eval_loader(data["train_x"], data["train_y"], data["val"])

    def test_dataloader(self) -> BatchLoader:
        data = self._splits()
        return self._eval_loader(data["test_x"], data["test_y"], None)

    def transfer_batch_to_device(
        self, batch: object, device: torch.device, dataloader_idx: int
    ) -> object:
        """Pass through batches that the loader already made on ``device``.

        The loaders build their batches where the data lives, so under a trainer
        the usual move is a no-op; skipping its traversal trims Lightning's
        per-batch overhead. Anything else goes the default way.
        """
        if isinstance(batch, tuple) and all(
            isinstance(t, Tensor) and t.device == device for t in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # -- internals ----------------------------------------------------------------

    def find_files(self) -> Located:
        """Locate the files, downloading them first when allowed and missing."""
        root = self.data_dir
        located = self.locate(root) if root.is_dir() else None
        if located is None and self.download:
            self.fetch(root)
            located = self.locate(root)
        if located is None:
            raise self._not_found(root)
        return located

    def _not_found(self, root: Path) -> DataNotFoundError:
        state = "does not exist" if not root.exists() else "holds none of them"
        if root.exists() and not root.is_dir():
            state = "is not a directory"
        env = os.environ.get("OPTIMLAB_DATA")
        return DataNotFoundError(
            f"{self.name} not found: data directory {str(root)!r} {state}. Expected "
            f"one of: {'; '.join(self.expected_files())}. Pass data_dir=..., or set "
            f"OPTIMLAB_DATA to the folder holding them (now "
            f"{'unset' if env is None else repr(env)}), or pass download=True to "
            "fetch them."
        )

    def _decoded(self) -> dict[str, Tensor]:
        located = self.find_files()
        key = cache.fingerprint(located.paths, f"{self.name}:{located.kind}")

        def decode() -> dict[str, Tensor]:
            if located.slow_to_decode:
                arrays = cache.cached_arrays(
                    key, lambda: self.decode(located), self._arrays_problem
                )
            else:
                arrays = self.decode(located)
            return {name: torch.from_numpy(array) for name, array in arrays.items()}

        tensors = cache.memoized(key, decode)
        if self.normalize:
            self.mean, self.std = cache.memoized(
                key + ":stats", lambda: cache.cached_stats(key, tensors["train_x"])
            )
        return tensors

    def _arrays_problem(self, arrays: dict[str, np.ndarray]) -> str | None:
        """What is wrong with decoded arrays read back from the cache, or None."""
        for part in ("train", "test"):
            x, y = arrays.get(f"{part}_x"), arrays.get(f"{part}_y")
            if x is None or y is None:
                return f"{part}_x or {part}_y is missing"
            if x.dtype != np.uint8 or tuple(x.shape[1:]) != self.input_shape:
                return (f"{part}_x is {x.dtype} {tuple(x.shape)}, expected uint8 "
                        f"N x {' x '.join(map(str, self.input_shape))}")
            if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
                return f"{part}_y is {y.dtype} {tuple(y.shape)}, expected {len(x)} ints"
            if len(y) and not (0 <= y.min() and y.max() < self.num_classes):
                return (f"{part}_y holds labels in [{y.min()}, {y.max()}], expected "
                        f"[0, {self.num_classes - 1}]")
        return None

    def _splits(self) -> dict[str, Tensor]:
        if self._data is not None:
            return self._data
        data = dict(self._decoded())
        labels = data["train_y"]
        if self.val_size >= len(labels):
            raise invalid_argument(
                "val_size", self.val_size, f"an int in [0, {len(labels) - 1}]"
            )
        val, train = stratified_split(
            labels, self.val_size, derive_seed(self.seed, "split")
        )
        if self.subset is not None:
            count = _subset_count(self.subset, len(train))
            picked, _ = stratified_split(
                labels[train], count, derive_seed(self.seed, "subset")
            )
            train = train[picked]
        data["train"], data["val"] = train, val
        self._data = data
        return data

    def _eval_loader(self, images: Tensor, labels: Tensor, rows: Tensor | None):
        return BatchLoader(
            images, labels, rows, self.eval_batch_size, mean=self.mean, std=self.std
        )

    def _target_device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return torch.device("cpu")
        return trainer.strategy.root_device


def _check_int(field: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise invalid_argument(field, value, f"an int >= {low}")


def _check_batch_size(value: object) -> None:
    if value == "full":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_argument("batch_size", value, 'an int >= 1 or "full"')


def _check_subset(value: object) -> None:
    if value is None:
        return
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return
    raise invalid_argument("subset", value, "None, a float in (0, 1] or an int >= 1")


def _subset_count(subset: float | int, available: int) -> int:
    if isinstance(subset, float):
        return max(1, round(subset * available))
    if subset > available:
        raise invalid_argument(
            "subset", subset, f"at most the {available} images of the training split"
        )
    return subset
