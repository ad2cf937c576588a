"""Walking batches by header (iter_batches) and broker-side validation (validate_batch)."""

from __future__ import annotations

import struct

import crc32c
import pytest

from kafkalab.errors import (
    CorruptRecordError,
    CrcMismatchError,
    InvalidMagicError,
    TruncatedBatchError,
    UnknownCodecError,
)
from kafkalab.records import decode_batch, encode_batch, iter_batches, validate_batch
from kafkalab.records.header import set_base_offset


def log_of(sizes: list[int], codec: str = "none") -> tuple[bytes, list[int]]:
    """Batches back to back with consecutive offsets; returns the bytes and each batch's position."""
    out = bytearray()
    positions = []
    offset = 0
    for n in sizes:
        positions.append(len(out))
        out += encode_batch([(None, b"v%d" % i, None, 1000 + i) for i in range(n)], base_offset=offset, compression=codec)
        offset += n
    return bytes(out), positions


def test_iter_batches_walks_every_header():
    buf, positions = log_of([1, 5, 3, 10])
    walked = list(iter_batches(buf))
    assert [p for p, _ in walked] == positions
    assert [h.base_offset for _, h in walked] == [0, 1, 6, 9]
    assert walked[-1][1].next_offset == 19
    # start mid-log and bound the end
    assert [p for p, _ in iter_batches(buf, positions[1], positions[3])] == positions[1:3]


def test_iter_batches_stops_cleanly_at_a_partial_batch():
    buf, positions = log_of([2, 2, 2], codec="zstd")
    for cut in range(positions[2], len(buf)):  # every possible tear inside the last batch
        assert [p for p, _ in iter_batches(buf[:cut])] == positions[:2]
    assert [p for p, _ in iter_batches(memoryview(buf))] == positions


@pytest.mark.parametrize(
    ("patch", "error", "message"),
    [
        (lambda b, p: struct.pack_into(">i", b, p + 8, -5), CorruptRecordError, "batch_length -5"),
        (lambda b, p: struct.pack_into(">i", b, p + 8, 48), CorruptRecordError, "batch_length 48"),
        (lambda b, p: struct.pack_into(">b", b, p + 16, 1), InvalidMagicError, "magic 1"),
    ],
)
def test_iter_batches_raises_on_garbage_with_its_position(patch, error, message):
    buf, positions = log_of([1, 1, 1])
    bad = bytearray(buf)
    patch(bad, positions[1])
    with pytest.raises(error, match=f"{message}.*at byte {positions[1]}") as info:
        list(iter_batches(bad))
    assert info.value.position == positions[1]


def test_validate_batch_accepts_what_we_encode():
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        buf = encode_batch([(b"k", b"v", [("h", None)], 5)] * 4, compression=codec, producer_id=3, producer_epoch=0, base_sequence=0)
        h = validate_batch(buf)
        assert h.records_count == 4 and h.last_sequence == 3


def test_every_flipped_byte_is_caught():
    buf, positions = log_of([3, 3])
    pos = positions[1]
    for i in range(pos + 21, len(buf)):  # every byte the CRC covers
        bad = bytearray(buf)
        bad[i] ^= 0x40
        with pytest.raises(CrcMismatchError, match=f"at byte {pos}"):
            validate_batch(bad, pos)
        with pytest.raises(CrcMismatchError):
            decode_batch(bad, pos)
    bad = bytearray(buf)
    bad[pos + 17] ^= 1  # the stored CRC itself
    with pytest.raises(CrcMismatchError):
        validate_batch(bad, pos)
    # base offset and leader epoch sit outside the CRC: a broker rewrites them freely
    bad = bytearray(buf)
    set_base_offset(bad, 1234, pos)
    assert validate_batch(bad, pos).base_offset == 1234
    assert decode_batch(bad, pos, verify_crc=False).records[0].offset == 1234


def _reseal(buf: bytearray, pos: int = 0) -> bytearray:
    size = struct.unpack_from(">i", buf, pos + 8)[0] + 12
    struct.pack_into(">I", buf, pos + 17, crc32c.crc32c(bytes(buf[pos + 21 : pos + size])))
    return buf


def test_validate_batch_names_each_problem():
    buf = encode_batch([(None, b"x", None, 1)] * 2)
    bad = bytearray(buf)
    bad[16] = 0
    with pytest.raises(InvalidMagicError, match="magic 0"):
        validate_batch(bad)
    with pytest.raises(TruncatedBatchError, match="runs past the end"):
        validate_batch(buf[:-1])
    with pytest.raises(TruncatedBatchError, match="header bytes"):
        validate_batch(buf[:30])
    bad = bytearray(buf)
    struct.pack_into(">h", bad, 21, 6)
    with pytest.raises(UnknownCodecError, match="codec id 6"):
        validate_batch(_reseal(bad))
    bad = bytearray(buf)
    struct.pack_into(">i", bad, 23, 5)  # last_offset_delta
    with pytest.raises(CorruptRecordError, match="last_offset_delta 5"):
        validate_batch(_reseal(bad))
