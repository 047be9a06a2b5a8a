"""Fetching the official files: MD5-verified, atomic, and unpacking of archives.

A download streams into a hidden ``.part`` file beside its destination while the
MD5 is computed, and is renamed into place only when the digest matches the
published one, so an interrupted or corrupted download never leaves a file that
looks complete. Archives are unpacked into a temporary folder that is renamed
into place once every expected member has been written.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from datamodules.errors import DataFormatError, DownloadError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name under the source's base URL and its MD5."""

    name: str
    md5: str


@dataclass(frozen=True)
class Source:
    """Where a data set is published: ``base_url + file.name`` for each file."""

    base_url: str
    files: tuple[RemoteFile, ...]

    def url(self, file: RemoteFile) -> str:
        return self.base_url.rstrip("/") + "/" + file.name


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, destination: Path, md5: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``destination`` unless a file with the right MD5 is there."""
    if destination.is_file() and md5sum(destination) == md5:
        return destination
    log.info("downloading %s to %s", url, destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        part = tempfile.NamedTemporaryFile(
            dir=destination.parent, prefix=f".{destination.name}.", suffix=".part",
            delete=False,
        )
    except OSError as error:
        raise DownloadError(
            f"cannot write the download of {url} into {destination.parent}: {error}; "
            "pass a writable data_dir"
        ) from None
    try:
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        with part, urllib.request.urlopen(url, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            while chunk := response.read(CHUNK_BYTES):
                digest.update(chunk)
                part.write(chunk)
                received += len(chunk)
            part.flush()
            os.fsync(part.fileno())
        if announced is not None and received != int(announced):
            raise DownloadError(
                f"could not download {url}: the connection ended after {received} "
                f"of {announced} bytes; nothing was kept, try again"
            )
        if digest.hexdigest() != md5:
            raise DataFormatError(
                destination,
                f"download from {url} has MD5 {digest.hexdigest()}, expected {md5}; "
                "the file was not kept",
            )
        os.replace(part.name, destination)
    except DownloadError:
        Path(part.name).unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        Path(part.name).unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: {error}") from None
    except BaseException:
        Path(part.name).unlink(missing_ok=True)
        raise
    return destination


def download_all(source: Source, folder: Path) -> list[Path]:
    """Download every file of ``source`` into ``folder``."""
    return [
        download_file(source.url(file), folder / file.name, file.md5)
        for file in source.files
    ]


def unpack_archive(archive: Path, member_dir: str, names: Sequence[str], into: Path):
    """Unpack ``member_dir/<name>`` for each ``name`` of a ``.tar.gz`` into ``into``.

    Only those members are read, and each must be a regular file: a wanted name
    that is a link, a device or a folder in the archive is refused with a
    :class:`DataFormatError` naming the archive and the member. Other members are
    ignored. The files are written to a staging folder that is renamed into place
    only once every one of them has been written. Returns ``into / member_dir``.
    """
    target = into / member_dir
    if target.is_dir():
        return target
    into.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=into, prefix=f".{member_dir}.", suffix=".part"))
    try:
        wanted = {f"{member_dir}/{name}": name for name in names}
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    name = wanted.get(member.name.removeprefix("./"))
                    if name is None:
                        continue
                    if not member.isfile():
                        raise DataFormatError(
                            archive,
                            f"member {member.name!r} is {_member_kind(member)}, not a "
                            "regular file; refusing the archive (is it the official "
                            "one? delete it to download it again)",
                        )
                    source = tar.extractfile(member)
                    if source is None:  # pragma: no cover - isfile() members have data
                        continue
                    with source, open(staging / name, "wb") as out:
                        shutil.copyfileobj(source, out, CHUNK_BYTES)
                    del wanted[member.name.removeprefix("./")]
        except (tarfile.TarError, EOFError, OSError) as error:
            raise DataFormatError(
                archive, f"is not a readable .tar.gz archive ({error})"
            ) from None
        if wanted:
            raise DataFormatError(
                archive, f"lacks the members {sorted(wanted)}; is it the right archive?"
            )
        try:
            os.replace(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"a hard link to {member.linkname!r}"
    if member.isdir():
        return "a folder"
    if member.isdev():
        return "a device or FIFO"
    return "not a plain file"
