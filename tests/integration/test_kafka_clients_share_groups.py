"""librdkafka's ShareConsumer (KIP-932) against the lab cluster: consumers on one partition split
its records, none accepted twice; released and lock-expired records come back."""

from __future__ import annotations

import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _share_consumers(cluster, n: int) -> list:
    from confluent_kafka import ShareConsumer
    out = [ShareConsumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "queue",
                          "share.acknowledgement.mode": "explicit", "max.poll.records": 5})
           for _ in range(n)]
    for c in out:
        c.subscribe(["jobs"])
    return out


@pytest.fixture
def earliest_cluster():
    from kafkalab import Cluster

    # share.auto.offset.reset=earliest: records produced before a consumer's first fetch count
    c = Cluster(brokers=3, config={"share.auto.offset.reset": "earliest"})
    try:
        yield c
    finally:
        c.close()


def test_share_consumers_split_one_partition_and_get_released_and_expired_records_again(earliest_cluster):
    from confluent_kafka import AcknowledgeType, Producer

    cluster = earliest_cluster
    cluster.create_topic("jobs", partitions=1, replication_factor=3)
    consumers = _share_consumers(cluster, 3)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "linger.ms": 0})
    try:
        accepted: dict[int, list[int]] = {i: [] for i in range(3)}
        for n in range(90):
            producer.produce("jobs", value=f"job-{n}".encode())
        producer.flush(10)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and sum(map(len, accepted.values())) < 90:
            for i, c in enumerate(consumers):  # each fetch acquires at most max.poll.records
                for m in c.poll(0.05) or []:
                    assert m.error() is None, m.error()
                    c.acknowledge(m, AcknowledgeType.ACCEPT)
                    accepted[i].append(m.offset())
                if accepted[i]:
                    assert all(v is None for v in c.commit_sync(10).values())
        every = [o for offs in accepted.values() for o in offs]
        assert sorted(every) == list(range(90))  # each record accepted exactly once
        assert sum(1 for offs in accepted.values() if offs) >= 2, accepted  # the partition was shared

        # RELEASE: the record comes back, delivered a second time.
        producer.produce("jobs", value=b"released")
        producer.flush(5)
        first = _poll_one(consumers, lambda m: m.value() == b"released")
        first[0].acknowledge(first[1], AcknowledgeType.RELEASE)
        first[0].commit_sync(10)
        again = _poll_one(consumers, lambda m: m.value() == b"released")
        assert again[1].offset() == first[1].offset() and again[1].delivery_count() == 2
        again[0].acknowledge(again[1], AcknowledgeType.ACCEPT)
        again[0].commit_sync(10)

        # A consumer that holds a record past the lock (2 s in the lab profile) loses it.
        producer.produce("jobs", value=b"slow")
        producer.flush(5)
        slow, msg = _poll_one(consumers, lambda m: m.value() == b"slow")
        others = [c for c in consumers if c is not slow]
        redelivered = _poll_one(others, lambda m: m.value() == b"slow", timeout=15)
        assert redelivered[1].offset() == msg.offset() and redelivered[1].delivery_count() == 2
        redelivered[0].acknowledge(redelivered[1], AcknowledgeType.ACCEPT)
        redelivered[0].commit_sync(10)
        # the slow consumer's late acknowledgement is refused: the record is someone else's now
        slow.acknowledge(msg, AcknowledgeType.ACCEPT)
        result = slow.commit_sync(10)
        assert any(v is not None for v in result.values()), result
    finally:
        for c in consumers:
            c.close()


def _poll_one(consumers, match, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            for m in c.poll(0.1) or []:
                if m.error() is None and match(m):
                    return c, m
    raise AssertionError("no matching record was delivered")


def test_nothing_acknowledged_comes_back_after_the_leader_dies(earliest_cluster):
    from confluent_kafka import AcknowledgeType, Producer

    cluster = earliest_cluster
    cluster.create_topic("jobs", partitions=1, replication_factor=3)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for n in range(40):
        producer.produce("jobs", value=f"job-{n}".encode())
    producer.flush(10)
    workers = _share_consumers(cluster, 2)
    holder = _share_consumers(cluster, 1)[0]
    accepted: list[int] = []
    try:
        def work(until: int, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and len(accepted) < until:
                for c in workers:
                    msgs = [m for m in c.poll(0.1) or [] if m.error() is None]
                    for m in msgs:
                        c.acknowledge(m, AcknowledgeType.ACCEPT)
                    # answered once the share coordinator has written it; a refused
                    # acknowledgement (the leader died first) does not count as accepted
                    if msgs and all(v is None for v in c.commit_sync(10).values()):
                        accepted.extend(m.offset() for m in msgs)

        work(15, 30)
        held = []
        deadline = time.monotonic() + 10
        while not held and time.monotonic() < deadline:
            held = [m.offset() for m in holder.poll(0.2) or [] if m.error() is None]  # never acknowledged
        assert held and not set(held) & set(accepted)
        leader = int(cluster.describe_topic("jobs").iloc[0]["leader"])
        cluster.kill_broker(leader)
        work(40, 60)
        # every record accepted exactly once: the new leader read the acknowledgements back, and
        # the records the holder only acquired were delivered again
        assert sorted(accepted) == list(range(40)), sorted(accepted)
    finally:
        for c in [*workers, holder]:
            c.close()
