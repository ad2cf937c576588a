"""Consumer end to end against the fake broker (tests/unit/test_client_fakebroker.py)."""

from __future__ import annotations

import pytest
from test_client_fakebroker import FakeCluster

from kafkalab.client import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from kafkalab.protocol.errors import ErrorCode, KafkaError
from kafkalab.records import encode_batch

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def cluster():
    fc = FakeCluster((1, 2), {"t": 2})
    # Partition 0: offsets 0-9 in two batches of five, with timestamps 1000 + offset.
    for base in (0, 5):
        fc.logs[("t", 0)].append((base, encode_batch(
            [(b"k", b"v%d" % (base + i), [("h", b"x")], 1000 + base + i) for i in range(5)],
            base_offset=base)))
    try:
        yield fc
    finally:
        fc.close()


@pytest.fixture
def make_consumer(cluster):
    made: list[Consumer] = []

    def make(config: dict | None = None) -> Consumer:
        c = Consumer({"fetch.max.wait.ms": 50, **(config or {})}, cluster.context(f"c{len(made) + 1}"))
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.close()


def offsets(msgs) -> list[int]:
    return [m.offset() for m in msgs]


def test_fetch_from_offset_mid_batch(make_consumer):
    c = make_consumer()
    c.assign([TopicPartition("t", 0, 3)])
    msgs = c.consume(7, timeout=5)
    assert offsets(msgs) == list(range(3, 10))
    m = msgs[0]
    assert (m.key(), m.value(), m.headers(), m.timestamp()) == (b"k", b"v3", [("h", b"x")], (1, 1003))
    assert c.position([TopicPartition("t", 0)])[0].offset == 10
    assert c.consume(1, timeout=0.2) == []


def test_beginning_end_and_auto_offset_reset(cluster, make_consumer):
    c = make_consumer({"auto.offset.reset": "earliest"})
    c.assign([TopicPartition("t", 0)])
    assert offsets(c.consume(10, timeout=5)) == list(range(10))
    c.seek(TopicPartition("t", 0, OFFSET_END))
    assert c.poll(0.3) is None
    c.seek(TopicPartition("t", 0, OFFSET_BEGINNING))
    assert c.poll(5).offset() == 0
    latest = make_consumer()  # auto.offset.reset=latest (Kafka's default)
    latest.assign([TopicPartition("t", 0)])
    assert latest.poll(0.3) is None
    cluster.logs[("t", 0)].append((10, encode_batch([(None, b"new", [], 5)], base_offset=10)))
    assert latest.poll(5).value() == b"new"


def test_offset_out_of_range_applies_reset(make_consumer):
    c = make_consumer({"auto.offset.reset": "earliest"})
    c.assign([TopicPartition("t", 0, 500)])
    assert c.poll(5).offset() == 0
    strict = make_consumer({"auto.offset.reset": "none"})
    strict.assign([TopicPartition("t", 0, 500)])
    m = strict.poll(5)
    assert m.error() is not None and m.error().code == ErrorCode.offset_out_of_range
    assert "auto.offset.reset" in str(m.error())
    strict.seek(TopicPartition("t", 0, 8))
    assert strict.poll(5).offset() == 8


def test_watermarks_and_offsets_for_times(make_consumer):
    c = make_consumer()
    tp = TopicPartition("t", 0)
    assert c.get_watermark_offsets(tp, timeout=5) == (0, 10)
    (found,) = c.offsets_for_times([TopicPartition("t", 0, 1006)], timeout=5)
    assert found.offset == 6
    c.assign([TopicPartition("t", 0, 0)])
    c.consume(10, timeout=5)
    assert c.get_watermark_offsets(tp, cached=True) == (0, 10)


def test_pause_stops_and_resume_restarts_fetching(make_consumer):
    c = make_consumer()
    tp = TopicPartition("t", 0, 0)
    c.assign([tp])
    c.pause([tp])
    assert c.consume(1, timeout=0.3) == []
    c.resume([tp])
    assert offsets(c.consume(10, timeout=5)) == list(range(10))


def test_not_leader_refreshes_metadata_and_moves_on(cluster, make_consumer):
    c = make_consumer({"retry.backoff.ms": 10})
    c.assign([TopicPartition("t", 0, 0)])
    assert c.poll(5).offset() == 0
    with cluster.lock:
        cluster.leaders[("t", 0)] = 2
    c.seek(TopicPartition("t", 0, 4))
    assert c.poll(5).offset() == 4
    assert any(b == 2 and api == "Fetch" for b, api, _ in cluster.requests)


def test_group_methods_without_group_id_name_the_fix(make_consumer):
    c = make_consumer()
    with pytest.raises(ValueError, match="group.id"):
        c.subscribe(["t"])
    with pytest.raises(ValueError, match="group.id"):
        c.commit()
    with pytest.raises(KafkaError, match="not assigned"):
        c.seek(TopicPartition("t", 1, 0))


def test_metadata_skips_a_dead_bootstrap_broker(cluster):
    # A broker in the bootstrap list that nobody listens on (killed): every metadata call still
    # succeeds, on another broker, as a Kafka client moves on to the next bootstrap address.
    import socket

    from kafkalab.client.context import ClientContext
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    ctx = cluster.context("c-dead")
    endpoints = {**ctx.brokers, 3: dead}
    c = Consumer({}, ClientContext("c-dead", endpoints, cluster.faults, None))
    try:
        for _ in range(4):  # the bootstrap turn passes the dead broker at least once
            assert "t" in c.list_topics(timeout=5).topics
            assert c.get_watermark_offsets(TopicPartition("t", 0), timeout=5) == (0, 10)
    finally:
        c.close()


def test_position_and_commit_skip_a_trailing_transaction_marker():
    # Offsets 0-1: a committed transaction's records; offset 2: its COMMIT marker. The
    # application never sees the marker, but its position (and so its commit and lag) moves
    # past it, as Kafka's consumer does.
    from kafkalab.records.control import encode_control_batch

    fc = FakeCluster((1,), {"tx": 1})
    try:
        fc.logs[("tx", 0)].append((0, encode_batch(
            [(None, b"a", None, 1000), (None, b"b", None, 1001)], base_offset=0, producer_id=7,
            producer_epoch=0, base_sequence=0, transactional=True)))
        fc.logs[("tx", 0)].append((2, encode_control_batch(
            "commit", base_offset=2, producer_id=7, producer_epoch=0, coordinator_epoch=0,
            timestamp_ms=1002)))
        c = Consumer({"fetch.max.wait.ms": 50}, fc.context("c-tx"))
        try:
            c.assign([TopicPartition("tx", 0, 0)])
            got = []
            while len(got) < 2:
                got += c.consume(10, timeout=1.0)
            assert [m.value() for m in got] == [b"a", b"b"]
            assert c.position([TopicPartition("tx", 0)])[0].offset == 3
        finally:
            c.close()
    finally:
        fc.close()
