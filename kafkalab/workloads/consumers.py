"""Consumer worker processes: members of a group that a lab can kill, pause and resume.

`spawn_consumers(cluster, group, n, topics, config=None, handler=None)` starts n OS processes,
each a Consumer subscribed to `topics` in `group`, calling handler(message) per record (shipped
with dill, so a notebook lambda works). Handles expose kill() (SIGKILL: no LeaveGroup, the
coordinator notices after session.timeout.ms), pause()/resume() (SIGSTOP/SIGCONT), stop()
(a clean close: LeaveGroup), and the worker's consumed count, member id and assignment.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from kafkalab.process import spawner

STATUS_BYTES = 4096


def consumer_worker(*, parent_pid: int, node: str, brokers: dict[int, str], faults_json: str,
                    metrics_endpoint: str | None, group: str, topics: list[str], config: dict[str, Any],
                    handler: bytes | None, consumed: Any, status: Any, stop: Any) -> None:
    """Entry point of a worker process."""
    import sys
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
    import dill

    from kafkalab.client.consumer import Consumer
    from kafkalab.client.context import ClientContext
    from kafkalab.metrics_publisher import MetricsPublisher
    from kafkalab.process import die_with_parent
    from kafkalab.transport.faults import FaultTable
    die_with_parent(parent_pid)
    fn = dill.loads(handler) if handler else None
    metrics = MetricsPublisher(None, metrics_endpoint, node) if metrics_endpoint else None
    ctx = ClientContext(node=node, brokers=brokers, faults=FaultTable.from_json(faults_json), metrics=metrics)
    c = Consumer({**config, "group.id": group}, ctx)
    c.subscribe(topics)
    next_status = 0.0
    try:
        while not stop.is_set():
            for m in c.consume(100, timeout=0.1):
                if m.error() is None:
                    if fn is not None:
                        fn(m)
                    with consumed.get_lock():
                        consumed.value += 1
            now = time.monotonic()
            if now >= next_status:
                next_status = now + 0.1
                blob = json.dumps({"member_id": c.member_id(), "pid": os.getpid(),
                                   "assignment": [[tp.topic, tp.partition] for tp in c.assignment()]}).encode()
                status.value = blob[:STATUS_BYTES - 1]
    finally:
        c.close()
        if metrics is not None:
            metrics.close()


class ConsumerHandle:
    def __init__(self, proc: Any, node: str, consumed: Any, status: Any, stop: Any, cluster: Any, group: str):
        self.proc, self.node, self._consumed, self._status, self._stop = proc, node, consumed, status, stop
        self._cluster, self.group = cluster, group

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    @property
    def consumed(self) -> int:
        return int(self._consumed.value)

    def status(self) -> dict[str, Any]:
        raw = bytes(self._status.value)
        return json.loads(raw) if raw else {"member_id": None, "assignment": []}

    @property
    def member_id(self) -> str | None:
        return self.status().get("member_id")

    @property
    def assignment(self) -> list[tuple[str, int]]:
        return [(t, p) for t, p in self.status().get("assignment", [])]

    def lag(self) -> int:
        """Sum of the coordinator's lag over this worker's partitions (latest rows)."""
        frame = self._cluster.metrics.lag()
        if frame.empty:
            return 0
        latest = frame[frame["group"] == self.group].sort_values("time").groupby(["topic", "partition"]).last()
        mine = set(self.assignment)
        return int(sum(r["lag"] or 0 for (t, p), r in latest.iterrows() if (t, int(p)) in mine))

    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        if self.proc.is_alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.join(5)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.kill()

    def __repr__(self) -> str:
        return f"<ConsumerHandle {self.node} pid={self.pid} consumed={self.consumed}>"


def spawn_consumers(cluster: Any, group: str, n: int, topics: list[str], config: dict[str, Any] | None = None,
                    handler: Any = None) -> list[ConsumerHandle]:
    import dill
    import multiprocess
    mp = multiprocess.get_context("spawn")
    blob = dill.dumps(handler, recurse=True) if handler is not None else None
    handles = []
    for i in range(n):
        node = f"{group}-worker-{i + 1}-{os.getpid()}-{time.monotonic_ns() % 100000}"
        consumed, status, stop = mp.Value("q", 0), mp.Array("c", STATUS_BYTES), mp.Event()
        proc = spawner().spawn(consumer_worker, node, parent_pid=os.getpid(), node=node,
                               brokers=dict(cluster.broker_endpoints), faults_json=cluster.faults.to_json(),
                               metrics_endpoint=cluster.metrics.endpoint if cluster.metrics else None,
                               group=group, topics=list(topics), config=dict(config or {}), handler=blob,
                               consumed=consumed, status=status, stop=stop)
        handles.append(ConsumerHandle(proc, node, consumed, status, stop, cluster, group))
    return handles
