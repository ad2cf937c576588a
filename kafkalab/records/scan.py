"""Walking and checking batches by their headers alone, without decoding records.

A log segment, a fetch response and a produce request are all just RecordBatches laid end
to end. A broker appending, a log recovering and a fetcher paging through them only need
each batch's 61-byte header, plus (to validate) one CRC-32C over the batch bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

import crc32c

from kafkalab.errors import (
    CorruptRecordError,
    CrcMismatchError,
    InvalidMagicError,
    TruncatedBatchError,
    UnknownCodecError,
)
from kafkalab.records.compression import CODEC_NAMES
from kafkalab.records.header import (
    COMPRESSION_MASK,
    CRC_START,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    BatchHeader,
    parse_header,
)

Buffer = bytes | bytearray | memoryview

MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD  # 49: a batch_length smaller cannot hold the header
MAGIC_OFFSET = 16


def check_header(buf: Buffer, pos: int, end: int) -> BatchHeader:
    """Parse the header at `pos` and check magic and length against `end` (exclusive)."""
    if end - pos < HEADER_SIZE:
        raise TruncatedBatchError(
            f"need {HEADER_SIZE} header bytes, have {end - pos}: the batch is cut short", position=pos
        )
    h = parse_header(buf, pos)
    if h.magic != MAGIC:
        raise InvalidMagicError(
            f"magic {h.magic} is not 2: only RecordBatch v2 (Kafka 0.11+) is supported", position=pos
        )
    if h.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"batch_length {h.batch_length} is below the minimum {MIN_BATCH_LENGTH}", position=pos
        )
    if pos + h.size > end:
        raise TruncatedBatchError(
            f"batch of {h.size} bytes runs past the end ({end - pos} bytes left)", position=pos
        )
    return h


def check_crc(buf: Buffer, h: BatchHeader, pos: int) -> None:
    actual = crc32c.crc32c(memoryview(buf)[pos + CRC_START : pos + h.size])
    if actual != h.crc:
        raise CrcMismatchError(
            f"CRC-32C {actual:#010x} does not match the stored {h.crc:#010x}: the batch is corrupt",
            position=pos,
        )


def iter_batches(buf: Buffer, pos: int = 0, end: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
    """Yield (position, header) of each whole batch in buf[pos:end].

    Stops quietly at a partial batch at the end (a fetch response may be cut mid-batch,
    a crashed write may leave a torn tail); raises CorruptRecordError with the position on
    bytes that cannot be a batch (bad magic, batch_length < 49). No CRC check: see
    validate_batch.
    """
    n = len(buf)
    end = n if end is None else min(end, n)
    while end - pos >= LOG_OVERHEAD:
        # Check what a partial header already tells (length, then magic) before waiting for more.
        batch_length = int.from_bytes(buf[pos + 8 : pos + 12], "big", signed=True)
        if batch_length < MIN_BATCH_LENGTH:
            raise CorruptRecordError(
                f"batch_length {batch_length} is below the minimum {MIN_BATCH_LENGTH}: not a record batch",
                position=pos,
            )
        if end - pos > MAGIC_OFFSET and buf[pos + MAGIC_OFFSET] != MAGIC:
            raise InvalidMagicError(
                f"magic {buf[pos + MAGIC_OFFSET]} is not 2: not a RecordBatch v2", position=pos
            )
        size = batch_length + LOG_OVERHEAD
        if pos + size > end:
            return
        yield pos, parse_header(buf, pos)
        pos += size


def validate_batch(buf: Buffer, pos: int = 0) -> BatchHeader:
    """Check the batch at `pos` as a broker checks a produced batch, without decompressing.

    Magic, length, CRC-32C, a known codec, and records_count == last_offset_delta + 1
    (true of every batch a producer writes; a compacted batch may legitimately differ,
    so do not use this on batches read back from a cleaned log).
    """
    h = check_header(buf, pos, len(buf))
    check_crc(buf, h, pos)
    codec = h.attributes & COMPRESSION_MASK
    if codec not in CODEC_NAMES:
        raise UnknownCodecError(
            f"unknown compression codec id {codec} in batch attributes (known: 0-4)", position=pos
        )
    if h.records_count != h.last_offset_delta + 1:
        raise CorruptRecordError(
            f"records_count {h.records_count} does not match last_offset_delta {h.last_offset_delta} + 1",
            position=pos,
        )
    if h.records_count <= 0:
        raise CorruptRecordError(f"records_count {h.records_count}: a batch holds at least one record", position=pos)
    return h
