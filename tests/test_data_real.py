"""The datamodules on the real data sets of ``real_data_dir`` (never skipped in CI).

Record counts are read from the files: the CIFAR-10 test file here holds only
part of the official test set, so its count is derived from its size.
"""

from __future__ import annotations

import pytest
import torch

from datamodules import CIFAR10DataModule, FashionMNISTDataModule

CIFAR_RECORD_BYTES = 3073

# (module, train count, per-class train count, published mean, published std)
REAL = [
    (FashionMNISTDataModule, 60000, 6000, (0.2860,), (0.3530,)),
    (CIFAR10DataModule, 50000, 5000,
     (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
]


pytestmark = pytest.mark.usefixtures("one_thread")


def expected_test_count(module, root):
    if module is FashionMNISTDataModule:
        return 10000
    return (root / "cifar-10-batches-bin" / "test_batch.bin").stat().st_size // (
        CIFAR_RECORD_BYTES
    )


@pytest.mark.parametrize(("module", "n_train", "per_class", "mean", "std"), REAL)
def test_counts_balance_and_statistics(real_data_dir, module, n_train, per_class,
                                       mean, std):
    dm = module(real_data_dir, val_size=0, batch_size="full", chunk_size=8192)
    dm.setup()
    assert dm.num_train == n_train
    assert dm.num_test == expected_test_count(module, real_data_dir)
    labels = torch.cat([y for _, y in dm.train_dataloader()])
    assert torch.bincount(labels, minlength=10).tolist() == [per_class] * 10
    assert dm.mean == pytest.approx(mean, abs=5e-5)
    assert dm.std == pytest.approx(std, abs=5e-5)
    test_labels = torch.cat([y for _, y in dm.test_dataloader()])
    assert len(test_labels) == dm.num_test and int(test_labels.max()) <= 9


def test_cifar_first_training_labels_in_official_order(real_data_dir):
    dm = CIFAR10DataModule(real_data_dir, val_size=0, batch_size="full")
    x, y = next(iter(dm.train_dataloader()))
    assert y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert x.shape[1:] == (3, 32, 32)


@pytest.mark.parametrize("module", [FashionMNISTDataModule, CIFAR10DataModule])
def test_split_and_subset_stratified_disjoint_reproducible(real_data_dir, module):
    def splits(seed, subset=0.1):
        dm = module(real_data_dir, val_size=5000, subset=subset, seed=seed)
        dm.setup()
        return dm, dm._splits()

    dm, data = splits(0)
    labels = data["train_y"]
    train, val = data["train"], data["val"]
    assert len(val) == 5000 and dm.num_val == 5000
    assert torch.bincount(labels[val], minlength=10).tolist() == [500] * 10
    n_rest = len(labels) - 5000
    assert len(train) == round(0.1 * n_rest)
    assert torch.bincount(labels[train], minlength=10).tolist() == [n_rest // 100] * 10
    assert len(set(train.tolist()) & set(val.tolist())) == 0
    _, again = splits(0)
    assert torch.equal(again["train"], train) and torch.equal(again["val"], val)
    _, other = splits(1)
    assert not torch.equal(other["val"], val)


def test_normalised_training_batches_are_standardised(real_data_dir):
    dm = FashionMNISTDataModule(real_data_dir, batch_size="full", chunk_size=16384)
    dm.setup()
    total, squares, count = 0.0, 0.0, 0
    for x, _ in dm.train_dataloader():
        total += float(x.sum(dtype=torch.float64))
        squares += float((x * x).sum(dtype=torch.float64))
        count += x.numel()
    mean = total / count
    # the statistics are those of all 60,000 images; 55,000 remain after the split
    assert abs(mean) < 0.01
    assert abs((squares / count - mean**2) ** 0.5 - 1) < 0.01
