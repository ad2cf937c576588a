"""The leader's checks on a client's batches (Kafka's LogValidator.validateBatch, header only,
plus the CRC) and the append that writes them without copying: one broker, no processes."""

from __future__ import annotations

import datetime
import struct

import crc32c
import pytest
from kio.schema.errors import ErrorCode
from kio.schema.produce.v9 import request as pr
from test_broker_transactions import fetch, setup

from kafkalab.records import decode_batch, encode_batch
from kafkalab.records.header import CRC_START
from kafkalab.records.scan import iter_batches

T = "t"


def _produce(rm, records):
    out = []
    rm.produce(pr.ProduceRequest(acks=1, timeout=datetime.timedelta(seconds=5), topic_data=(
        pr.TopicProduceData(name=T, partition_data=(pr.PartitionProduceData(index=0, records=records),)),)),
        0, out.append)
    return out[0].responses[0].partition_responses[0]


def _patched(batch: bytes, fmt: str, at: int, value: int, *, fix_crc: bool = True) -> bytes:
    buf = bytearray(batch)
    struct.pack_into(fmt, buf, at, value)
    if fix_crc:
        struct.pack_into(">I", buf, 17, crc32c.crc32c(bytes(buf[CRC_START:])))
    return bytes(buf)


def _batch(values, **kw) -> bytes:
    return encode_batch([(None, v, [], 0) for v in values], **kw)


@pytest.mark.parametrize(("why", "fmt", "at", "value"), [
    ("records_count 0", ">i", 57, 0),
    ("records_count above last_offset_delta + 1", ">i", 57, 3),
    ("last_offset_delta -1", ">i", 23, -1),
])
def test_a_count_that_does_not_match_the_offset_range_is_an_invalid_record(tmp_path, why, fmt, at, value) -> None:
    rm = setup(tmp_path)
    resp = _produce(rm, _patched(_batch([b"a", b"b"]), fmt, at, value))
    assert resp.error_code == ErrorCode.invalid_record, why
    assert rm.partitions[(T, 0)].log_end_offset == 0


def test_a_producer_id_without_a_sequence_is_an_invalid_record(tmp_path) -> None:
    rm = setup(tmp_path)
    resp = _produce(rm, _batch([b"a"], producer_id=5, producer_epoch=0, base_sequence=-1))
    assert resp.error_code == ErrorCode.invalid_record
    assert _produce(rm, _batch([b"a"], producer_id=5, producer_epoch=0, base_sequence=0)).error_code == ErrorCode.none


def test_a_damaged_batch_is_a_corrupt_message_and_nothing_is_appended(tmp_path) -> None:
    rm = setup(tmp_path)
    good = _batch([b"x" * 50])
    bad = bytearray(good)
    bad[-3] ^= 0xFF  # a value byte: only the CRC can tell
    resp = _produce(rm, bytes(bad))
    assert resp.error_code == ErrorCode.corrupt_message
    assert rm.partitions[(T, 0)].log_end_offset == 0


def test_a_view_of_several_batches_is_appended_with_offsets_and_epoch_and_left_unchanged(tmp_path) -> None:
    # What the listener hands over: a read-only view into the request frame.
    rm = setup(tmp_path)
    _produce(rm, _batch([b"first"]))
    frame = bytearray(b"\x00" * 7 + _batch([b"a", b"b"]) + _batch([b"c"]) + b"\x00" * 5)
    records = memoryview(frame)[7:-5].toreadonly()
    before = bytes(frame)
    resp = _produce(rm, records)
    assert resp.error_code == ErrorCode.none and resp.base_offset == 1
    assert bytes(frame) == before  # offsets and the leader epoch went into the file, not the input
    stored = fetch(rm, 0).records
    headers = [h for _, h in iter_batches(stored)]
    assert [h.base_offset for h in headers] == [0, 1, 3]
    epoch = rm.partitions[(T, 0)].leader_epoch
    assert {h.partition_leader_epoch for h in headers} == {epoch}
    values = []  # decode_batch checks each CRC: the rewritten prefix lies outside it
    for pos, h in iter_batches(stored):
        values += [r.value for r in decode_batch(bytes(stored[pos:pos + h.size])).records]
    assert values == [b"first", b"a", b"b", b"c"]
