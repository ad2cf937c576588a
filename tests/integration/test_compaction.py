"""Log compaction on a live broker: the cleaner stops at the first uncleanable offset.

Kafka's cleaner never cleans at or above the last stable offset, so the records of an open
transaction, and the values they will supersede, stay until the transaction completes."""

from __future__ import annotations

import time

import pytest

from kafkalab import Cluster, TopicPartition
from kafkalab.cluster import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = "compacted"
W = "witness"
CONFIG = {"cleanup.policy": "compact", "segment.bytes": 200, "min.cleanable.dirty.ratio": 0.01}


def read_uncommitted(cluster: Cluster) -> list[tuple[str, str]]:
    """(key, value) of every record in the log, up to the high watermark."""
    c = cluster.consumer({"isolation.level": "read_uncommitted", "auto.offset.reset": "earliest"})
    try:
        start, end = c.get_watermark_offsets(TopicPartition(T, 0), timeout=10)
        c.assign([TopicPartition(T, 0, start)])
        rows: list[tuple[int, str, str]] = []
        deadline = time.monotonic() + 10
        while end > start and (not rows or rows[-1][0] < end - 1):
            assert time.monotonic() < deadline, f"read {len(rows)} records, never offset {end - 1}"
            rows += [(m.offset(), m.key().decode(), m.value().decode())
                     for m in c.consume(100, timeout=0.5) if m.error() is None]
        return [(k, v) for _, k, v in rows]
    finally:
        c.close()


def passes(cluster: Cluster, topic: str) -> int:
    events = cluster.metrics.events()
    return 0 if events.empty else int(((events.event == "compaction") & (events.topic == topic)).sum())


def test_an_open_transaction_holds_back_the_cleaner():
    cluster = Cluster(brokers=1)
    try:
        cluster.create_topic(T, partitions=1, replication_factor=1, config=CONFIG)
        cluster.create_topic(W, partitions=1, replication_factor=1, config=CONFIG)
        plain = cluster.producer({"acks": "all", "linger.ms": 0})
        txn = cluster.producer({"transactional.id": "holder", "linger.ms": 0})

        def put(producer, key: str, value: str, topic: str = T) -> None:   # one batch each: segments roll often
            producer.produce(topic, key=key, value=value)
            assert producer.flush(10) == 0

        for i in range(4):
            put(plain, "k", f"p{i}")
        txn.init_transactions(20)
        txn.begin_transaction()
        for i in range(4):
            put(txn, "k", f"t{i}")                          # newer values of k, not yet committed
        for i in range(6):
            put(plain, f"pad-{i}", "x")                     # close the segments holding them
        # A witness: the cleaner visits every partition each round, T (created first) before W.
        # A pass over W's segments, written after the pads, means T was visited with them in place.
        for i in range(3):
            put(plain, f"w{i}", "x", W)
        wait_until(lambda: passes(cluster, W) > 0, 20, "a cleaning round after the pads")
        values_of_k = [v for k, v in read_uncommitted(cluster) if k == "k"]
        # p3 is the latest k below the LSO; the open transaction's records are neither cleaned nor
        # used to supersede anything (without the bound, p0..p3 and t0..t2 would be gone)
        assert values_of_k == ["p3", "t0", "t1", "t2", "t3"]

        txn.commit_transaction(20)
        for i in range(6, 10):
            put(plain, f"pad-{i}", "x")                     # close the segment holding the marker too
        wait_until(lambda: [v for k, v in read_uncommitted(cluster) if k == "k"] == ["t3"], 20,
                   "the pass after the commit to leave only t3")
    finally:
        cluster.close()


def test_real_clients_read_a_tombstone_batch_the_cleaner_stamped():
    """KIP-534: the stamped batch carries its horizon in base_timestamp (attributes bit 6);
    librdkafka and kafka-python must still see the tombstone's own timestamp."""
    import io
    import os
    import uuid

    from confluent_kafka import Consumer
    from confluent_kafka import TopicPartition as CTopicPartition
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    from kafkalab.tools.dump_log import dump_log

    cluster = Cluster(brokers=1)
    try:
        cluster.create_topic(T, partitions=1, replication_factor=1, config=CONFIG)
        producer = cluster.producer({"acks": "all", "linger.ms": 0})
        written_ts = 1_700_000_000_000
        for i, (key, value) in enumerate([("a", "1"), ("a", None)] + [(f"pad-{i}", "x") for i in range(6)]):
            producer.produce(T, key=key, value=value, timestamp=written_ts + i)
            assert producer.flush(10) == 0
        part_dir = os.path.join(cluster.data_dir, "broker-1", f"{T}-0")

        def stamped() -> bool:
            out = io.StringIO()
            for name in sorted(os.listdir(part_dir)):
                if name.endswith(".log"):
                    dump_log(os.path.join(part_dir, name), out=out)
            return "deleteHorizonMs" in out.getvalue()

        wait_until(stamped, 20, "the cleaner to stamp the tombstone's batch")
        c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            c.assign([CTopicPartition(T, 0, 0)])
            got: list = []
            deadline = time.monotonic() + 20
            while not any(m.key() == b"a" for m in got) and time.monotonic() < deadline:
                got += [m for m in c.consume(100, 0.5) if m.error() is None]
        finally:
            c.close()
        assert [(m.offset(), m.value(), m.timestamp()[1]) for m in got if m.key() == b"a"] == \
            [(1, None, written_ts + 1)]
        k = KafkaConsumer(bootstrap_servers=cluster.bootstrap_servers, enable_auto_commit=False,
                          auto_offset_reset="earliest", consumer_timeout_ms=5000)
        try:
            k.assign([KTopicPartition(T, 0)])
            k.seek(KTopicPartition(T, 0), 0)
            rows = [r for r in k if r.key == b"a"][:1]
        finally:
            k.close()
        assert [(r.offset, r.value, r.timestamp) for r in rows] == [(1, None, written_ts + 1)]
    finally:
        cluster.close()
