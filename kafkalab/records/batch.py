"""RecordBatch v2: the unit Kafka writes to disk and sends on the wire.

Baseline encoder/decoder (no compression yet). See header.py for the 61-byte header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import crc32c

from kafkalab.errors import CrcMismatchError, InvalidMagicError, TruncatedBatchError
from kafkalab.records.header import (
    CONTROL_BIT,
    CRC_START,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    TRANSACTIONAL_BIT,
    BatchHeader,
    parse_header,
)
from kafkalab.records.varint import read_varint, write_varint

Header = tuple[str, bytes | None]


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


def _encode_record(out: bytearray, offset_delta: int, ts_delta: int, key, value, headers) -> None:
    body = bytearray(b"\x00")  # record attributes: unused, always 0
    write_varint(body, ts_delta)
    write_varint(body, offset_delta)
    if key is None:
        write_varint(body, -1)
    else:
        write_varint(body, len(key))
        body += key
    if value is None:
        write_varint(body, -1)
    else:
        write_varint(body, len(value))
        body += value
    write_varint(body, len(headers))
    for hkey, hval in headers:
        kb = hkey.encode()
        write_varint(body, len(kb))
        body += kb
        if hval is None:
            write_varint(body, -1)
        else:
            write_varint(body, len(hval))
            body += hval
    write_varint(out, len(body))
    out += body


def encode_batch(
    records: list[tuple[bytes | None, bytes | None, list[Header], int]],
    *,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    transactional: bool = False,
    control: bool = False,
) -> bytes:
    """Encode (key, value, headers, timestamp_ms) tuples as one uncompressed batch."""
    if not records:
        raise ValueError("a record batch needs at least one record")
    base_ts = records[0][3]
    max_ts = max(r[3] for r in records)
    body = bytearray()
    for i, (key, value, headers, ts) in enumerate(records):
        _encode_record(body, i, ts - base_ts, key, value, headers)
    attributes = (TRANSACTIONAL_BIT if transactional else 0) | (CONTROL_BIT if control else 0)
    tail = struct.pack(
        ">hiqqqhii",
        attributes,
        len(records) - 1,
        base_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    ) + bytes(body)
    crc = crc32c.crc32c(tail)
    batch_length = HEADER_SIZE - LOG_OVERHEAD + len(body)
    return struct.pack(">qiibI", base_offset, batch_length, partition_leader_epoch, MAGIC, crc) + tail


def decode_batch(buf: bytes | bytearray | memoryview, pos: int = 0, *, verify_crc: bool = True) -> RecordBatch:
    """Decode the batch at `pos`, checking magic, length and CRC."""
    view = memoryview(buf)
    if len(view) - pos < HEADER_SIZE:
        raise TruncatedBatchError(f"need {HEADER_SIZE} header bytes, have {len(view) - pos}", position=pos)
    h = parse_header(view, pos)
    if h.magic != MAGIC:
        raise InvalidMagicError(f"magic {h.magic} is not 2 (only RecordBatch v2 is supported)", position=pos)
    end = pos + h.size
    if end > len(view):
        raise TruncatedBatchError(f"batch of {h.size} bytes runs past the end ({len(view) - pos} left)", position=pos)
    if verify_crc:
        actual = crc32c.crc32c(view[pos + CRC_START : end])
        if actual != h.crc:
            raise CrcMismatchError(f"CRC-32C {actual:#010x} does not match stored {h.crc:#010x}", position=pos)
    records: list[Record] = []
    data = bytes(view[pos + HEADER_SIZE : end])
    p = 0
    for _ in range(h.records_count):
        length, p = read_varint(data, p)
        rec_end = p + length
        p += 1  # attributes
        ts_delta, p = read_varint(data, p)
        off_delta, p = read_varint(data, p)
        klen, p = read_varint(data, p)
        key = None if klen < 0 else data[p : p + klen]
        p += max(klen, 0)
        vlen, p = read_varint(data, p)
        value = None if vlen < 0 else data[p : p + vlen]
        p += max(vlen, 0)
        nh, p = read_varint(data, p)
        headers: list[Header] = []
        for _ in range(nh):
            hk, p = read_varint(data, p)
            hkey = data[p : p + hk].decode()
            p += hk
            hv, p = read_varint(data, p)
            hval = None if hv < 0 else data[p : p + hv]
            p += max(hv, 0)
            headers.append((hkey, hval))
        if p != rec_end:
            raise TruncatedBatchError("record length does not match its fields", position=pos)
        records.append(Record(h.base_offset + off_delta, h.base_timestamp + ts_delta, key, value, headers))
    return RecordBatch(h, records)
