"""Consumer worker processes: members of a group that a lab can kill, pause and resume.

`spawn_consumers(cluster, group, n, topics, config=None, handler=None)` starts n OS processes,
each a Consumer subscribed to `topics` in `group`, calling handler(message) per record (shipped
with dill, so a notebook lambda works; a worker without a handler never imports dill). Handles
expose kill() (SIGKILL: no LeaveGroup, the coordinator notices after session.timeout.ms),
pause()/resume() (SIGSTOP/SIGCONT), stop() (a clean close: LeaveGroup), and the worker's
consumed count, member id and assignment (shared with the notebook: workloads/worker_state.py).
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from kafkalab.process import LabProcess
from kafkalab.workloads.worker_state import WorkerState, attach, spawn_worker


def consumer_worker(*, parent_pid: int, node: str, brokers: dict[int, str], faults_json: str,
                    metrics_endpoint: str | None, group: str, topics: list[str], config: dict[str, Any],
                    handler: bytes | None, state_fd: int) -> None:
    """Entry point of a worker process."""
    from kafkalab.process import plaintext_only

    if handler is None:  # a notebook's handler may want anything, ssl included
        plaintext_only()
    from kafkalab.client.consumer import Consumer
    from kafkalab.client.context import ClientContext
    from kafkalab.metrics_publisher import MetricsPublisher
    from kafkalab.process import die_with_parent
    from kafkalab.transport.faults import FaultTable
    die_with_parent(parent_pid)
    state = attach(state_fd)
    fn = None
    if handler:
        import dill
        fn = dill.loads(handler)
    metrics = MetricsPublisher(None, metrics_endpoint, node) if metrics_endpoint else None
    ctx = ClientContext(node=node, brokers=brokers, faults=FaultTable.from_json(faults_json), metrics=metrics)
    c = Consumer({**config, "group.id": group}, ctx)
    c.subscribe(topics)
    next_status = 0.0
    try:
        while not state.stop_requested():
            for m in c.consume(100, timeout=0.1):
                if m.error() is None:
                    if fn is not None:
                        fn(m)
                    state.add(1)
            now = time.monotonic()
            if now >= next_status:
                next_status = now + 0.1
                blob = json.dumps({"member_id": c.member_id(), "pid": os.getpid(),
                                   "assignment": [[tp.topic, tp.partition] for tp in c.assignment()]}).encode()
                state.set_status(blob)
    finally:
        c.close()
        if metrics is not None:
            metrics.close()


class ConsumerHandle:
    def __init__(self, proc: LabProcess, node: str, state: WorkerState, cluster: Any, group: str):
        self.proc, self.node, self._state = proc, node, state
        self._cluster, self.group = cluster, group

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    @property
    def consumed(self) -> int:
        return self._state.count

    def status(self) -> dict[str, Any]:
        raw = self._state.status()
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
        self.proc.kill()
        self.proc.join(5)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        self._state.request_stop()
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.kill()

    def __repr__(self) -> str:
        return f"<ConsumerHandle {self.node} pid={self.pid} consumed={self.consumed}>"


def spawn_consumers(cluster: Any, group: str, n: int, topics: list[str], config: dict[str, Any] | None = None,
                    handler: Any = None) -> list[ConsumerHandle]:
    blob = None
    if handler is not None:
        import dill
        blob = dill.dumps(handler, recurse=True)
    handles = []
    for i in range(n):
        node = f"{group}-worker-{i + 1}-{os.getpid()}-{time.monotonic_ns() % 100000}"
        proc, state = spawn_worker(consumer_worker, node, parent_pid=os.getpid(), node=node,
                                   brokers=dict(cluster.broker_endpoints), faults_json=cluster.faults.to_json(),
                                   metrics_endpoint=cluster.metrics.endpoint if cluster.metrics else None,
                                   group=group, topics=list(topics), config=dict(config or {}), handler=blob)
        handles.append(ConsumerHandle(proc, node, state, cluster, group))
    return handles
