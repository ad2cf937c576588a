"""The broker's wiring of share groups (KIP-932). Thin.

ShareGroupHeartbeat goes to the group's coordinator (ShareGroupCoordinator); ShareFetch and
ShareAcknowledge go to each partition's leader, which keeps one SharePartition per (share
group, partition) and reads the records from its log. A ShareFetch names a share session
(epoch 0 opens it with the partitions listed, later epochs add and forget partitions, -1
closes it and releases what the member still holds); acknowledgements ride on ShareFetch or
ShareAcknowledge. A fetch that finds nothing to acquire waits (up to max_wait) for records.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.share_group import ShareGroupCoordinator
from kafkalab.broker.share_partition import SharePartition
from kafkalab.broker.share_state import ShareStateClient, ShareStateService
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import response_class, schema_module
from kafkalab.records.scan import iter_batches

NO_THROTTLE = datetime.timedelta(0)
SESSION_IDLE_MS = 60_000
TP = tuple[str, int]  # (topic name, partition)


@dataclass
class ShareSession:
    epoch: int
    partitions: set[TP] = field(default_factory=set)
    last_used_ms: int = 0


@dataclass
class WaitingFetch:
    """A ShareFetch long poll with nothing to give yet: tried again when its wait ends, a
    partition of its session gets new records, or any share-partition's state changes."""
    key: tuple[str, str]  # (group, member)
    session: ShareSession
    deadline: float  # loop time
    attempt: Any  # () -> bool: True once answered
    seen: tuple[int, dict[TP, int]]  # (ShareService.version, high watermarks) when last tried


class ShareService:
    api_keys = frozenset({ApiKey.SHARE_GROUP_HEARTBEAT, ApiKey.SHARE_GROUP_DESCRIBE, ApiKey.SHARE_FETCH,
                          ApiKey.SHARE_ACKNOWLEDGE}) | ShareStateService.api_keys

    def __init__(self, groups: Any):
        self.groups = groups
        self.broker = groups.broker
        cfg = self.broker.config
        self.lock_ms = int(cfg.get("group.share.record.lock.duration.ms", 30_000))
        self.delivery_limit = int(cfg.get("group.share.delivery.count.limit", 5))
        self.max_in_flight = int(cfg.get("group.share.partition.max.record.locks", 2000))
        self.session_timeout_ms = int(cfg.get("group.share.session.timeout.ms", 45_000))
        self.auto_offset_reset = str(cfg.get("share.auto.offset.reset", "latest"))
        self.coordinator = ShareGroupCoordinator(
            topics=groups.consumer._topics, owns=groups.consumer._owns, other_group=self._other_group,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=int(cfg.get("group.share.heartbeat.interval.ms", 5_000)))
        self.partitions: dict[tuple[str, str, int], SharePartition] = {}  # (group, topic, partition)
        self.sessions: dict[tuple[str, str], ShareSession] = {}  # (group, member)
        self.state_service = ShareStateService(self.broker)  # the share coordinator
        self.state = ShareStateClient(self.broker, self.state_service)
        self.loading: set[tuple[str, str, int]] = set()  # share-partitions whose state is being read
        self.version = 0  # bumped when a share-partition's records may have become available
        self.waiting: list[WaitingFetch] = []
        self.broker.loop.add_due_source(self._waiting_due, self._retry_waiting)

    def _other_group(self, group_id: str) -> str | None:
        if self.groups.consumer.coordinator.is_consumer_group(group_id):
            return "consumer"
        g = self.groups.coordinator.groups.get(group_id)
        return "classic" if g is not None and (g.members or g.offsets) else None

    # -- requests ------------------------------------------------------------------------------
    def handle(self, api_key: int, version: int, req: Any, reply: Any, now_ms: int) -> None:
        if api_key in ShareStateService.api_keys:
            self.state_service.handle(api_key, version, req, reply, now_ms)
            return
        cls = response_class(api_key, version)
        if api_key == ApiKey.SHARE_GROUP_HEARTBEAT:
            r = self.coordinator.heartbeat(req, now_ms)
            assignment = None
            if r["assignment"] is not None:
                tp_cls = schema_module(cls).TopicPartitions
                by_topic: dict[str, list[int]] = {}
                for t, p in r["assignment"]:
                    by_topic.setdefault(t, []).append(p)
                assignment = schema_module(cls).Assignment(topic_partitions=tuple(
                    tp_cls(topic_id=uuid.UUID(t), partitions=tuple(ps)) for t, ps in sorted(by_topic.items())))
            reply(cls(throttle_time=NO_THROTTLE, error_code=r["error_code"], error_message=r["error_message"],
                      member_id=r["member_id"], member_epoch=r["member_epoch"],
                      heartbeat_interval=datetime.timedelta(milliseconds=r["heartbeat_interval_ms"]),
                      assignment=assignment))
        elif api_key == ApiKey.SHARE_GROUP_DESCRIBE:
            reply(self._describe(req, cls))
        elif api_key == ApiKey.SHARE_FETCH:
            self._fetch(req, cls, reply, now_ms)
        elif api_key == ApiKey.SHARE_ACKNOWLEDGE:
            self._acknowledge(req, cls, reply, now_ms)

    def _describe(self, req: Any, cls: type) -> Any:
        group_cls, member_cls, assign_cls, tp_cls = (
            getattr(schema_module(cls), n) for n in ("DescribedGroup", "Member", "Assignment", "TopicPartitions"))
        names = {t.topic_id: name for name, t in self.coordinator.topics().items()}
        out = []
        for gid in req.group_ids:
            d = self.coordinator.describe(str(gid))
            members = []
            for m in d.get("members", []):
                by_topic: dict[str, list[int]] = {}
                for t, p in m["assignment"]:
                    by_topic.setdefault(t, []).append(p)
                members.append(member_cls(
                    member_id=m["member_id"], rack_id=None, member_epoch=m["member_epoch"], client_id="",
                    client_host="", subscribed_topic_names=tuple(m["subscribed_topic_names"]),
                    assignment=assign_cls(topic_partitions=tuple(
                        tp_cls(topic_id=uuid.UUID(t), topic_name=names.get(t, ""), partitions=tuple(ps))
                        for t, ps in sorted(by_topic.items())))))
            out.append(group_cls(
                error_code=d["error_code"], error_message=d["error_message"], group_id=str(gid),
                group_state=d.get("group_state", "Dead"), group_epoch=d.get("group_epoch", -1),
                assignment_epoch=d.get("assignment_epoch", -1), assignor_name=d.get("assignor_name", ""),
                members=tuple(members), authorized_operations=-2147483648))
        return cls(throttle_time=NO_THROTTLE, groups=tuple(out))

    def _names(self) -> dict[str, str]:
        return {t.topic_id: name for name, t in self.broker.image.topics.items()}

    def _session(self, group: str, member: str, epoch: int, now_ms: int) -> tuple[ErrorCode, ShareSession | None]:
        key = (group, member)
        s = self.sessions.get(key)
        if epoch == 0:
            if s is not None:
                self._release(group, member)
            s = self.sessions[key] = ShareSession(0, last_used_ms=now_ms)
            return ErrorCode.none, s
        if s is None:
            return ErrorCode.share_session_not_found, None
        if epoch == -1:
            return ErrorCode.none, s
        if epoch != s.epoch + 1:
            return ErrorCode.invalid_share_session_epoch, None
        s.epoch, s.last_used_ms = epoch, now_ms
        return ErrorCode.none, s

    def _share_partition(self, group: str, topic: str, p: int) -> tuple[ErrorCode, SharePartition | None]:
        part = self.broker.rm.partitions.get((topic, p))
        if part is None or not part.is_leader:
            return ErrorCode.not_leader_or_follower, None
        key = (group, topic, p)
        sp = self.partitions.get(key)
        if sp is None:
            # A new leader (or a first fetch) starts from the share coordinator's state: nothing
            # acknowledged comes back; what was only acquired is available again.
            if key not in self.loading:
                self.loading.add(key)
                self.state.read(self._state_key(key), lambda code, st: self._loaded(key, code, st))
            return ErrorCode.none, None
        return ErrorCode.none, sp

    def _state_key(self, key: tuple[str, str, int]) -> tuple[str, str, int]:
        return key[0], self.broker.image.topics[key[1]].topic_id, key[2]

    def _loaded(self, key: tuple[str, str, int], code: ErrorCode, state: Any) -> None:
        self.loading.discard(key)
        part = self.broker.rm.partitions.get(key[1:])
        if code != ErrorCode.none or part is None or not part.is_leader or key in self.partitions:
            return  # asked again on the next fetch
        self.version += 1
        args = {"lock_duration_ms": self.lock_ms, "delivery_limit": self.delivery_limit,
                "max_in_flight": self.max_in_flight}
        if state is not None:
            self.partitions[key] = SharePartition(state[1], state=(state[1], state[2]), **args)
            return
        start = part.log.log_start_offset if self.auto_offset_reset == "earliest" else part.high_watermark
        self.partitions[key] = SharePartition(start, **args)

    def _persist(self, key: tuple[str, str, int], done: Any = None) -> None:
        self.version += 1  # every change of a share-partition's records is persisted
        sp, part = self.partitions.get(key), self.broker.rm.partitions.get(key[1:])
        if sp is None or part is None or key[1] not in self.broker.image.topics:
            if done is not None:
                done(ErrorCode.not_leader_or_follower)
            return
        spso, batches = sp.state()
        self.state.write(self._state_key(key), (0, spso, batches), part.leader_epoch,
                         done if done is not None else (lambda code: None))

    def _acks(self, group: str, member: str, topics: Any, names: dict[str, str], then: Any) -> None:
        """Apply the acknowledgements, write the changed share-partitions' state to the share
        coordinator, and call then({partition: error}) once it has them (acks=all)."""
        out = self._apply_acks(group, member, topics, names)
        changed = [tp for tp, code in out.items() if code == ErrorCode.none]
        if not changed:
            then(out)
            return
        waiting = set(changed)

        def written(tp: TP, code: ErrorCode) -> None:
            if code != ErrorCode.none:
                out[tp] = code
            waiting.discard(tp)
            if not waiting:
                then(out)

        for tp in changed:
            self._persist((group, *tp), lambda code, tp=tp: written(tp, code))

    def _apply_acks(self, group: str, member: str, topics: Any, names: dict[str, str]) -> dict[TP, ErrorCode]:
        out: dict[TP, ErrorCode] = {}
        for t in topics:
            name = names.get(str(t.topic_id))
            for p in t.partitions:
                if not p.acknowledgement_batches:
                    continue
                if name is None:
                    out[(str(t.topic_id), int(p.partition_index))] = ErrorCode.unknown_topic_id
                    continue
                code, sp = self._share_partition(group, name, int(p.partition_index))
                if sp is None and code == ErrorCode.none:
                    code = ErrorCode.invalid_record_state  # a new leader: the locks did not survive
                for b in p.acknowledgement_batches:
                    if sp is None:
                        break
                    c = sp.acknowledge(member, int(b.first_offset), int(b.last_offset),
                                       [int(x) for x in b.acknowledge_types])
                    if c != ErrorCode.none:
                        code = c
                out[(name, int(p.partition_index))] = code
        return out

    def _release(self, group: str, member: str) -> None:
        for key, sp in self.partitions.items():
            if key[0] == group and sp.release_member(member):
                self._persist(key)

    def _fetch(self, req: Any, cls: type, reply: Any, now_ms: int) -> None:
        group, member, epoch = str(req.group_id or ""), str(req.member_id or ""), int(req.share_session_epoch)
        names = self._names()
        code, session = self._session(group, member, epoch, now_ms)
        if session is None:
            reply(cls(throttle_time=NO_THROTTLE, error_code=code, error_message=f"share session of {member}: "
                      f"{code.name}; start a new one with epoch 0", acquisition_lock_timeout=datetime.timedelta(
                          milliseconds=self.lock_ms), responses=(), node_endpoints=()))
            return
        for t in req.topics:
            name = names.get(str(t.topic_id))
            if name is not None:
                session.partitions.update((name, int(p.partition_index)) for p in t.partitions)
        for t in req.forgotten_topics_data:
            name = names.get(str(t.topic_id))
            session.partitions.difference_update((name, int(p)) for p in t.partitions)
        self._acks(group, member, req.topics, names,
                   lambda acks: self._fetch_records(req, cls, reply, group, member, epoch, session, acks))

    def _fetch_records(self, req: Any, cls: type, reply: Any, group: str, member: str, epoch: int,
                       session: ShareSession, acks: dict[TP, ErrorCode]) -> None:
        if epoch == -1:
            self._release(group, member)
            self.sessions.pop((group, member), None)
            reply(self._fetch_response(cls, {}, acks))
            return
        clock = self.broker.clock
        deadline = self.broker.loop.time() + req.max_wait.total_seconds()
        max_records = max(1, int(req.max_records) if int(req.max_records) > 0 else 500)

        def attempt() -> bool:
            now = clock.wall_ms()
            got = self._acquire(group, member, session, max_records, int(req.max_bytes), now)
            if any(ranges for _, ranges, _ in got.values()) or acks or self.broker.loop.time() >= deadline \
                    or self.sessions.get((group, member)) is not session:
                reply(self._fetch_response(cls, got, acks))
                return True
            return False

        if not attempt():
            self.waiting.append(WaitingFetch((group, member), session, deadline, attempt, self._seen(session)))

    def _seen(self, session: ShareSession) -> tuple[int, dict[TP, int]]:
        rm = self.broker.rm
        return self.version, {tp: part.high_watermark for tp in session.partitions
                              if (part := rm.partitions.get(tp)) is not None}

    def _ready(self, w: WaitingFetch, now: float) -> bool:
        return now >= w.deadline or self.sessions.get(w.key) is not w.session or self._seen(w.session) != w.seen

    def _waiting_due(self, now: float) -> float | None:
        """Now if a waiting ShareFetch may have something to take, else the end of the first wait."""
        if not self.waiting:
            return None
        return now if any(self._ready(w, now) for w in self.waiting) else min(w.deadline for w in self.waiting)

    def _retry_waiting(self) -> None:
        now = self.broker.loop.time()
        for w in list(self.waiting):
            if self._ready(w, now):
                if w.attempt():
                    self.waiting.remove(w)
                else:
                    w.seen = self._seen(w.session)  # after the attempt: what it changed, it saw

    def _acquire(self, group: str, member: str, session: ShareSession, max_records: int, max_bytes: int,
                 now_ms: int) -> dict[TP, tuple[bytes, list[tuple[int, int, int]], ErrorCode]]:
        out: dict[TP, tuple[bytes, list[tuple[int, int, int]], ErrorCode]] = {}
        for topic, p in sorted(session.partitions):
            code, sp = self._share_partition(group, topic, p)
            if sp is None:
                out[(topic, p)] = (b"", [], code)
                continue
            if sp.expire_locks(now_ms):
                self.version += 1  # what they held may go to a fetch that waits
            part = self.broker.rm.partitions[(topic, p)]
            hw = part.high_watermark
            start = sp.candidates(hw)
            if start is None or max_records <= 0:
                continue
            data = bytes(part.log.read_bytes(start, max(max_bytes, 1), max_offset=hw))
            end = None
            for _pos, h in iter_batches(data):
                end = h.next_offset
            if end is None:
                continue
            ranges = sp.acquire(member, hw, max_records, now_ms, covered_end=end)
            max_records -= sum(last - first + 1 for first, last, _ in ranges)
            if ranges:
                out[(topic, p)] = (data, ranges, ErrorCode.none)
        return out

    def _fetch_response(self, cls: type, got: dict, acks: dict[TP, ErrorCode]) -> Any:
        ids = {name: t.topic_id for name, t in self.broker.image.topics.items()}
        topic_cls, part_cls = schema_module(cls).ShareFetchableTopicResponse, schema_module(cls).PartitionData
        acq_cls, leader_cls = schema_module(cls).AcquiredRecords, schema_module(cls).LeaderIdAndEpoch
        by_topic: dict[str, list[Any]] = {}
        for tp in sorted(set(got) | set(acks)):
            data, ranges, code = got.get(tp, (b"", [], ErrorCode.none))
            part = self.broker.rm.partitions.get(tp)
            by_topic.setdefault(tp[0], []).append(part_cls(
                partition_index=tp[1], error_code=code, error_message=None,
                acknowledge_error_code=int(acks.get(tp, ErrorCode.none)), acknowledge_error_message=None,
                current_leader=leader_cls(leader_id=self.broker.broker_id if part is not None else -1,
                                          leader_epoch=part.leader_epoch if part is not None else -1),
                records=data if ranges else b"",
                acquired_records=tuple(acq_cls(first_offset=f, last_offset=last, delivery_count=d)
                                       for f, last, d in ranges)))
        return cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message=None,
                   acquisition_lock_timeout=datetime.timedelta(milliseconds=self.lock_ms),
                   responses=tuple(schema_module(cls).ShareFetchableTopicResponse(
                       topic_id=uuid.UUID(ids[t]) if t in ids else None, partitions=tuple(ps))
                       for t, ps in sorted(by_topic.items()) if t in ids) if topic_cls else (),
                   node_endpoints=())

    def _acknowledge(self, req: Any, cls: type, reply: Any, now_ms: int) -> None:
        group, member, epoch = str(req.group_id or ""), str(req.member_id or ""), int(req.share_session_epoch)
        names = self._names()
        if epoch == 0:
            code = ErrorCode.invalid_share_session_epoch
        else:
            code, _ = self._session(group, member, epoch, now_ms)
        if code != ErrorCode.none:
            reply(cls(throttle_time=NO_THROTTLE, error_code=code, error_message=f"share session of {member}: "
                      f"{code.name}", responses=(), node_endpoints=()))
            return
        self._acks(group, member, req.topics, names, lambda acks: self._acked(cls, reply, group, member, epoch, acks))

    def _acked(self, cls: type, reply: Any, group: str, member: str, epoch: int, acks: dict[TP, ErrorCode]) -> None:
        topic_cls, part_cls = schema_module(cls).ShareAcknowledgeTopicResponse, schema_module(cls).PartitionData
        leader_cls = schema_module(cls).LeaderIdAndEpoch
        if epoch == -1:
            self._release(group, member)
            self.sessions.pop((group, member), None)
        ids = {name: t.topic_id for name, t in self.broker.image.topics.items()}
        by_topic: dict[str, list[Any]] = {}
        for (t, p), c in sorted(acks.items()):
            part = self.broker.rm.partitions.get((t, p))
            by_topic.setdefault(t, []).append(part_cls(
                partition_index=p, error_code=c, error_message=_ack_message(c),
                current_leader=leader_cls(leader_id=self.broker.broker_id if part is not None else -1,
                                          leader_epoch=part.leader_epoch if part is not None else -1)))
        reply(cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, error_message=None,
                  responses=tuple(topic_cls(topic_id=uuid.UUID(ids[t]), partitions=tuple(ps))
                                  for t, ps in sorted(by_topic.items()) if t in ids), node_endpoints=()))

    # -- timers ----------------------------------------------------------------------------------
    def metadata_applied(self) -> None:
        """The image changed: load or drop share-group state partitions, and forget the share
        partitions this broker no longer leads."""
        self.state_service.tick()
        for (_g, topic, p) in list(self.partitions):
            part = self.broker.rm.partitions.get((topic, p))
            if part is None or not part.is_leader:
                del self.partitions[(_g, topic, p)]

    def next_deadline(self, now_ms: int) -> int | None:
        """When tick() next has something to do: a member's session timeout, an idle share
        session to drop, or an acquisition lock to expire (None: nothing waits on time)."""
        times = [t for t in (self.coordinator.next_deadline(now_ms),
                             *(sp.next_lock_deadline() for sp in self.partitions.values())) if t is not None]
        times.extend(s.last_used_ms + SESSION_IDLE_MS + 1 for s in self.sessions.values())
        return min(times, default=None)

    def tick(self, now_ms: int) -> None:
        for group, member in self.coordinator.tick(now_ms):
            self._release(group, member)
        for key, s in list(self.sessions.items()):
            # A member holding records may not fetch for a while (its locks expire meanwhile);
            # only a session idle for long is dropped (Kafka evicts idle ones when its cache fills).
            if now_ms - s.last_used_ms > SESSION_IDLE_MS:
                del self.sessions[key]
                self._release(*key)
        for key, sp in list(self.partitions.items()):
            if sp.expire_locks(now_ms):
                self._persist(key)  # delivery counts and archived records must survive

    def close(self) -> None:
        self.state.close()

    # -- metrics (the share-group view and describe_group read these) ----------------------------
    def metric_rows(self, now_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """("group", row) per share group this broker coordinates and ("share_partition", row)
        per share-partition it leads: records per state, per consumer, lock expiries and
        redeliveries (counters since this leader loaded the share-partition)."""
        rows: list[tuple[str, dict[str, Any]]] = []
        names = self._names()
        for gid, g in sorted(self.coordinator.groups.items()):
            if self.coordinator.owns(gid) != "yes":
                continue
            rows.append(("group", {
                "time": now_ms / 1000, "group": gid, "state": g.state, "generation": g.group_epoch,
                "members": len(g.members), "protocol": "share",
                "assignment": {mid: [f"{names.get(t, t)}-{p}" for t, p in sorted(g.assignment.get(mid, ()))]
                               for mid in sorted(g.members)},
                "member_epochs": {mid: m.member_epoch for mid, m in sorted(g.members.items())}}))
        for (gid, topic, p), sp in sorted(self.partitions.items()):
            part = self.broker.rm.partitions.get((topic, p))
            hw = part.high_watermark if part is not None else sp.speo
            deadline = sp.next_lock_deadline()
            rows.append(("share_partition", {
                "time": now_ms / 1000, "group": gid, "topic": topic, "partition": p,
                "start_offset": sp.spso, "end_offset": sp.speo, "high_watermark": hw,
                **sp.counts(), "not_yet_acquired": max(0, hw - sp.speo),
                "acknowledged_total": sp.acknowledged_total, "archived_total": sp.archived_total,
                "lock_expiries": sp.expired, "redeliveries": sp.redelivered,
                "next_lock_expiry_ms": None if deadline is None else deadline - now_ms,
                "acquired_by": sp.acquired_by(), "accepted_by": dict(sp.accepted_by)}))
        return rows


def _ack_message(code: ErrorCode) -> str | None:
    if code == ErrorCode.invalid_record_state:
        return ("a record acknowledged is not held by this consumer (its acquisition lock expired or "
                "another consumer holds it now); acknowledge before group.share.record.lock.duration.ms")
    return None
