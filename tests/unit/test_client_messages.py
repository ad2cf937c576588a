"""Message/TopicPartition accessors and turning fetched bytes into Messages (read_committed)."""

from __future__ import annotations

from kafkalab.client import (
    OFFSET_INVALID,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Message,
    TopicPartition,
)
from kafkalab.client.fetched import filter_committed, messages_from_fetch
from kafkalab.records import BatchBuilder, decode_batch, encode_batch, encode_control_batch


def batch(base: int, values: list[bytes], pid: int = -1, txn: bool = False, ts: int = 1000) -> bytes:
    return encode_batch([(None, v, [], ts + i) for i, v in enumerate(values)], base_offset=base,
                        producer_id=pid, producer_epoch=0 if pid >= 0 else -1, transactional=txn)


def marker(kind: str, pid: int, offset: int) -> bytes:
    return encode_control_batch(kind, producer_id=pid, producer_epoch=0, coordinator_epoch=0,
                                timestamp_ms=5, base_offset=offset)


def test_message_accessors():
    m = Message("t", 2, 17, b"k", b"value", [("h", b"1")], 1234, TIMESTAMP_CREATE_TIME)
    assert (m.topic(), m.partition(), m.offset(), m.key(), m.value()) == ("t", 2, 17, b"k", b"value")
    assert m.headers() == [("h", b"1")] and m.timestamp() == (TIMESTAMP_CREATE_TIME, 1234)
    assert m.error() is None and len(m) == 5 and m.latency() is None
    assert Message("t").headers() is None and len(Message("t")) == 0


def test_topic_partition_defaults_and_hashing():
    tp = TopicPartition("t", 1)
    assert tp.offset == OFFSET_INVALID
    assert TopicPartition("t", 1, 5) == tp and {tp: 1}[TopicPartition("t", 1, 9)] == 1


def test_records_below_fetch_offset_are_skipped():
    data = batch(10, [b"a", b"b", b"c", b"d"])
    msgs, nxt = messages_from_fetch("t", 0, data, 12)
    assert [m.offset() for m in msgs] == [12, 13] and nxt == 14
    assert [m.value() for m in msgs] == [b"c", b"d"]


def test_partial_trailing_batch_is_left_for_next_fetch():
    first, second = batch(0, [b"a"]), batch(1, [b"b"])
    msgs, nxt = messages_from_fetch("t", 0, first + second[:20], 0)
    assert [m.offset() for m in msgs] == [0] and nxt == 1


def test_read_committed_drops_aborted_and_markers():
    data = (batch(0, [b"plain"]) + batch(1, [b"t1", b"t2"], pid=7, txn=True) + marker("abort", 7, 3)
            + batch(4, [b"c1"], pid=8, txn=True) + marker("commit", 8, 5)
            + batch(6, [b"t3"], pid=7, txn=True) + marker("commit", 7, 7))
    msgs, nxt = messages_from_fetch("t", 0, data, 0, read_committed=True, aborted_transactions=[(7, 1)])
    assert [m.value() for m in msgs] == [b"plain", b"c1", b"t3"] and nxt == 8
    # read_uncommitted shows every data record but never the markers.
    msgs, _ = messages_from_fetch("t", 0, data, 0)
    assert [m.value() for m in msgs] == [b"plain", b"t1", b"t2", b"c1", b"t3"]


def test_filter_committed_needs_the_aborted_list_to_drop():
    batches = [decode_batch(batch(0, [b"x"], pid=3, txn=True)), decode_batch(marker("abort", 3, 1))]
    assert [b.records[0].value for b in filter_committed(batches, [])] == [b"x"]
    assert list(filter_committed(batches, [(3, 0)])) == []


def test_log_append_time_reports_batch_time():
    b = BatchBuilder(1000)
    b.append(None, b"v", None, 111)
    data = b.build(timestamp_type="LogAppendTime", log_append_time_ms=999)
    (m,), _ = messages_from_fetch("t", 0, data, 0)
    assert m.timestamp() == (TIMESTAMP_LOG_APPEND_TIME, 999)
