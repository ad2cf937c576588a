"""The lab ShareConsumer (KIP-932) over the lab transport: three consumers split one partition,
a released record comes back, a lock that expires hands the record to someone else."""

from __future__ import annotations

import time

import pytest

from kafkalab.client.message import Message
from kafkalab.client.share_consumer import AcknowledgeType, IllegalStateError
from kafkalab.protocol.errors import ErrorCode

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def earliest_cluster():
    from kafkalab import Cluster

    c = Cluster(brokers=3, config={"share.auto.offset.reset": "earliest"})
    try:
        yield c
    finally:
        c.close()


def _poll_one(consumers, match, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            for m in c.poll(0.1):
                if match(m):
                    return c, m
    raise AssertionError("no matching record was delivered")


def test_lab_share_consumers_split_release_and_expire(earliest_cluster):
    cluster = earliest_cluster
    cluster.create_topic("jobs", partitions=1, replication_factor=3)
    producer = cluster.producer({})
    for n in range(30):
        producer.produce("jobs", value=f"job-{n}".encode())
    producer.flush(10)
    consumers = [cluster.share_consumer({"group.id": "q", "share.acknowledgement.mode": "explicit",
                                         "max.poll.records": 4}) for _ in range(3)]
    try:
        for c in consumers:
            c.subscribe(["jobs"])
        accepted: dict[int, list[int]] = {i: [] for i in range(3)}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(map(len, accepted.values())) < 30:
            for i, c in enumerate(consumers):
                msgs = c.poll(0.1)
                for m in msgs:
                    c.acknowledge(m, AcknowledgeType.ACCEPT)
                if msgs and all(v is None for v in c.commit_sync(10).values()):
                    accepted[i] += [m.offset() for m in msgs]
        assert sorted(o for offs in accepted.values() for o in offs) == list(range(30))
        assert sum(1 for offs in accepted.values() if offs) >= 2, accepted
        with pytest.raises(IllegalStateError, match="not in flight"):  # accepted already
            consumers[0].acknowledge(Message("jobs", 0, 0), AcknowledgeType.ACCEPT)

        producer.produce("jobs", value=b"released")
        producer.flush(10)
        c, m = _poll_one(consumers, lambda m: m.value() == b"released")
        c.acknowledge(m, AcknowledgeType.RELEASE)
        c.commit_sync(10)
        c2, again = _poll_one(consumers, lambda m: m.value() == b"released")
        assert again.offset() == m.offset() and again.delivery_count() == 2
        c2.acknowledge(again, AcknowledgeType.ACCEPT)
        c2.commit_sync(10)

        producer.produce("jobs", value=b"slow")
        producer.flush(10)
        slow, held = _poll_one(consumers, lambda m: m.value() == b"slow")
        others = [c for c in consumers if c is not slow]
        fast, redelivered = _poll_one(others, lambda m: m.value() == b"slow", timeout=15)  # lock: 2 s
        assert redelivered.offset() == held.offset() and redelivered.delivery_count() == 2
        fast.acknowledge(redelivered, AcknowledgeType.ACCEPT)
        fast.commit_sync(10)
        slow.acknowledge(held, AcknowledgeType.ACCEPT)  # too late: someone else has it now
        errors = [e for e in slow.commit_sync(10).values() if e is not None]
        assert errors and errors[0].code == ErrorCode.invalid_record_state
        assert "lock" in str(errors[0])
    finally:
        for c in consumers:
            c.close()
