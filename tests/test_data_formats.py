"""Every supported file format read back exactly, and every kind of bad file refused.

Tiny data sets are written by ``tests/data_fixtures`` in the official layouts;
the corruption table names, for each kind of damage, the file it damages, how,
and the words the ``ValueError`` must contain.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import (
    cifar_pickle,
    cifar_records,
    idx_bytes,
    images_and_labels,
    tar_gz,
    write,
    write_cifar,
    write_fashion,
)

from datamodules import (
    CIFAR10DataModule,
    DataFormatError,
    DataNotFoundError,
    FashionMNISTDataModule,
)

pytestmark = pytest.mark.usefixtures("one_thread", "private_cache")


def read_back(dm):
    """All training (train + val) and test images as uint8, plus labels."""
    dm.setup("fit")
    pieces = {}
    for name, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader()),
                         ("test", dm.test_dataloader())):
        xs, ys = zip(*loader, strict=True)
        x = torch.cat(xs)
        pieces[name] = ((x * 255).round().to(torch.uint8), torch.cat(ys))
    return pieces


def assert_same_data(dm, written):
    train_x, train_y, test_x, test_y = (torch.from_numpy(a) for a in written)
    pieces = read_back(dm)
    x = torch.cat([pieces["train"][0], pieces["val"][0]])
    y = torch.cat([pieces["train"][1], pieces["val"][1]])
    # train + val is a permutation of the training set: compare as sorted rows
    key = x.flatten(1).to(torch.int64).sum(1) * 16 + y
    ref_key = train_x.flatten(1).to(torch.int64).sum(1) * 16 + train_y.to(torch.int64)
    assert torch.equal(key.sort().values, ref_key.sort().values)
    assert torch.equal(pieces["test"][0].view(test_x.shape), test_x)
    assert torch.equal(pieces["test"][1], test_y.to(torch.int64))


FASHION_LAYOUTS = [
    ("fashion-mnist", True),
    ("fashion-mnist", False),
    ("FashionMNIST/raw", True),
    (".", False),
]


@pytest.mark.parametrize(("folder", "gz"), FASHION_LAYOUTS)
def test_fashion_idx_read_exactly(tmp_path, folder, gz):
    written = write_fashion(tmp_path / "data" / folder, gz=gz)
    dm = FashionMNISTDataModule(tmp_path / "data", val_size=10, normalize=False,
                                batch_size=32)
    assert_same_data(dm, written)
    assert dm.num_train == 90 and dm.num_val == 10 and dm.num_test == 20


def _cifar_bin(root):
    return write_cifar(root / "cifar-10-batches-bin", "bin")


def _cifar_bin_gz(root):
    return write_cifar(root / "cifar-10-batches-bin", "bin", gz=True)


def _cifar_py(root):
    return write_cifar(root / "cifar-10-batches-py", "py")


def _cifar_bin_archive(root):
    written = write_cifar(root / "staging" / "cifar-10-batches-bin", "bin")
    tar_gz(root / "staging" / "cifar-10-batches-bin", root / "cifar-10-binary.tar.gz")
    return written


def _cifar_py_archive(root):
    written = write_cifar(root / "staging" / "cifar-10-batches-py", "py")
    tar_gz(root / "staging" / "cifar-10-batches-py", root / "cifar-10-python.tar.gz")
    return written


CIFAR_MAKERS = [
    _cifar_bin, _cifar_bin_gz, _cifar_py, _cifar_bin_archive, _cifar_py_archive
]


@pytest.mark.parametrize("make", CIFAR_MAKERS)
def test_cifar_formats_read_exactly(tmp_path, make):
    root = tmp_path / "data"
    written = make(root)
    dm = CIFAR10DataModule(root, val_size=10, normalize=False, batch_size=16)
    assert_same_data(dm, written)
    assert dm.num_train == 90 and dm.num_test == 10


def test_archive_in_read_only_folder_unpacks_into_cache(tmp_path, monkeypatch):
    root = tmp_path / "data"
    written = _cifar_bin_archive(root)
    monkeypatch.setattr("datamodules.cifar10.os.access", lambda *args: False)
    dm = CIFAR10DataModule(root, val_size=10, normalize=False)
    assert_same_data(dm, written)
    assert not (root / "cifar-10-batches-bin").exists()
    assert list((tmp_path / "cache" / "unpacked").glob("*/cifar-10-batches-bin"))


def test_archive_unpacked_once_beside_it(tmp_path):
    root = tmp_path / "data"
    _cifar_bin_archive(root)
    CIFAR10DataModule(root, val_size=10).setup()
    assert sorted(p.name for p in (root / "cifar-10-batches-bin").iterdir()) == sorted(
        f"{name}.bin" for name in (*(f"data_batch_{k}" for k in range(1, 6)),
                                   "test_batch")
    )
    assert not list(root.glob(".*part"))


# -- corruption table -----------------------------------------------------------


def _fashion_root(tmp_path, gz=False):
    write_fashion(tmp_path / "fashion-mnist", gz=gz)
    return tmp_path / "fashion-mnist"


def wrong_magic(folder):
    labels = np.zeros(100, np.uint8)
    write(folder / "train-images-idx3-ubyte", idx_bytes(labels))


def truncated_idx(folder):
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])


def trailing_idx(folder):
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes() + b"\0\0")


def counts_differ_idx(folder):
    write(folder / "train-labels-idx1-ubyte", idx_bytes(np.zeros(99, np.uint8)))


def label_out_of_range_idx(folder):
    labels = np.zeros(100, np.uint8)
    labels[7] = 10
    write(folder / "train-labels-idx1-ubyte", idx_bytes(labels))


def wrong_size_idx(folder):
    images = np.zeros((20, 27, 28), np.uint8)
    write(folder / "t10k-images-idx3-ubyte", idx_bytes(images))


def header_cut_idx(folder):
    write(folder / "t10k-labels-idx1-ubyte", b"\0\0\x08")


FASHION_CORRUPTIONS = [
    (wrong_magic, "train-images-idx3-ubyte", "wrong magic number 0x00000801"),
    (truncated_idx, "train-images-idx3-ubyte", "truncated"),
    (trailing_idx, "t10k-images-idx3-ubyte", "bytes more than its header"),
    (counts_differ_idx, "train-labels-idx1-ubyte", "counts differ: 100 images"),
    (label_out_of_range_idx, "train-labels-idx1-ubyte", "label 10 at record 7"),
    (wrong_size_idx, "t10k-images-idx3-ubyte", r"wrong image size.*\(27, 28\)"),
    (header_cut_idx, "t10k-labels-idx1-ubyte", "truncated"),
]


@pytest.mark.parametrize(("damage", "file", "message"), FASHION_CORRUPTIONS)
def test_bad_idx_file_refused(tmp_path, damage, file, message):
    damage(_fashion_root(tmp_path))
    dm = FashionMNISTDataModule(tmp_path, val_size=10)
    with pytest.raises(DataFormatError, match=message) as caught:
        dm.setup()
    assert caught.value.path.name == file


def test_broken_gzip_refused(tmp_path):
    folder = _fashion_root(tmp_path, gz=True)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataFormatError, match="not a complete gzip file") as caught:
        FashionMNISTDataModule(tmp_path, val_size=10).setup()
    assert caught.value.path == path


def _cifar_root(tmp_path, kind="bin"):
    folder = tmp_path / ("cifar-10-batches-" + kind)
    write_cifar(folder, kind)
    return folder


def truncated_bin(folder):
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-5])


def empty_bin(folder):
    (folder / "test_batch.bin").write_bytes(b"")


def label_out_of_range_bin(folder):
    x, y = images_and_labels(20, (3, 32, 32), seed=0)
    y[3] = 12
    (folder / "data_batch_4.bin").write_bytes(cifar_records(x, y))


def wrong_size_py(folder):
    x, y = images_and_labels(20, (3, 30, 32), seed=0)
    (folder / "data_batch_1").write_bytes(cifar_pickle(x, y))


def counts_differ_py(folder):
    x, y = images_and_labels(20, (3, 32, 32), seed=0)
    (folder / "data_batch_3").write_bytes(cifar_pickle(x, y[:-1]))


def label_out_of_range_py(folder):
    x, y = images_and_labels(20, (3, 32, 32), seed=0)
    y[0] = 11
    (folder / "test_batch").write_bytes(cifar_pickle(x, y))


def not_a_dict_py(folder):
    (folder / "data_batch_5").write_bytes(pickle.dumps([1, 2, 3], protocol=2))


def garbage_py(folder):
    (folder / "data_batch_5").write_bytes(b"this is not a pickle at all")


def wrong_dtype_py(folder):
    x, y = images_and_labels(20, (3, 32, 32), seed=0)
    batch = {b"data": x.reshape(20, -1).astype(np.float32), b"labels": y.tolist()}
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))


CIFAR_CORRUPTIONS = [
    ("bin", truncated_bin, "data_batch_2.bin", "truncated"),
    ("bin", empty_bin, "test_batch.bin", "empty"),
    ("bin", label_out_of_range_bin, "data_batch_4.bin", "label 12 at record 3"),
    ("py", wrong_size_py, "data_batch_1", "wrong image size"),
    ("py", counts_differ_py, "data_batch_3", "counts differ: 20 images"),
    ("py", label_out_of_range_py, "test_batch", "label 11 at record 0"),
    ("py", not_a_dict_py, "data_batch_5", "expected a dict"),
    ("py", garbage_py, "data_batch_5", "not a readable CIFAR-10 pickle"),
    ("py", wrong_dtype_py, "data_batch_2", "2-D uint8 array"),
]


@pytest.mark.parametrize(("kind", "damage", "file", "message"), CIFAR_CORRUPTIONS)
def test_bad_cifar_file_refused(tmp_path, kind, damage, file, message):
    damage(_cifar_root(tmp_path, kind))
    with pytest.raises(DataFormatError, match=message) as caught:
        CIFAR10DataModule(tmp_path, val_size=10).setup()
    assert caught.value.path.name == file
    assert file in str(caught.value)


class _CreatesFile:
    """Unpickling this object opens (and so creates) ``path`` for writing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickle_that_would_create_a_file_is_refused(tmp_path, protocol):
    folder = _cifar_root(tmp_path, "py")
    x, y = images_and_labels(20, (3, 32, 32), seed=0)
    # the payload works: the stock unpickler creates the file
    witness = tmp_path / "witness.txt"
    pickle.loads(pickle.dumps({b"data": _CreatesFile(witness)}, protocol=protocol))
    assert witness.exists()
    target = tmp_path / "pwned.txt"
    batch = {b"data": x.reshape(20, -1), b"labels": list(map(int, y)),
             b"extra": _CreatesFile(target)}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=protocol))
    refused = r"global (io|builtins)\.open is not allowed"
    with pytest.raises(DataFormatError, match=refused):
        CIFAR10DataModule(tmp_path, val_size=10).setup()
    assert not target.exists()


def test_pickled_object_array_refused(tmp_path):
    folder = _cifar_root(tmp_path, "py")
    data = np.empty((20, 3072), dtype=object)
    batch = {b"data": data, b"labels": [0] * 20}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataFormatError, match="refused pickle content"):
        CIFAR10DataModule(tmp_path, val_size=10).setup()


# -- missing, unknown and empty directories -------------------------------------


@pytest.mark.parametrize("module", [FashionMNISTDataModule, CIFAR10DataModule])
@pytest.mark.parametrize("state", ["missing", "empty"])
def test_no_files_names_directory_files_and_variable(tmp_path, module, state):
    root = tmp_path / "nowhere"
    if state == "empty":
        root.mkdir()
    with pytest.raises(DataNotFoundError) as caught:
        module(root).setup()
    message = str(caught.value)
    assert str(root) in message
    assert "OPTIMLAB_DATA" in message and "download=True" in message
    expected = "train-images-idx3-ubyte" if module is FashionMNISTDataModule else (
        "data_batch_1.bin")
    assert expected in message
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, FileNotFoundError)


def test_incomplete_cifar_folder_names_missing_file(tmp_path):
    folder = _cifar_root(tmp_path)
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DataNotFoundError, match="missing data_batch_3.bin"):
        CIFAR10DataModule(tmp_path).setup()


def test_incomplete_fashion_folder_names_missing_file(tmp_path):
    folder = _fashion_root(tmp_path, gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError, match="missing t10k-labels-idx1-ubyte"):
        FashionMNISTDataModule(tmp_path).setup()


def test_broken_archive_refused(tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(gzip.compress(b"not a tar"))
    with pytest.raises(DataFormatError, match="not a readable .tar.gz"):
        CIFAR10DataModule(tmp_path).setup()
    assert not (tmp_path / "cifar-10-batches-bin").exists()


def test_archive_without_the_batches_refused(tmp_path):
    (tmp_path / "staging" / "cifar-10-batches-bin").mkdir(parents=True)
    (tmp_path / "staging" / "cifar-10-batches-bin" / "readme.txt").write_text("hi")
    tar_gz(tmp_path / "staging" / "cifar-10-batches-bin",
           tmp_path / "cifar-10-binary.tar.gz")
    with pytest.raises(DataFormatError, match="lacks the members"):
        CIFAR10DataModule(tmp_path).setup()
    assert not (tmp_path / "cifar-10-batches-bin").exists()


def test_pickled_dtype_state_never_touches_numpys_shared_dtypes(tmp_path):
    """A pickle whose dtype state says big-endian float32 must not change the
    process-wide float32 dtype (it is refused later for not being uint8)."""
    folder = _cifar_root(tmp_path, "py")
    data = np.zeros((20, 3072), dtype=">f4")
    batch = {b"data": data, b"labels": [0] * 20}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataFormatError, match="2-D uint8 array"):
        CIFAR10DataModule(tmp_path, val_size=10).setup()
    assert np.dtype("f4").byteorder == "=" and np.dtype("f4").isnative


@pytest.mark.parametrize("protocol", [None, 2, 3, 4])
def test_python2_and_python3_pickles_read(tmp_path, protocol):
    """``None``: bytes and text as Python 2 wrote them (the official files)."""
    folder = _cifar_root(tmp_path, "py")
    x, y = images_and_labels(20, (3, 32, 32), seed=9)
    (folder / "test_batch").write_bytes(cifar_pickle(x, y, protocol=protocol))
    dm = CIFAR10DataModule(tmp_path, val_size=10, normalize=False)
    dm.setup()
    test_x = torch.cat([b for b, _ in dm.test_dataloader()])
    assert torch.equal((test_x * 255).round().to(torch.uint8), torch.from_numpy(x))
