"""Stratified, seeded selection of rows: the validation split and the subset option.

Both take ``count`` rows out of a labelled set so that every class keeps its share:
class ``c`` with ``n_c`` of the ``n`` rows gets ``floor(count * n_c / n)`` rows, and
the rows still missing go one each to the classes with the largest remainders
(ties to the lower class index). Within a class the rows are chosen by a random
permutation drawn from the seed, so a split is reproducible from ``(labels, count,
seed)``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import Tensor


def derive_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for one use (``"split"``, ``"subset"``, ...)."""
    digest = hashlib.sha256(f"optimlab:{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def class_quotas(counts: Tensor, count: int) -> Tensor:
    """Rows per class when ``count`` rows are taken in proportion to ``counts``."""
    total = int(counts.sum())
    exact = counts.to(torch.float64) * count / total
    quotas = exact.floor().to(torch.int64)
    missing = count - int(quotas.sum())
    if missing:
        remainders = exact - quotas
        # stable sort on -remainder: ties keep class order
        order = torch.sort(-remainders, stable=True).indices
        quotas[order[:missing]] += 1
    return quotas


def stratified_split(labels: Tensor, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """Split row positions ``0..len(labels)-1`` into ``count`` picked and the rest.

    Returns ``(picked, rest)``, each sorted ascending, disjoint, covering all rows.
    The grouping runs in numpy: on a busy machine torch's multi-threaded CPU sort
    of 60,000 labels can take a second, numpy's takes milliseconds.
    """
    n = len(labels)
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(n, generator=generator).numpy()
    classes = labels.cpu().numpy()
    grouped = shuffled[np.argsort(classes[shuffled], kind="stable")]
    counts = np.bincount(classes, minlength=int(classes.max()) + 1 if n else 0)
    quotas = class_quotas(torch.from_numpy(counts), count).numpy()
    starts = np.cumsum(counts) - counts
    rank_in_class = np.arange(n) - np.repeat(starts, counts)
    is_picked = rank_in_class < np.repeat(quotas, counts)
    picked = np.sort(grouped[is_picked])
    rest = np.sort(grouped[~is_picked])
    return torch.from_numpy(picked), torch.from_numpy(rest)
