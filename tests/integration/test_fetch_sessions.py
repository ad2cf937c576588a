"""Fetch sessions (KIP-227) with real clients: kafka-python opens sessions and goes incremental,
librdkafka fetches without one (it always sends session 0, epoch -1); both read every record,
kafka-python also across a leader kill."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kafkalab import Cluster
from kafkalab.cluster import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster(brokers=3, name="sessions")
    try:
        yield c
    finally:
        c.close()


def _produce(cluster: Cluster, topic: str, values: range) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all", "linger.ms": 5,
                         "message.timeout.ms": 30000})
    for i in values:
        producer.produce(topic, value=b"%d" % i, partition=i % PARTITIONS)
    assert producer.flush(40) == 0


def _broker_counter(cluster: Cluster, name: str) -> int:
    frame = cluster.metrics.frame("broker")
    if frame.empty or name not in frame:
        return 0
    return int(frame.groupby("broker")[name].max().fillna(0).sum())


def _poll_until(consumer: Any, got: dict[tuple[int, int], int], expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for m in records:
                assert (m.partition, m.offset) not in got, f"offset {m.offset} of partition {m.partition} twice"
                got[(m.partition, m.offset)] = int(m.value)


def test_kafka_python_fetches_incrementally_and_reads_everything_across_a_leader_kill(cluster: Cluster) -> None:
    from kafka import KafkaConsumer, TopicPartition

    topic = f"s-{uuid.uuid4().hex[:8]}"
    cluster.create_topic(topic, partitions=PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"})
    _produce(cluster, topic, range(300))
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        got: dict[tuple[int, int], int] = {}
        _poll_until(consumer, got, 300, 30)
        assert len(got) == 300
        # The consumer keeps fetching with nothing new: its requests go incremental.
        for _ in range(10):
            consumer.poll(timeout_ms=100)
        epochs = [h.next_metadata.epoch for h in consumer._fetcher._session_handlers.values()]
        assert max(epochs) > 1, f"kafka-python's fetch sessions never went incremental (epochs {epochs})"
        # (The brokers' own followers fetch incrementally too: the epochs above are the client's proof.)
        wait_until(lambda: _broker_counter(cluster, "incremental_fetch_requests") > 0, 10,
                   "the brokers to count incremental fetch requests")
        assert _broker_counter(cluster, "fetch_sessions") >= 1

        leader = int(cluster.describe_topic(topic).iloc[0]["leader"])
        cluster.kill_broker(leader)
        _produce(cluster, topic, range(300, 600))
        _poll_until(consumer, got, 600, 60)
    finally:
        consumer.close()
    assert sorted(got.values()) == list(range(600))
    for (partition, _offset), value in got.items():
        assert value % PARTITIONS == partition
    for p in range(PARTITIONS):  # offsets read are contiguous from 0: none skipped
        offsets = sorted(o for (q, o) in got if q == p)
        assert offsets == list(range(len(offsets)))


def test_librdkafka_fetches_without_a_session_and_reads_everything(cluster: Cluster) -> None:
    import confluent_kafka
    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as TP

    topic = f"r-{uuid.uuid4().hex[:8]}"
    cluster.create_topic(topic, partitions=PARTITIONS, replication_factor=2)  # a broker may be down
    _produce(cluster, topic, range(300))
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    got: list[Any] = []
    try:
        consumer.assign([TP(topic, p, 0) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 30
        while len(got) < 300 and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                assert m.error() is None, m.error()
                got.append(m)
    finally:
        consumer.close()
    assert sorted(int(m.value()) for m in got) == list(range(300)), confluent_kafka.libversion()
    for p in range(PARTITIONS):
        assert [m.offset() for m in got if m.partition() == p] == list(range(100))
