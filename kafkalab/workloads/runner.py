"""The workload runner: the thin wiring between a live Cluster, a fault schedule and a History.

run_workload() produces uniquely identified records at a steady rate while a FaultInjector
thread applies the schedule, then mends the cluster, waits until every partition has a leader
and its replicas back in the ISR, reads every partition from offset 0 to the high watermark
with a fresh consumer, and returns the History for checker.check().
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafkalab.client.message import TopicPartition
from kafkalab.cluster import wait_until
from kafkalab.errors import KafkaLabError
from kafkalab.protocol.errors import KafkaError
from kafkalab.workloads.history import (
    ACKED,
    FAILED,
    History,
    Read,
    Sent,
    decode_value,
    encode_value,
)
from kafkalab.workloads.schedule import FaultAction

_RETRIABLE = (KafkaError, KafkaLabError, TimeoutError)


class FaultInjector(threading.Thread):
    """Applies a fault schedule to a cluster on time, from its own thread; stop() it (the
    runner does) before mending the cluster.

    Never prints and never raises out of run(): each action's outcome (or the error that
    stopped it, e.g. "broker 2 is not running") is kept in `applied` for the History.
    """

    def __init__(self, cluster: Any, actions: Iterable[FaultAction], t0: float | None = None):
        super().__init__(name="kafkalab-fault-injector", daemon=True)
        self.cluster = cluster
        self.actions = sorted(actions, key=lambda a: a.at_s)
        self.t0 = time.monotonic() if t0 is None else t0
        self.applied: list[dict[str, Any]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        # An action that overruns (a restart waits for the broker to register) delays the rest
        # of the schedule by as much, so every fault is still held for its planned interval.
        shift = 0.0
        for action in self.actions:
            if self._stop_event.wait(max(0.0, self.t0 + action.at_s + shift - time.monotonic())):
                return
            self.applied.append(apply_action(self.cluster, action, self.t0))
            shift = max(shift, time.monotonic() - self.t0 - action.at_s)

    def stop(self, timeout: float = 60.0) -> None:
        """No further actions; waits for the one under way (a restart can take seconds)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)


def apply_action(cluster: Any, action: FaultAction, t0: float) -> dict[str, Any]:
    """Do one action to the cluster; returns what happened, as plain data."""
    started = time.monotonic()
    b = action.target
    error = None
    try:
        match action.kind:
            case "kill":
                cluster.kill_broker(b)
            case "stop":
                cluster.stop_broker(b)
            case "restart":
                cluster.restart_broker(b)
            case "pause":
                cluster.pause_broker(b)
            case "resume":
                cluster.resume_broker(b)
            case "partition":
                # The broker keeps its clients but loses its peers and the controller: the
                # classic "zombie leader" that still takes writes nobody replicates.
                cluster.partition([b], [o for o in cluster.broker_ids if o != b] + ["controller"])
            case "isolate":
                cluster.isolate(b)
            case "cut_controller":
                cluster.cut(b, "controller")
            case "heal":
                cluster.heal()
    except Exception as e:  # noqa: BLE001 - an action that cannot apply is recorded, not fatal
        error = f"{type(e).__name__}: {e}"
    return {**action.to_dict(), "applied_s": round(started - t0, 3),
            "took_s": round(time.monotonic() - started, 3), "error": error}


def restore(cluster: Any, t0: float) -> list[dict[str, Any]]:
    """Undo every fault: heal the network, resume paused brokers, restart dead ones."""
    done = [apply_action(cluster, FaultAction(0.0, "heal"), t0)]
    for b in cluster.broker_ids:
        state = cluster.broker_state(b)
        if state == "paused":
            done.append(apply_action(cluster, FaultAction(0.0, "resume", b), t0))
        elif state in ("killed", "stopped", "crashed"):
            done.append(apply_action(cluster, FaultAction(0.0, "restart", b), t0))
    return done


def wait_for_leaders(cluster: Any, topic: str, timeout: float, full_isr: bool = True) -> bool:
    """Wait until every partition has a leader (and, if full_isr, all its replicas in the ISR).
    Returns False if only the leaders came in time; raises TimeoutError if not even they did."""
    def state() -> Any:
        try:
            return cluster.describe_topic(topic, fresh=False)
        except _RETRIABLE:
            return None

    def healthy() -> bool:
        d = state()
        if d is None or (d.leader < 0).any():
            return False
        return not full_isr or all(set(r.isr) == set(r.replicas) for r in d.itertuples())
    try:
        wait_until(healthy, timeout, f"every partition of {topic!r} to have a leader and a full ISR",
                   interval=0.1)
        return True
    except TimeoutError:
        if not full_isr:
            raise
    wait_until(lambda: (d := state()) is not None and not (d.leader < 0).any(), timeout,
               f"every partition of {topic!r} to have a leader", interval=0.1)
    return False


def read_back(cluster: Any, topic: str, partitions: int, timeout: float) -> tuple[list[Read], dict[int, int]]:
    """Every record from offset 0 to the high watermark of each partition, with a fresh
    consumer; returns the reads and the high watermarks."""
    consumer = cluster.consumer({"auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout
        hw: dict[int, int] = {}
        for p in range(partitions):
            def high(p: int = p) -> tuple[int] | None:
                try:  # a 1-tuple, so that a high watermark of 0 still counts as an answer
                    return (consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=2.0)[1],)
                except _RETRIABLE:
                    return None  # the leader is still settling: ask again
            (hw[p],) = wait_until(high, max(0.1, deadline - time.monotonic()),
                                  f"the high watermark of {topic}[{p}]", interval=0.1)
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        position = {p: 0 for p in range(partitions)}
        reads: list[Read] = []
        while any(position[p] < hw[p] for p in position):
            if time.monotonic() > deadline:
                behind = {p: (position[p], hw[p]) for p in position if position[p] < hw[p]}
                raise TimeoutError(f"read-back of {topic!r} did not reach the high watermark in "
                                   f"{timeout:.0f}s: (position, high watermark) {behind}")
            for m in consumer.consume(1000, 0.2):
                if m.error() is not None:
                    continue  # the fetcher retries on its own (a leader moving, a timeout)
                p, off = m.partition(), m.offset()
                if off >= hw[p]:
                    continue  # past the high watermark we measured: not part of this read
                position[p] = max(position[p], off + 1)
                ident = decode_value(m.value())
                if ident is None:
                    reads.append(Read(p, off, None, None, (m.value() or b"")[:40].decode(errors="replace")))
                else:
                    reads.append(Read(p, off, ident[0], ident[1]))
        return reads, hw
    finally:
        consumer.close()


def run_workload(cluster: Any, topic: str, *, duration_s: float, rate: float = 500.0,
                 producer_config: Mapping[str, Any] | None = None,
                 schedule: Iterable[FaultAction] = (), producers: int = 1, keys: int = 1000,
                 value_size: int = 64, flush_timeout_s: float = 60.0, settle_timeout_s: float = 60.0,
                 read_timeout_s: float = 60.0, during: Callable[[float], None] | None = None,
                 meta: Mapping[str, Any] | None = None) -> History:
    """Produce to `topic` (which must exist) for duration_s while `schedule` runs; then mend
    the cluster, read everything back and return the History.

    `rate` is records per second over all `producers`; record i goes to producer i % producers
    with key `k<i % keys>`, so keys spread over partitions. `during(t)` is called from the
    producing loop about every 100 ms (t: seconds since start), for a lab to chart progress.
    """
    if duration_s <= 0 or rate <= 0 or producers < 1:
        raise ValueError("duration_s and rate must be > 0 and producers >= 1")
    partitions = len(cluster.describe_topic(topic, fresh=False))
    cfg = dict(producer_config or {})
    clients = [cluster.producer(cfg) for _ in range(producers)]
    sent: list[list[Sent]] = [[] for _ in range(producers)]
    t0 = time.monotonic()

    def on_delivery(err: Any, msg: Any) -> None:
        ident = decode_value(msg.value())
        if ident is None:
            return
        s = sent[ident[0]][ident[1]]
        s.done_s = round(time.monotonic() - t0, 4)
        if err is None:
            s.status, s.partition, s.offset = ACKED, msg.partition(), msg.offset()
        else:
            s.status, s.partition, s.error = FAILED, msg.partition(), str(err)

    actions = list(schedule)
    injector = FaultInjector(cluster, actions, t0)
    injector.start()
    faults: list[dict[str, Any]] = []
    try:
        i = 0
        next_tick = 0.0
        while (now := time.monotonic() - t0) < duration_s:
            due = int(now * rate) + 1
            while i < due:
                k = i % producers
                seq = len(sent[k])
                s = Sent(k, seq, round(now, 4))
                sent[k].append(s)
                try:
                    clients[k].produce(topic, value=encode_value(k, seq, value_size),
                                       key=b"k%d" % (i % keys), on_delivery=on_delivery)
                except (BufferError, KafkaError, KafkaLabError) as e:
                    s.status, s.error = FAILED, f"produce() raised {type(e).__name__}: {e}"
                i += 1
            if during is not None and now >= next_tick:
                during(now)
                next_tick = now + 0.1
            for c in clients:
                c.poll(0)
            clients[0].poll(max(0.0, min((i / rate) - (time.monotonic() - t0), 0.05)))
        produce_s = time.monotonic() - t0
    finally:
        injector.stop()
        faults.extend(injector.applied)
        faults.extend(restore(cluster, t0))
    # Repaired: let the producers finish (retries go to the new leaders), then settle and read.
    left = 0
    deadline = time.monotonic() + flush_timeout_s
    for c in clients:
        left += c.flush(max(0.0, deadline - time.monotonic()))
    for c in clients:
        c.close(0)
    flushed_s = time.monotonic() - t0
    settled = wait_for_leaders(cluster, topic, settle_timeout_s)
    settled_s = time.monotonic() - t0
    # What the read-back starts from, for whoever has to explain an anomaly.
    state = cluster.describe_topic(topic)
    topic_state = [{"partition": int(r.partition), "leader": int(r.leader), "leader_epoch": int(r.leader_epoch),
                    "isr": [int(b) for b in r.isr], "high_watermark": int(r.high_watermark),
                    "log_end_offsets": {str(b): int(o) for b, o in r.log_end_offsets.items()}}
                   for r in state.itertuples()]
    reads, hw = read_back(cluster, topic, partitions, read_timeout_s)
    return History(
        topic=topic, partitions=partitions, sent=[s for per in sent for s in per], read=reads,
        faults=faults,
        meta={"rate": rate, "duration_s": duration_s, "producers": producers, "keys": keys,
              "value_size": value_size,
              "producer_config": {k: v for k, v in cfg.items() if not callable(v)},
              "schedule": [a.to_dict() for a in actions], "undelivered_after_flush": left,
              "produce_s": round(produce_s, 3), "flushed_s": round(flushed_s, 3),
              "settled_s": round(settled_s, 3), "read_s": round(time.monotonic() - t0, 3),
              "full_isr_before_read": settled,
              "topic_state_before_read": topic_state, "high_watermarks": {str(p): h for p, h in hw.items()},
              **dict(meta or {})})
