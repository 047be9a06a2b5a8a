"""Event-file framing and CRC-32C checks against TensorBoard's own implementation."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import (
    masked_crc32c as reference_crc,
)

from experiments.report import tfrecord


def _record(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return (length + struct.pack("<I", reference_crc(length)) + payload
            + struct.pack("<I", reference_crc(payload)))


def _payloads(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    # mostly short records, as scalar events are, plus a few beyond VECTOR_BYTES
    sizes = [0, 1, 7, 8, 9, tfrecord.VECTOR_BYTES, tfrecord.VECTOR_BYTES + 1, 3000]
    sizes += rng.integers(0, 120, size=count - len(sizes)).tolist()
    return [rng.integers(0, 256, size=n, dtype=np.uint8).tobytes() for n in sizes]


def test_crc_equals_tensorboard_for_every_length_class() -> None:
    payloads = _payloads(60)
    buffer = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    lengths = np.array([len(p) for p in payloads])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    got = tfrecord.masked_crc32c(buffer, starts, lengths)
    assert got.tolist() == [reference_crc(p) for p in payloads]


def test_intact_file_yields_every_payload() -> None:
    payloads = _payloads(40)
    problems: list[str] = []
    got = list(tfrecord.event_records(b"".join(map(_record, payloads)), "f", problems))
    assert got == payloads and problems == []


# (what to damage, byte offset inside the record) -> the records kept before it
DAMAGE = {
    "payload byte": lambda start, n: start + 12 + n // 2,
    "payload checksum": lambda start, n: start + 12 + n + 1,
    "length checksum": lambda start, n: start + 9,
    "length field": lambda start, n: start + 1,
}


@pytest.mark.parametrize("where", sorted(DAMAGE))
@pytest.mark.parametrize("victim", [0, 5, 39])
def test_damaged_record_stops_reading_with_a_clear_line(where: str,
                                                        victim: int) -> None:
    payloads = [p or b"x" for p in _payloads(40, seed=1)]
    records = [_record(p) for p in payloads]
    start = sum(len(r) for r in records[:victim])
    data = bytearray(b"".join(records))
    data[DAMAGE[where](start, len(payloads[victim]))] ^= 0x10
    problems: list[str] = []
    got = list(tfrecord.event_records(bytes(data), "events.x", problems))
    assert got == payloads[:victim]
    assert len(problems) == 1 and problems[0].startswith("events.x")
    expected = f"kept the {victim} records" if victim else "left out"
    assert "damaged" in problems[0] and expected in problems[0]


def test_truncated_and_foreign_files_are_reported() -> None:
    payloads = _payloads(10)
    data = b"".join(map(_record, payloads))
    problems: list[str] = []
    cut = list(tfrecord.event_records(data[:-3], "cut", problems))
    assert cut == payloads[:-1] and "ends inside a record" in problems[0]
    problems.clear()
    assert list(tfrecord.event_records(b"not an event file", "junk", problems)) == []
    assert "not a TensorBoard event file" in problems[0]
