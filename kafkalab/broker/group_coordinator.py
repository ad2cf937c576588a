"""GroupCoordinator: the classic consumer-group protocol, as a plain class (pure).

Requests come in as kio entities with the current time and a `reply` callback; JoinGroup and
SyncGroup replies wait (a rebalance is a barrier) until the round completes or its deadline
passes in `tick(now_ms)`. Nothing here touches sockets or clocks: the broker's GroupService
wires it to the network, a timer and the `__consumer_offsets` log via two injected functions:

    append(partition, [(key, value | None), ...], on_done(error_code[, base_offset]))  # acks=all
    owns(partition) -> "yes" | "loading" | "no"                         # are we its leader?

and, for transactional offset commits (TxnOffsetCommit, see kafkalab.broker.txn_offsets):

    append_batch(partition, batch_bytes, on_done(error_code, base_offset))  # acks=all write
    producer_entry(partition, producer_id) -> that producer's state in the partition, or None

A group moves Empty -> PreparingRebalance (members (re)join) -> CompletingRebalance (the
leader assigns) -> Stable, and back to PreparingRebalance whenever membership changes: a
member joins, leaves, or misses its session timeout. Generations count the rounds; every
request names its generation so a member from an older round is refused (ILLEGAL_GENERATION).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.txn_offsets import (
    TP,
    PendingOffset,
    TxnOffsetStore,
    newer,
    next_sequence,
    txn_offset_commit_batch,
)
from kafkalab.protocol.consumer_protocol import decode_assignment, decode_subscription
from kafkalab.records.batch import decode_batch
from kafkalab.records.header import parse_header

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (
    "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead")
OFFSETS_TOPIC = "__consumer_offsets"

Reply = Callable[[dict[str, Any]], None]


def java_string_hashcode(s: str) -> int:
    """Java's String.hashCode (s[0]*31^(n-1) + ... over UTF-16 code units), as a signed int32."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, num_partitions: int) -> int:
    """Kafka's rule: the group's coordinator leads this __consumer_offsets partition."""
    h = java_string_hashcode(group_id)
    # Utils.abs in Kafka maps Integer.MIN_VALUE to 0 (h & 0x7fffffff), not to itself.
    return (h & 0x7FFFFFFF) % num_partitions


# ---- __consumer_offsets records: Kafka's key/value schemas ----------------------------------

def _str(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _bytes(b: bytes | None) -> bytes:
    return struct.pack(">i", -1) if b is None else struct.pack(">i", len(b)) + b


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def fmt(self, f: str) -> Any:
        (v,) = struct.unpack_from(f, self.data, self.pos)
        self.pos += struct.calcsize(f)
        return v

    def str(self) -> str | None:
        n = self.fmt(">h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def bytes(self) -> bytes | None:
        n = self.fmt(">i")
        if n < 0:
            return None
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(b)


def offset_commit_key(group: str, topic: str, partition: int) -> bytes:
    """OffsetCommitKey version 1."""
    return struct.pack(">h", 1) + _str(group) + _str(topic) + struct.pack(">i", partition)


def offset_commit_value(offset: int, leader_epoch: int, metadata: str | None, ts_ms: int) -> bytes:
    """OffsetCommitValue version 3."""
    return struct.pack(">hqi", 3, offset, leader_epoch) + _str(metadata or "") + struct.pack(">q", ts_ms)


def group_metadata_key(group: str) -> bytes:
    """GroupMetadataKey version 2."""
    return struct.pack(">h", 2) + _str(group)


def decode_key(key: bytes) -> tuple[str, Any]:
    r = _Reader(key)
    version = r.fmt(">h")
    if version in (0, 1):
        return "offset", (r.str(), r.str(), r.fmt(">i"))
    if version == 2:
        return "group", r.str()
    return "other", version  # KIP-848's record types (3+): the consumer-group coordinator's


def decode_offset_record(key: bytes, value: bytes | None) -> tuple[str, TP, tuple[int, int, str | None] | None] | None:
    """(group, (topic, partition), offset value or None for a tombstone); None for group records."""
    kind, ident = decode_key(key)
    if kind != "offset":
        return None
    group, topic, partition = ident
    return group, (topic, partition), None if value is None else decode_offset_value(value)


def decode_offset_value(value: bytes) -> tuple[int, int, str | None]:
    r = _Reader(value)
    version = r.fmt(">h")
    offset = r.fmt(">q")
    epoch = r.fmt(">i") if version >= 3 else -1
    return offset, epoch, r.str()


# ---- the group --------------------------------------------------------------------------

@dataclass
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    join_reply: Reply | None = None
    sync_reply: Reply | None = None
    session_deadline_ms: int = 0
    joined_generation: int = -1

    def metadata(self, protocol: str) -> bytes:
        return next(m for n, m in self.protocols if n == protocol)


@dataclass
class Group:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static: dict[str, str] = field(default_factory=dict)  # group.instance.id -> member id
    pending: dict[str, int] = field(default_factory=dict)  # member ids handed out -> expiry
    offsets: dict[tuple[str, int], tuple[int, int, str | None]] = field(default_factory=dict)
    # where in __consumer_offsets each committed offset was written: a transaction's offsets
    # replace a committed one only if written later (newer())
    offset_log_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    join_deadline_ms: int | None = None  # PreparingRebalance: when the round completes anyway
    initial_delay_until_ms: int | None = None
    rebalance_started_ms: int = 0
    previous_assignment: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def supported_protocols(self) -> set[str]:
        sets = [{n for n, _ in m.protocols} for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def select_protocol(self) -> str:
        # Each member votes for the first protocol in its preference order that all support.
        common = self.supported_protocols()
        votes: dict[str, int] = {}
        for m in self.members.values():
            choice = next(n for n, _ in m.protocols if n in common)
            votes[choice] = votes.get(choice, 0) + 1
        return max(sorted(votes), key=lambda n: votes[n])

    def all_joined(self) -> bool:
        return not self.pending and all(m.join_reply is not None for m in self.members.values())


def uuid_member_id(client_id: str) -> str:
    """Kafka's member id: the client id and a random UUID (the broker's default)."""
    return f"{client_id or 'consumer'}-{uuid.uuid4()}"


def _error(code: ErrorCode) -> dict[str, Any]:
    return {"error_code": code}


class GroupCoordinator:
    def __init__(self, *, num_partitions: int,
                 append: Callable[[int, list[tuple[bytes, bytes | None]], Callable[[ErrorCode], None]], None],
                 owns: Callable[[int], str],
                 publish: Callable[[str, dict[str, Any]], None] = lambda kind, row: None,
                 initial_rebalance_delay_ms: int = 0, min_session_timeout_ms: int = 100,
                 max_session_timeout_ms: int = 1_800_000,
                 append_batch: Callable[[int, bytes, Callable[[ErrorCode, int], None]], None] | None = None,
                 producer_entry: Callable[[int, int], Any] = lambda partition, producer_id: None,
                 new_member_id: Callable[[str], str] = uuid_member_id):
        self.num_partitions = num_partitions
        self.new_member_id = new_member_id  # (client id) -> a fresh member id; injected for the simulator
        self.append = append
        self.append_batch = append_batch
        self.producer_entry = producer_entry
        self.txn_offsets = TxnOffsetStore()  # offsets of open transactions, per producer id
        self.owns = owns
        self.publish = publish
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.groups: dict[str, Group] = {}
        # records of KIP-848's consumer groups, replayed by their own coordinator
        self.load_other: Callable[[bytes, bytes | None, int], None] = lambda key, value, now_ms: None

    # -- helpers -----------------------------------------------------------------------------
    def partition_of(self, group_id: str) -> int:
        return partition_for(group_id, self.num_partitions)

    def _check_owner(self, group_id: str) -> ErrorCode:
        state = self.owns(self.partition_of(group_id))
        if state == "loading":
            return ErrorCode.coordinator_load_in_progress
        return ErrorCode.none if state == "yes" else ErrorCode.not_coordinator

    def _group(self, group_id: str, create: bool = False) -> Group | None:
        g = self.groups.get(group_id)
        if g is None and create:
            g = self.groups[group_id] = Group(group_id)
        return g

    def _transition(self, g: Group, state: str, now_ms: int) -> None:
        g.state = state
        self.publish("group", self.group_row(g, now_ms))

    def group_row(self, g: Group, now_ms: int) -> dict[str, Any]:
        return {"time": now_ms / 1000, "group": g.group_id, "state": g.state, "generation": g.generation,
                "members": len(g.members), "protocol": g.protocol or "",
                "assignment": {m: [f"{t}-{p}" for t, p in self._decoded(g, mem.assignment)]
                               for m, mem in g.members.items()} if g.state == STABLE else {},
                "client_ids": {m: mem.client_id for m, mem in g.members.items()}}

    def _decoded(self, g: Group, data: bytes) -> list[tuple[str, int]]:
        if g.protocol_type != "consumer":
            return []
        try:
            return decode_assignment(data)
        except Exception:  # a non-Kafka payload: show nothing rather than fail
            return []

    # -- JoinGroup -----------------------------------------------------------------------------
    def join_group(self, req: Any, now_ms: int, reply: Reply) -> None:
        """reply gets JoinGroupResponse fields (error_code, generation_id, protocol_name, leader,
        member_id, members [(member_id, group_instance_id, metadata)])."""
        group_id = str(req.group_id)
        err = self._check_owner(group_id)
        if err != ErrorCode.none:
            reply(_error(err))
            return
        session_ms = int(req.session_timeout.total_seconds() * 1000)
        rebalance_ms = int(req.rebalance_timeout.total_seconds() * 1000)
        if rebalance_ms < 0:
            rebalance_ms = session_ms
        if not self.min_session_timeout_ms <= session_ms <= self.max_session_timeout_ms:
            reply(_error(ErrorCode.invalid_session_timeout))
            return
        g = self._group(group_id, create=True)
        assert g is not None
        protocols = [(str(p.name), bytes(p.metadata)) for p in req.protocols]
        names = {n for n, _ in protocols}
        if not protocols or (g.members and (str(req.protocol_type) != g.protocol_type
                                            or not names & g.supported_protocols())):
            reply(_error(ErrorCode.inconsistent_group_protocol))
            return
        if g.state == DEAD:
            reply(_error(ErrorCode.coordinator_not_available))
            return
        member_id = str(req.member_id)
        instance = getattr(req, "group_instance_id", None)
        args = dict(session_ms=session_ms, rebalance_ms=rebalance_ms, protocols=protocols,
                    protocol_type=str(req.protocol_type), client_id=str(getattr(req, "client_id", "") or ""))
        if not member_id:
            self._join_new(g, instance, now_ms, reply, **args)
            return
        if instance is not None and g.static.get(instance) not in (None, member_id):
            reply(_error(ErrorCode.fenced_instance_id))
            return
        if member_id in g.pending:
            del g.pending[member_id]
            self._add_member(g, member_id, instance, now_ms, reply, **args)
            return
        m = g.members.get(member_id)
        if m is None:
            reply(_error(ErrorCode.unknown_member_id))
            return
        self._join_existing(g, m, now_ms, reply, protocols, session_ms, rebalance_ms)

    def _join_new(self, g: Group, instance: str | None, now_ms: int, reply: Reply, **args: Any) -> None:
        new_id = self.new_member_id(args["client_id"])
        if instance is not None and instance in g.static:
            self._replace_static(g, instance, new_id, now_ms, reply, **args)
            return
        if instance is None:
            # KIP-394: hand out an id first; the member joins with it, so a retried first
            # join cannot leave a ghost member behind.
            g.pending[new_id] = now_ms + args["session_ms"]
            reply({**_error(ErrorCode.member_id_required), "member_id": new_id})
            return
        self._add_member(g, new_id, instance, now_ms, reply, **args)

    def _replace_static(self, g: Group, instance: str, new_id: str, now_ms: int, reply: Reply,
                        **args: Any) -> None:
        """A static member came back (within its session timeout): it takes over its old
        member's place and assignment under a new member id; no rebalance while Stable and
        its protocols are unchanged. The old id is fenced from now on."""
        old_id = g.static[instance]
        old = g.members.pop(old_id)
        m = Member(new_id, instance, args["client_id"], args["session_ms"], args["rebalance_ms"],
                   args["protocol_type"], args["protocols"], assignment=old.assignment,
                   session_deadline_ms=now_ms + args["session_ms"], joined_generation=old.joined_generation)
        g.members[new_id] = m
        g.static[instance] = new_id
        if g.leader == old_id:
            g.leader = new_id
        if old.join_reply is not None:  # the old incarnation was waiting: it is fenced
            old.join_reply(_error(ErrorCode.fenced_instance_id))
        if old.sync_reply is not None:
            old.sync_reply(_error(ErrorCode.fenced_instance_id))
        changed = self._subscription(g, old.protocols) != self._subscription(g, args["protocols"])
        if g.state == STABLE and not changed:
            # Answer with the current generation once the new member id is stored (as Kafka):
            # a coordinator that loaded the old id would fence the new process, not the old.
            def stored(code: ErrorCode, *_: Any) -> None:
                if self.groups.get(g.group_id) is not g:
                    reply(_error(ErrorCode.not_coordinator))
                elif code != ErrorCode.none:
                    if g.members.get(new_id) is m:  # the old member is back, as the log still says
                        del g.members[new_id]
                        g.members[old_id], g.static[instance] = old, old_id
                        g.leader = old_id if g.leader == new_id else g.leader
                    reply(_error(commit_error(code)))
                elif g.members.get(new_id) is not m:
                    reply(_error(ErrorCode.unknown_member_id))  # it was removed meanwhile
                elif g.state == PREPARING:
                    m.join_reply = reply
                    self._maybe_complete_join(g, now_ms)
                else:
                    # The member then syncs and gets its assignment.
                    reply(self._join_response(g, m, members=g.leader == new_id))

            self._store_group(g, now_ms, stored)
            return
        if g.state == PREPARING:
            m.join_reply = reply
            self._maybe_complete_join(g, now_ms)
            return
        m.join_reply = reply
        self._prepare_rebalance(g, now_ms, f"static member {instance} rejoined with new metadata")

    def _add_member(self, g: Group, member_id: str, instance: str | None, now_ms: int, reply: Reply,
                    **args: Any) -> None:
        m = Member(member_id, instance, args["client_id"], args["session_ms"], args["rebalance_ms"],
                   args["protocol_type"], args["protocols"], session_deadline_ms=now_ms + args["session_ms"])
        m.join_reply = reply
        if not g.members:
            g.protocol_type = args["protocol_type"]
        g.members[member_id] = m
        if instance is not None:
            g.static[instance] = member_id
        if g.state == PREPARING:
            self._maybe_complete_join(g, now_ms)
        else:
            self._prepare_rebalance(g, now_ms, f"member {member_id} joined")

    def _join_existing(self, g: Group, m: Member, now_ms: int, reply: Reply,
                       protocols: list[tuple[str, bytes]], session_ms: int, rebalance_ms: int) -> None:
        m.session_deadline_ms = now_ms + session_ms
        changed = protocols != m.protocols
        m.protocols, m.session_timeout_ms, m.rebalance_timeout_ms = protocols, session_ms, rebalance_ms
        if g.state == PREPARING:
            if m.join_reply is not None:  # a retried join replaces the one waiting
                m.join_reply(_error(ErrorCode.rebalance_in_progress))
            m.join_reply = reply
            self._maybe_complete_join(g, now_ms)
        elif g.state == COMPLETING and not changed and m.joined_generation == g.generation:
            reply(self._join_response(g, m, members=m.member_id == g.leader))
        elif g.state == STABLE and not changed and m.member_id != g.leader:
            # A follower that rejoins with the same subscription gets the current round back.
            reply(self._join_response(g, m, members=False))
        else:
            m.join_reply = reply
            why = "leader rejoined" if m.member_id == g.leader else f"member {m.member_id} changed its subscription"
            self._prepare_rebalance(g, now_ms, why)

    def _prepare_rebalance(self, g: Group, now_ms: int, reason: str) -> None:
        if g.state == COMPLETING:
            # Followers waiting for the leader's assignment must rejoin.
            for mem in g.members.values():
                if mem.sync_reply is not None:
                    mem.sync_reply(_error(ErrorCode.rebalance_in_progress))
                    mem.sync_reply = None
        was_empty = g.state == EMPTY
        rebalance_ms = max((mem.rebalance_timeout_ms for mem in g.members.values()), default=0)
        g.join_deadline_ms = now_ms + rebalance_ms
        g.rebalance_started_ms = now_ms
        g.previous_assignment = {mid: self._decoded(g, mem.assignment) for mid, mem in g.members.items()}
        if was_empty and self.initial_rebalance_delay_ms > 0:
            # group.initial.rebalance.delay.ms: let a starting fleet of consumers arrive first.
            g.initial_delay_until_ms = now_ms + self.initial_rebalance_delay_ms
        self._transition(g, PREPARING, now_ms)
        self.publish("event", {"event": "rebalance_start", "group": g.group_id, "generation": g.generation,
                               "detail": reason, "time": now_ms / 1000})
        self._maybe_complete_join(g, now_ms)

    def _maybe_complete_join(self, g: Group, now_ms: int) -> None:
        if g.state != PREPARING:
            return
        if g.initial_delay_until_ms is not None and now_ms < g.initial_delay_until_ms:
            return
        timed_out = g.join_deadline_ms is not None and now_ms >= g.join_deadline_ms
        if not g.all_joined() and not timed_out:
            return
        g.initial_delay_until_ms = None
        # Members that did not rejoin within the rebalance timeout are out.
        for mid in [mid for mid, mem in g.members.items() if mem.join_reply is None]:
            self._remove(g, mid)
        g.pending.clear()
        if not g.members:
            g.generation += 1
            g.protocol = None
            g.leader = None
            self._transition(g, EMPTY, now_ms)
            self._store_group(g, now_ms)
            return
        g.generation += 1
        g.protocol = g.select_protocol()
        if g.leader not in g.members:
            g.leader = sorted(g.members)[0]
        self._transition(g, COMPLETING, now_ms)
        for mem in g.members.values():
            mem.joined_generation = g.generation
            mem.session_deadline_ms = now_ms + mem.session_timeout_ms
            reply, mem.join_reply = mem.join_reply, None
            assert reply is not None
            reply(self._join_response(g, mem, members=mem.member_id == g.leader))

    def _join_response(self, g: Group, m: Member, members: bool) -> dict[str, Any]:
        return {"error_code": ErrorCode.none, "generation_id": g.generation, "protocol_type": g.protocol_type,
                "protocol_name": g.protocol, "leader": g.leader or "", "member_id": m.member_id,
                "members": [(mid, mem.group_instance_id, mem.metadata(g.protocol or ""))
                            for mid, mem in sorted(g.members.items())] if members else []}

    def _remove(self, g: Group, member_id: str) -> None:
        m = g.members.pop(member_id, None)
        if m is None:
            return
        if m.group_instance_id is not None and g.static.get(m.group_instance_id) == member_id:
            del g.static[m.group_instance_id]
        if g.leader == member_id:
            g.leader = None

    def _subscription(self, g: Group, protocols: list[tuple[str, bytes]]) -> Any:
        """What decides whether a rejoin changes anything: for consumers the protocols and their
        topics (a restart's generation and owned partitions differ, harmlessly)."""
        if g.protocol_type != "consumer":
            return protocols
        try:
            return [(n, sorted(decode_subscription(md).topics)) for n, md in protocols]
        except Exception:
            return protocols

    # -- SyncGroup -------------------------------------------------------------------------------
    def sync_group(self, req: Any, now_ms: int, reply: Reply) -> None:
        """reply gets (error_code, protocol_type, protocol_name, assignment)."""
        group_id = str(req.group_id)
        err = self._check_owner(group_id)
        g = self._group(group_id)
        if err == ErrorCode.none:
            err = self._check_member(g, str(req.member_id), getattr(req, "group_instance_id", None),
                                     int(req.generation_id))
        if err != ErrorCode.none:
            reply(_error(err))
            return
        assert g is not None
        m = g.members[str(req.member_id)]
        m.session_deadline_ms = now_ms + m.session_timeout_ms
        if g.state == PREPARING:
            reply(_error(ErrorCode.rebalance_in_progress))
        elif g.state == STABLE:
            reply(self._sync_response(g, m))
        elif g.state == COMPLETING:
            m.sync_reply = reply
            if m.member_id == g.leader:
                given = {str(a.member_id): bytes(a.assignment) for a in req.assignments}
                for mid, mem in g.members.items():
                    mem.assignment = given.get(mid, b"")
                generation = g.generation

                def stored(code: ErrorCode, *_: Any) -> None:
                    # As Kafka: nobody learns the assignment before it is durable, or a new
                    # coordinator (loading the previous generation) would hand out this
                    # generation again with another assignment.
                    if self.groups.get(g.group_id) is not g or g.state != COMPLETING or g.generation != generation:
                        return  # a newer round, or this coordinator was unloaded meanwhile
                    if code == ErrorCode.none:
                        self._stabilize(g, now_ms)
                        return
                    err = commit_error(code)
                    for mem in g.members.values():
                        mem.assignment = b""
                        if mem.sync_reply is not None:
                            answer, mem.sync_reply = mem.sync_reply, None
                            answer(_error(err))
                    self._prepare_rebalance(g, now_ms, "the group's assignment could not be stored")

                self._store_group(g, now_ms, stored)

    def _stabilize(self, g: Group, now_ms: int) -> None:
        self._transition(g, STABLE, now_ms)
        revoked, assigned = {}, {}
        for mid, mem in g.members.items():
            new = set(self._decoded(g, mem.assignment))
            old = set(g.previous_assignment.get(mid, []))
            revoked[mid] = [f"{t}-{p}" for t, p in sorted(old - new)]
            assigned[mid] = [f"{t}-{p}" for t, p in sorted(new - old)]
        self.publish("event", {"event": "rebalance_end", "group": g.group_id, "generation": g.generation,
                               "time": now_ms / 1000, "revoked": revoked, "assigned": assigned,
                               "duration_ms": now_ms - g.rebalance_started_ms,
                               "detail": f"generation {g.generation}, {len(g.members)} members"})
        for mem in g.members.values():
            if mem.sync_reply is not None:
                reply, mem.sync_reply = mem.sync_reply, None
                reply(self._sync_response(g, mem))

    def _sync_response(self, g: Group, m: Member) -> dict[str, Any]:
        return {"error_code": ErrorCode.none, "protocol_type": g.protocol_type, "protocol_name": g.protocol,
                "assignment": m.assignment}

    def _check_member(self, g: Group | None, member_id: str, instance: str | None, generation: int) -> ErrorCode:
        if g is None:
            return ErrorCode.unknown_member_id
        if g.state == DEAD:
            # Removed meanwhile (moved to another coordinator, or deleted): Kafka's
            # GroupMetadataManager tells the member to find its coordinator again.
            return ErrorCode.coordinator_not_available
        if instance is not None and g.static.get(instance) not in (None, member_id):
            return ErrorCode.fenced_instance_id
        if member_id not in g.members:
            return ErrorCode.unknown_member_id
        if generation != g.generation:
            return ErrorCode.illegal_generation
        return ErrorCode.none

    # -- Heartbeat / LeaveGroup ----------------------------------------------------------------------
    def heartbeat(self, req: Any, now_ms: int) -> ErrorCode:
        group_id = str(req.group_id)
        err = self._check_owner(group_id)
        if err != ErrorCode.none:
            return err
        g = self._group(group_id)
        member_id = str(req.member_id)
        err = self._check_member(g, member_id, getattr(req, "group_instance_id", None), int(req.generation_id))
        if err == ErrorCode.illegal_generation and g is not None and g.state == PREPARING:
            err = ErrorCode.rebalance_in_progress  # an old-generation member: rejoin now
        if g is not None and member_id in g.members and err in (ErrorCode.none, ErrorCode.rebalance_in_progress):
            m = g.members[member_id]
            m.session_deadline_ms = now_ms + m.session_timeout_ms
        if err != ErrorCode.none:
            return err
        assert g is not None
        return ErrorCode.rebalance_in_progress if g.state == PREPARING else ErrorCode.none

    def leave_group(self, req: Any, now_ms: int) -> tuple[ErrorCode, list[tuple[str, str | None, ErrorCode]]]:
        group_id = str(req.group_id)
        err = self._check_owner(group_id)
        if err != ErrorCode.none:
            return err, []
        g = self._group(group_id)
        results = []
        left = []
        for ident in req.members:
            mid, inst = str(ident.member_id), ident.group_instance_id
            if g is not None and inst is not None and not mid:
                mid = g.static.get(inst, "")
            if g is None or mid not in g.members:
                results.append((mid, inst, ErrorCode.unknown_member_id))
                continue
            if inst is not None and g.static.get(inst) != mid:
                results.append((mid, inst, ErrorCode.fenced_instance_id))
                continue
            results.append((mid, inst, ErrorCode.none))
            left.append(mid)
        if g is not None and left:
            self._members_gone(g, left, now_ms, "left the group")
        return ErrorCode.none, results

    def _members_gone(self, g: Group, member_ids: list[str], now_ms: int, why: str) -> None:
        for mid in member_ids:
            m = g.members.get(mid)
            if m is not None and m.join_reply is not None:
                m.join_reply(_error(ErrorCode.unknown_member_id))
            if m is not None and m.sync_reply is not None:
                m.sync_reply(_error(ErrorCode.unknown_member_id))
            self._remove(g, mid)
        if g.state in (STABLE, COMPLETING):
            self._prepare_rebalance(g, now_ms, f"{', '.join(member_ids)} {why}")
        elif g.state == PREPARING:
            self._maybe_complete_join(g, now_ms)

    # -- time ------------------------------------------------------------------------------------
    def tick(self, now_ms: int) -> None:
        """Expire sessions, pending member ids and rebalance deadlines."""
        for g in list(self.groups.values()):
            for mid in [mid for mid, exp in g.pending.items() if now_ms >= exp]:
                del g.pending[mid]
            # A member that is not waiting in a JoinGroup must keep heartbeating, also while a
            # rebalance is being prepared: a dead one is removed so the join can complete
            # (otherwise the group would wait for it until the rebalance timeout).
            expired = [mid for mid, m in g.members.items()
                       if now_ms >= m.session_deadline_ms and m.join_reply is None]
            if expired:
                self._members_gone(g, expired, now_ms, "missed the session timeout")
            self._maybe_complete_join(g, now_ms)

    def next_deadline(self, now_ms: int) -> int | None:
        """When tick() next has something to do (None: nothing is waiting on time): the first
        pending member id or session (of a member not waiting in a JoinGroup) to expire, or a
        rebalance that completes at its initial delay or its rebalance timeout. At or before
        now when something is due already."""
        times: list[int] = []
        for g in self.groups.values():
            times.extend(g.pending.values())
            times.extend(m.session_deadline_ms for m in g.members.values() if m.join_reply is None)
            if g.state == PREPARING:
                if g.initial_delay_until_ms is not None and now_ms < g.initial_delay_until_ms:
                    times.append(g.initial_delay_until_ms)  # nothing completes before it
                elif g.all_joined():
                    times.append(now_ms)
                elif g.join_deadline_ms is not None:
                    times.append(g.join_deadline_ms)
        return min(times, default=None)

    # -- offsets -----------------------------------------------------------------------------------
    def commit_offsets(self, req: Any, now_ms: int, reply: Callable[[dict[tuple[str, int], ErrorCode]], None]) -> None:
        """Validate, then append one record per partition to __consumer_offsets (acks=all) and
        answer once they are written. reply gets {(topic, partition): error_code}."""
        group_id = str(req.group_id)
        tps = [(str(t.name), int(p.partition_index), int(p.committed_offset), int(p.committed_leader_epoch),
                p.committed_metadata) for t in req.topics for p in t.partitions]
        err = self._check_owner(group_id)
        generation = int(getattr(req, "generation_id_or_member_epoch", getattr(req, "generation_id", -1)))
        member_id = str(req.member_id or "")
        instance = getattr(req, "group_instance_id", None)
        # Kafka's OffsetMetadataManager.validateOffsetCommit and ClassicGroup.validateOffsetCommit.
        g = self._group(group_id) if err == ErrorCode.none else None
        if err == ErrorCode.none and g is None:
            if generation >= 0:
                # A generation for a group that does not exist: OffsetCommit up to v8 answers
                # ILLEGAL_GENERATION (v9, not served here, GROUP_ID_NOT_FOUND); nothing is created.
                err = ErrorCode.illegal_generation
            else:
                g = self._group(group_id, create=True)  # a simple group: it only stores offsets
        if err != ErrorCode.none or g is None:
            pass
        elif g.state == DEAD:
            err = ErrorCode.coordinator_not_available
        elif generation < 0 and g.state == EMPTY:
            pass  # the admin client, or a consumer without group management: an empty group takes it
        elif generation >= 0 or member_id or instance is not None:
            err = self._check_member(g, member_id, instance, generation)
            if err == ErrorCode.none and g.state == COMPLETING:
                err = ErrorCode.rebalance_in_progress
        else:
            # A simple (assign()-mode) commit may not write over a live group's offsets.
            err = ErrorCode.unknown_member_id
        if err != ErrorCode.none:
            reply({(t, p): err for t, p, *_ in tps})
            return
        assert g is not None
        if member_id in g.members:
            m = g.members[member_id]
            m.session_deadline_ms = now_ms + m.session_timeout_ms
        records = [(offset_commit_key(group_id, t, p), offset_commit_value(o, e, md, now_ms))
                   for t, p, o, e, md in tps]

        def written(code: ErrorCode, base_offset: int | None = None) -> None:
            if code == ErrorCode.none:
                for i, (t, p, o, e, md) in enumerate(tps):
                    g.offsets[(t, p)] = (o, e, md)
                    self._set_log_offset(g, (t, p), None if base_offset is None or base_offset < 0
                                         else base_offset + i)
            reply({(t, p): commit_error(code) for t, p, *_ in tps})

        self.append(self.partition_of(group_id), records, written)

    def fetch_offsets(self, group_id: str, tps: list[tuple[str, int]] | None
                      ) -> tuple[ErrorCode, dict[tuple[str, int], tuple[int, int, str | None]]]:
        """Committed (offset, leader_epoch, metadata) per partition; offset -1 if none. tps None: all."""
        err = self._check_owner(group_id)
        if err != ErrorCode.none:
            return err, {}
        g = self._group(group_id)
        offsets = g.offsets if g is not None else {}
        if tps is None:
            return ErrorCode.none, dict(offsets)
        return ErrorCode.none, {tp: offsets.get(tp, (-1, -1, None)) for tp in tps}

    def unstable_offsets(self, group_id: str, tps: list[tuple[str, int]] | None) -> set[TP]:
        """Partitions whose offset an open transaction has written (pending until its marker):
        OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for them (KIP-447), so a
        new owner does not start from an offset that is about to move."""
        pending = self.txn_offsets.pending_partitions(group_id)
        return pending if tps is None else pending & set(tps)

    # -- TxnOffsetCommit -------------------------------------------------------------------------
    def txn_commit_offsets(self, req: Any, now_ms: int,
                           reply: Callable[[dict[tuple[str, int], ErrorCode]], None]) -> None:
        """TxnOffsetCommit: write the offsets in a transactional batch of the producer (its id,
        epoch and next sequence in this partition); they stay pending, invisible to
        OffsetFetch, until the transaction's COMMIT marker lands here (ABORT drops them).
        reply gets {(topic, partition): error_code} once the batch is written (acks=all)."""
        group_id = str(req.group_id)
        pid, epoch = int(req.producer_id), int(req.producer_epoch)
        tps = [(str(t.name), int(p.partition_index), int(p.committed_offset), int(p.committed_leader_epoch),
                p.committed_metadata) for t in req.topics for p in t.partitions]
        partition = self.partition_of(group_id)
        err = self._check_owner(group_id)
        if err == ErrorCode.none and self.append_batch is None:
            err = ErrorCode.unsupported_version
        g = self._group(group_id, create=err == ErrorCode.none)
        generation = int(req.generation_id)
        member_id = str(req.member_id or "")
        instance = getattr(req, "group_instance_id", None)
        if err == ErrorCode.none and (generation >= 0 or member_id or instance is not None):
            # EOS v2 (KIP-447): the consumer's generation fences a zombie that lost its
            # partitions in a rebalance. Unlike a plain commit, CompletingRebalance is fine.
            err = self._check_member(g, member_id, instance, generation)
        entry = self.producer_entry(partition, pid) if err == ErrorCode.none else None
        if entry is not None and entry.producer_epoch > epoch:
            err = ErrorCode.invalid_producer_epoch  # a newer instance of this transactional.id
        if err != ErrorCode.none:
            reply({(t, p): err for t, p, *_ in tps})
            return
        assert g is not None
        if member_id in g.members:
            m = g.members[member_id]
            m.session_deadline_ms = now_ms + m.session_timeout_ms
        # Pending from now on (before the append, as Kafka does): an OffsetFetch with
        # require_stable that comes while the batch is being replicated must wait too.
        mine = self.txn_offsets.pending.setdefault(pid, {})
        added: list[tuple[tuple[str, TP], PendingOffset | None, PendingOffset]] = []
        for t, p, o, e, md in tps:
            key, po = (group_id, (t, p)), PendingOffset((o, e, md), -1)
            added.append((key, mine.get(key), po))
            mine[key] = po
        records = [(offset_commit_key(group_id, t, p), offset_commit_value(o, e, md, now_ms))
                   for t, p, o, e, md in tps]
        batch = txn_offset_commit_batch(records, producer_id=pid, producer_epoch=epoch,
                                        base_sequence=next_sequence(entry, epoch), timestamp_ms=now_ms)

        def written(code: ErrorCode, base_offset: int) -> None:
            now = self.txn_offsets.pending.get(pid, {})
            for i, (key, prev, po) in enumerate(added):
                if now.get(key) is not po:
                    continue  # the log replay got there first (or a marker already ended it)
                if code == ErrorCode.none and base_offset >= 0:
                    now[key] = PendingOffset(po.value, base_offset + i)
                elif prev is None:
                    del now[key]
                else:
                    now[key] = prev
            if pid in self.txn_offsets.pending and not self.txn_offsets.pending[pid]:
                del self.txn_offsets.pending[pid]
            reply({(t, p): code for t, p, *_ in tps})

        assert self.append_batch is not None
        self.append_batch(partition, batch, written)

    # -- describe / list ------------------------------------------------------------------------------
    def describe(self, group_id: str) -> dict[str, Any]:
        err = self._check_owner(group_id)
        g = self._group(group_id)
        if err != ErrorCode.none or g is None:
            return {"error_code": err, "group_id": group_id, "group_state": DEAD if err == ErrorCode.none else "",
                    "protocol_type": "", "protocol_data": "", "members": []}
        return {"error_code": ErrorCode.none, "group_id": group_id, "group_state": g.state,
                "protocol_type": g.protocol_type or "", "protocol_data": g.protocol or "",
                "members": [(mid, m.group_instance_id, m.client_id,
                             m.metadata(g.protocol) if g.protocol and g.state != PREPARING else b"",
                             m.assignment if g.state == STABLE else b"")
                            for mid, m in sorted(g.members.items())]}

    def list_groups(self, states: set[str] | None = None) -> list[tuple[str, str, str]]:
        return [(g.group_id, g.protocol_type or "", g.state) for g in sorted(self.groups.values(), key=lambda g: g.group_id)
                if self.owns(self.partition_of(g.group_id)) == "yes" and g.state != DEAD
                and (not states or g.state in states)]

    # -- persistence ------------------------------------------------------------------------------
    def _store_group(self, g: Group, now_ms: int,
                     on_done: Callable[..., None] = lambda code, *_: None) -> None:
        """GroupMetadataValue v3 when the round completes; a tombstone for an empty group with
        no offsets (Kafka deletes such a group). on_done(error_code, ...) once written."""
        key = group_metadata_key(g.group_id)
        if not g.members and not g.offsets:
            self.append(self.partition_of(g.group_id), [(key, None)], on_done)
            return
        value = struct.pack(">h", 3) + _str(g.protocol_type or "") + struct.pack(">i", g.generation) \
            + _str(g.protocol) + _str(g.leader) + struct.pack(">q", now_ms) + struct.pack(">i", len(g.members))
        for mid, m in sorted(g.members.items()):
            value += (_str(mid) + _str(m.group_instance_id) + _str(m.client_id) + _str("")
                      + struct.pack(">ii", m.rebalance_timeout_ms, m.session_timeout_ms)
                      + _bytes(m.metadata(g.protocol) if g.protocol else b"") + _bytes(m.assignment))
        self.append(self.partition_of(g.group_id), [(key, value)], on_done)

    def load_batch(self, data: bytes | memoryview, pos: int, now_ms: int, *, txn_only: bool = False) -> None:
        """Replay one __consumer_offsets batch, in log order. Transactional offset commits stay
        pending until their producer's marker (a control batch) commits or drops them; plain
        records are the group's state (skipped with txn_only: the broker applied those when
        their append was acknowledged, and only needs to follow the transactions' markers)."""
        h = parse_header(data, pos)
        if h.is_transactional or h.is_control:
            for group_id, tp, po in self.txn_offsets.apply_batch(data, pos, decode_offset_record):
                self._materialise(group_id, tp, po)
            return
        if txn_only:
            return
        for r in decode_batch(data, pos).records:
            if r.key is not None:
                self.load_record(r.key, r.value, now_ms, log_offset=r.offset)

    def _materialise(self, group_id: str, tp: TP, po: PendingOffset) -> None:
        """A COMMIT marker: the transaction's offset becomes the committed one, unless a
        later record in the log already set that partition's offset (Kafka's rule)."""
        g = self._group(group_id, create=True)
        assert g is not None
        if newer(po.log_offset, g.offset_log_offsets.get(tp)):
            g.offsets[tp] = po.value
            g.offset_log_offsets[tp] = po.log_offset

    @staticmethod
    def _set_log_offset(g: Group, tp: TP, log_offset: int | None) -> None:
        if log_offset is None:
            g.offset_log_offsets.pop(tp, None)  # unknown: any later transaction's offset wins
        else:
            g.offset_log_offsets[tp] = log_offset

    def load_record(self, key: bytes, value: bytes | None, now_ms: int, log_offset: int | None = None) -> None:
        """Replay one non-transactional __consumer_offsets record (when this broker becomes the
        partition's leader); log_offset is where it sits in the log."""
        kind, ident = decode_key(key)
        if kind == "other":
            self.load_other(key, value, now_ms)
            return
        if kind == "offset":
            group_id, topic, partition = ident
            g = self._group(group_id, create=True)
            assert g is not None
            if value is None:
                g.offsets.pop((topic, partition), None)
                g.offset_log_offsets.pop((topic, partition), None)
            else:
                g.offsets[(topic, partition)] = decode_offset_value(value)
                self._set_log_offset(g, (topic, partition), log_offset)
            return
        if value is None:
            g = self.groups.get(ident)
            if g is not None:
                g.members.clear()
                g.static.clear()
                g.state = EMPTY if g.offsets else DEAD
                if g.state == DEAD:
                    del self.groups[ident]
            return
        g = self._group(ident, create=True)
        assert g is not None
        r = _Reader(value)
        r.fmt(">h")
        g.protocol_type = r.str()
        g.generation = r.fmt(">i")
        g.protocol, g.leader = r.str(), r.str()
        r.fmt(">q")
        g.members.clear()
        g.static.clear()
        for _ in range(r.fmt(">i")):
            mid, inst, client_id, _host = r.str(), r.str(), r.str(), r.str()
            rebalance_ms, session_ms = r.fmt(">i"), r.fmt(">i")
            metadata, assignment = r.bytes(), r.bytes()
            assert mid is not None
            # Members get a fresh session: they find the new coordinator and heartbeat on.
            g.members[mid] = Member(mid, inst, client_id or "", session_ms, rebalance_ms, g.protocol_type or "",
                                    [(g.protocol or "", metadata or b"")], assignment or b"",
                                    session_deadline_ms=now_ms + session_ms, joined_generation=g.generation)
            if inst is not None:
                g.static[inst] = mid
        g.state = STABLE if g.members else EMPTY

    def unload_partition(self, partition: int) -> None:
        """This broker no longer leads `partition`: forget its groups (waiting requests get
        NOT_COORDINATOR so clients look up the new coordinator)."""
        self.txn_offsets.unload(lambda gid: self.partition_of(gid) != partition)
        for gid in [gid for gid in self.groups if self.partition_of(gid) == partition]:
            g = self.groups.pop(gid)
            for m in g.members.values():
                for r in (m.join_reply, m.sync_reply):
                    if r is not None:
                        r(_error(ErrorCode.not_coordinator))


def commit_error(code: ErrorCode) -> ErrorCode:
    """What a consumer is told when the __consumer_offsets append failed, as Kafka's group
    coordinator says it: in the coordinator's words, so the client looks for it again."""
    if code in (ErrorCode.unknown_topic_or_partition, ErrorCode.not_enough_replicas,
                ErrorCode.not_enough_replicas_after_append):
        return ErrorCode.coordinator_not_available
    if code in (ErrorCode.not_leader_or_follower, ErrorCode.kafka_storage_error):
        return ErrorCode.not_coordinator
    if code in (ErrorCode.message_too_large, ErrorCode.record_list_too_large, ErrorCode.invalid_fetch_size):
        return ErrorCode.invalid_commit_offset_size
    return code
