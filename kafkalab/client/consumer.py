"""Consumer: confluent-kafka's API over the lab cluster, with manual assignment.

assign() partitions, then poll()/consume() Messages the Fetcher thread prefetched. Group
membership (subscribe, commit, committed) comes with the consumer-groups lab.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafkalab.client.config import consumer_config
from kafkalab.client.context import ClientContext
from kafkalab.client.fetcher import Fetcher, MessageQueue, PartitionState
from kafkalab.client.message import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    Message,
    TopicPartition,
)
from kafkalab.client.metadata import ClusterMetadata
from kafkalab.errors import KafkaLabError
from kafkalab.protocol.build import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    list_offsets_request,
    list_offsets_results,
)
from kafkalab.protocol.errors import ErrorCode, KafkaError

_GROUPS_LATER = ("{} belongs to consumer groups, which come with the consumer-groups lab; "
                 "for now use assign([TopicPartition(topic, partition, offset)]) and seek()")


def _timeout(timeout: float | None) -> float | None:
    return None if timeout is None or timeout < 0 else timeout


class Consumer:
    """Consumer(config, ctx): build it with cluster.consumer(config)."""

    def __init__(self, config: Mapping[str, Any] | None = None, ctx: ClientContext | None = None):
        if ctx is None:
            raise TypeError("a kafkalab Consumer needs the cluster's ClientContext: "
                            "create it with cluster.consumer(config)")
        self._cfg = consumer_config(config)
        self._ctx = ctx
        self._lock = threading.Lock()
        self._assignment: dict[tuple[str, int], PartitionState] = {}
        self._consumed: dict[tuple[str, int], int] = {}  # next offset the application will see
        self._queue = MessageQueue()
        self._closed = False
        self._fetcher = Fetcher(ctx, self._cfg, self._lock, self._assignment, self._queue)
        self._fetcher.start()
        self._fetcher.started_ok.wait()
        self._fetcher.check()

    @property
    def node(self) -> str:
        return self._ctx.node

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._cfg)

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaLabError("the consumer is closed: create a new one")
        self._fetcher.check()

    # ---- assignment -------------------------------------------------------------------
    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions (replacing the current assignment). An offset of
        OFFSET_BEGINNING/OFFSET_END or an absolute offset says where to start; none
        (OFFSET_INVALID/OFFSET_STORED) means auto.offset.reset."""
        self._check_open()
        tps = self._checked(partitions)
        with self._lock:
            gone = set(self._assignment) - {(tp.topic, tp.partition) for tp in tps}
            for key in gone:
                del self._assignment[key]
                self._consumed.pop(key, None)
            for tp in tps:
                key = (tp.topic, tp.partition)
                old = self._assignment.get(key)
                start = tp.offset if tp.offset >= 0 or tp.offset in (OFFSET_BEGINNING, OFFSET_END) \
                    else OFFSET_INVALID
                self._assignment[key] = PartitionState(start, version=(old.version + 1) if old else 0)
                self._consumed.pop(key, None)
        self._queue.drop(gone | {(tp.topic, tp.partition) for tp in tps})
        self._fetcher.waker.wake()

    def unassign(self) -> None:
        self.assign([])

    def assignment(self) -> list[TopicPartition]:
        with self._lock:
            return [TopicPartition(t, p) for t, p in sorted(self._assignment)]

    def seek(self, partition: TopicPartition) -> None:
        """Fetch `partition` from partition.offset next (absolute, OFFSET_BEGINNING or OFFSET_END)."""
        self._check_open()
        (tp,) = self._checked([partition])
        key = (tp.topic, tp.partition)
        if tp.offset < 0 and tp.offset not in (OFFSET_BEGINNING, OFFSET_END):
            raise ValueError(f"seek() to offset {tp.offset}: use an offset >= 0, OFFSET_BEGINNING "
                             "or OFFSET_END")
        with self._lock:
            st = self._assignment.get(key)
            if st is None:
                raise KafkaError(ErrorCode.unknown_topic_or_partition,
                                 f"seek() on {tp.topic}[{tp.partition}], which is not assigned: "
                                 "assign() it first")
            self._restart(key, st, tp.offset)
        self._queue.drop({key})
        self._fetcher.waker.wake()

    def _restart(self, key: tuple[str, int], st: PartitionState, position: int) -> None:
        st.position = position
        st.version += 1
        st.in_flight = False
        st.failed = False
        st.retry_at = 0.0
        if position >= 0:
            self._consumed[key] = position
        else:
            self._consumed.pop(key, None)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop fetching these partitions; messages already fetched for them are dropped and
        fetched again after resume()."""
        keys = {(tp.topic, tp.partition) for tp in self._checked(partitions)}
        with self._lock:
            for key in keys:
                st = self._assignment.get(key)
                if st is None:
                    continue
                st.paused = True
                back = self._consumed.get(key)
                if back is not None:
                    self._restart(key, st, back)
                    st.paused = True
        self._queue.drop(keys)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in self._checked(partitions)}
        with self._lock:
            for key in keys:
                st = self._assignment.get(key)
                if st is not None:
                    st.paused = False
        self._fetcher.waker.wake()

    def position(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        """The offset of the next message poll() will return, per partition
        (OFFSET_INVALID until known)."""
        out = []
        with self._lock:
            for tp in self._checked(partitions):
                key = (tp.topic, tp.partition)
                pos = self._consumed.get(key)
                if pos is None:
                    st = self._assignment.get(key)
                    pos = st.position if st is not None and st.position >= 0 else OFFSET_INVALID
                out.append(TopicPartition(tp.topic, tp.partition, pos))
        return out

    # ---- reading ------------------------------------------------------------------------
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        """Up to num_messages messages: returns when that many arrived or after timeout s
        (-1: no timeout), like confluent-kafka."""
        self._check_open()
        if not isinstance(num_messages, int) or num_messages < 1:
            raise ValueError(f"num_messages must be an int >= 1, got {num_messages!r}")
        t = _timeout(timeout)
        deadline = None if t is None else time.monotonic() + t
        q = self._queue
        out: list[Message] = []
        # As librdkafka's consume_batch: wait until num_messages are here or the timeout passes.
        with q.cond:
            while True:
                while q.items and len(out) < num_messages:
                    out.append(q.items.popleft())
                if len(out) >= num_messages or self._fetcher.failure is not None:
                    break
                left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if left <= 0:
                    break
                if out:
                    self._fetcher.waker.wake()  # the queue has room again
                q.cond.wait(left)
        self._fetcher.check()
        with self._lock:
            for m in out:
                if m.error() is None:
                    self._consumed[(m.topic(), m.partition())] = m.offset() + 1
        self._fetcher.waker.wake()  # the queue has room again
        return out

    def poll(self, timeout: float | None = None) -> Message | None:
        """One message, or None after timeout s (None or -1: wait forever)."""
        got = self.consume(1, -1 if timeout is None else timeout)
        return got[0] if got else None

    # ---- offsets ----------------------------------------------------------------------
    def get_watermark_offsets(self, partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        """(low, high): log start offset and high watermark; cached=True uses the last fetch
        response (OFFSET_INVALID if none yet)."""
        self._check_open()
        (tp,) = self._checked([partition])
        key = (tp.topic, tp.partition)
        if cached:
            with self._lock:
                st = self._assignment.get(key)
                if st is None:
                    return (OFFSET_INVALID, OFFSET_INVALID)
                return (st.log_start_offset, st.high_watermark)
        low = self._list_offsets({key: EARLIEST_TIMESTAMP}, timeout)[key]
        high = self._list_offsets({key: LATEST_TIMESTAMP}, timeout)[key]
        return (low, high)

    def offsets_for_times(self, partitions: Iterable[TopicPartition], timeout: float | None = None
                          ) -> list[TopicPartition]:
        """For each TopicPartition whose offset holds a timestamp (ms), the earliest offset whose
        record timestamp is >= it (OFFSET_END, -1, if none)."""
        self._check_open()
        tps = self._checked(partitions)
        found = self._list_offsets({(tp.topic, tp.partition): tp.offset for tp in tps}, timeout)
        return [TopicPartition(tp.topic, tp.partition, found[(tp.topic, tp.partition)]) for tp in tps]

    def _list_offsets(self, wanted: dict[tuple[str, int], int], timeout: float | None) -> dict[tuple[str, int], int]:
        t = _timeout(timeout)
        deadline = None if t is None else time.monotonic() + t
        md = self._ensure_metadata({k[0] for k in wanted}, deadline)
        by_leader: dict[int, dict[str, dict[int, int]]] = {}
        for (topic, p), ts in wanted.items():
            leader = md.leader_for(topic, p)
            if leader is None:
                raise KafkaError(ErrorCode.leader_not_available,
                                 f"{topic}[{p}] has no leader right now: try again in a moment")
            by_leader.setdefault(leader, {}).setdefault(topic, {})[p] = ts
        iso = 1 if self._cfg["isolation.level"] == "read_committed" else 0
        futs = [self._fetcher.request(leader, lambda s=spec: list_offsets_request(s, isolation_level=iso),
                                      list_offsets_results)
                for leader, spec in by_leader.items()]
        out: dict[tuple[str, int], int] = {}
        for fut in futs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            for topic, rows in fut.result(left).items():
                for p, row in rows.items():
                    if row["error_code"]:
                        raise KafkaError(row["error_code"], f"ListOffsets for {topic}[{p}]")
                    out[(topic, p)] = row["offset"]
        return out

    def _ensure_metadata(self, topics: set[str], deadline: float | None) -> Any:
        net = self._fetcher.net
        assert net is not None
        if any(net.metadata.partition_info(t) is None for t in topics):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._fetcher.list_metadata(sorted(topics)).result(left)
        for t in topics:
            if net.metadata.partition_info(t) is None:
                raise KafkaError(ErrorCode.unknown_topic_or_partition,
                                 f"topic {t!r} is not in the cluster's metadata: create it first")
        return net.metadata

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMetadata:
        self._check_open()
        self._fetcher.list_metadata(None if topic is None else [topic]).result(_timeout(timeout))
        assert self._fetcher.net is not None
        return self._fetcher.net.metadata.snapshot(None if topic is None else [topic])

    def _checked(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        if isinstance(partitions, TopicPartition):
            raise TypeError("pass a list of TopicPartition, e.g. [TopicPartition('orders', 0)]")
        out = list(partitions)
        for tp in out:
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"expected TopicPartition, got {tp!r}")
            if tp.partition < 0:
                raise ValueError(f"TopicPartition({tp.topic!r}) needs a partition number >= 0")
        return out

    # ---- consumer groups: later -------------------------------------------------------------
    def subscribe(self, topics: Any, on_assign: Any = None, on_revoke: Any = None,
                  on_lost: Any = None) -> None:
        raise NotImplementedError(_GROUPS_LATER.format("subscribe()"))

    def unsubscribe(self) -> None:
        raise NotImplementedError(_GROUPS_LATER.format("unsubscribe()"))

    def commit(self, message: Any = None, offsets: Any = None, asynchronous: bool = True) -> Any:
        raise NotImplementedError(_GROUPS_LATER.format("commit()"))

    def committed(self, partitions: Any, timeout: float | None = None) -> Any:
        raise NotImplementedError(_GROUPS_LATER.format("committed()"))

    def store_offsets(self, message: Any = None, offsets: Any = None) -> None:
        raise NotImplementedError(_GROUPS_LATER.format("store_offsets()"))

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fetcher.stop()
        self._fetcher.join(timeout=5)

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Consumer {self._ctx.node} assigned={len(self._assignment)}>"
