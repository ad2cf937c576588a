"""Consumer: confluent-kafka's API over the lab cluster.

assign() partitions, or subscribe() to topics as a member of group.id (group_member.py runs
the group protocol inside the Fetcher's I/O thread); then poll()/consume() Messages the
Fetcher prefetched. Rebalance callbacks, commits and auto commits run in the caller's thread,
inside poll()/consume(), as in Kafka's and librdkafka's consumers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kafkalab.client.config import consumer_config
from kafkalab.client.consumer_group_member import ConsumerGroupMember
from kafkalab.client.context import ClientContext
from kafkalab.client.fetcher import Fetcher, MessageQueue, PartitionState
from kafkalab.client.group_member import GroupMember
from kafkalab.client.membership import GroupDriver
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

_NEEDS_GROUP = ("{} needs a consumer group: create the consumer with a 'group.id', "
                "e.g. cluster.consumer({{'group.id': 'billing'}}) (see the consumer-groups lab)")


@dataclass(frozen=True, slots=True)
class GroupMetadata:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None


class GroupRequiredError(KafkaLabError, ValueError):
    """A group method on a consumer without group.id."""


def _timeout(timeout: float | None) -> float | None:
    return None if timeout is None or timeout < 0 else timeout


class Consumer:
    """Consumer(config, ctx): build it with cluster.consumer(config)."""

    def __init__(self, config: Mapping[str, Any] | None = None, ctx: ClientContext | None = None):
        if ctx is None:
            raise TypeError("a kafkalab Consumer needs the cluster's ClientContext: "
                            "create it with cluster.consumer(config)")
        config = dict(config or {})
        strategies = config.get("partition.assignment.strategy")
        if callable(strategies) or (isinstance(strategies, (list, tuple)) and any(map(callable, strategies))):
            # A Python assignor: the config catalog checks the named ones only.
            strategies = list(strategies) if isinstance(strategies, (list, tuple)) else [strategies]
            named = [s for s in strategies if not callable(s)]
            config.pop("partition.assignment.strategy")
            if named:
                config["partition.assignment.strategy"] = named
        self._cfg = consumer_config(config)
        if strategies is None or not any(map(callable, strategies)):
            strategies = self._cfg["partition.assignment.strategy"]
        else:
            strategies = [s if callable(s) else consumer_config({"partition.assignment.strategy": [s]})
                          ["partition.assignment.strategy"][0] for s in strategies]
        self._ctx = ctx
        self._lock = threading.Lock()
        self._assignment: dict[tuple[str, int], PartitionState] = {}
        self._consumed: dict[tuple[str, int], int] = {}  # next offset the application will see
        # Partitions with messages consume() has taken off the queue but not handed out yet.
        self._in_hand: set[tuple[str, int]] = set()
        self._queue = MessageQueue()
        self._closed = False
        self.closed_because: str | None = None  # set by a Cluster that closes its clients
        self._member: GroupMember | None = None
        self._callbacks: dict[str, Any] = {}
        self._next_auto_commit = 0.0
        driver = None
        if self._cfg["group.id"] is not None and self._cfg["group.protocol"] == "consumer":
            # KIP-848: the broker assigns; the member heartbeats and reconciles (same face).
            self._member = ConsumerGroupMember(self._cfg["group.id"], self._cfg, ctx.node)
            driver = GroupDriver(self._member)
        elif self._cfg["group.id"] is not None:
            self._member = GroupMember(self._cfg["group.id"], self._cfg, list(strategies), ctx.node,
                                       lambda topics: driver.partition_counts(self._fetcher.net, topics))
            driver = GroupDriver(self._member)
        self._fetcher = Fetcher(ctx, self._cfg, self._lock, self._assignment, self._queue, group=driver)
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
            why = f" ({self.closed_because})" if self.closed_because else ""
            raise KafkaLabError(f"the consumer is closed{why}: create a new one")
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
        st.delivered_to = OFFSET_INVALID
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
                pos = self._app_position(key)
                if pos is None:
                    st = self._assignment.get(key)
                    pos = st.position if st is not None and st.position >= 0 else OFFSET_INVALID
                out.append(TopicPartition(tp.topic, tp.partition, pos))
        return out

    def _app_position(self, key: tuple[str, int]) -> int | None:
        """The next offset the application will see (call with the lock held). Past the last
        message handed out, it skips transaction markers and aborted records once nothing of
        the partition is waiting in the queue, as Kafka's consumer does: otherwise a
        transactional topic would show a lag of 1 forever after its last commit marker."""
        pos = self._consumed.get(key)
        st = self._assignment.get(key)
        if pos is not None and st is not None and st.delivered_to > pos and not self._queue.holds(key) \
                and key not in self._in_hand:
            self._consumed[key] = pos = st.delivered_to
        return pos

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
        while True:
            if self._member is not None:
                self._serve_group()
            with q.cond:
                while q.items and len(out) < num_messages:
                    m = q.items.popleft()
                    out.append(m)
                    self._in_hand.add((m.topic(), m.partition()))
                if len(out) >= num_messages or self._fetcher.failure is not None:
                    break
                left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if left <= 0:
                    break
                if out:
                    self._fetcher.waker.wake()  # the queue has room again
                if self._member is None or not self._member.events:
                    q.cond.wait(left)
        self._fetcher.check()
        with self._lock:
            for m in out:
                key = (m.topic(), m.partition())
                # A message of a partition revoked meanwhile is not handed out.
                if m.error() is None and key in self._assignment:
                    self._consumed[key] = m.offset() + 1
            self._in_hand.clear()
            if self._member is not None:
                out = [m for m in out if m.error() is not None or (m.topic(), m.partition()) in self._assignment]
        self._fetcher.waker.wake()  # the queue has room again
        if self._member is not None:
            # No auto commit here: `out` is not processed yet. The next call commits it (at-least-once).
            self._serve_group(auto_commit=False)
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
        backoff = self._cfg["retry.backoff.ms"] / 1000
        while True:
            try:
                return self._list_offsets_once(wanted, deadline)
            except KafkaError as e:
                # A leader that just died or moved: like Kafka's clients, refresh the metadata
                # and ask again until the timeout, rather than fail on a failover in progress.
                if not e.retriable or (deadline is not None and time.monotonic() + backoff >= deadline):
                    raise
            time.sleep(backoff)
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._fetcher.list_metadata(sorted({k[0] for k in wanted})).result(left)
            except KafkaError:
                pass  # the next attempt reports it, or the deadline does

    def _list_offsets_once(self, wanted: dict[tuple[str, int], int], deadline: float | None
                           ) -> dict[tuple[str, int], int]:
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

    # ---- consumer groups --------------------------------------------------------------------
    def subscribe(self, topics: Any, on_assign: Any = None, on_revoke: Any = None,
                  on_lost: Any = None) -> None:
        """Join group.id and read the partitions of `topics` the group's assignor gives this
        member. Callbacks take (consumer, [TopicPartition]) and run inside poll()/consume():
        on_revoke before partitions go (commit there), on_assign when they come (offsets
        start from the group's committed ones, else auto.offset.reset), on_lost when the
        membership was lost (they may already be someone else's; on_revoke if not given)."""
        self._check_open()
        if self._member is None:
            raise GroupRequiredError(_NEEDS_GROUP.format("subscribe()"))
        if isinstance(topics, str):
            raise TypeError("subscribe() takes a list of topics, e.g. ['orders']")
        topics = [str(t) for t in topics]
        self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        member = self._member
        self._fetcher.submit(lambda net: member.subscribe(topics, time.monotonic())).result(5)

    def unsubscribe(self) -> None:
        if self._member is not None:
            self._leave_group()
            self._serve_group()

    def _leave_group(self) -> None:
        """Commit (auto commit), then LeaveGroup so the group rebalances at once; a static
        member does not leave (its group.instance.id keeps its place for session.timeout.ms)."""
        member = self._member
        assert member is not None
        if self._cfg["enable.auto.commit"] and self._assignment:
            try:
                self.commit(asynchronous=False)
            except Exception:
                pass  # leaving anyway: the next owner starts from the last commit

        def leave(net: Any) -> Any:
            from concurrent.futures import Future
            fut: Future = Future()
            if member.member_id and member.coordinator is not None and member.instance_id is None:
                net.send(member.coordinator, member.leave_request(), fut.set_result, time.monotonic())
            else:
                fut.set_result(None)
            member.topics = []
            member.owned = []
            member.member_id, member.generation, member.state = "", -1, "unjoined"
            return fut

        try:
            self._fetcher.submit(leave).result(2).result(2)
        except Exception:
            pass
        with self._lock:
            self._assignment.clear()
            self._consumed.clear()
        self._queue.drop(set())

    def _serve_group(self, auto_commit: bool = True) -> None:
        """In the application's thread: run rebalance callbacks, apply assignment changes,
        auto commit (the positions of records earlier calls returned); tell the member when done."""
        member = self._member
        assert member is not None
        member.last_poll = time.monotonic()
        if member.error is not None and not member.events:
            err, member.error = member.error, None
            raise err
        while member.events:
            kind, tps, seq = member.events.popleft()
            parts = [TopicPartition(t, p) for t, p in tps]
            if kind == "assign":
                self._assign_from_group(parts)
            else:
                cb = self._callbacks.get(kind) or self._callbacks.get("revoke")
                if cb is not None:
                    cb(self, parts)
                if kind == "revoke" and self._cfg["enable.auto.commit"] and parts:
                    try:
                        self.commit(offsets=self._positions(parts), asynchronous=False)
                    except Exception as e:  # e.g. the generation moved on: the next owner rereads
                        import logging
                        logging.getLogger(__name__).info("%s: commit on revoke failed: %s", self.node, e)
                with self._lock:
                    for tp in parts:
                        self._assignment.pop((tp.topic, tp.partition), None)
                        self._consumed.pop((tp.topic, tp.partition), None)
                self._queue.drop({(tp.topic, tp.partition) for tp in parts})
            member.app_done = seq
        self._fetcher.waker.wake()
        now = time.monotonic()
        if auto_commit and self._cfg["enable.auto.commit"] and now >= self._next_auto_commit:
            self._next_auto_commit = now + self._cfg["auto.commit.interval.ms"] / 1000
            offsets = self._positions(self.assignment())
            if offsets and member.generation >= 0:
                self.commit(offsets=offsets, asynchronous=True)

    def _assign_from_group(self, parts: list[TopicPartition]) -> None:
        committed = {(tp.topic, tp.partition): tp.offset for tp in self.committed(parts, timeout=10)} if parts else {}
        for tp in parts:
            tp.offset = committed.get((tp.topic, tp.partition), OFFSET_INVALID)
        cb = self._callbacks.get("assign")
        if cb is not None:
            cb(self, parts)  # it may change tp.offset to choose where to start
        with self._lock:
            for tp in parts:
                key = (tp.topic, tp.partition)
                start = tp.offset if tp.offset >= 0 or tp.offset in (OFFSET_BEGINNING, OFFSET_END) else OFFSET_INVALID
                self._assignment[key] = PartitionState(start)
                if start >= 0:
                    self._consumed[key] = start
        self._fetcher.waker.wake()

    def _positions(self, parts: Iterable[TopicPartition]) -> list[TopicPartition]:
        with self._lock:
            return [TopicPartition(tp.topic, tp.partition, pos) for tp in parts
                    if (pos := self._app_position((tp.topic, tp.partition))) is not None]

    def _coordinator(self, deadline: float | None) -> int:
        member = self._member
        if member is None:
            raise GroupRequiredError(_NEEDS_GROUP.format("committing offsets"))
        member.want_coordinator = True
        self._fetcher.waker.wake()
        while member.coordinator is None:
            if deadline is not None and time.monotonic() > deadline:
                raise KafkaError(ErrorCode.coordinator_not_available,
                                 f"no coordinator found for group {member.group_id!r}")
            time.sleep(0.02)
        return member.coordinator

    def commit(self, message: Message | None = None, offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> list[TopicPartition] | None:
        """Commit offsets (the next offset to read) to the group: message's offset + 1, or
        `offsets`, or every assigned partition's position. Synchronous: returns the
        partitions, raises KafkaError if the coordinator refused them."""
        from kio.schema.offset_commit.v8 import request as oc_req
        self._check_open()
        member = self._member
        if member is None:
            raise GroupRequiredError(_NEEDS_GROUP.format("commit()"))
        if message is not None:
            offsets = [TopicPartition(message.topic(), message.partition(), message.offset() + 1)]
        elif offsets is None:
            offsets = self._positions(self.assignment())
        if not offsets:
            if asynchronous:
                return None
            raise KafkaError(ErrorCode.no_offset if hasattr(ErrorCode, "no_offset") else ErrorCode.unknown_server_error,
                             "commit(): nothing consumed yet, no offsets to commit")
        by_topic: dict[str, list[Any]] = {}
        for tp in offsets:
            by_topic.setdefault(tp.topic, []).append(oc_req.OffsetCommitRequestPartition(
                partition_index=tp.partition, committed_offset=tp.offset, committed_leader_epoch=-1,
                committed_metadata=None))
        req = oc_req.OffsetCommitRequest(
            group_id=member.group_id, generation_id_or_member_epoch=member.generation if member.member_id else -1,
            member_id=member.member_id, group_instance_id=member.instance_id,
            topics=tuple(oc_req.OffsetCommitRequestTopic(name=t, partitions=tuple(ps)) for t, ps in by_topic.items()))
        deadline = time.monotonic() + self._cfg["request.timeout.ms"] / 1000
        if asynchronous:
            fut = self._fetcher.request(self._coordinator(deadline), lambda: req)
            on_commit = self._cfg.get("on_commit")
            if on_commit is not None:
                fut.add_done_callback(lambda f: on_commit(f.exception(), offsets))
            return None
        # Like Kafka's commitSync: retriable errors (the coordinator moved or its broker died,
        # a timeout) are retried, finding the coordinator again, until default.api.timeout.ms.
        give_up = time.monotonic() + self._cfg["default.api.timeout.ms"] / 1000
        while True:
            try:
                return self._commit_once(member, req, offsets)
            except KafkaError as e:
                if not e.retriable or time.monotonic() >= give_up:
                    raise
            time.sleep(self._cfg["retry.backoff.ms"] / 1000)

    def _commit_once(self, member: GroupMember, req: Any, offsets: list[TopicPartition]) -> list[TopicPartition]:
        timeout = self._cfg["request.timeout.ms"] / 1000
        try:
            resp = self._fetcher.request(self._coordinator(time.monotonic() + timeout), lambda: req).result(timeout)
        except KafkaError:
            member.coordinator = None
            raise
        except TimeoutError:
            member.coordinator = None
            raise KafkaError(ErrorCode.request_timed_out, "commit: no answer from the group coordinator") from None
        out = []
        for t in resp.topics:
            for p in t.partitions:
                if p.error_code != ErrorCode.none:
                    if p.error_code in (ErrorCode.not_coordinator, ErrorCode.coordinator_not_available):
                        member.coordinator = None
                    raise KafkaError(p.error_code, f"commit of {t.name}[{p.partition_index}] refused")
                out.append(TopicPartition(str(t.name), int(p.partition_index),
                                          next(tp.offset for tp in offsets
                                               if tp.topic == t.name and tp.partition == p.partition_index)))
        return out

    def committed(self, partitions: Iterable[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        """The group's committed offset of each partition (OFFSET_INVALID if none)."""
        from kio.schema.offset_fetch.v8 import request as of_req
        self._check_open()
        member = self._member
        if member is None:
            raise GroupRequiredError(_NEEDS_GROUP.format("committed()"))
        tps = self._checked(partitions)
        by_topic: dict[str, list[int]] = {}
        for tp in tps:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        req = of_req.OffsetFetchRequest(groups=(of_req.OffsetFetchRequestGroup(
            group_id=member.group_id, topics=tuple(of_req.OffsetFetchRequestTopics(name=t, partition_indexes=tuple(ps))
                                                   for t, ps in by_topic.items())),), require_stable=True)
        t = _timeout(timeout)
        deadline = None if t is None else time.monotonic() + t
        while True:
            left = None if deadline is None else max(0.01, deadline - time.monotonic())
            try:
                resp = self._fetcher.request(self._coordinator(deadline), lambda: req).result(left)
            except KafkaError:
                member.coordinator = None  # unreachable (e.g. killed): look it up again
                if deadline is not None and time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            g = resp.groups[0]
            if g.error_code in (ErrorCode.not_coordinator, ErrorCode.coordinator_load_in_progress,
                                ErrorCode.coordinator_not_available):
                if g.error_code != ErrorCode.coordinator_load_in_progress:
                    member.coordinator = None
                if deadline is not None and time.monotonic() > deadline:
                    raise KafkaError(g.error_code, f"committed(): group {member.group_id!r}")
                time.sleep(0.05)
                continue
            if g.error_code != ErrorCode.none:
                raise KafkaError(g.error_code, f"committed(): group {member.group_id!r}")
            if any(p.error_code == ErrorCode.unstable_offset_commit for t in g.topics for p in t.partitions):
                # A transaction's offsets are pending: wait for its marker (require_stable).
                if deadline is not None and time.monotonic() > deadline:
                    raise KafkaError(ErrorCode.unstable_offset_commit, f"committed(): group {member.group_id!r}")
                time.sleep(0.05)
                continue
            found = {(str(t.name), int(p.partition_index)): int(p.committed_offset)
                     for t in g.topics for p in t.partitions}
            return [TopicPartition(tp.topic, tp.partition,
                                   found.get((tp.topic, tp.partition), -1) if found.get((tp.topic, tp.partition), -1) >= 0
                                   else OFFSET_INVALID) for tp in tps]

    def member_id(self) -> str | None:
        return self._member.member_id if self._member is not None else None

    def consumer_group_metadata(self) -> GroupMetadata:
        """What send_offsets_to_transaction needs to fence a zombie consumer's commits."""
        if self._member is None:
            raise GroupRequiredError(_NEEDS_GROUP.format("consumer_group_metadata()"))
        m = self._member
        return GroupMetadata(m.group_id, m.generation, m.member_id or "", m.instance_id)

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        if self._member is not None and self._fetcher.is_alive():
            self._leave_group()
        self._closed = True
        self._fetcher.stop()
        self._fetcher.join(timeout=5)

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Consumer {self._ctx.node} assigned={len(self._assignment)}>"
