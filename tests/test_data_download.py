"""The download path, against an HTTP server that the test starts on 127.0.0.1.

The server serves tiny files in the official formats from a temporary folder;
the datamodules are pointed at it through ``source=``. No other address is ever
contacted.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch
from data_fixtures import tar_gz, write_cifar, write_fashion

from datamodules import (
    CIFAR10DataModule,
    DataFormatError,
    DataNotFoundError,
    DownloadError,
    FashionMNISTDataModule,
    RemoteFile,
    Source,
)
from datamodules.download import download_file

pytestmark = pytest.mark.usefixtures("one_thread", "private_cache")


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; ``/cut/<name>`` announces the full size but stops early."""

    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - the http.server API
        type(self).requests.append(self.path)
        if self.path.startswith("/cut/"):
            body = Path(self.directory, self.path.removeprefix("/cut/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder) of a server on 127.0.0.1 and a free port."""
    served = tmp_path / "served"
    served.mkdir()
    _Handler.requests = []
    handler = functools.partial(_Handler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def source_for(base_url: str, folder: Path, names: list[str]) -> Source:
    return Source(base_url, tuple(RemoteFile(n, md5(folder / n)) for n in names))


def test_fashion_download_verifies_and_reads(server, tmp_path):
    base_url, served = server
    written = write_fashion(served, n_train=50, n_test=10, gz=True)
    source = source_for(base_url, served, sorted(p.name for p in served.iterdir()))
    root = tmp_path / "data"
    dm = FashionMNISTDataModule(root, val_size=10, download=True, source=source)
    dm.prepare_data()
    dm.setup()
    assert dm.num_train == 40 and dm.num_test == 10
    for file in source.files:
        assert md5(root / "fashion-mnist" / file.name) == file.md5
    test_x = torch.cat([x for x, _ in dm.test_dataloader()])
    assert test_x.shape == (10, 1, 28, 28)
    assert torch.equal(torch.cat([y for _, y in dm.test_dataloader()]),
                       torch.from_numpy(written[3]).long())
    # present and verified: a second datamodule fetches nothing
    count = len(_Handler.requests)
    FashionMNISTDataModule(root, val_size=10, download=True, source=source).setup()
    assert len(_Handler.requests) == count


def test_cifar_archive_downloaded_and_unpacked(server, tmp_path):
    base_url, served = server
    write_cifar(tmp_path / "staging" / "cifar-10-batches-bin", "bin")
    tar_gz(tmp_path / "staging" / "cifar-10-batches-bin",
           served / "cifar-10-binary.tar.gz")
    source = source_for(base_url, served, ["cifar-10-binary.tar.gz"])
    root = tmp_path / "data"
    dm = CIFAR10DataModule(root, val_size=10, download=True, source=source)
    dm.setup()
    assert dm.num_train == 90 and dm.num_test == 10
    assert (root / "cifar-10-batches-bin" / "data_batch_5.bin").is_file()
    assert _Handler.requests == ["/cifar-10-binary.tar.gz"]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_md5_mismatch_keeps_nothing(server, tmp_path):
    base_url, served = server
    (served / "file.bin").write_bytes(b"x" * 5000)
    destination = tmp_path / "data" / "file.bin"
    with pytest.raises(DataFormatError, match=r"has MD5 \w+, expected 0{32}"):
        download_file(f"{base_url}/file.bin", destination, "0" * 32)
    assert leftovers(destination.parent) == []


def test_interrupted_download_keeps_nothing(server, tmp_path):
    base_url, served = server
    (served / "file.bin").write_bytes(b"y" * 50000)
    destination = tmp_path / "data" / "file.bin"
    with pytest.raises(DownloadError, match="ended after 25000 of 50000 bytes"):
        download_file(f"{base_url}/cut/file.bin", destination, md5(served / "file.bin"))
    assert leftovers(destination.parent) == []


def test_missing_remote_file_is_a_clear_error(server, tmp_path):
    base_url, _ = server
    source = Source(base_url, (RemoteFile("cifar-10-binary.tar.gz", "0" * 32),))
    dm = CIFAR10DataModule(tmp_path / "data", download=True, source=source)
    with pytest.raises(DownloadError, match=r"cifar-10-binary.tar.gz.*404"):
        dm.setup()


def test_stale_file_with_wrong_md5_is_replaced(server, tmp_path):
    base_url, served = server
    (served / "file.bin").write_bytes(b"fresh")
    destination = tmp_path / "file.bin"
    destination.write_bytes(b"stale")
    download_file(f"{base_url}/file.bin", destination, md5(served / "file.bin"))
    assert destination.read_bytes() == b"fresh"


def test_no_download_without_permission(server, tmp_path):
    base_url, served = server
    write_fashion(served, gz=True)
    source = source_for(base_url, served, sorted(p.name for p in served.iterdir()))
    dm = FashionMNISTDataModule(tmp_path / "data", source=source)
    with pytest.raises(DataNotFoundError, match="download=True"):
        dm.setup()
    assert _Handler.requests == []


def test_unwritable_destination_is_a_clear_error(server, tmp_path):
    base_url, served = server
    (served / "file.bin").write_bytes(b"z")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(DownloadError, match="pass a writable data_dir"):
        download_file(f"{base_url}/file.bin", blocker / "sub" / "file.bin", "0" * 32)


def test_archive_with_a_link_member_is_refused_and_nothing_moved_in(tmp_path):
    """A symlink named like a wanted file must not count as found."""
    import io
    import tarfile

    from datamodules.download import unpack_archive
    from datamodules.errors import DataFormatError

    archive = tmp_path / "cifar-10-binary.tar.gz"
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    with tarfile.open(archive, "w:gz") as tar:
        for name in names[:-1]:
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
        link = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    into = tmp_path / "data"
    for _ in range(2):  # the second try meets the same archive, not a broken folder
        with pytest.raises(DataFormatError, match="test_batch.bin.*symbolic link") as e:
            unpack_archive(archive, "cifar-10-batches-bin", names, into)
        assert str(archive) in str(e.value)
        assert leftovers(into) == []  # no staging folder, nothing renamed into place
