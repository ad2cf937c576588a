"""Producer end to end against the fake broker (tests/unit/test_client_fakebroker.py)."""

from __future__ import annotations

import time

import pytest
from test_client_fakebroker import FakeCluster, wait_for

from kafkalab.client import Producer
from kafkalab.errors import KafkaLabError
from kafkalab.protocol.errors import ErrorCode, KafkaError
from kafkalab.records import decode_batch, parse_header

pytestmark = pytest.mark.timeout(30)


class Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[str, dict]] = []

    def publish(self, kind: str, row: dict) -> None:
        self.rows.append((kind, row))


@pytest.fixture
def cluster():
    fc = FakeCluster((1, 2), {"t": 2})
    try:
        yield fc
    finally:
        fc.close()


@pytest.fixture
def make_producer(cluster):
    made: list[Producer] = []

    def make(config: dict | None = None, rng=None, **ctx_kw) -> Producer:
        p = Producer(config or {}, cluster.context(f"client-{len(made) + 1}", **ctx_kw), rng=rng)
        made.append(p)
        return p

    try:
        yield make
    finally:
        for p in made:
            p.close(timeout=1)


def stored(cluster: FakeCluster, tp: tuple[str, int]) -> list:
    return [r for _, b in cluster.logs[tp] for r in decode_batch(b).records]


def test_produce_and_read_back_with_delivery_reports(cluster, make_producer):
    p = make_producer({"linger.ms": 20})
    reports = []
    for i in range(50):
        p.produce("t", value=f"v{i}", key="k", partition=i % 2, headers={"n": str(i)},
                  on_delivery=lambda err, msg: reports.append((err, msg)))
    assert len(p) == 50
    assert p.flush(10) == 0 and len(p) == 0
    assert len(reports) == 50 and all(err is None for err, _ in reports)
    by_offset = {(m.partition(), m.offset()): m.value() for _, m in reports}
    for part in (0, 1):
        records = stored(cluster, ("t", part))
        assert [r.value for r in records] == [f"v{i}".encode() for i in range(part, 50, 2)]
        assert {(part, r.offset): r.value for r in records} == {k: v for k, v in by_offset.items() if k[0] == part}
        assert records[0].key == b"k" and records[0].headers == [("n", str(part).encode())]
    assert all(m.latency() is not None and m.latency() >= 0 for _, m in reports)


def test_idempotent_producer_sends_producer_id_and_sequences(cluster, make_producer):
    p = make_producer({"linger.ms": 0})
    for _ in range(3):
        p.produce("t", value=b"x", partition=0)
        p.flush(10)
    headers = [parse_header(b) for _, b in cluster.logs[("t", 0)]]
    assert {h.producer_id for h in headers} == {cluster.next_pid}
    assert [h.base_sequence for h in headers] == [0, 1, 2]


def test_retry_after_leader_moves(cluster, make_producer):
    p = make_producer({"linger.ms": 0, "retry.backoff.ms": 10})
    p.produce("t", value=b"before", partition=0)
    assert p.flush(10) == 0
    with cluster.lock:
        cluster.leaders[("t", 0)] = 2  # broker 1 now answers NOT_LEADER_OR_FOLLOWER
    errors = []
    p.produce("t", value=b"after", partition=0, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(10) == 0 and errors == [None]
    produced_to = [(b, body) for b, api, body in cluster.requests if api == "Produce"]
    assert [b for b, _ in produced_to] [-2:] == [1, 2]  # refused by 1, then sent to 2
    assert [r.value for r in stored(cluster, ("t", 0))] == [b"before", b"after"]


def test_retriable_error_is_retried_and_fatal_error_reported(cluster, make_producer):
    p = make_producer({"linger.ms": 0, "retry.backoff.ms": 10})
    cluster.produce_errors[("t", 0)].extend([ErrorCode.not_enough_replicas, ErrorCode.not_enough_replicas])
    got = []
    p.produce("t", value=b"once", partition=0, on_delivery=lambda err, msg: got.append((err, msg.offset())))
    assert p.flush(10) == 0 and got == [(None, 0)]
    assert [r.value for r in stored(cluster, ("t", 0))] == [b"once"]
    cluster.produce_errors[("t", 1)].append(ErrorCode.invalid_record)
    p.produce("t", value=b"bad", partition=1, on_delivery=lambda err, msg: got.append((err, msg.offset())))
    p.flush(10)
    err, offset = got[-1]
    assert isinstance(err, KafkaError) and err.code == ErrorCode.invalid_record and offset == -1


def test_retries_that_run_out_of_delivery_timeout_report_a_timeout(cluster, make_producer):
    """Whether the batch was queued for its next try or in flight when delivery.timeout.ms ran
    out, the report is a timeout naming the last error, never the last retriable error alone."""
    p = make_producer({"linger.ms": 0, "retry.backoff.ms": 10, "request.timeout.ms": 250,
                       "delivery.timeout.ms": 300})
    cluster.produce_delay_s = 0.05   # most of each try is spent in flight
    cluster.produce_errors[("t", 0)].extend([ErrorCode.not_enough_replicas] * 10_000)
    got = []
    for i in range(5):
        p.produce("t", value=b"x%d" % i, partition=0, on_delivery=lambda err, msg: got.append(err))
        p.flush(10)
    assert [e.code for e in got] == [ErrorCode.request_timed_out] * 5, [str(e) for e in got]
    assert all("delivery.timeout.ms=300" in str(e) for e in got)
    assert any("last error: NOT_ENOUGH_REPLICAS" in str(e) for e in got)   # the in-flight case
    assert stored(cluster, ("t", 0)) == []


def test_acks_zero_completes_without_offsets(cluster, make_producer):
    p = make_producer({"acks": 0, "linger.ms": 0})
    got = []
    for _ in range(5):
        p.produce("t", value=b"fire", partition=1, on_delivery=lambda err, msg: got.append((err, msg.offset())))
    assert p.flush(10) == 0
    assert got == [(None, -1)] * 5
    wait_for(lambda: len(stored(cluster, ("t", 1))) == 5, what="acks=0 records to land")


def test_buffer_full_blocks_for_max_block_ms_then_raises(cluster, make_producer):
    p = make_producer({"buffer.memory": 2000, "batch.size": 1000, "max.block.ms": 300,
                       "linger.ms": 0})
    p.produce("t", value=b"warm-up", partition=1)  # metadata and producer id first
    assert p.flush(10) == 0
    cluster.faults.cut("client-1", "broker-1")  # nothing completes, so memory is never freed
    p.produce("t", value=b"x" * 900, partition=0)
    p.produce("t", value=b"x" * 900, partition=0)
    start = time.monotonic()
    with pytest.raises(BufferError, match="buffer.memory"):
        p.produce("t", value=b"x" * 900, partition=0)
    assert 0.25 <= time.monotonic() - start < 5


def test_unknown_topic_and_bad_partition_are_clear_errors(cluster, make_producer):
    p = make_producer({"retry.backoff.ms": 10})
    with pytest.raises(KafkaError, match="create it first"):
        p.produce("nope", value=b"x")
    with pytest.raises(ValueError, match="has 2 partitions"):
        p.produce("t", value=b"x", partition=5)
    with pytest.raises(TypeError, match="bytes or str"):
        p.produce("t", value=12)


def test_null_keys_stick_to_one_partition_per_batch(cluster, make_producer):
    p = make_producer({"linger.ms": 1000, "batch.size": 100_000})
    reports = []
    for _ in range(20):
        p.produce("t", value=b"v", on_delivery=lambda err, msg: reports.append(msg.partition()))
    p.flush(10)
    assert len(set(reports)) == 1


def test_fast_path_places_records_as_the_partitioner_does(make_producer, cluster):
    """produce() without a callback takes the fast path (one append); with a callback, the
    general one. Both keep KIP-794's sticky rule (adaptive weights off): records go to one
    partition in runs and switch after batch.size bytes, nothing is lost, order is kept. Where
    a run ends depends on when the sender drains a full batch (timing), so the two producers
    are held to the rule, not to each other's exact placement."""
    import random

    cluster.create_topic("u", 3)
    cluster.create_topic("w", 3)
    values = [f"{i:05d}".encode().ljust(60 + i % 50, b".") for i in range(400)]
    placed: dict[bytes, int] = {}
    cfg = {"linger.ms": 5000, "batch.size": 1000, "partitioner.adaptive.partitioning.enable": False}
    general = make_producer(cfg, rng=random.Random(7))
    fast = make_producer(cfg, rng=random.Random(7))
    for v in values:
        general.produce("u", value=v, on_delivery=lambda err, msg: placed.__setitem__(msg.value(), msg.partition()))
        fast.produce("w", value=v)
    assert general.flush(10) == 0 and fast.flush(10) == 0
    by_fast = {r.value: p for p in range(3) for r in stored(cluster, ("w", p))}
    for topic, where in (("w", by_fast), ("u", placed)):
        assert sorted(where) == sorted(values)  # every record once
        for p in range(3):  # order kept within a partition
            assert [r.value for r in stored(cluster, (topic, p))] == [v for v in values if where[v] == p]
        runs: list[list[bytes]] = []
        for v in values:
            if runs and where[runs[-1][-1]] == where[v]:
                runs[-1].append(v)
            else:
                runs.append([v])
        assert len(runs) > 3  # it switches ...
        # ... but only once batch.size bytes went to the run's partition (counted with each
        # record's overhead: its values alone are somewhat less, so half is a safe floor)
        assert all(sum(map(len, run)) >= cfg["batch.size"] // 2 for run in runs[:-1]), [len(r) for r in runs]
    fast.close()
    with pytest.raises(KafkaLabError, match="closed producer"):
        fast.produce("w", value=b"late")


def test_fast_path_for_keys_writes_what_the_general_path_writes(make_producer, cluster):
    """Keyed records without a callback: murmur2 picks the partition, the record joins its
    open batch; the logs hold the same keys, values and order as through the general path."""
    cluster.create_topic("u", 3)
    cluster.create_topic("w", 3)
    records = [(f"user-{i % 7}".encode(), f"{i:05d}".encode()) for i in range(300)]
    general = make_producer({"linger.ms": 5000, "batch.size": 2000})
    fast = make_producer({"linger.ms": 5000, "batch.size": 2000})
    for k, v in records:
        general.produce("u", value=v, key=k, on_delivery=lambda err, msg: None)
        fast.produce("w", value=v, key=k)
    assert general.flush(10) == 0 and fast.flush(10) == 0
    for p in range(3):
        want = [(r.key, r.value) for r in stored(cluster, ("u", p))]
        assert [(r.key, r.value) for r in stored(cluster, ("w", p))] == want
    assert sum(len(stored(cluster, ("w", p))) for p in range(3)) == len(records)


def test_fast_path_counts_its_records_and_keeps_order_with_keyed_ones(cluster, make_producer):
    """Null-key records join the sticky partition's open batch with nothing counted per record;
    keyed records into that batch and a metadata change end that (the counts are settled):
    len() counts every record all along, and each partition keeps them in produced order."""
    import random

    cluster.create_topic("one", 1)
    p = make_producer({"linger.ms": 5000, "batch.size": 3000})
    rng = random.Random(5)
    sent = []
    for i in range(600):
        key = b"k%d" % i if rng.random() < 0.1 else None
        value = b"%05d" % i * rng.choice((1, 1, 4))
        p.produce("one", value=value, key=key)
        sent.append((key, value))
        if i == 300:
            cluster.create_topic("one", 2)  # the topic grows: the producer's metadata changes
            assert p.list_topics("one").topics["one"].partitions.keys() == {0, 1}
        assert len(p) == i + 1
    assert p.flush(10) == 0 and len(p) == 0
    got = {part: [(r.key, r.value) for r in stored(cluster, ("one", part))] for part in (0, 1)}
    assert sorted(got[0] + got[1], key=repr) == sorted(sent, key=repr)
    for part in (0, 1):
        assert got[part] == [r for r in sent if r in got[part]]
    assert got[1]  # records went to the new partition too


def test_a_topic_gone_from_the_metadata_stops_the_fast_path(cluster, make_producer):
    """Records of a topic the metadata no longer has get produce()'s clear error, not a place in
    the batch the fast path was filling."""
    cluster.create_topic("gone", 1)
    p = make_producer({"linger.ms": 5000, "retry.backoff.ms": 10})
    for _ in range(10):
        p.produce("gone", value=b"x")
    with cluster.lock:
        del cluster.leaders[("gone", 0)]
    p.list_topics("gone")
    with pytest.raises(KafkaError, match="create it first"):
        p.produce("gone", value=b"x")
    assert len(p) == 10


def test_metrics_are_published(cluster, make_producer):
    rows = Rows()
    p = make_producer({"linger.ms": 0}, metrics=rows)
    p.produce("t", value=b"m", partition=0)
    p.flush(10)
    row = wait_for(lambda: [r for k, r in rows.rows if k == "client" and r["records_sent"] == 1],
                   what="a client metrics row")[0]
    assert row["client_type"] == "producer" and row["node"] == "client-1" and row["bytes_sent"] > 0


def test_list_topics(cluster, make_producer):
    md = make_producer().list_topics(timeout=5)
    assert set(md.brokers) == {1, 2} and sorted(md.topics["t"].partitions) == [0, 1]
    assert md.topics["t"].partitions[1].leader == 2


def test_a_fatal_sequence_error_gets_a_new_producer_id_and_restarts_sequences(cluster, make_producer):
    """Like Kafka's idempotent producer since KIP-360: the failed batch is reported, and the
    producer carries on with a new producer id whose sequences start at 0."""
    p = make_producer({"linger.ms": 0})
    p.produce("t", value=b"a", partition=0)
    assert p.flush(10) == 0
    first_pid = cluster.next_pid
    cluster.produce_errors[("t", 0)].append(ErrorCode.unknown_producer_id)
    got = []
    p.produce("t", value=b"b", partition=0, on_delivery=lambda err, msg: got.append(err))
    assert p.flush(10) == 0
    assert got and got[0] is not None and got[0].code == ErrorCode.unknown_producer_id
    p.produce("t", value=b"c", partition=0)
    assert p.flush(10) == 0
    last = parse_header(cluster.logs[("t", 0)][-1][1])
    assert last.producer_id == cluster.next_pid != first_pid and last.base_sequence == 0
