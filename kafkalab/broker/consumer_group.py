"""ConsumerGroupCoordinator: Kafka 4's consumer group protocol (KIP-848), as a plain class (pure).

No JoinGroup/SyncGroup barrier: every member sends ConsumerGroupHeartbeat on its own and the
broker answers with its next assignment. The coordinator keeps three things per group:

- the *group epoch*, bumped whenever membership, a subscription or a subscribed topic's
  partition count changes;
- the *target assignment* (computed by the server-side assignor, `uniform` or `range`) and
  the epoch it was computed at;
- each member's *current assignment* and *member epoch*. A member reconciles towards its
  target: it first revokes what it must give up (staying at its old epoch until it says so),
  then gets the new epoch; a partition is handed to its new owner only once the previous owner
  has revoked it. Members whose partitions do not change just move to the new epoch.

Requests come in as kio entities with the time; `heartbeat` and `tick` return the response and
the `__consumer_offsets` records (key, value | None) Kafka writes for the change. Ids come from
an injected `new_member_id` (ConsumerGroupHeartbeat v0: the broker names the member).
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.protocol.kafka_framing import put_uvarint

TP = tuple[str, int]  # (topic id as str, partition)
Records = list[tuple[bytes, bytes | None]]

STABLE, UNREVOKED, UNRELEASED = "STABLE", "UNREVOKED_PARTITIONS", "UNRELEASED_PARTITIONS"
MEMBER_STATE_CODE = {STABLE: 0, UNREVOKED: 1, UNRELEASED: 2}
LEAVE_EPOCH, STATIC_LEAVE_EPOCH = -1, -2
ASSIGNORS = ("uniform", "range")


# ---- assignors ------------------------------------------------------------------------------

def uniform_assign(members: dict[str, set[str]], partitions: dict[str, int],
                   current: dict[str, set[TP]]) -> dict[str, set[TP]]:
    """Kafka's `uniform` assignor, in its sticky spirit: every subscribed partition goes to one
    subscriber, counts differ by at most one among members with the same subscriptions, and a
    partition stays with its current target owner whenever balance allows."""
    out: dict[str, set[TP]] = {m: set() for m in members}
    if not members:
        return out
    all_tps = sorted((t, p) for t, n in partitions.items() if any(t in s for s in members.values())
                     for p in range(n))
    subscribers = {t: sorted(m for m, s in members.items() if t in s) for t in partitions}
    # quota: balanced share per member (homogeneous case); ceil for the first `extra` members.
    base, extra = divmod(len(all_tps), len(members))
    # Members that hold the most keep the extra slots (stickiness: fewer partitions move).
    keepers = sorted(members, key=lambda m: (-len(current.get(m, set())), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(keepers)}
    valid, taken = set(all_tps), set()
    for m in keepers:
        for tp in sorted(current.get(m, set())):
            if len(out[m]) < quota[m] and tp in valid and tp[0] in members[m] and tp not in taken:
                out[m].add(tp)
                taken.add(tp)
    for tp in all_tps:
        if tp in taken:
            continue
        subs = subscribers.get(tp[0], [])
        under = [m for m in subs if len(out[m]) < quota[m]] or subs
        m = min(under, key=lambda x: (len(out[x]), x))
        out[m].add(tp)
        taken.add(tp)
    return out


def range_assign(members: dict[str, set[str]], partitions: dict[str, int],
                 current: dict[str, set[TP]]) -> dict[str, set[TP]]:
    """Kafka's `range` assignor: per topic, its subscribers (by member id) get contiguous
    ranges, the first ones one partition more when it does not divide evenly."""
    out: dict[str, set[TP]] = {m: set() for m in members}
    for t, n in sorted(partitions.items()):
        subs = sorted(m for m, s in members.items() if t in s)
        if not subs:
            continue
        base, extra = divmod(n, len(subs))
        start = 0
        for i, m in enumerate(subs):
            count = base + (1 if i < extra else 0)
            out[m].update((t, p) for p in range(start, start + count))
            start += count
    return out


ASSIGNOR_FUNCS: dict[str, Callable[[dict[str, set[str]], dict[str, int], dict[str, set[TP]]],
                                   dict[str, set[TP]]]] = {"uniform": uniform_assign, "range": range_assign}


# ---- records in __consumer_offsets (Kafka's coordinator record types 3, 5, 6, 7, 8) ---------

def _key(record_type: int, *strings: str) -> bytes:
    out = struct.pack(">h", record_type)
    for s in strings:
        b = s.encode()
        out += struct.pack(">h", len(b)) + b
    return out


def _cstr(s: str | None) -> bytes:
    if s is None:
        return b"\x00"
    b = s.encode()
    return put_uvarint(len(b) + 1) + b


def _carray(items: list[bytes]) -> bytes:
    return put_uvarint(len(items) + 1) + b"".join(items)


def _topic_partitions(tps: set[TP]) -> bytes:
    by_topic: dict[str, list[int]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(p)
    return _carray([uuid.UUID(t).bytes + _carray([struct.pack(">i", p) for p in sorted(ps)]) + b"\x00"
                    for t, ps in sorted(by_topic.items())])


def _value(*parts: bytes) -> bytes:
    return struct.pack(">h", 0) + b"".join(parts) + b"\x00"  # version 0, flexible: no tagged fields


def group_epoch_record(group: str, epoch: int) -> tuple[bytes, bytes]:
    return _key(3, group), _value(struct.pack(">i", epoch))


def member_metadata_record(group: str, m: Member) -> tuple[bytes, bytes]:
    return _key(5, group, m.member_id), _value(
        _cstr(m.instance_id), _cstr(m.rack_id), _cstr(m.client_id), _cstr(m.client_host),
        _carray([_cstr(t) for t in sorted(m.subscribed_topic_names)]), _cstr(m.subscribed_topic_regex),
        struct.pack(">i", m.rebalance_timeout_ms), _cstr(m.server_assignor))


def target_member_record(group: str, member_id: str, tps: set[TP]) -> tuple[bytes, bytes]:
    return _key(7, group, member_id), _value(_topic_partitions(tps))


def target_epoch_record(group: str, epoch: int) -> tuple[bytes, bytes]:
    return _key(6, group), _value(struct.pack(">i", epoch))


def current_assignment_record(group: str, m: Member) -> tuple[bytes, bytes]:
    return _key(8, group, m.member_id), _value(
        struct.pack(">iib", m.member_epoch, m.previous_member_epoch, MEMBER_STATE_CODE[m.state]),
        _topic_partitions(m.assigned), _topic_partitions(m.revoking))


class _Reader:
    """Reads the records above back: keys are classic (int16-length strings), values flexible."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def fmt(self, f: str) -> Any:
        (v,) = struct.unpack_from(f, self.data, self.pos)
        self.pos += struct.calcsize(f)
        return v

    def key_str(self) -> str:
        n = self.fmt(">h")
        self.pos += n
        return self.data[self.pos - n:self.pos].decode()

    def uvarint(self) -> int:
        shift = n = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def cstr(self) -> str | None:
        n = self.uvarint() - 1
        if n < 0:
            return None
        self.pos += n
        return self.data[self.pos - n:self.pos].decode()

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.pos += self.uvarint()

    def topic_partitions(self) -> set[TP]:
        out: set[TP] = set()
        for _ in range(self.uvarint() - 1):
            t = str(uuid.UUID(bytes=self.data[self.pos:self.pos + 16]))
            self.pos += 16
            out.update((t, self.fmt(">i")) for _ in range(self.uvarint() - 1))
            self.skip_tags()
        return out


def decode_record(key: bytes, value: bytes | None) -> tuple[int, str, str | None, dict[str, Any] | None]:
    """(record type, group id, member id or None, value fields or None for a tombstone)."""
    r = _Reader(key)
    kind = r.fmt(">h")
    group = r.key_str()
    member = r.key_str() if kind in (5, 7, 8) else None
    if value is None:
        return kind, group, member, None
    v = _Reader(value)
    v.fmt(">h")
    fields: dict[str, Any]
    if kind in (3, 6):
        fields = {"epoch": v.fmt(">i")}
    elif kind == 5:
        fields = {"instance_id": v.cstr(), "rack_id": v.cstr(), "client_id": v.cstr() or "",
                  "client_host": v.cstr() or ""}
        fields["subscribed_topic_names"] = sorted(str(v.cstr()) for _ in range(v.uvarint() - 1))
        fields.update(subscribed_topic_regex=v.cstr(), rebalance_timeout_ms=v.fmt(">i"), server_assignor=v.cstr())
    elif kind == 7:
        fields = {"assignment": v.topic_partitions()}
    elif kind == 8:
        fields = {"member_epoch": v.fmt(">i"), "previous_member_epoch": v.fmt(">i"), "state": v.fmt(">b")}
        fields.update(assigned=v.topic_partitions(), revoking=v.topic_partitions())
    else:
        raise ValueError(f"record type {kind} is not a consumer-group record")
    return kind, group, member, fields


# ---- the group ------------------------------------------------------------------------------

@dataclass
class Member:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: list[str] = field(default_factory=list)
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    rebalance_timeout_ms: int = 300_000
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: str = STABLE
    assigned: set[TP] = field(default_factory=set)
    revoking: set[TP] = field(default_factory=set)
    session_deadline_ms: int = 0
    revocation_deadline_ms: int | None = None
    sent: frozenset[TP] | None = None  # the assignment last sent (None: send it next time)


@dataclass
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, Member] = field(default_factory=dict)
    static: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    target: dict[str, set[TP]] = field(default_factory=dict)
    topics_seen: dict[str, int] = field(default_factory=dict)  # subscribed topic id -> partitions

    @property
    def state(self) -> str:
        """Kafka's ConsumerGroupState: Empty, Assigning (target behind the group epoch),
        Reconciling (a member not yet at the target epoch) or Stable."""
        if not self.members:
            return "Empty"
        if self.assignment_epoch != self.group_epoch:
            return "Assigning"
        if any(m.member_epoch != self.assignment_epoch or m.state != STABLE for m in self.members.values()):
            return "Reconciling"
        return "Stable"

    def owner(self) -> dict[TP, str]:
        """Who holds each partition right now (assigned or still revoking)."""
        return {tp: mid for mid, m in self.members.items() for tp in m.assigned | m.revoking}

    def preferred_assignor(self, default: str) -> str:
        votes: dict[str, int] = {}
        for m in self.members.values():
            if m.server_assignor:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        return max(sorted(votes), key=lambda a: votes[a]) if votes else default


class HeartbeatError(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Topic:
    topic_id: str
    name: str
    partitions: int


class ConsumerGroupCoordinator:
    """KIP-848's group coordinator. `topics()` gives {name: Topic} from the metadata image;
    `owns(group_id)` says "yes" / "loading" / "no" for the group's __consumer_offsets partition;
    `classic_state(group_id)` says "none" / "empty" / "active" for a classic group of that id."""

    def __init__(self, *, topics: Callable[[], dict[str, Topic]], owns: Callable[[str], str],
                 classic_state: Callable[[str], str] = lambda g: "none",
                 new_member_id: Callable[[], str],
                 session_timeout_ms: int = 45_000, heartbeat_interval_ms: int = 5_000,
                 assignors: tuple[str, ...] = ASSIGNORS,
                 publish: Callable[[str, dict[str, Any]], None] = lambda kind, row: None):
        unknown = [a for a in assignors if a not in ASSIGNOR_FUNCS]
        if not assignors or unknown:
            raise ValueError(f"group.consumer.assignors: unknown assignor(s) {unknown or assignors}; "
                             f"choose from {list(ASSIGNORS)} (the first is the default)")
        self.topics, self.owns, self.classic_state = topics, owns, classic_state
        self.new_member_id = new_member_id
        self.session_timeout_ms, self.heartbeat_interval_ms = session_timeout_ms, heartbeat_interval_ms
        self.assignors = assignors
        self.publish = publish
        self.groups: dict[str, ConsumerGroup] = {}

    # -- ConsumerGroupHeartbeat ----------------------------------------------------------------
    def heartbeat(self, req: Any, now_ms: int, client_id: str = "", client_host: str = ""
                  ) -> tuple[dict[str, Any], Records]:
        """The response's fields and the records to append before answering."""
        records: Records = []
        try:
            resp = self._heartbeat(req, now_ms, client_id, client_host, records)
        except HeartbeatError as e:
            return {"error_code": e.code, "error_message": e.message, "member_id": str(req.member_id or "") or None,
                    "member_epoch": -1, "heartbeat_interval_ms": 0, "assignment": None}, records
        return resp, records

    def _heartbeat(self, req: Any, now_ms: int, client_id: str, client_host: str, records: Records
                   ) -> dict[str, Any]:
        group_id, member_id, epoch = str(req.group_id), str(req.member_id or ""), int(req.member_epoch)
        self._validate(req, group_id, member_id, epoch)
        owned = self.owns(group_id)
        if owned != "yes":
            raise HeartbeatError(ErrorCode.coordinator_load_in_progress if owned == "loading"
                                 else ErrorCode.not_coordinator, "ask FindCoordinator again")
        g = self.groups.get(group_id)
        if g is None or not g.members:
            cs = self.classic_state(group_id)
            if cs == "active":
                raise HeartbeatError(ErrorCode.group_id_not_found,
                                     f"group {group_id!r} is a classic group with members; stop them or "
                                     "use group.protocol=classic")
        if epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(g, member_id, epoch, now_ms, records)
        if g is None:
            g = self.groups[group_id] = ConsumerGroup(group_id)
        m, joined = self._member(g, req, member_id, epoch, records)
        m.client_id, m.client_host = client_id or m.client_id, client_host or m.client_host
        m.session_deadline_ms = now_ms + self.session_timeout_ms
        self._update_subscription(g, m, req, joined, records)
        self._refresh_target(g, records)
        owned_tps = None if req.topic_partitions is None else {
            (str(tp.topic_id), int(p)) for tp in req.topic_partitions for p in tp.partitions}
        self._reconcile(g, m, owned_tps, now_ms, records)
        send = m.sent != frozenset(m.assigned) or epoch == 0 or (owned_tps is not None and owned_tps != m.assigned
                                                                 and m.state == STABLE)
        if send:
            m.sent = frozenset(m.assigned)
        self._publish(g, now_ms)
        return {"error_code": ErrorCode.none, "error_message": None, "member_id": m.member_id,
                "member_epoch": m.member_epoch, "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "assignment": sorted(m.assigned) if send else None}

    def _validate(self, req: Any, group_id: str, member_id: str, epoch: int) -> None:
        if not group_id:
            raise HeartbeatError(ErrorCode.invalid_request, "GroupId can't be empty")
        if epoch > 0 and not member_id:
            raise HeartbeatError(ErrorCode.invalid_request, "MemberId can't be empty once joined")
        if epoch == 0:
            if req.subscribed_topic_names is None and req.subscribed_topic_regex is None:
                raise HeartbeatError(ErrorCode.invalid_request,
                                     "a joining member names its subscription (topic names or a regex)")
        if req.server_assignor is not None and str(req.server_assignor) not in self.assignors:
            raise HeartbeatError(ErrorCode.unsupported_assignor,
                                 f"assignor {req.server_assignor!r} is not one of group.consumer.assignors "
                                 f"{list(self.assignors)}; set group.remote.assignor to one of them")
        if req.subscribed_topic_regex:
            try:
                re.compile(str(req.subscribed_topic_regex))
            except re.error as e:
                raise HeartbeatError(ErrorCode.invalid_regular_expression,
                                     f"subscribed topic regex {req.subscribed_topic_regex!r} does not compile: {e}"
                                     ) from None

    def _member(self, g: ConsumerGroup, req: Any, member_id: str, epoch: int,
                records: Records) -> tuple[Member, bool]:
        """The member this heartbeat is from, and whether it just joined the group."""
        instance = req.instance_id
        if epoch == 0:
            if not member_id:
                member_id = self.new_member_id()
            if instance is not None and instance in g.static and g.static[instance] != member_id:
                old = g.members.get(g.static[instance])
                if old is not None and old.member_epoch != STATIC_LEAVE_EPOCH:
                    raise HeartbeatError(ErrorCode.unreleased_instance_id,
                                         f"instance id {instance!r} is still used by member {old.member_id}; "
                                         "give each running consumer its own group.instance.id")
                if old is not None:  # a static member comes back: it takes its old place and epoch
                    m = Member(member_id, instance_id=instance, member_epoch=old.previous_member_epoch,
                               previous_member_epoch=old.previous_member_epoch, state=old.state,
                               assigned=set(old.assigned), revoking=set(old.revoking),
                               subscribed_topic_names=old.subscribed_topic_names,
                               subscribed_topic_regex=old.subscribed_topic_regex,
                               server_assignor=old.server_assignor)
                    del g.members[old.member_id]
                    records += self._member_tombstones(g, old.member_id)
                    g.members[member_id] = m
                    g.static[instance] = member_id
                    if old.member_id in g.target:
                        g.target[member_id] = g.target.pop(old.member_id)
                        records.append(target_member_record(g.group_id, member_id, g.target[member_id]))
                    records.append(member_metadata_record(g.group_id, m))
                    return m, False
            m = g.members.get(member_id)
            if m is not None:
                # Rejoining with epoch 0: the member lost its state; what it held is free again.
                m.assigned, m.revoking, m.state, m.sent = set(), set(), STABLE, None
                m.member_epoch, m.previous_member_epoch = 0, -1
                return m, False
            m = g.members[member_id] = Member(member_id, instance_id=instance)
            if instance is not None:
                g.static[instance] = member_id
            return m, True
        m = g.members.get(member_id)
        if m is None:
            raise HeartbeatError(ErrorCode.unknown_member_id,
                                 f"member {member_id} is not in group {g.group_id}: it was removed "
                                 "(session timeout or left); rejoin with member epoch 0")
        if epoch > m.member_epoch or (epoch < m.member_epoch and not (
                epoch == m.previous_member_epoch and req.topic_partitions is not None
                and {(str(tp.topic_id), int(p)) for tp in req.topic_partitions for p in tp.partitions}
                <= m.assigned)):
            raise HeartbeatError(ErrorCode.fenced_member_epoch,
                                 f"member epoch {epoch} is not the current {m.member_epoch}; the member "
                                 "must give up its partitions and rejoin with epoch 0")
        return m, False

    def _update_subscription(self, g: ConsumerGroup, m: Member, req: Any, joined: bool,
                             records: Records) -> None:
        changed = joined
        if req.subscribed_topic_names is not None and sorted(map(str, req.subscribed_topic_names)) \
                != sorted(m.subscribed_topic_names):
            m.subscribed_topic_names, changed = sorted(map(str, req.subscribed_topic_names)), True
        if req.subscribed_topic_regex is not None:
            regex = str(req.subscribed_topic_regex) or None
            if regex != m.subscribed_topic_regex:
                m.subscribed_topic_regex, changed = regex, True
        if req.server_assignor is not None and str(req.server_assignor) != m.server_assignor:
            m.server_assignor, changed = str(req.server_assignor), True
        timeout = int(req.rebalance_timeout.total_seconds() * 1000)
        retimed = timeout > 0 and timeout != m.rebalance_timeout_ms
        if retimed:
            m.rebalance_timeout_ms = timeout
        if changed or retimed or m.member_epoch == 0:
            records.append(member_metadata_record(g.group_id, m))
        if changed:
            self._bump(g, records)
        # The subscribed topics' partition counts are part of the group's metadata: a topic
        # created, deleted or grown bumps the group epoch too.
        seen = self._subscribed_topics(g)
        if seen != g.topics_seen:
            g.topics_seen = seen
            if not changed:
                self._bump(g, records)

    def _subscribed(self, m: Member, topics: dict[str, Topic]) -> set[str]:
        names = set(m.subscribed_topic_names)
        if m.subscribed_topic_regex:
            rx = re.compile(m.subscribed_topic_regex)
            names |= {n for n in topics if rx.fullmatch(n) and not n.startswith("__")}
        return {topics[n].topic_id for n in names if n in topics}

    def _subscribed_topics(self, g: ConsumerGroup) -> dict[str, int]:
        topics = self.topics()
        ids = set().union(*(self._subscribed(m, topics) for m in g.members.values())) if g.members else set()
        return {t.topic_id: t.partitions for t in topics.values() if t.topic_id in ids}

    def _bump(self, g: ConsumerGroup, records: Records) -> None:
        g.group_epoch += 1
        records.append(group_epoch_record(g.group_id, g.group_epoch))

    def _refresh_target(self, g: ConsumerGroup, records: Records) -> None:
        if g.assignment_epoch == g.group_epoch:
            return
        topics = self.topics()
        subs = {mid: self._subscribed(m, topics) for mid, m in g.members.items()}
        g.topics_seen = self._subscribed_topics(g)
        assignor = ASSIGNOR_FUNCS[g.preferred_assignor(self.assignors[0])]
        new = assignor(subs, dict(g.topics_seen), {mid: set(tps) for mid, tps in g.target.items() if mid in subs})
        for mid, tps in new.items():
            if g.target.get(mid) != tps:
                records.append(target_member_record(g.group_id, mid, tps))
        g.target = new
        g.assignment_epoch = g.group_epoch
        records.append(target_epoch_record(g.group_id, g.assignment_epoch))

    # -- reconciliation (Kafka's CurrentAssignmentBuilder) --------------------------------------
    def _reconcile(self, g: ConsumerGroup, m: Member, owned: set[TP] | None, now_ms: int,
                   records: Records) -> None:
        before = (m.member_epoch, m.state, frozenset(m.assigned), frozenset(m.revoking))
        if m.state == UNREVOKED:
            # The member stays at its epoch until it reports it no longer owns what it revokes.
            if owned is None or owned & m.revoking:
                return
            m.revoking = set()
            m.revocation_deadline_ms = None
            m.state = STABLE
        if m.member_epoch != g.assignment_epoch or m.state != STABLE:
            target = g.target.get(m.member_id, set())
            revoke = m.assigned - target
            if revoke:
                m.assigned &= target
                m.revoking = revoke
                m.state = UNREVOKED
                m.revocation_deadline_ms = now_ms + m.rebalance_timeout_ms
            else:
                owners = g.owner()
                free = {tp for tp in target if owners.get(tp, m.member_id) == m.member_id}
                m.assigned = free
                m.state = STABLE if free == target else UNRELEASED
                if m.member_epoch != g.assignment_epoch:
                    m.previous_member_epoch, m.member_epoch = m.member_epoch, g.assignment_epoch
        if (m.member_epoch, m.state, frozenset(m.assigned), frozenset(m.revoking)) != before:
            records.append(current_assignment_record(g.group_id, m))

    # -- leaving and expiry --------------------------------------------------------------------
    def _leave(self, g: ConsumerGroup | None, member_id: str, epoch: int, now_ms: int,
               records: Records) -> dict[str, Any]:
        m = g.members.get(member_id) if g is not None else None
        if g is None or m is None:
            raise HeartbeatError(ErrorCode.unknown_member_id, f"member {member_id} is not in the group")
        if epoch == STATIC_LEAVE_EPOCH and m.instance_id is not None:
            # A static member's restart: its partitions wait for it (until its session ends).
            m.previous_member_epoch, m.member_epoch = m.member_epoch, STATIC_LEAVE_EPOCH
            records.append(current_assignment_record(g.group_id, m))
        else:
            self._remove(g, member_id, records)
        self._publish(g, now_ms)
        return {"error_code": ErrorCode.none, "error_message": None, "member_id": member_id,
                "member_epoch": epoch, "heartbeat_interval_ms": 0, "assignment": None}

    def _member_tombstones(self, g: ConsumerGroup, member_id: str) -> Records:
        return [(_key(8, g.group_id, member_id), None), (_key(7, g.group_id, member_id), None),
                (_key(5, g.group_id, member_id), None)]

    def _remove(self, g: ConsumerGroup, member_id: str, records: Records) -> None:
        m = g.members.pop(member_id)
        if m.instance_id is not None and g.static.get(m.instance_id) == member_id:
            del g.static[m.instance_id]
        g.target.pop(member_id, None)
        records += self._member_tombstones(g, member_id)
        self._bump(g, records)
        if g.members:
            self._refresh_target(g, records)

    def tick(self, now_ms: int) -> dict[str, Records]:
        """Members past their session timeout, or still holding partitions they were told to
        revoke after their rebalance timeout, are fenced. Returns records per group."""
        out: dict[str, Records] = {}
        for g in list(self.groups.values()):
            if self.owns(g.group_id) != "yes":
                continue
            for mid, m in list(g.members.items()):
                late = m.revocation_deadline_ms is not None and now_ms > m.revocation_deadline_ms
                if now_ms > m.session_deadline_ms or late:
                    self._remove(g, mid, out.setdefault(g.group_id, []))
                    self._publish(g, now_ms)
        return out

    def next_deadline(self, now_ms: int) -> int | None:
        """When tick() next fences someone (None: no one can be): the first ms past a member's
        session timeout or its revocation deadline, in the groups this broker coordinates."""
        times: list[int] = []
        for g in self.groups.values():
            if self.owns(g.group_id) != "yes":
                continue
            for m in g.members.values():
                times.append(m.session_deadline_ms + 1)  # tick() fences strictly after it
                if m.revocation_deadline_ms is not None:
                    times.append(m.revocation_deadline_ms + 1)
        return min(times, default=None)

    # -- offsets, describe, list ---------------------------------------------------------------
    def is_consumer_group(self, group_id: str) -> bool:
        g = self.groups.get(group_id)
        return g is not None and bool(g.members or g.group_epoch)

    def validate_commit(self, group_id: str, member_id: str, epoch: int) -> ErrorCode | None:
        """None if this is not a consumer group (the classic rules apply); else the error of a
        commit by (member_id, epoch): Kafka accepts it only from a member at its current epoch
        (an admin commit with epoch -1 only while the group is empty)."""
        g = self.groups.get(group_id)
        if g is None or not self.is_consumer_group(group_id):
            return None
        if epoch < 0 and not member_id and not g.members:
            return ErrorCode.none
        m = g.members.get(member_id)
        if m is None:
            return ErrorCode.unknown_member_id
        return ErrorCode.none if epoch == m.member_epoch else ErrorCode.stale_member_epoch

    def describe(self, group_id: str, names: dict[str, str]) -> dict[str, Any]:
        """ConsumerGroupDescribe's fields; names maps topic id -> topic name."""
        g = self.groups.get(group_id)
        if g is None or not self.is_consumer_group(group_id):
            return {"error_code": ErrorCode.group_id_not_found, "group_id": group_id,
                    "error_message": f"group {group_id!r} is not a consumer-protocol group"}
        return {"error_code": ErrorCode.none, "group_id": group_id, "error_message": None,
                "group_state": g.state, "group_epoch": g.group_epoch, "assignment_epoch": g.assignment_epoch,
                "assignor_name": g.preferred_assignor(self.assignors[0]),
                "members": [{"member_id": m.member_id, "instance_id": m.instance_id, "rack_id": m.rack_id,
                             "member_epoch": m.member_epoch, "client_id": m.client_id,
                             "client_host": m.client_host, "subscribed_topic_names": m.subscribed_topic_names,
                             "subscribed_topic_regex": m.subscribed_topic_regex,
                             "assignment": sorted(m.assigned), "target_assignment": sorted(g.target.get(mid, set())),
                             "state": m.state}
                            for mid, m in sorted(g.members.items())]}

    def list_groups(self) -> list[tuple[str, str]]:
        return [(gid, g.state) for gid, g in sorted(self.groups.items())
                if self.is_consumer_group(gid) and self.owns(gid) == "yes"]

    def load_record(self, key: bytes, value: bytes | None, now_ms: int) -> None:
        """Replay one record (types 3, 5, 6, 7, 8) when this broker becomes the coordinator:
        members, epochs, the target and current assignments come back as they were written,
        and every member gets a fresh session to find the new coordinator in."""
        kind, group_id, member_id, f = decode_record(key, value)
        g = self.groups.setdefault(group_id, ConsumerGroup(group_id))
        if kind == 3:
            if f is None:
                del self.groups[group_id]
            else:
                g.group_epoch = f["epoch"]
            return
        if kind == 6:
            g.assignment_epoch = f["epoch"] if f is not None else 0
            return
        assert member_id is not None
        if f is None:
            if kind == 5:
                m = g.members.pop(member_id, None)
                if m is not None and m.instance_id is not None and g.static.get(m.instance_id) == member_id:
                    del g.static[m.instance_id]
            elif kind == 7:
                g.target.pop(member_id, None)
            return
        if kind == 7:
            g.target[member_id] = f["assignment"]
            return
        m = g.members.setdefault(member_id, Member(member_id))
        m.session_deadline_ms = now_ms + self.session_timeout_ms
        if kind == 5:
            for name in ("instance_id", "rack_id", "client_id", "client_host", "subscribed_topic_names",
                         "subscribed_topic_regex", "rebalance_timeout_ms", "server_assignor"):
                setattr(m, name, f[name])
            if m.instance_id is not None:
                g.static[m.instance_id] = member_id
        else:
            states = {code: name for name, code in MEMBER_STATE_CODE.items()}
            m.member_epoch, m.previous_member_epoch = f["member_epoch"], f["previous_member_epoch"]
            m.state, m.assigned, m.revoking = states[f["state"]], f["assigned"], f["revoking"]
        g.topics_seen = self._subscribed_topics(g)

    def downgrade(self, group_id: str) -> Records:
        """An empty consumer group that a classic member joins becomes a classic group again:
        its records are deleted (the offsets stay)."""
        g = self.groups.pop(group_id, None)
        if g is None:
            return []
        return [(_key(6, group_id), None), (_key(3, group_id), None)]

    def unload(self, still_owned: Callable[[str], bool]) -> None:
        for gid in [gid for gid in self.groups if not still_owned(gid)]:
            del self.groups[gid]

    def _publish(self, g: ConsumerGroup, now_ms: int) -> None:
        self.publish("group", self.group_row(g, now_ms))

    def group_row(self, g: ConsumerGroup, now_ms: int) -> dict[str, Any]:
        names = {t.topic_id: t.name for t in self.topics().values()}
        return {"time": now_ms / 1000, "group": g.group_id, "state": g.state, "generation": g.group_epoch,
                "members": len(g.members), "protocol": "consumer",
                "assignment": {mid: [f"{names.get(t, t)}-{p}" for t, p in sorted(m.assigned)]
                               for mid, m in sorted(g.members.items())},
                "member_epochs": {mid: m.member_epoch for mid, m in sorted(g.members.items())},
                # Partitions a member still holds but must give up (reconciliation in progress).
                "revoking": {mid: [f"{names.get(t, t)}-{p}" for t, p in sorted(m.revoking)]
                             for mid, m in sorted(g.members.items()) if m.revoking},
                "client_ids": {mid: m.client_id for mid, m in sorted(g.members.items())}}
