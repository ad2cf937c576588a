"""RecordAccumulator with an injected clock: batching, linger, memory, retries, expiry."""

from __future__ import annotations

from kafkalab.client.accumulator import (
    APPENDED,
    APPENDED_WAKE,
    NEW_BATCH_NEEDED,
    NO_MEMORY,
    RecordAccumulator,
)
from kafkalab.records import decode_batch

LEADER = {("t", 0): 1, ("t", 1): 2}


def leader(topic: str, partition: int) -> int | None:
    return LEADER.get((topic, partition))


def acc(**kw) -> RecordAccumulator:
    args = dict(batch_size=1000, linger_ms=5, buffer_memory=100_000, delivery_timeout_ms=1000,
                retry_backoff_ms=100)
    args.update(kw)
    return RecordAccumulator(**args)


def test_records_wait_for_linger_then_become_ready():
    a = acc()
    assert a.try_append("t", 0, b"k", b"v", None, 0, None, now_ms=0.0) == APPENDED_WAKE
    assert a.try_append("t", 0, b"k", b"v", None, 0, None, now_ms=1.0) == APPENDED
    check = a.ready(2.0, leader)
    assert check.ready_nodes == set() and check.next_ready_in_ms == 3.0
    assert a.ready(5.0, leader).ready_nodes == {1}
    drained = a.drain({1}, leader, 5.0)
    assert [b.record_count for b in drained[1]] == [2]
    assert a.stats.linger_waited_ms == 5.0


def test_a_full_batch_is_ready_before_linger():
    a = acc(linger_ms=10_000)
    n = 0
    while a.try_append("t", 0, None, b"x" * 100, None, 0, None, 0.0) != APPENDED_WAKE or n == 0:
        n += 1
    # The record that did not fit opened a second batch: the first is full, so ready now.
    assert len(a.batches[("t", 0)]) == 2
    assert a.ready(0.0, leader).ready_nodes == {1}
    first = a.drain({1}, leader, 0.0)[1][0]
    assert 900 < first.size <= 1000


def test_drain_gives_one_batch_per_partition_per_node():
    a = acc(linger_ms=0)
    a.try_append("t", 0, None, b"a", None, 0, None, 0.0)
    a.try_append("t", 1, None, b"b", None, 0, None, 0.0)
    out = a.drain({1, 2}, leader, 0.0)
    assert {n: [b.partition for b in bs] for n, bs in out.items()} == {1: [0], 2: [1]}


def test_buffer_memory_runs_out_then_frees_on_complete():
    a = acc(buffer_memory=2500, linger_ms=0)
    assert a.try_append("t", 0, None, b"x", None, 0, None, 0.0) == APPENDED_WAKE
    assert a.try_append("t", 1, None, b"x", None, 0, None, 0.0) == APPENDED_WAKE
    assert a.try_append("t", 2, None, b"x", None, 0, None, 0.0) == NO_MEMORY
    batch = a.drain({1}, leader, 0.0)[1][0]
    assert a.try_append("t", 2, None, b"x", None, 0, None, 0.0) == NO_MEMORY  # still in flight
    a.complete(batch)
    assert a.try_append("t", 2, None, b"x", None, 0, None, 0.0) == APPENDED_WAKE


def test_abort_on_new_batch_lets_sticky_partitioner_move():
    a = acc()
    assert a.try_append("t", 0, None, b"x", None, 0, None, 0.0, abort_on_new_batch=True) == NEW_BATCH_NEEDED
    assert a.try_append("t", 0, None, b"x", None, 0, None, 0.0) == APPENDED_WAKE
    assert a.try_append("t", 0, None, b"x", None, 0, None, 0.0, abort_on_new_batch=True) == APPENDED


def test_retries_keep_partition_order_and_sequences():
    a = acc(batch_size=100, linger_ms=0)
    for i in range(3):  # three batches: each 60-byte value fills one
        a.try_append("t", 0, None, bytes([i]) * 60, None, 0, None, 0.0)
    sent = []
    for now in (0.0, 1.0, 2.0):
        sent += a.drain({1}, leader, now, producer_id=7)[1]
    assert [b.base_sequence for b in sent] == [0, 1, 2]
    # The first two fail (in reverse order of their answers); the third succeeded.
    a.reenqueue(sent[1], 10.0)
    a.complete(sent[2])
    assert a.ready(200.0, leader).ready_nodes == set()  # batch 0 still in flight: wait
    a.reenqueue(sent[0], 11.0)
    assert a.ready(50.0, leader).ready_nodes == set()  # retry.backoff.ms
    assert a.ready(111.0, leader).ready_nodes == {1}
    again = [a.drain({1}, leader, 111.0, 7)[1][0]]
    assert a.drain({1}, leader, 112.0, 7) == {}  # the next retry waits for the first to return
    a.complete(again[0])
    again += a.drain({1}, leader, 113.0, 7)[1]
    assert [b.base_sequence for b in again] == [0, 1]
    assert [decode_batch(b.builder.build()).records[0].value[0] for b in again] == [0, 1]


def test_batches_expire_after_delivery_timeout_and_free_memory():
    a = acc(delivery_timeout_ms=1000, buffer_memory=1000)
    a.try_append("t", 0, None, b"x", None, 0, "thunk", 0.0)
    assert a.available_memory == 0
    assert a.expire(999.0) == []
    gone = a.expire(1000.0)
    assert [b.thunks for b in gone] == [["thunk"]]
    assert a.available_memory == 1000 and not a.has_unsent()


def test_unknown_leader_is_reported_and_flush_waives_linger():
    a = acc(linger_ms=10_000)
    a.try_append("u", 0, None, b"x", None, 0, None, 0.0)
    a.try_append("t", 0, None, b"x", None, 0, None, 0.0)
    check = a.ready(0.0, leader)
    assert check.unknown_leader_topics == {"u"} and check.ready_nodes == set()
    a.flushing = True
    assert a.ready(0.0, leader).ready_nodes == {1}


def test_stats_count_records_and_bytes_per_batch():
    a = acc(linger_ms=0)
    for _ in range(4):
        a.try_append("t", 0, None, b"x" * 10, None, 0, None, 0.0)
    (b,) = a.drain({1}, leader, 0.0)[1]
    a.record_wire_size(b, b.size // 2)
    s = a.stats.as_dict()
    assert s["records_per_batch"] == 4 and s["bytes_per_batch"] == b.size
    assert s["compression_ratio"] == (b.size // 2) / b.size
