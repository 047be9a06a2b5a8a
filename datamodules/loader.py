"""Batches cut from uint8 tensors held in memory, ready for the model.

:class:`BatchLoader` replaces a ``DataLoader`` for data that fits in memory. It
draws one permutation per epoch, cuts it into index slices and, for each slice,
gathers the images in one indexing operation, applies the batched augmentation and
converts to normalised float32. There is no per-sample Python work, no collate and
no worker process, and the loader yields finished ``(x, y)`` batch tensors, which
keeps Lightning's per-batch fetch path short. It has a ``__len__``, so Lightning
knows the number of batches per epoch.

When the tensors live on an accelerator the batches are made there, and the
random draws of an epoch travel to it in one transfer.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

CROP_PADDING = 4


class BatchLoader:
    """Iterable of ``(x, y)`` batches over ``images[indices]``.

    Args:
        images: uint8 tensor ``N x C x H x W``.
        labels: int64 tensor ``N``.
        indices: which rows make up this split (``None``: all rows, in order).
        batch_size: rows per batch; the last batch may be smaller.
        mean, std: per-channel statistics on the [0, 1] scale; the batch is
            ``(images / 255 - mean) / std``. ``None``: only scaled to [0, 1].
        shuffle: draw a new permutation of the split every epoch.
        augment: random crop with ``CROP_PADDING`` zero pixels of padding plus a
            random horizontal flip, drawn per image, applied to the whole batch.
        seed: seeds the generator of permutations and augmentation draws; the
            sequence of epochs is reproducible from it.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        indices: Tensor | None,
        batch_size: int,
        *,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        self.images = images
        self.labels = labels
        self.indices = indices
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        channels = images.shape[1]
        mean_t = torch.tensor(mean if mean is not None else (0.0,) * channels)
        std_t = torch.tensor(std if std is not None else (1.0,) * channels)
        shape = (1, channels, 1, 1)
        self._scale = (1.0 / (255.0 * std_t)).view(shape).to(images.device)
        self._shift = (-mean_t / std_t).view(shape).to(images.device)

    @property
    def num_samples(self) -> int:
        return len(self.labels) if self.indices is None else len(self.indices)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n, device = self.num_samples, self.images.device
        order = None
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(device)
            if self.indices is not None:
                order = self.indices.index_select(0, order)
        elif self.indices is not None:
            order = self.indices
        if self.augment:
            offsets = torch.randint(
                0, 2 * CROP_PADDING + 1, (n, 2), generator=self.generator
            ).to(device)
            flips = torch.randint(0, 2, (n,), generator=self.generator).bool()
            flips = flips.to(device)
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            if order is None:
                x, y = self.images[start:stop], self.labels[start:stop]
            else:
                rows = order[start:stop]
                # index_select copies whole rows; x[rows] goes element by element
                x = self.images.index_select(0, rows)
                y = self.labels.index_select(0, rows)
            if self.augment:
                x = crop_and_flip(x, offsets[start:stop], flips[start:stop])
            yield self.to_float(x), y

    def to_float(self, x: Tensor) -> Tensor:
        """uint8 batch -> normalised float32 batch: ``x * scale + shift``."""
        return x.to(torch.float32).mul_(self._scale).add_(self._shift)


def crop_and_flip(x: Tensor, offsets: Tensor, flips: Tensor) -> Tensor:
    """Random-crop with zero padding and horizontal flip, for a whole batch at once.

    ``x`` is ``N x C x H x W``; image ``i`` is padded by ``p = CROP_PADDING`` zeros on
    every side and the ``H x W`` window whose top-left corner is ``offsets[i]``
    (row, column, each in ``0 .. 2p``) is kept, mirrored left-right when
    ``flips[i]``.

    How: the padded batch and its mirror image are written into one buffer ``B``;
    ``R = as_strided(B, (len(B) - W + 1, W), (1, 1))`` views every ``W``-byte run of
    ``B`` as a row. Cropping (and flipping, since the crop of a mirror image at
    column ``2p - dx`` is the mirror of the crop at ``dx``) is then one
    ``index_select`` of the ``N * C * H`` rows that make up the output.
    """
    n, c, h, w = x.shape
    p = CROP_PADDING
    height, width = h + 2 * p, w + 2 * p
    plane, image = height * width, c * height * width
    buffer = x.new_zeros((2, n, c, height, width))
    buffer[0, :, :, p : p + h, p : p + w] = x
    buffer[1, :, :, p : p + h, p : p + w] = x.flip(-1)
    flat = buffer.view(-1)
    runs = flat.as_strided((flat.numel() - w + 1, w), (1, 1))
    device = x.device
    top = offsets[:, 0]
    left = torch.where(flips, 2 * p - offsets[:, 1], offsets[:, 1])
    corner = flips.long() * (n * image) + torch.arange(n, device=device) * image
    corner = corner + top * width + left
    starts = (
        corner[:, None, None]
        + (torch.arange(c, device=device) * plane)[None, :, None]
        + (torch.arange(h, device=device) * width)[None, None, :]
    )
    return runs.index_select(0, starts.view(-1)).view(n, c, h, w)
