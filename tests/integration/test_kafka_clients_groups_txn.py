"""librdkafka (confluent-kafka) against the lab cluster's Kafka listeners: a consumer group with
cooperative-sticky through a member leaving, and transactions read back with read_committed."""

from __future__ import annotations

import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_librdkafka_group_with_cooperative_sticky_through_a_member_leaving(cluster):
    from confluent_kafka import Consumer, Producer

    cluster.create_topic("grp", partitions=6, replication_factor=3)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for i in range(600):
        producer.produce("grp", value=f"v{i}".encode(), key=f"k{i}".encode())
    assert producer.flush(20) == 0
    owned: dict[int, set[int]] = {i: set() for i in range(3)}
    revoked: dict[int, list[int]] = {i: [] for i in range(3)}

    def make(i: int) -> Consumer:
        c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "rdk-group",
                      "auto.offset.reset": "earliest", "partition.assignment.strategy": "cooperative-sticky",
                      "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        c.subscribe(["grp"],
                    on_assign=lambda _c, parts: owned[i].update(tp.partition for tp in parts),
                    on_revoke=lambda _c, parts: (owned[i].difference_update(tp.partition for tp in parts),
                                                 revoked[i].extend(tp.partition for tp in parts)))
        return c
    consumers = [make(i) for i in range(3)]
    seen: set[bytes] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for c in consumers:
                m = c.poll(0.05)
                if m is not None and m.error() is None:
                    seen.add(m.value())
            if len(seen) == 600 and all(len(owned[i]) == 2 for i in range(3)):
                break
        assert len(seen) == 600
        assert sorted(p for i in range(3) for p in owned[i]) == list(range(6)), owned
        kept = {i: set(owned[i]) for i in range(2)}
        for i in range(2):
            revoked[i].clear()
        consumers.pop().close()  # LeaveGroup: its two partitions move to the others
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(len(owned[i]) for i in range(2)) != 6:
            for c in consumers:
                c.poll(0.05)
        assert sorted(owned[0] | owned[1]) == list(range(6)) and not owned[0] & owned[1]
        # Cooperative: the survivors kept what they had and gave nothing back.
        assert all(kept[i] <= owned[i] and not revoked[i] for i in range(2)), (kept, owned, revoked)
    finally:
        for c in consumers:
            c.close()


def test_librdkafka_transactions_read_committed(cluster):
    from confluent_kafka import Consumer, Producer, TopicPartition

    cluster.create_topic("tx", partitions=2, replication_factor=3, config={"min.insync.replicas": "2"})
    p = Producer({"bootstrap.servers": cluster.bootstrap_servers, "transactional.id": "rdk-tx"})
    p.init_transactions(30)
    for label, n, commit in (("commit", 10, True), ("abort", 10, False), ("commit2", 5, True)):
        p.begin_transaction()
        for i in range(n):
            p.produce("tx", value=f"{label}-{i}".encode(), partition=i % 2)
        if commit:
            p.commit_transaction(30)
        else:
            p.flush(10)
            p.abort_transaction(30)

    def read(level: str, expect: int) -> list[str]:
        c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"r-{level}",
                      "isolation.level": level, "enable.auto.commit": False})
        c.assign([TopicPartition("tx", 0, 0), TopicPartition("tx", 1, 0)])
        values: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(values) < expect:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                values.append(m.value().decode())
        # Nothing more arrives: read a little longer to catch any leak of aborted records.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                values.append(m.value().decode())
        c.close()
        return values

    committed = read("read_committed", 15)
    assert sorted(committed) == sorted([f"commit-{i}" for i in range(10)] + [f"commit2-{i}" for i in range(5)])
    everything = read("read_uncommitted", 25)
    assert len(everything) == 25 and sum(v.startswith("abort-") for v in everything) == 10
