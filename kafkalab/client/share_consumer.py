"""ShareConsumer: a member of a share group (KIP-932), with confluent-kafka's method names.

    c = cluster.share_consumer({"group.id": "jobs", "share.acknowledgement.mode": "explicit"})
    c.subscribe(["orders"])
    for msg in c.poll(1.0):            # a batch of records this consumer has *acquired*
        c.acknowledge(msg, AcknowledgeType.ACCEPT)   # or RELEASE (again, later) / REJECT
    c.commit_sync()                    # {TopicPartition: None | KafkaError}
    c.close()

The broker assigns partitions (many consumers may share one); poll() sends ShareFetch to
each partition's leader, carrying the acknowledgements made so far, and returns the records
it acquired, each with its delivery_count(). In implicit mode (the default) the records of a
poll are accepted by the next poll() or commit. `ShareGroupMember` is the pure heartbeat
machine; `ShareIo` runs it in the client's I/O thread.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from enum import IntEnum
from typing import Any

from kio.schema.find_coordinator.v4 import request as fc_req
from kio.schema.share_acknowledge.v1 import request as sa_req
from kio.schema.share_fetch.v1 import request as sf_req
from kio.schema.share_group_heartbeat.v1 import request as sgh_req

from kafkalab.client.context import ClientContext
from kafkalab.client.fetched import messages_from_fetch
from kafkalab.client.io_thread import IoThread
from kafkalab.client.membership import COORDINATOR_ERRORS, Send
from kafkalab.client.message import Message, TopicPartition
from kafkalab.errors import ConfigError, KafkaLabError
from kafkalab.protocol.build import metadata_request, metadata_results
from kafkalab.protocol.errors import ErrorCode, KafkaError

TP = tuple[str, int]


class AcknowledgeType(IntEnum):
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3


class IllegalStateError(KafkaLabError, RuntimeError):
    """A share consumer was used in a way its state does not allow (names the fix)."""


class ShareMessage(Message):
    __slots__ = ("_delivery_count",)

    def __init__(self, m: Message, delivery_count: int):
        super().__init__(m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.headers(),
                         m.timestamp()[1], m.timestamp()[0], leader_epoch=m.leader_epoch())
        self._delivery_count = delivery_count

    def delivery_count(self) -> int:
        """How many times this record has been delivered (1: first time)."""
        return self._delivery_count


class ShareGroupMember:
    """Heartbeats (ShareGroupHeartbeat) for one share-group member. Pure: step(now) out."""

    def __init__(self, group_id: str, member_id: str, heartbeat_s: float = 0.5,
                 retry_backoff_s: float = 0.1):
        self.group_id, self.member_id = group_id, member_id
        self.retry_backoff_s = retry_backoff_s  # retry.backoff.ms
        self.topics: list[str] = []
        self.epoch = 0
        self.assignment: set[tuple[str, int]] = set()  # (topic id, partition)
        self.coordinator: int | None = None
        self.in_flight = False
        self.next_at = 0.0
        self.heartbeat_s = heartbeat_s
        self.error: KafkaError | None = None
        self.subscription_sent = False

    def step(self, now: float) -> list[Send]:
        if not self.topics or self.in_flight or now < self.next_at or self.error is not None:
            return []
        self.in_flight = True
        if self.coordinator is None:
            return [(None, fc_req.FindCoordinatorRequest(key_type=0, coordinator_keys=(self.group_id,)),
                     self._on_coordinator)]
        send_topics = self.epoch == 0 or not self.subscription_sent
        self.subscription_sent = True
        return [(self.coordinator, sgh_req.ShareGroupHeartbeatRequest(
            group_id=self.group_id, member_id=self.member_id, member_epoch=self.epoch, rack_id=None,
            subscribed_topic_names=tuple(self.topics) if send_topics else None), self._on_heartbeat)]

    def leave_request(self) -> Any:
        return sgh_req.ShareGroupHeartbeatRequest(group_id=self.group_id, member_id=self.member_id,
                                                  member_epoch=-1, rack_id=None, subscribed_topic_names=None)

    def _on_coordinator(self, resp: Any, now: float) -> None:
        self.in_flight = False
        c = None if isinstance(resp, Exception) else resp.coordinators[0]
        if c is not None and c.error_code == ErrorCode.none:
            self.coordinator = int(c.node_id)
        else:
            self.next_at = now + self.retry_backoff_s

    def _on_heartbeat(self, resp: Any, now: float) -> None:
        self.in_flight = False
        if isinstance(resp, Exception):
            self.coordinator, self.next_at = None, now + self.retry_backoff_s
            return
        code = ErrorCode(resp.error_code)
        if code in COORDINATOR_ERRORS:
            # A coordinator still loading its log is the right one: ask it again (Kafka's
            # heartbeat request manager); any other coordinator error means look it up again.
            if code != ErrorCode.coordinator_load_in_progress:
                self.coordinator = None
            self.next_at = now + self.retry_backoff_s
        elif code in (ErrorCode.unknown_member_id, ErrorCode.fenced_member_epoch):
            self.epoch, self.assignment, self.subscription_sent, self.next_at = 0, set(), False, now
        elif code != ErrorCode.none:
            self.error = KafkaError(code, f"share group {self.group_id}: {resp.error_message or code.name}")
        else:
            self.epoch = int(resp.member_epoch)
            self.heartbeat_s = max(0.01, resp.heartbeat_interval.total_seconds())
            self.next_at = now + self.heartbeat_s
            if resp.assignment is not None:
                self.assignment = {(str(tp.topic_id), int(p)) for tp in resp.assignment.topic_partitions
                                   for p in tp.partitions}


class ShareIo(IoThread):
    client_type = "share_consumer"

    def __init__(self, ctx: ClientContext, request_timeout_ms: int, member: ShareGroupMember):
        super().__init__(ctx, request_timeout_ms, name=f"kafkalab-share-{ctx.node}")
        self.member = member

    def step(self, now: float) -> float:
        assert self.net is not None
        for node, req, handler in self.member.step(now):
            def done(resp: Any, handler: Callable[[Any, float], None] = handler) -> None:
                handler(resp, time.monotonic())
            try:
                self.net.send(self.net.any_broker() if node is None else node, req, done, now)
            except KafkaError as e:
                done(e)
        return 0.05


class ShareConsumer:
    def __init__(self, config: dict[str, Any] | None = None, ctx: ClientContext | None = None):
        if ctx is None:
            raise TypeError("a kafkalab ShareConsumer needs the cluster's ClientContext: "
                            "create it with cluster.share_consumer(config)")
        cfg = dict(config or {})
        if not cfg.get("group.id"):
            raise ConfigError("share consumer config needs 'group.id' (the share group to join)")
        self.mode = str(cfg.pop("share.acknowledgement.mode", "implicit"))
        if self.mode not in ("implicit", "explicit"):
            raise ConfigError(f"share consumer config 'share.acknowledgement.mode'={self.mode!r} is not "
                              "one of ['implicit', 'explicit']")
        self.group_id = str(cfg["group.id"])
        self.max_records = int(cfg.get("max.poll.records", 500))
        self.max_wait_ms = int(cfg.get("fetch.max.wait.ms", 500))
        self._ctx = ctx
        self.member = ShareGroupMember(self.group_id, str(uuid.uuid4()),
                                       retry_backoff_s=int(cfg.get("retry.backoff.ms", 100)) / 1000)
        self._io = ShareIo(ctx, int(cfg.get("request.timeout.ms", 30_000)), self.member)
        self._io.start()
        self._io.started_ok.wait()
        self._io.check()
        self._names: dict[str, str] = {}  # topic id -> name
        self._sessions: dict[int, int] = {}  # leader -> next share session epoch
        self._in_flight: dict[TP, set[int]] = {}  # acquired, not yet acknowledged
        self._acks: dict[TP, dict[int, int]] = {}  # pending acknowledgements
        self._last: list[ShareMessage] = []
        self._closed = False

    @property
    def node(self) -> str:
        return self._ctx.node

    # -- membership --------------------------------------------------------------------------
    def subscribe(self, topics: list[str]) -> None:
        if isinstance(topics, str):
            raise TypeError("subscribe() takes a list of topics, e.g. ['orders']")
        self._check_open()
        topics = sorted({str(t) for t in topics})
        self._io.submit(lambda net: setattr(self.member, "topics", topics)).result(5)

    def subscription(self) -> list[str]:
        return list(self.member.topics)

    def assignment(self) -> list[TopicPartition]:
        """The partitions the broker gave this member (shared with other members, often)."""
        names = self._names
        if any(t not in names for t, _ in self.member.assignment):
            self._refresh(sorted(self.member.topics))
        return sorted((TopicPartition(names[t], p) for t, p in self.member.assignment if t in names),
                      key=lambda tp: (tp.topic, tp.partition))

    def unsubscribe(self) -> None:
        self._leave()

    # -- records -----------------------------------------------------------------------------
    def poll(self, timeout: float = -1) -> list[ShareMessage]:
        """Records acquired for this consumer (an empty list if none came within timeout)."""
        self._check_open()
        if self.member.error is not None:
            raise self.member.error
        if self.mode == "implicit":
            for m in self._last:
                if m.offset() in self._in_flight.get((m.topic(), m.partition()), set()):
                    self._add_ack(m, AcknowledgeType.ACCEPT)
        elif any(self._in_flight.values()):
            raise IllegalStateError("share.acknowledgement.mode=explicit: acknowledge() every record of "
                                    "the previous poll() before polling again")
        deadline = time.monotonic() + (timeout if timeout >= 0 else 3600)
        while True:
            out = self._fetch_round(max(0.0, min(self.max_wait_ms / 1000, deadline - time.monotonic())))
            if out or time.monotonic() >= deadline:
                self._last = out
                return out
            time.sleep(0.01)

    def acknowledge(self, message: Message, ack_type: int = AcknowledgeType.ACCEPT) -> None:
        self._check_open()
        if self.mode != "explicit":
            raise IllegalStateError("acknowledge() needs share.acknowledgement.mode=explicit")
        if int(ack_type) not in (1, 2, 3):
            raise ValueError(f"ack_type {ack_type!r}: use AcknowledgeType.ACCEPT, RELEASE or REJECT")
        tp = (message.topic(), message.partition())
        if message.offset() not in self._in_flight.get(tp, set()):
            raise IllegalStateError(f"record {tp[0]}-{tp[1]}@{message.offset()} is not in flight for this "
                                    "consumer (already acknowledged, or never delivered to it)")
        self._add_ack(message, int(ack_type))

    def _add_ack(self, m: Message, ack_type: int) -> None:
        tp = (m.topic(), m.partition())
        self._in_flight.get(tp, set()).discard(m.offset())
        self._acks.setdefault(tp, {})[m.offset()] = ack_type

    def commit_sync(self, timeout: float = 60) -> dict[TopicPartition, KafkaError | None]:
        """Send the pending acknowledgements; {partition: None | the broker's error}."""
        self._check_open()
        if self.mode == "implicit":
            for m in self._last:
                if m.offset() in self._in_flight.get((m.topic(), m.partition()), set()):
                    self._add_ack(m, AcknowledgeType.ACCEPT)
        futures = self._send_acks()
        done, _ = wait_futures(futures, timeout)
        out: dict[TopicPartition, KafkaError | None] = {}
        for f in done:
            out.update(f.result())
        return out

    def commit_async(self) -> None:
        self._send_acks()

    def close(self) -> None:
        if self._closed:
            return
        try:
            wait_futures(self._send_acks(close=True), 5)  # releases what it still holds
            self._leave()
        finally:
            self._closed = True
            self._io.stop()
            self._io.join(timeout=5)

    def __enter__(self) -> ShareConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the wire ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise IllegalStateError(f"{self.node}: the share consumer is closed; create a new one")
        self._io.check()

    def _leave(self) -> None:
        m = self.member

        def go(net: Any) -> Any:
            fut: Future = Future()
            if m.coordinator is not None and m.epoch > 0:
                net.send(m.coordinator, m.leave_request(), fut.set_result, time.monotonic())
            else:
                fut.set_result(None)
            m.topics, m.assignment, m.epoch = [], set(), 0
            return fut

        try:
            self._io.submit(go).result(2).result(2)
        except Exception:  # noqa: BLE001 - leaving anyway: the session timeout ends the membership
            pass

    def _partitions(self) -> dict[int, list[TP]]:
        """This member's partitions by leader (topic names and leaders from metadata)."""
        assignment = set(self.member.assignment)
        if any(t not in self._names for t, _ in assignment) or not assignment:
            if assignment:
                self._refresh(sorted(self.member.topics))
        net = self._io.net
        by_leader: dict[int, list[TP]] = {}
        for t, p in sorted(assignment):
            name = self._names.get(t)
            leader = net.metadata.leader_for(name, p) if name is not None and net is not None else None
            if leader is None:
                if name is not None:
                    self._refresh([name])
                continue
            by_leader.setdefault(leader, []).append((name, p))
        return by_leader

    def _refresh(self, topics: list[str]) -> None:
        def parse(resp: Any) -> None:
            assert self._io.net is not None
            self._io.net.metadata.update(metadata_results(resp), time.monotonic())
            for t in resp.topics:
                if t.topic_id is not None and t.name is not None:
                    self._names[str(t.topic_id)] = str(t.name)
        try:
            self._io.request(None, lambda: metadata_request(topics), parse).result(5)
        except Exception:  # noqa: BLE001 - the next poll asks again
            pass

    def _ids(self) -> dict[str, uuid.UUID]:
        return {name: uuid.UUID(tid) for tid, name in self._names.items()}

    def _next_epoch(self, leader: int, close: bool = False) -> int:
        epoch = self._sessions.get(leader, 0)
        if close:
            self._sessions.pop(leader, None)
            return -1
        self._sessions[leader] = epoch + 1
        return epoch

    def _ack_batches(self, cls: Any, tp: TP) -> tuple[Any, ...]:
        acks = self._acks.pop(tp, {})
        return tuple(cls(first_offset=o, last_offset=o, acknowledge_types=(t,)) for o, t in sorted(acks.items()))

    def _fetch_round(self, wait_s: float) -> list[ShareMessage]:
        by_leader = self._partitions()
        ids = self._ids()
        futures = []
        for leader, tps in by_leader.items():
            topics: dict[str, list[Any]] = {}
            for t, p in tps:
                topics.setdefault(t, []).append(sf_req.FetchPartition(
                    partition_index=p, acknowledgement_batches=self._ack_batches(sf_req.AcknowledgementBatch, (t, p))))
            epoch = self._next_epoch(leader)
            req = sf_req.ShareFetchRequest(
                group_id=self.group_id, member_id=self.member.member_id, share_session_epoch=epoch,
                max_wait=datetime.timedelta(seconds=wait_s), min_bytes=1, max_bytes=52_428_800,
                max_records=self.max_records, batch_size=self.max_records,
                topics=tuple(sf_req.FetchTopic(topic_id=ids[t], partitions=tuple(ps)) for t, ps in topics.items()),
                forgotten_topics_data=())
            futures.append((leader, self._io.request(leader, lambda r=req: r)))
        out: list[ShareMessage] = []
        for leader, f in futures:
            try:
                resp = f.result(wait_s + 5)
            except Exception:  # noqa: BLE001 - the leader is gone: a new session with the next one
                self._sessions.pop(leader, None)
                continue
            if resp.error_code != ErrorCode.none:
                self._sessions.pop(leader, None)
                continue
            for t in resp.responses:
                name = self._names.get(str(t.topic_id))
                for p in t.partitions:
                    if p.error_code != ErrorCode.none:
                        self._sessions.pop(leader, None)
                        if name is not None:
                            self._refresh([name])
                        continue
                    if name is None or not p.acquired_records:
                        continue
                    first = min(int(a.first_offset) for a in p.acquired_records)
                    msgs, _ = messages_from_fetch(name, int(p.partition_index), p.records, first)
                    counts = {o: int(a.delivery_count) for a in p.acquired_records
                              for o in range(int(a.first_offset), int(a.last_offset) + 1)}
                    for m in msgs:
                        if m.offset() in counts:
                            out.append(ShareMessage(m, counts[m.offset()]))
                            self._in_flight.setdefault((name, int(p.partition_index)), set()).add(m.offset())
        return out

    def _send_acks(self, close: bool = False) -> list[Future]:
        by_leader = self._partitions()
        ids = self._ids()
        futures = []
        for leader, tps in by_leader.items():
            topics: dict[str, list[Any]] = {}
            for t, p in tps:
                batches = self._ack_batches(sa_req.AcknowledgementBatch, (t, p))
                if batches:
                    topics.setdefault(t, []).append(sa_req.AcknowledgePartition(partition_index=p,
                                                                                acknowledgement_batches=batches))
            if not topics and not close:
                continue
            if leader not in self._sessions:  # no session with this leader (it changed): not sent
                if topics:
                    gone: Future = Future()
                    gone.set_result({TopicPartition(t, p.partition_index): KafkaError(
                        ErrorCode.share_session_not_found, "no share session with the partition's leader "
                        "(it changed); the records will be delivered again") for t, ps in topics.items() for p in ps})
                    futures.append(gone)
                continue
            req = sa_req.ShareAcknowledgeRequest(
                group_id=self.group_id, member_id=self.member.member_id,
                share_session_epoch=self._next_epoch(leader, close=close),
                topics=tuple(sa_req.AcknowledgeTopic(topic_id=ids[t], partitions=tuple(ps))
                             for t, ps in topics.items()))
            sent = [TopicPartition(t, p.partition_index) for t, ps in topics.items() for p in ps]
            futures.append(self._io.request(leader, lambda r=req: r,
                                            lambda resp, sent=sent, leader=leader: self._ack_results(resp, sent, leader)))
        return futures

    def _ack_results(self, resp: Any, sent: list[TopicPartition], leader: int) -> dict[TopicPartition, KafkaError | None]:
        if resp.error_code != ErrorCode.none:  # the session is gone: a new one on the next poll
            self._sessions.pop(leader, None)
            return {tp: KafkaError(ErrorCode(resp.error_code), resp.error_message or "") for tp in sent}
        out: dict[TopicPartition, KafkaError | None] = {}
        for t in resp.responses:
            name = self._names.get(str(t.topic_id), str(t.topic_id))
            for p in t.partitions:
                code = ErrorCode(p.error_code)
                out[TopicPartition(name, int(p.partition_index))] = None if code == ErrorCode.none else KafkaError(
                    code, p.error_message or code.name)
        return out
