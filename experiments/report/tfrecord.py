"""The record framing of TensorBoard event files, with every checksum verified.

An event file is a sequence of TFRecords. Each record is::

    uint64 length      little-endian
    uint32 crc_length  masked CRC-32C of the 8 length bytes
    bytes  payload     ``length`` bytes (one serialised ``Event``)
    uint32 crc_payload masked CRC-32C of the payload

where masked(c) = rotate_right(c, 15) + 0xA282EAD8 (mod 2^32), and CRC-32C is the
Castagnoli CRC (reflected polynomial 0x82F63B78, initial value and final xor
0xFFFFFFFF).

TensorBoard's own reader checks the CRCs in pure Python when TensorFlow is absent,
one byte at a time, which costs many times the decoding. Here the CRCs of all the
records of a file are computed together: at byte position i, every record longer
than i takes one table step, as one numpy operation over those records. Records are
short (a scalar event is about 50 bytes), so a file costs a few hundred numpy steps
whatever its number of records; the bytes of the few long records beyond
:data:`VECTOR_BYTES` are finished one record at a time.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator

import numpy as np

log = logging.getLogger(__name__)

HEADER = 12  # length + its checksum
FOOTER = 4  # payload checksum
VECTOR_BYTES = 256  # byte positions done for all records at once; the rest per record

_POLYNOMIAL = 0x82F63B78  # Castagnoli, bit-reversed
_MASK_DELTA = 0xA282EAD8


def _table() -> np.ndarray:
    """CRC-32C of each single byte value: 256 entries."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ _POLYNOMIAL, table >> 1)
    return table.astype(np.uint32)


_TABLE = _table()
_TABLE_LIST = [int(x) for x in _TABLE]


def masked_crc32c(buffer: np.ndarray, starts: np.ndarray,
                  lengths: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of the byte runs ``buffer[starts[k] : starts[k] + lengths[k]]``.

    ``buffer`` is a uint8 array; the result is a uint32 array, one per run.
    """
    count = len(starts)
    if count == 0:
        return np.zeros(0, dtype=np.uint32)
    order = np.argsort(-lengths, kind="stable")  # longest first
    starts, lengths = starts[order], lengths[order]
    crc = np.full(count, 0xFFFFFFFF, dtype=np.uint32)
    # The runs still going at byte i are a prefix of ``order``: those with length > i.
    descending = -lengths
    vector_end = min(int(lengths[0]), VECTOR_BYTES)
    active = np.searchsorted(descending, -np.arange(vector_end), side="left")
    for i in range(vector_end):
        k = int(active[i])
        c = crc[:k]
        crc[:k] = _TABLE[(c ^ buffer[starts[:k] + i]) & 0xFF] ^ (c >> 8)
    for j in range(int(np.count_nonzero(lengths > vector_end))):
        c = int(crc[j])
        tail = buffer[starts[j] + vector_end: starts[j] + lengths[j]].tolist()
        for byte in tail:
            c = _TABLE_LIST[(c ^ byte) & 0xFF] ^ (c >> 8)
        crc[j] = c
    crc ^= np.uint32(0xFFFFFFFF)
    masked = ((crc >> 15) | (crc << 17)) + np.uint32(_MASK_DELTA)
    result = np.empty(count, dtype=np.uint32)
    result[order] = masked
    return result


def event_records(data: bytes, source: str = "event file",
                  problems: list[str] | None = None) -> Iterator[bytes]:
    """The payloads of the whole, intact records of a TFRecord file, in order.

    Reading stops at the first record whose length or payload fails its checksum,
    and at a record cut short (a run killed mid-write); the records before it are
    kept. ``source`` names the file in the warning for a file that stops early or
    holds no record at all; the warning also goes to ``problems``.
    """
    frames: list[tuple[int, int]] = []  # (offset, payload length)
    offset, size = 0, len(data)
    while offset + HEADER <= size:
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + HEADER + length + FOOTER
        if end > size:
            break
        frames.append((offset, length))
        offset = end
    intact = _intact_prefix(data, frames)
    overruns = offset + HEADER <= size  # a whole header whose record runs past the end
    if intact == len(frames) and overruns and not _header_ok(data, offset):
        frames.append((offset, 0))  # not cut short: its length field is damaged
    for start, length in frames[:intact]:
        yield data[start + HEADER: start + HEADER + length]
    if intact == 0 and size > 0:
        text = (f"{source} is not a TensorBoard event file, or is damaged from its "
                f"first record (no whole, intact record in its {size} bytes); its "
                "scalars are left out")
    elif intact < len(frames):
        start, _ = frames[intact]
        text = (f"{source}: record {intact + 1} (at byte {start}) fails its "
                "checksum, so the file is damaged there; kept the "
                f"{intact} records before it")
    elif offset == size:
        return
    else:
        text = (f"{source} ends inside a record after {len(frames)} records (a run "
                "killed mid-write?); kept the records before it")
    log.warning("%s", text)
    if problems is not None:
        problems.append(text)


def _header_ok(data: bytes, offset: int) -> bool:
    """Whether the length field at ``offset`` matches its checksum."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    (stored,) = struct.unpack_from("<I", data, offset + 8)
    crc = masked_crc32c(buffer, np.array([offset]), np.array([8]))
    return int(crc[0]) == stored


def _intact_prefix(data: bytes, frames: list[tuple[int, int]]) -> int:
    """How many of ``frames`` come before the first one with a bad checksum."""
    if not frames:
        return 0
    buffer = np.frombuffer(data, dtype=np.uint8)
    offsets = np.array([f[0] for f in frames], dtype=np.int64)
    lengths = np.array([f[1] for f in frames], dtype=np.int64)
    stored_length_crc = buffer[offsets[:, None] + np.arange(8, 12)].copy().view("<u4")
    payload_ends = offsets + HEADER + lengths
    stored_payload_crc = (
        buffer[payload_ends[:, None] + np.arange(FOOTER)].copy().view("<u4")
    )
    ok = (
        (masked_crc32c(buffer, offsets, np.full_like(lengths, 8))
         == stored_length_crc[:, 0])
        & (masked_crc32c(buffer, offsets + HEADER, lengths)
           == stored_payload_crc[:, 0])
    )
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if len(bad) else len(frames)
