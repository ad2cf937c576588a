"""Control batches (transaction markers), checked byte by byte."""

from __future__ import annotations

import struct

import crc32c
import pytest
from kafka.record.default_records import DefaultRecordBatch

from kafkalab.errors import CorruptRecordError
from kafkalab.records import (
    Record,
    decode_batch,
    encode_control_batch,
    parse_control_record,
    validate_batch,
)
from kafkalab.records.header import CONTROL_BIT, TRANSACTIONAL_BIT


@pytest.mark.parametrize(("kind", "type_code"), [("abort", 0), ("commit", 1)])
def test_control_batch_layout_byte_by_byte(kind, type_code):
    buf = encode_control_batch(
        kind, producer_id=0x0102030405, producer_epoch=7, coordinator_epoch=0x0A0B0C0D,
        timestamp_ms=1_700_000_000_123, base_offset=42, partition_leader_epoch=3,
    )
    key = struct.pack(">hh", 0, type_code)
    value = struct.pack(">hi", 0, 0x0A0B0C0D)
    # one record: length, attributes 0, ts delta 0, offset delta 0, key len 4 (zig-zag 8), key,
    # value len 6 (zig-zag 12), value, 0 headers
    body = b"\x00\x00\x00" + b"\x08" + key + b"\x0c" + value + b"\x00"
    record = bytes([len(body) * 2]) + body
    after_crc = struct.pack(
        ">hiqqqhii", CONTROL_BIT | TRANSACTIONAL_BIT, 0, 1_700_000_000_123, 1_700_000_000_123,
        0x0102030405, 7, -1, 1,
    ) + record
    want = struct.pack(">qiibI", 42, 49 + len(record), 3, 2, crc32c.crc32c(after_crc)) + after_crc
    assert buf == want
    h = validate_batch(buf)
    assert h.is_control and h.is_transactional
    assert parse_control_record(decode_batch(buf).records[0]) == (kind, 0x0A0B0C0D)


def test_kafka_python_reads_our_markers():
    for kind in ("abort", "commit"):
        buf = encode_control_batch(kind, producer_id=5, producer_epoch=1, coordinator_epoch=2, timestamp_ms=10)
        kb = DefaultRecordBatch(buf)
        assert kb.validate_crc() and kb.is_control_batch
        (rec,) = list(kb)
        assert rec.type == (1 if kind == "commit" else 0)


def test_bad_markers_are_rejected_with_the_reason():
    with pytest.raises(ValueError, match="'commit' or 'abort'"):
        encode_control_batch("rollback", producer_id=1, producer_epoch=0, coordinator_epoch=0, timestamp_ms=0)
    with pytest.raises(ValueError, match="producer_id"):
        encode_control_batch("commit", producer_id=-1, producer_epoch=0, coordinator_epoch=0, timestamp_ms=0)
    with pytest.raises(CorruptRecordError, match="type 9"):
        parse_control_record(Record(5, 0, struct.pack(">hh", 0, 9), struct.pack(">hi", 0, 1)))
    with pytest.raises(CorruptRecordError, match="key version 1"):
        parse_control_record(Record(5, 0, struct.pack(">hh", 1, 0), struct.pack(">hi", 0, 1)))
    with pytest.raises(CorruptRecordError, match="key of null bytes"):
        parse_control_record(Record(5, 0, None, b""))
    with pytest.raises(CorruptRecordError, match="value of 2 bytes"):
        parse_control_record(Record(5, 0, struct.pack(">hh", 0, 1), b"\x00\x00"))
