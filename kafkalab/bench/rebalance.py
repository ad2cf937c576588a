"""Rebalance bench: a 10th member joins a group of 9; eager (sticky) vs cooperative-sticky vs
Kafka 4's consumer protocol ("consumer": KIP-848, the broker's uniform assignor).

Measures how long the group takes to settle (from the newcomer's subscribe() until every
partition has exactly one owner and the newcomer owns some) and the longest gap between two
records read from a partition that did *not* change owner (eager stops every partition;
cooperative only the moved ones; target: no pause > 100 ms on unmoved partitions).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kafkalab.cluster import Cluster, wait_until

FAST = {"session.timeout.ms": 3000, "heartbeat.interval.ms": 100, "auto.offset.reset": "latest",
        "fetch.max.wait.ms": 50, "enable.auto.commit": False}


def _owners(consumers: list[Any]) -> dict[tuple[str, int], Any]:
    out: dict[tuple[str, int], Any] = {}
    for c in consumers:
        for tp in c.assignment():
            out[(tp.topic, tp.partition)] = c
    return out


def one_round(cluster: Cluster, strategy: str, members: int, partitions: int) -> dict[str, Any]:
    """One measurement on a running cluster (labs call it too): members-1 consume, one more joins."""
    topic = f"bench-{strategy}"
    cluster.create_topic(topic, partitions=partitions, replication_factor=1)
    cfg = {**FAST, "group.id": f"bench-{strategy}", "partition.assignment.strategy": strategy}
    if strategy == "consumer":  # KIP-848: no client assignor; the broker paces the heartbeats
        cfg = {**FAST, "group.id": f"bench-{strategy}", "group.protocol": "consumer"}
    consumers = [cluster.consumer(cfg) for _ in range(members - 1)]
    seen: dict[tuple[str, int], list[float]] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def poll(c: Any) -> None:
        while not stop.is_set():
            for m in c.consume(100, timeout=0.02):
                if m.error() is None:
                    with lock:
                        seen.setdefault((m.topic(), m.partition()), []).append(time.monotonic())

    def produce() -> None:
        p = cluster.producer({"acks": 1, "linger.ms": 0})
        i = 0
        while not stop.is_set():
            for part in range(partitions):
                p.produce(topic, value=b"x", partition=part)
            p.flush()
            i += 1
            time.sleep(0.01)
        p.close()

    threads = [threading.Thread(target=produce, daemon=True)]
    for c in consumers:
        c.subscribe([topic])
        threads.append(threading.Thread(target=poll, args=(c,), daemon=True))
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(_owners(consumers)) == partitions and all(c.assignment() for c in consumers),
                   60, "the first members to settle")
        time.sleep(1.0)
        before = _owners(consumers)
        start = time.monotonic()
        new = cluster.consumer(cfg)
        new.subscribe([topic])
        t = threading.Thread(target=poll, args=(new,), daemon=True)
        t.start()
        threads.append(t)
        everyone = consumers + [new]

        def settled() -> bool:
            owners = [tp for c in everyone for tp in ((x.topic, x.partition) for x in c.assignment())]
            return len(owners) == partitions == len(set(owners)) and bool(new.assignment())

        wait_until(settled, 60, "the group to settle")
        settle_ms = (time.monotonic() - start) * 1000
        time.sleep(0.5)
        after = _owners(everyone)
        unmoved = [tp for tp, c in before.items() if after.get(tp) is c]
        with lock:
            pauses = []
            for tp in unmoved:
                ts = [x for x in seen.get(tp, []) if start - 0.2 <= x <= start + settle_ms / 1000 + 0.2]
                pauses.append(max((b - a for a, b in zip(ts, ts[1:], strict=False)), default=float("inf")))
        return {"strategy": strategy, "members": members, "partitions": partitions,
                "settle_ms": round(settle_ms, 1), "moved": partitions - len(unmoved),
                "max_pause_unmoved_ms": round(max(pauses, default=0.0) * 1000, 1)}
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for c in consumers:
            c.close()


def run(members: int = 10, partitions: int = 20,
        strategies: tuple[str, ...] = ("sticky", "cooperative-sticky", "consumer")) -> list[dict[str, Any]]:
    rows = []
    with Cluster(brokers=1) as cluster:
        for s in strategies:
            rows.append(one_round(cluster, s, members, partitions))
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)  # noqa: T201 - the bench's output
