"""RecordBatch v2: the unit Kafka writes to disk and sends on the wire.

See header.py for the 61-byte header, builder.py for the record layout, compression.py
for how each codec frames the records section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kafkalab.errors import CorruptRecordError
from kafkalab.records.builder import CREATE_TIME, BatchBuilder, Header
from kafkalab.records.compression import decompress
from kafkalab.records.header import (
    COMPRESSION_MASK,
    HEADER_SIZE,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    TIMESTAMP_TYPE_BIT,
    BatchHeader,
)
from kafkalab.records.scan import check_crc, check_header
from kafkalab.records.varint import read_varint

__all__ = ["Header", "Record", "RecordBatch", "decode_batch", "decode_records", "encode_batch"]


@dataclass(slots=True)
class Record:
    """One record as the application sees it, with its absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)


@dataclass(slots=True)
class RecordBatch:
    header: BatchHeader
    records: list[Record]


def encode_batch(
    records: Sequence[tuple[bytes | None, bytes | None, Sequence[Header] | None, int]],
    *,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    transactional: bool = False,
    control: bool = False,
    compression: str | int = "none",
    timestamp_type: str | int = CREATE_TIME,
    log_append_time_ms: int | None = None,
    compression_level: int | None = None,
) -> bytes:
    """Encode (key, value, headers, timestamp_ms) tuples as one batch."""
    if not records:
        raise ValueError("a record batch needs at least one record")
    builder = BatchBuilder(1 << 62)
    append = builder.append
    for key, value, headers, ts in records:
        append(key, value, headers, ts)
    return builder.build(
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        transactional=transactional,
        compression=compression,
        partition_leader_epoch=partition_leader_epoch,
        control=control,
        timestamp_type=timestamp_type,
        log_append_time_ms=log_append_time_ms,
        compression_level=compression_level,
    )


def decode_batch(buf: bytes | bytearray | memoryview, pos: int = 0, *, verify_crc: bool = True) -> RecordBatch:
    """Decode the batch at `pos`, checking magic, length and CRC, decompressing if needed."""
    h = check_header(buf, pos, len(buf))
    if verify_crc:
        check_crc(buf, h, pos)
    data = bytes(memoryview(buf)[pos + HEADER_SIZE : pos + h.size])
    codec = h.attributes & COMPRESSION_MASK
    if codec:
        data = decompress(codec, data, position=pos)
    return RecordBatch(h, decode_records(h, data, position=pos))


def decode_records(h: BatchHeader, data: bytes, *, position: int | None = None) -> list[Record]:
    """Decode an (uncompressed) records section that belongs to header `h`."""
    try:
        return _decode_records(h, data)
    except CorruptRecordError as exc:
        raise CorruptRecordError(str(exc), position=position) from None
    except (IndexError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise CorruptRecordError(
            f"records section of {len(data)} bytes is malformed ({exc})", position=position
        ) from None


def _decode_records(h: BatchHeader, data: bytes) -> list[Record]:
    # Varints are read inline for the one- and two-byte cases (deltas, small lengths),
    # falling back to read_varint beyond; this loop is what a consumer spends its time in.
    count = h.records_count
    if count < 0:
        raise CorruptRecordError(f"records_count {count} is negative")
    base_offset = h.base_offset
    base_ts = h.base_timestamp
    log_append = h.attributes & TIMESTAMP_TYPE_BIT
    max_ts = h.max_timestamp
    n = len(data)
    records: list[Record] = []
    add = records.append
    p = 0
    for i in range(count):
        # record length
        b = data[p]
        if b < 0x80:
            length = (b >> 1) ^ -(b & 1)
            p += 1
        else:
            b2 = data[p + 1]
            if b2 < 0x80:
                u = (b & 0x7F) | (b2 << 7)
                length = (u >> 1) ^ -(u & 1)
                p += 2
            else:
                length, p = read_varint(data, p)
        rec_end = p + length
        if length < 6 or rec_end > n:
            raise CorruptRecordError(f"record {i} has length {length} with {n - p} bytes left")
        p += 1  # attributes: unused in v2
        # timestamp delta
        b = data[p]
        if b < 0x80:
            ts_delta = (b >> 1) ^ -(b & 1)
            p += 1
        else:
            ts_delta, p = read_varint(data, p)
        # offset delta
        b = data[p]
        if b < 0x80:
            off_delta = (b >> 1) ^ -(b & 1)
            p += 1
        else:
            b2 = data[p + 1]
            if b2 < 0x80:
                u = (b & 0x7F) | (b2 << 7)
                off_delta = (u >> 1) ^ -(u & 1)
                p += 2
            else:
                off_delta, p = read_varint(data, p)
        # key
        b = data[p]
        if b < 0x80:
            klen = (b >> 1) ^ -(b & 1)
            p += 1
        else:
            klen, p = read_varint(data, p)
        if klen < 0:
            key = None
        else:
            key = data[p : p + klen]
            p += klen
        # value
        b = data[p]
        if b < 0x80:
            vlen = (b >> 1) ^ -(b & 1)
            p += 1
        else:
            b2 = data[p + 1]
            if b2 < 0x80:
                u = (b & 0x7F) | (b2 << 7)
                vlen = (u >> 1) ^ -(u & 1)
                p += 2
            else:
                vlen, p = read_varint(data, p)
        if vlen < 0:
            value = None
        else:
            value = data[p : p + vlen]
            p += vlen
        # headers
        b = data[p]
        if b == 0:
            headers: list[Header] = []
            p += 1
        else:
            headers, p = _decode_headers(data, p)
        if p != rec_end:
            raise CorruptRecordError(f"record {i}: fields take {p - rec_end + length} bytes, length says {length}")
        add(Record(base_offset + off_delta, max_ts if log_append else base_ts + ts_delta, key, value, headers))
    if p != n:
        raise CorruptRecordError(f"records_count is {count} but {n - p} bytes remain after the last record")
    return records


def _decode_headers(data: bytes, p: int) -> tuple[list[Header], int]:
    nh, p = read_varint(data, p)
    if nh < 0:
        raise CorruptRecordError(f"record header count {nh} is negative")
    headers: list[Header] = []
    for _ in range(nh):
        hk, p = read_varint(data, p)
        if hk < 0 or p + hk > len(data):
            raise CorruptRecordError(f"record header key length {hk} is invalid")
        hkey = data[p : p + hk].decode()
        p += hk
        hv, p = read_varint(data, p)
        if hv < 0:
            hval = None
        else:
            if p + hv > len(data):
                raise CorruptRecordError(f"record header value length {hv} runs past the record")
            hval = data[p : p + hv]
            p += hv
        headers.append((hkey, hval))
    return headers, p
