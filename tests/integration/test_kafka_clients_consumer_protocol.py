"""librdkafka (confluent-kafka) with group.protocol=consumer (KIP-848) against the lab cluster:
the broker assigns, members reconcile, and a member leaving moves only its partitions."""

from __future__ import annotations

import threading
import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_librdkafka_consumer_protocol_three_members_then_one_leaves(cluster):
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient

    cluster.create_topic("kip848", partitions=6, replication_factor=3)
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})

    def produce(start: int, n: int) -> None:
        for i in range(start, start + n):
            producer.produce("kip848", value=f"v{i}".encode(), partition=i % 6)
        assert producer.flush(20) == 0

    produce(0, 600)
    owned: dict[int, set[int]] = {i: set() for i in range(3)}
    revoked: dict[int, list[int]] = {i: [] for i in range(3)}
    got: dict[int, list[tuple[int, bytes]]] = {i: [] for i in range(3)}

    def make(i: int) -> Consumer:
        c = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "kip848-group",
                      "group.protocol": "consumer", "auto.offset.reset": "earliest"})
        c.subscribe(["kip848"],
                    on_assign=lambda _c, parts: owned[i].update(tp.partition for tp in parts),
                    on_revoke=lambda _c, parts: (owned[i].difference_update(tp.partition for tp in parts),
                                                 revoked[i].extend(tp.partition for tp in parts)))
        return c

    consumers = [make(i) for i in range(3)]

    def poll_all(seconds: float, until) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            for i, c in enumerate(consumers):
                m = c.poll(0.05)
                if m is not None and m.error() is None:
                    got[i].append((m.partition(), m.value()))

    try:
        poll_all(60, lambda: len({v for vs in got.values() for _, v in vs}) == 600
                 and all(len(owned[i]) == 2 for i in range(3)))
        assert sorted(p for i in range(3) for p in owned[i]) == list(range(6)), owned
        assert {v for vs in got.values() for _, v in vs} == {f"v{i}".encode() for i in range(600)}
        # The broker's view agrees: one consumer group, stable, every member at the group epoch.
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        listed = admin.list_consumer_groups().result(10)
        kinds = {g.group_id: str(getattr(g, "type", "")) for g in listed.valid}
        assert "kip848-group" in kinds and "CONSUMER" in kinds["kip848-group"].upper(), kinds
        described = admin.describe_consumer_groups(["kip848-group"])["kip848-group"].result(10)
        assert "CONSUMER" in str(described.type) and described.partition_assignor == "uniform"
        assert sorted(tp.partition for m in described.members for tp in m.assignment.topic_partitions) \
            == list(range(6))

        kept = {i: set(owned[i]) for i in range(2)}
        for i in range(2):
            revoked[i].clear()
            got[i].clear()
        consumers.pop().close()  # leaves with member epoch -1: its two partitions move
        produce(600, 60)
        poll_all(30, lambda: sum(len(owned[i]) for i in range(2)) == 6
                 and len({v for i in range(2) for _, v in got[i]}) >= 60)
        assert sorted(owned[0] | owned[1]) == list(range(6)) and not owned[0] & owned[1]
        # Only the leaver's partitions moved: the others kept theirs, revoked nothing, and read
        # the new records of their own partitions too.
        assert all(kept[i] <= owned[i] and not revoked[i] for i in range(2)), (kept, owned, revoked)
        assert all({p for p, _ in got[i]} >= kept[i] for i in range(2)), got
    finally:
        errors: list[BaseException] = []

        def close(c: Consumer) -> None:
            try:
                c.close()
            except KafkaException as e:
                errors.append(e)
        threads = [threading.Thread(target=close, args=(c,)) for c in consumers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
