"""The cluster's side of network faults: the authoritative FaultTable, published to every
process (and again, as PUB/SUB drops what a late subscriber missed: every REPUBLISH_S while a
fault is set or a change is recent, every QUIET_REPUBLISH_S otherwise; a process started later
gets the table with its arguments), and each change awaited until the running brokers apply
it. The same channel carries the Cluster's "publish your metric rows now"."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from kafkalab.cluster.events import EventLog
from kafkalab.cluster.waiting import wait_until
from kafkalab.errors import KafkaLabError
from kafkalab.metrics import MetricsCollector
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.rpc import FaultPublisher

# Every process wakes to read each copy, so not often: a change itself goes out at once.
REPUBLISH_S = 1.0
RECENT_CHANGE_S = 5.0  # a process started just before a change may have missed it
QUIET_REPUBLISH_S = 10.0  # no fault and no recent change: every process has the empty table


class NetworkFaults:
    """Cuts, delays and partitions between node names. `lock` guards the table: the
    republisher thread reads it while a notebook changes it."""

    def __init__(self, table: FaultTable, lock: threading.RLock, events: EventLog):
        self.table, self.lock, self.events = table, lock, events
        self._publisher: FaultPublisher | None = None
        self._closed = False
        self._changed_at = time.monotonic()
        self._wake = threading.Event()  # close() ends the republisher's wait

    def start(self, ctx: zmq.Context) -> None:
        self._publisher = FaultPublisher(ctx)
        threading.Thread(target=self._republish_loop, name="kafkalab-faults", daemon=True).start()

    @property
    def endpoint(self) -> str:
        """Where processes subscribe to the table."""
        assert self._publisher is not None, "start() first"
        return self._publisher.endpoint

    def _republish_loop(self) -> None:
        while not self._closed:
            with self.lock:
                if self._closed:
                    return
                self._publisher.publish(self.table)
                busy = bool(self.table) or time.monotonic() - self._changed_at < RECENT_CHANGE_S
            self._wake.wait(REPUBLISH_S if busy else QUIET_REPUBLISH_S)

    def publish_metrics_now(self) -> None:
        """Ask every process for its metric rows now (a describe_* call is waiting for them)."""
        with self.lock:
            if self._publisher is not None and not self._closed:
                self._publisher.publish_metrics_now()

    def apply(self, event: str, detail: str, metrics: MetricsCollector, running: list[int]) -> None:
        """Publish the table now and return once every running broker says it applies it, so
        that the next line of a lab already runs on the changed network."""
        with self.lock:
            self._publisher.publish(self.table)
            version = self.table.version
            self._changed_at = time.monotonic()
        self.events.event(event, detail)

        def applied() -> bool:  # plain rows: a Dashboard's Cut button must not import pandas
            newest: dict[Any, Any] = {}
            for row in metrics.rows("broker"):
                if row.get("faults_version") is not None:
                    b = row.get("broker")
                    newest[b] = max(newest.get(b, row["faults_version"]), row["faults_version"])
            return all(b in newest and newest[b] >= version for b in running)
        try:
            wait_until(applied, 3.0, "brokers to apply the new network faults")
        except TimeoutError:
            pass  # a broker cut from the collector cannot say so; the table still reaches it

    # Each change returns what apply() records: (event, detail).
    def partition(self, groups: list[list[str]]) -> tuple[str, str]:
        if len(groups) < 2:
            raise KafkaLabError("partition() needs at least two groups, e.g. partition([1], [2, 3])")
        with self.lock:
            self.table.partition(*groups)
        return "cut", " | ".join(",".join(g) for g in groups)

    def cut(self, a: str, b: str, one_way: bool) -> tuple[str, str]:
        with self.lock:
            self.table.cut(a, b, one_way=one_way)
        return "cut", f"{a} {'->' if one_way else '<->'} {b}"

    def delay(self, a: str, b: str, ms: int, one_way: bool) -> tuple[str, str]:
        with self.lock:
            self.table.delay(a, b, ms, one_way=one_way)
        return "delay", f"{a} {'->' if one_way else '<->'} {b}: {ms} ms"

    def isolate(self, node: str, others: Iterable[str]) -> tuple[str, str]:
        with self.lock:
            self.table.isolate(node, list(others))
        return "cut", f"{node} isolated"

    def heal(self) -> tuple[str, str]:
        with self.lock:
            self.table.heal()
        return "heal", "all links restored"

    def set_links(self, pairs: Iterable[tuple[str, str]], cut: bool) -> None:
        """Cut (or restore) each link between these two nodes, both ways."""
        change: Callable[[str, str], None] = self.table.cut if cut else self.table.restore
        with self.lock:
            for a, b in pairs:
                change(a, b)

    def close(self) -> None:
        with self.lock:
            self._closed = True
        self._wake.set()
        if self._publisher is not None:
            self._publisher.close()
