"""Behaviour of the datamodules on tiny synthetic data: the contract's attributes,
splits, subsets, batches, full-batch chunks, augmentation, statistics and
argument checks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from data_fixtures import write_cifar, write_fashion

from datamodules import (
    BatchLoader,
    CIFAR10DataModule,
    FashionMNISTDataModule,
    resolve_data_dir,
)
from datamodules.cache import channel_stats
from datamodules.loader import CROP_PADDING, crop_and_flip
from datamodules.split import class_quotas, stratified_split

pytestmark = pytest.mark.usefixtures("one_thread", "private_cache")


@pytest.fixture
def fashion_dir(tmp_path):
    write_fashion(tmp_path / "data" / "fashion-mnist", n_train=200, n_test=30)
    return tmp_path / "data"


@pytest.fixture
def cifar_dir(tmp_path):
    write_cifar(tmp_path / "data" / "cifar-10-batches-bin", per_batch=40, n_test=30)
    return tmp_path / "data"


def labels_of(loader):
    return torch.cat([y for _, y in loader])


# -- the contract ------------------------------------------------------------------

CONTRACT = [
    (FashionMNISTDataModule, "fashion_dir", (1, 28, 28), "T-shirt/top"),
    (CIFAR10DataModule, "cifar_dir", (3, 32, 32), "airplane"),
]


@pytest.mark.parametrize(("module", "folder", "shape", "first_class"), CONTRACT)
def test_contract_attributes_and_batches(request, module, folder, shape, first_class):
    root = request.getfixturevalue(folder)
    dm = module(root, batch_size=32, val_size=20)
    assert dm.classes[0] == first_class and dm.num_classes == 10
    assert dm.input_shape == shape and dm.full_batch is False
    dm.setup("fit")
    assert dm.num_train == 180 and dm.num_val == 20 and dm.num_test == 30
    loader = dm.train_dataloader()
    assert len(loader) == math.ceil(180 / 32)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [32] * 5 + [20]
    x, y = batches[0]
    assert x.shape == (32, *shape) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) <= 9


def test_data_dir_resolution(monkeypatch, tmp_path):
    assert resolve_data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("OPTIMLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.setenv("OPTIMLAB_DATA", "")
    assert str(resolve_data_dir(None)) == "data"
    monkeypatch.setenv("OPTIMLAB_DATA", str(tmp_path / "env"))
    assert FashionMNISTDataModule().data_dir == tmp_path / "env"


# -- splits and subsets ----------------------------------------------------------


QUOTA_CASES = [
    ([10, 10, 10], 6, [2, 2, 2]),
    ([10, 10, 10], 7, [3, 2, 2]),
    ([50, 30, 20], 10, [5, 3, 2]),
    ([5, 3, 2], 5, [3, 1, 1]),
    ([4, 4], 0, [0, 0]),
    ([4, 4], 8, [4, 4]),
]


@pytest.mark.parametrize(("counts", "count", "expected"), QUOTA_CASES)
def test_class_quotas(counts, count, expected):
    assert class_quotas(torch.tensor(counts), count).tolist() == expected


def test_stratified_split_is_disjoint_reproducible_and_proportional():
    labels = torch.arange(1000) % 10
    picked, rest = stratified_split(labels, 100, seed=3)
    again, _ = stratified_split(labels, 100, seed=3)
    other, _ = stratified_split(labels, 100, seed=4)
    assert torch.equal(picked, again) and not torch.equal(picked, other)
    assert torch.equal(torch.sort(torch.cat([picked, rest])).values, torch.arange(1000))
    assert torch.bincount(labels[picked]).tolist() == [10] * 10


@pytest.mark.parametrize(("subset", "expected"), [(0.5, 90), (45, 45), (1.0, 180)])
def test_subset_is_stratified_inside_the_train_split(fashion_dir, subset, expected):
    dm = FashionMNISTDataModule(fashion_dir, val_size=20, subset=subset, seed=5)
    full = FashionMNISTDataModule(fashion_dir, val_size=20, seed=5)
    dm.setup()
    full.setup()
    data, ref = dm._splits(), full._splits()
    assert dm.num_train == expected
    assert torch.equal(data["val"], ref["val"])  # the subset leaves val alone
    assert set(data["train"].tolist()) <= set(ref["train"].tolist())
    counts = torch.bincount(data["train_y"][data["train"]], minlength=10)
    assert int(counts.max() - counts.min()) <= 1
    again = FashionMNISTDataModule(fashion_dir, val_size=20, subset=subset, seed=5)
    again.setup()
    assert torch.equal(again._splits()["train"], data["train"])


def test_too_large_subset_and_val_size_refused(fashion_dir):
    with pytest.raises(ValueError, match=r"invalid subset=500.*180 images"):
        FashionMNISTDataModule(fashion_dir, val_size=20, subset=500).setup()
    with pytest.raises(ValueError, match=r"invalid val_size=200"):
        FashionMNISTDataModule(fashion_dir, val_size=200).setup()


BAD_ARGUMENTS = [
    ({"batch_size": 0}, "batch_size=0"),
    ({"batch_size": "half"}, "batch_size='half'"),
    ({"batch_size": True}, "batch_size=True"),
    ({"val_size": -1}, "val_size=-1"),
    ({"subset": 0.0}, "subset=0.0"),
    ({"subset": 1.5}, "subset=1.5"),
    ({"subset": 0}, "subset=0"),
    ({"subset": True}, "subset=True"),
    ({"chunk_size": 0}, "chunk_size=0"),
    ({"seed": -2}, "seed=-2"),
]


@pytest.mark.parametrize(("kwargs", "shown"), BAD_ARGUMENTS)
def test_bad_arguments_refused_by_name(kwargs, shown):
    with pytest.raises(ValueError, match="invalid " + shown.replace("(", r"\(")):
        CIFAR10DataModule("unused", **kwargs)


# -- loaders ---------------------------------------------------------------------


def test_shuffle_changes_order_per_epoch_and_is_seeded(cifar_dir):
    dm = CIFAR10DataModule(cifar_dir, val_size=20, batch_size=16, seed=1)
    dm.setup()
    loader = dm.train_dataloader()
    first, second = labels_of(loader), labels_of(loader)
    assert not torch.equal(first, second)
    assert torch.equal(first.sort().values, second.sort().values)
    fresh = CIFAR10DataModule(cifar_dir, val_size=20, batch_size=16, seed=1)
    fresh.setup()
    assert torch.equal(labels_of(fresh.train_dataloader()), first)


def test_eval_loaders_are_ordered_and_unaugmented(cifar_dir):
    dm = CIFAR10DataModule(cifar_dir, val_size=20, augment=True, chunk_size=7)
    dm.setup()
    a = torch.cat([x for x, _ in dm.val_dataloader()])
    b = torch.cat([x for x, _ in dm.val_dataloader()])
    assert len(dm.val_dataloader()) == 3 and torch.equal(a, b)
    data = dm._splits()
    plain = dm.val_dataloader().to_float(data["train_x"][data["val"]])
    assert torch.equal(a, plain)


@pytest.mark.parametrize("module", [FashionMNISTDataModule, CIFAR10DataModule])
def test_full_batch_covers_the_split_once_in_chunks(request, module):
    folder = "fashion_dir" if module is FashionMNISTDataModule else "cifar_dir"
    root = request.getfixturevalue(folder)
    dm = module(root, batch_size="full", val_size=20, chunk_size=50, normalize=False)
    assert dm.full_batch
    dm.setup()
    chunks = list(dm.train_dataloader())
    assert [len(y) for _, y in chunks] == [50, 50, 50, 30]
    data = dm._splits()
    x = torch.cat([x for x, _ in chunks])
    expected = data["train_x"][data["train"]].to(torch.float32) / 255
    assert torch.allclose(x, expected, rtol=0, atol=1e-6)


def test_normalised_batches_have_zero_mean_unit_std(cifar_dir):
    dm = CIFAR10DataModule(cifar_dir, val_size=0, batch_size="full")
    dm.setup()
    assert dm.val_dataloader() == []
    x = torch.cat([x for x, _ in dm.train_dataloader()]).double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(mean, torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(std, torch.ones(3, dtype=torch.float64), atol=1e-5)


def test_channel_stats_exact():
    images = torch.randint(0, 256, (50, 3, 4, 5), dtype=torch.uint8)
    mean, std = channel_stats(images)
    ref = images.double() / 255
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64),
                          ref.mean(dim=(0, 2, 3)), atol=1e-12)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64),
                          ref.std(dim=(0, 2, 3), unbiased=False), atol=1e-12)


def test_stats_are_cached_in_the_cache_folder(fashion_dir, tmp_path, monkeypatch):
    dm = FashionMNISTDataModule(fashion_dir, val_size=20)
    dm.setup()
    table = json.loads((tmp_path / "cache" / "stats.json").read_text())
    assert [entry["mean"] for entry in table.values()] == [list(dm.mean)]
    from datamodules import cache

    cache.clear_memo()

    def refuse(images):
        raise AssertionError("statistics recomputed despite the cache")

    monkeypatch.setattr(cache, "channel_stats", refuse)
    again = FashionMNISTDataModule(fashion_dir, val_size=20)
    again.setup()
    assert again.mean == dm.mean and again.std == dm.std


def test_unwritable_cache_is_not_an_error(fashion_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("OPTIMLAB_CACHE", str(blocker / "cache"))
    dm = FashionMNISTDataModule(fashion_dir, val_size=20)
    dm.setup()
    assert dm.num_train == 180 and len(dm.mean) == 1


def test_decoded_gzip_cached_as_npy(fashion_dir, tmp_path):
    FashionMNISTDataModule(fashion_dir, val_size=20).setup()
    names = sorted(p.name for p in (tmp_path / "cache" / "decoded").glob("*/*.npy"))
    assert names == ["test_x.npy", "test_y.npy", "train_x.npy", "train_y.npy"]


# -- augmentation ----------------------------------------------------------------


def reference_crop_flip(image, offset, flip):
    """One image at a time, the way a per-sample transform would do it."""
    padded = torch.nn.functional.pad(image, (CROP_PADDING,) * 4)
    top, left = offset
    crop = padded[:, top : top + image.shape[1], left : left + image.shape[2]]
    return crop.flip(-1) if flip else crop


AUGMENT_CASES = [
    ((4, 4), False),  # the identity
    ((0, 0), False),
    ((8, 8), True),
    ((0, 8), True),
    ((8, 1), False),
    ((4, 4), True),  # a pure flip
]


def test_crop_and_flip_matches_per_image_reference():
    images = torch.randint(0, 256, (len(AUGMENT_CASES), 3, 32, 32), dtype=torch.uint8)
    offsets = torch.tensor([case[0] for case in AUGMENT_CASES])
    flips = torch.tensor([case[1] for case in AUGMENT_CASES])
    out = crop_and_flip(images, offsets, flips)
    assert torch.equal(out[0], images[0])
    assert torch.equal(out[5], images[5].flip(-1))
    for i, (offset, flip) in enumerate(AUGMENT_CASES):
        assert torch.equal(out[i], reference_crop_flip(images[i], offset, flip))


def test_augmented_epochs_are_seeded_and_vary(cifar_dir):
    def epoch(seed):
        dm = CIFAR10DataModule(cifar_dir, val_size=20, batch_size="full",
                               augment=True, seed=seed)
        dm.setup()
        loader = dm.train_dataloader()
        return torch.cat([x for x, _ in loader]), torch.cat([x for x, _ in loader])

    first, second = epoch(0)
    again, _ = epoch(0)
    other, _ = epoch(1)
    assert torch.equal(first, again)
    assert not torch.equal(first, second) and not torch.equal(first, other)


def test_batch_loader_without_stats_scales_to_unit_range():
    images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    loader = BatchLoader(images, torch.tensor([3]), None, 4)
    (x, y), = list(loader)
    assert x.flatten().tolist() == [0.0, 1.0] and y.tolist() == [3]


# -- Lightning -------------------------------------------------------------------


def test_lightning_fit_validate_test_on_the_datamodule(fashion_dir):
    import lightning as L
    from torch import nn

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
            self.seen = 0

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.seen += len(y)
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

        def test_step(self, batch, batch_idx):
            x, y = batch
            self.log("test_loss", nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = FashionMNISTDataModule(fashion_dir, val_size=20, batch_size=64)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    model = Tiny()
    trainer.fit(model, datamodule=dm)
    assert model.seen == 2 * 180
    assert trainer.global_step == 2 * 3
    result = trainer.test(model, datamodule=dm, verbose=False)
    assert math.isfinite(result[0]["test_loss"])


@pytest.mark.parametrize(
    ("batch_size", "chunk_size", "expected"),
    [(128, 4096, 1024), (2048, 4096, 2048), (128, 500, 500), ("full", 300, 300)],
)
def test_eval_batch_size(batch_size, chunk_size, expected):
    dm = FashionMNISTDataModule("unused", batch_size=batch_size, chunk_size=chunk_size)
    assert dm.eval_batch_size == expected


def test_setup_moves_data_to_the_trainers_device(cifar_dir):
    """Under a trainer the tensors move to its root device once and batches are
    made there (the meta device stands in for an accelerator)."""

    class Strategy:
        root_device = torch.device("meta")

    class Trainer:
        strategy = Strategy()

    dm = CIFAR10DataModule(cifar_dir, val_size=20, batch_size=16, augment=True)
    dm.trainer = Trainer()
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.device.type == "meta" and y.device.type == "meta"
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert next(iter(dm.val_dataloader()))[0].device.type == "meta"
    batch = (x, y)
    assert dm.transfer_batch_to_device(batch, torch.device("meta"), 0) is batch


def _corrupt_labels(arrays):
    arrays["train_y"][0] = 55  # out of Fashion-MNIST's 10 classes


def _corrupt_shape(arrays):
    arrays["test_x"] = arrays["test_x"][:, :, :27]


@pytest.mark.parametrize("corrupt", [_corrupt_labels, _corrupt_shape])
def test_bad_decoded_cache_is_discarded_and_rebuilt(
    corrupt, fashion_dir, tmp_path, caplog
):
    import numpy as np

    from datamodules import cache

    FashionMNISTDataModule(fashion_dir, val_size=20).setup()
    (folder,) = (tmp_path / "cache" / "decoded").iterdir()
    arrays = {p.stem: np.load(p) for p in folder.glob("*.npy")}
    corrupt(arrays)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    cache.clear_memo()
    with caplog.at_level("WARNING", logger="datamodules.cache"):
        dm = FashionMNISTDataModule(fashion_dir, val_size=20)
        dm.setup()
    assert str(folder) in caplog.text and "discarding" in caplog.text
    assert int(dm._splits()["train_y"].max()) < 10
    assert tuple(dm._splits()["test_x"].shape[1:]) == (1, 28, 28)
    assert np.load(folder / "train_y.npy").max() < 10  # rebuilt from the source


def test_bad_cached_stats_are_recomputed(fashion_dir, tmp_path, caplog):
    from datamodules import cache

    good = FashionMNISTDataModule(fashion_dir, val_size=20)
    good.setup()
    path = tmp_path / "cache" / "stats.json"
    table = json.loads(path.read_text())
    for entry in table.values():
        entry["std"] = [0.0]
    path.write_text(json.dumps(table))
    cache.clear_memo()
    with caplog.at_level("WARNING", logger="datamodules.cache"):
        dm = FashionMNISTDataModule(fashion_dir, val_size=20)
        dm.setup()
    assert str(path) in caplog.text
    assert dm.std == good.std and dm.std[0] > 0
