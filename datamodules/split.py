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
    """
    n = len(labels)
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(n, generator=generator)
    grouped = shuffled[torch.sort(labels[shuffled], stable=True).indices]
    counts = torch.bincount(labels, minlength=int(labels.max()) + 1 if n else 0)
    quotas = class_quotas(counts, count)
    starts = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(n) - starts.repeat_interleave(counts)
    is_picked = rank_in_class < quotas.repeat_interleave(counts)
    picked = torch.sort(grouped[is_picked]).values
    rest = torch.sort(grouped[~is_picked]).values
    return picked, rest
