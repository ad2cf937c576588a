"""The lab consumer with group.protocol=consumer (KIP-848) over the lab transport: the broker
assigns six partitions to three members exactly, a member leaving moves only its own."""

from __future__ import annotations

import time

import pytest

from kafkalab import TopicPartition

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_lab_consumers_on_the_new_protocol_share_and_keep_their_partitions(cluster):
    cluster.create_topic("orders", partitions=6, replication_factor=3)
    producer = cluster.producer({})
    for i in range(60):
        producer.produce("orders", value=f"v{i}".encode(), partition=i % 6)
    producer.flush(10)
    consumers = [cluster.consumer({"group.id": "kip848", "group.protocol": "consumer",
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False})
                 for _ in range(3)]
    try:
        for c in consumers:
            c.subscribe(["orders"])
        seen: set[bytes] = set()

        def poll_until(ok, seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not ok():
                for c in consumers:
                    m = c.poll(0.05)
                    if m is not None and m.error() is None:
                        seen.add(m.value())

        def owned() -> list[set[int]]:
            return [{tp.partition for tp in c.assignment()} for c in consumers]

        poll_until(lambda: len(seen) == 60 and [len(o) for o in owned()] == [2, 2, 2], 30)
        assert sorted(p for o in owned() for p in o) == list(range(6))
        assert len(seen) == 60
        consumers[0].commit(asynchronous=False)  # checked against its member epoch: accepted
        kept = owned()[1:]
        consumers.pop(0).close()
        poll_until(lambda: sum(len(o) for o in owned()) == 6, 20)
        after = owned()
        assert sorted(after[0] | after[1]) == list(range(6)) and all(k <= a for k, a in zip(kept, after, strict=True))
    finally:
        for c in consumers:
            c.close()


def test_the_group_survives_its_coordinators_death_with_epochs_and_assignments(cluster):
    from kafkalab.cluster import wait_until

    cluster.create_topic("orders2", partitions=6, replication_factor=3)
    cfg = {"group.id": "kip848-failover", "group.protocol": "consumer", "auto.offset.reset": "earliest",
           "enable.auto.commit": False}
    consumers = [cluster.consumer(cfg) for _ in range(3)]
    changes: list[str] = []
    try:
        for c in consumers:
            c.subscribe(["orders2"], on_revoke=lambda c, parts: changes.append("revoke"),
                        on_lost=lambda c, parts: changes.append("lost"))

        def owned() -> list[frozenset[int]]:
            for c in consumers:
                c.poll(0.05)
            return [frozenset(tp.partition for tp in c.assignment()) for c in consumers]

        wait_until(lambda: [len(o) for o in owned()] == [2, 2, 2], 30, "three members with two partitions each")
        consumers.pop().close()  # the group epoch moves on to 4: a group rebuilt from scratch would not be there
        wait_until(lambda: [len(o) for o in owned()] == [3, 3], 30, "two members with three partitions each")
        before = owned()
        members = [c._member for c in consumers]
        epochs = [m.generation for m in members]
        assert epochs == [4, 4]
        coordinator = members[0].coordinator
        changes.clear()
        cluster.kill_broker(coordinator)
        # A synchronous commit at once, at the member's epoch: it finds the new coordinator
        # (as the classic member's does, test_groups.py) and is accepted there.
        mine = [TopicPartition("orders2", p, 3) for p in sorted(before[0])]
        committed = consumers[0].commit(offsets=mine, asynchronous=False)
        assert sorted((tp.partition, tp.offset) for tp in committed) == [(tp.partition, 3) for tp in mine]
        assert members[0].coordinator not in (None, coordinator)
        # The new coordinator replays the group's records: the members heartbeat on at their
        # epochs, with their partitions, and are never fenced (a fenced member rejoins at epoch 0).
        wait_until(lambda: all(m.coordinator not in (None, coordinator) and m.generation > 0 for m in members)
                   and owned() == before, 30, "members on the new coordinator")
        for _ in range(10):
            assert owned() == before
        assert [m.generation for m in members] == epochs and changes == []
        assert [tp.offset for tp in consumers[1].committed(mine, timeout=10)] == [3] * len(mine)
    finally:
        for c in consumers:
            c.close()
