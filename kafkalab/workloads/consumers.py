"""Consumer worker processes: members of a group that a lab can kill, pause and resume.

`spawn_consumers(cluster, group, n, topics, config=None, handler=None)` starts n OS processes,
each a Consumer subscribed to `topics` in `group`, calling handler(message) per record. A
handler that needs nothing of the notebook (no global of it, no closure: imports inside, as a
lab's handlers do) crosses as its code (marshal; the worker runs the same interpreter); any
other, such as a lambda over a notebook variable, with dill (~1.5 MB more in each worker, so
only then does a worker import dill). Handles
expose kill() (SIGKILL: no LeaveGroup, the coordinator notices after session.timeout.ms),
pause()/resume() (SIGSTOP/SIGCONT), stop() (a clean close: LeaveGroup), and the worker's
consumed count, member id and assignment (shared with the notebook: workloads/worker_state.py).
"""

from __future__ import annotations

import json
import os
import signal
import time
import types
from typing import Any

from kafkalab.process import LabProcess
from kafkalab.workloads.worker_state import WorkerState, attach, spawn_worker


def consumer_worker(*, parent_pid: int, node: str, brokers: dict[int, str], faults_json: str,
                    metrics_endpoint: str | None, group: str, topics: list[str], config: dict[str, Any],
                    handler: tuple[str, bytes] | None, state_fd: int) -> None:
    """Entry point of a worker process."""
    from kafkalab.client.consumer import Consumer
    from kafkalab.client.context import ClientContext
    from kafkalab.metrics_publisher import MetricsPublisher
    from kafkalab.process import die_with_parent
    from kafkalab.transport.faults import FaultTable
    die_with_parent(parent_pid)
    state = attach(state_fd)
    fn = unpack_handler(handler) if handler else None
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


_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME", "STORE_NAME", "DELETE_NAME"})


def _global_names(code: types.CodeType) -> set[str]:
    """The global names a code object and the code nested in it (functions, comprehensions) use."""
    import dis

    names = {i.argval for i in dis.get_instructions(code) if i.opname in _GLOBAL_OPS}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _interpreter_builtin(name: str) -> bool:
    """A name every interpreter's builtins has (not one a notebook adds there, as display)."""
    import builtins

    return getattr(getattr(builtins, name, None), "__module__", None) == "builtins"


def pack_handler(handler: Any) -> tuple[str, bytes]:
    """("code", marshal) for a function that needs nothing of where it was defined: no closure,
    every global name it uses one of the interpreter's builtins and not shadowed there, defaults
    that marshal; else ("dill", ...)."""
    import marshal

    if type(handler) is types.FunctionType and handler.__closure__ is None and all(
            name not in handler.__globals__ and _interpreter_builtin(name)
            for name in _global_names(handler.__code__)):
        try:
            return "code", marshal.dumps((handler.__code__, handler.__name__, handler.__defaults__,
                                          handler.__kwdefaults__))
        except ValueError:  # a default marshal cannot write
            pass
    import dill

    return "dill", dill.dumps(handler, recurse=True)


def unpack_handler(packed: tuple[str, bytes]) -> Any:
    kind, blob = packed
    if kind == "dill":
        import dill

        return dill.loads(blob)
    import builtins
    import marshal

    code, name, defaults, kwdefaults = marshal.loads(blob)
    fn = types.FunctionType(code, {"__builtins__": builtins, "__name__": "__main__"}, name, defaults)
    fn.__kwdefaults__ = kwdefaults
    return fn


def spawn_consumers(cluster: Any, group: str, n: int, topics: list[str], config: dict[str, Any] | None = None,
                    handler: Any = None) -> list[ConsumerHandle]:
    blob = pack_handler(handler) if handler is not None else None
    handles = []
    for i in range(n):
        node = f"{group}-worker-{i + 1}-{os.getpid()}-{time.monotonic_ns() % 100000}"
        proc, state = spawn_worker(consumer_worker, node, parent_pid=os.getpid(), node=node,
                                   brokers=dict(cluster.broker_endpoints), faults_json=cluster.faults.to_json(),
                                   metrics_endpoint=cluster.metrics.endpoint if cluster.metrics else None,
                                   group=group, topics=list(topics), config=dict(config or {}), handler=blob)
        handles.append(ConsumerHandle(proc, node, state, cluster, group))
    return handles
