"""Consumer groups on a real cluster: ownership after rebalances, cooperative rebalancing,
failures, static membership and committed offsets across a coordinator's death."""

from __future__ import annotations

import threading
import time

import pytest

from kafkalab import TopicPartition
from kafkalab.broker.group_coordinator import OFFSETS_TOPIC, partition_for
from kafkalab.cluster import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = {"session.timeout.ms": 1500, "heartbeat.interval.ms": 100, "auto.offset.reset": "earliest"}
TOPIC_PARTS = [("orders", p) for p in range(6)]


class Poller:
    """Keeps consumers polling in background threads; records (time, partition) per message."""

    def __init__(self, consumers):
        self.consumers = list(consumers)
        self.seen: dict[int, list[tuple[float, tuple[str, int]]]] = {}
        self.stopping = False
        self.threads = []
        for c in self.consumers:
            self.add(c)

    def add(self, c):
        if c not in self.consumers:
            self.consumers.append(c)
        t = threading.Thread(target=self._run, args=(c,), daemon=True)
        t.start()
        self.threads.append((c, t))

    def _run(self, c):
        while not self.stopping and not getattr(c, "_stop_polling", False):
            for m in c.consume(50, timeout=0.05):
                if m.error() is None:
                    self.seen.setdefault(id(c), []).append((time.monotonic(), (m.topic(), m.partition())))

    def stop(self, c=None):
        if c is None:
            self.stopping = True
            targets = self.threads
        else:
            c._stop_polling = True
            targets = [(x, t) for x, t in self.threads if x is c]
        for _, t in targets:
            t.join(5)


def settled(consumers, n_parts=6):
    owners = [tp for c in consumers for tp in ((x.topic, x.partition) for x in c.assignment())]
    return len(owners) == n_parts and len(set(owners)) == n_parts


def make_topic(cluster, records=0):
    cluster.create_topic("orders", partitions=6, replication_factor=3)
    if records:
        p = cluster.producer({"acks": "all"})
        for i in range(records):
            p.produce("orders", value=str(i).encode(), partition=i % 6)
        p.flush()
        p.close()


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_every_partition_has_exactly_one_owner_3_4_2(cluster, strategy):
    make_topic(cluster)
    cfg = {**FAST, "group.id": f"g-{strategy}", "partition.assignment.strategy": strategy}
    cs = [cluster.consumer(cfg) for _ in range(3)]
    for c in cs:
        c.subscribe(["orders"])
    poller = Poller(cs)
    try:
        wait_until(lambda: settled(cs) and all(len(c.assignment()) == 2 for c in cs), 20, "3 members own 2 each")
        extra = cluster.consumer(cfg)
        extra.subscribe(["orders"])
        poller.add(extra)
        cs.append(extra)
        wait_until(lambda: settled(cs) and all(c.assignment() for c in cs), 20, "4 members share 6 partitions")
        for c in cs[:2]:
            poller.stop(c)
            c.close()
        live = cs[2:]
        wait_until(lambda: settled(live) and all(len(c.assignment()) == 3 for c in live), 20, "2 members own 3 each")
    finally:
        poller.stop()


def test_cooperative_keeps_consuming_unmoved_partitions(cluster):
    make_topic(cluster)
    cfg = {**FAST, "group.id": "coop", "partition.assignment.strategy": "cooperative-sticky"}
    revoked: list[list[TopicPartition]] = []
    cs = [cluster.consumer(cfg) for _ in range(2)]
    for c in cs:
        c.subscribe(["orders"], on_revoke=lambda cons, parts: revoked.append(parts))
    poller = Poller(cs)
    producer = cluster.producer({"acks": 1, "linger.ms": 0})
    stop = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            producer.produce("orders", value=b"x", partition=i % 6)
            i += 1
            if i % 6 == 0:
                producer.flush()
                time.sleep(0.01)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    try:
        wait_until(lambda: settled(cs), 20, "2 members own all")
        before = {id(c): {(x.topic, x.partition) for x in c.assignment()} for c in cs}
        time.sleep(0.5)
        start = time.monotonic()
        new = cluster.consumer(cfg)
        new.subscribe(["orders"])
        poller.add(new)
        wait_until(lambda: settled(cs + [new]) and new.assignment(), 20, "3 members")
        end = time.monotonic()
        time.sleep(0.3)
        after = {id(c): {(x.topic, x.partition) for x in c.assignment()} for c in cs}
        kept = {tp for c in cs for tp in before[id(c)] & after[id(c)]}
        assert len(kept) == 4  # only the newcomer's two moved
        assert sum(len(p) for p in revoked) == 2  # only those were revoked
        for c in cs:  # unmoved partitions were read all through the rebalance
            for tp in before[id(c)] & after[id(c)]:
                times = [ts for ts, x in poller.seen.get(id(c), []) if x == tp and start - 0.5 <= ts <= end + 0.3]
                gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
                assert times and max(gaps, default=0) < 1.0, (tp, max(gaps, default=0))
    finally:
        stop.set()
        t.join(5)
        poller.stop()


def test_committed_offsets_survive_killing_the_coordinator(cluster):
    make_topic(cluster, records=60)
    cfg = {**FAST, "group.id": "durable", "enable.auto.commit": False}
    c = cluster.consumer(cfg)
    c.subscribe(["orders"])
    got = []
    wait_until(lambda: got.extend(c.consume(100, timeout=0.1)) or len(got) >= 60, 20, "all 60 records")
    committed = c.commit(asynchronous=False)
    assert sorted(tp.offset for tp in committed) == [10] * 6
    coordinator = c._member.coordinator
    p = partition_for("durable", cluster.config["offsets.topic.num.partitions"])
    reps = cluster.describe_topic(OFFSETS_TOPIC)
    assert int(reps[reps.partition == p].iloc[0].leader) == coordinator
    c.close()
    cluster.kill_broker(coordinator)
    reader = cluster.consumer({**cfg})
    try:
        offsets = wait_until(lambda: _committed(reader), 30, "committed offsets from the new coordinator")
        assert [tp.offset for tp in offsets] == [10] * 6
    finally:
        reader.close()


def _committed(consumer):
    try:
        return consumer.committed([TopicPartition("orders", i) for i in range(6)], timeout=2)
    except Exception:
        return None


def test_static_member_restart_inside_session_timeout_causes_no_rebalance(cluster):
    make_topic(cluster)
    cfg = {**FAST, "group.id": "static", "session.timeout.ms": 5000}
    a = cluster.consumer({**cfg, "group.instance.id": "host-a"})
    b = cluster.consumer({**cfg, "group.instance.id": "host-b"})
    for c in (a, b):
        c.subscribe(["orders"])
    poller = Poller([a, b])
    try:
        wait_until(lambda: settled([a, b]) and a.assignment() and b.assignment(), 20, "2 static members")
        mine = a.assignment()
        gen = b._member.generation
        poller.stop(a)
        a.close()  # a static member does not send LeaveGroup
        a2 = cluster.consumer({**cfg, "group.instance.id": "host-a"})
        a2.subscribe(["orders"])
        poller.add(a2)
        wait_until(lambda: a2.assignment(), 10, "the restarted member's assignment")
        assert a2.assignment() == mine
        time.sleep(0.5)
        assert b._member.generation == gen  # no new generation: nobody rebalanced
    finally:
        poller.stop()


def test_killed_worker_is_removed_after_session_timeout(cluster):
    from kafkalab.workloads.consumers import spawn_consumers
    make_topic(cluster, records=60)
    handles = spawn_consumers(cluster, "workers", 3, ["orders"], config=FAST)
    try:
        def owned():
            assigned = [tp for h in handles if h.alive() for tp in h.assignment]
            return len(assigned) == 6 and len(set(assigned)) == 6

        wait_until(lambda: owned() and all(h.assignment for h in handles), 60, "3 workers own 2 each")
        victim = handles[0]
        killed_at = time.monotonic()
        victim.kill()
        wait_until(owned, 20, "the victim's partitions reassigned")
        elapsed = time.monotonic() - killed_at
        assert elapsed >= FAST["session.timeout.ms"] / 1000 * 0.8  # not before the session timeout
        # The new owners pick up where the victim's last committed offsets left them.
        wait_until(lambda: sum(h.consumed for h in handles) >= 60, 20, "every record consumed")
    finally:
        for h in handles:
            h.kill()


def test_sync_commit_finds_the_new_coordinator_after_its_broker_dies(cluster):
    # Kafka's commitSync retries retriable errors (the coordinator's broker is gone, NOT_COORDINATOR)
    # until default.api.timeout.ms, looking the coordinator up again: the commit just succeeds.
    make_topic(cluster, records=60)
    cfg = {**FAST, "group.id": "steady", "enable.auto.commit": False}
    c = cluster.consumer(cfg)
    try:
        c.subscribe(["orders"])
        got = []
        wait_until(lambda: got.extend(c.consume(100, timeout=0.1)) or len(got) >= 60, 20, "all 60 records")
        assert sorted(tp.offset for tp in c.commit(asynchronous=False)) == [10] * 6
        old = c._member.coordinator
        cluster.kill_broker(old)
        committed = c.commit(offsets=[TopicPartition("orders", i, 7) for i in range(6)], asynchronous=False)
        assert sorted(tp.offset for tp in committed) == [7] * 6
        assert c._member.coordinator not in (None, old)
    finally:
        c.close()
    reader = cluster.consumer({**cfg})
    try:
        offsets = wait_until(lambda: _committed(reader), 30, "committed offsets from the new coordinator")
        assert [tp.offset for tp in offsets] == [7] * 6
    finally:
        reader.close()
