"""The consumer's side of the classic group protocol: a pure state machine.

`GroupMember` decides what to send and reacts to answers; it owns no socket and reads no
clock (`now` comes in). `step(now)` returns the requests due, each with the method to call
with its response (or a KafkaError); `membership.GroupDriver` sends them from the consumer's
I/O thread. The coordinator lookup, the backoff, the application's events and leaving after
max.poll.interval.ms are `membership.Membership`'s, shared with the KIP-848 member.

    find coordinator -> JoinGroup (MEMBER_ID_REQUIRED: again with the id) -> SyncGroup
    (the leader runs the assignor) -> Stable: Heartbeat every heartbeat.interval.ms
    REBALANCE_IN_PROGRESS -> rejoin; UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION -> partitions lost, rejoin

Eager: every partition is revoked (a "revoke" event the application handles, committing)
before JoinGroup. Cooperative: the member keeps what it owns, gives up only what the new
assignment leaves out, and rejoins after the application has let those go.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.join_group.v9 import request as jg_req
from kio.schema.leave_group.v5 import request as lg_req
from kio.schema.sync_group.v5 import request as sg_req

from kafkalab.client.assignors import (
    COOPERATIVE,
    Subscription,
    assignor,
    check_assignment,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
    protocol_name,
    rebalance_protocol,
)
from kafkalab.client.membership import (
    COORDINATOR_ERRORS,
    FATAL,
    STABLE,
    TP,
    UNJOINED,
    Membership,
    Send,
)
from kafkalab.protocol.errors import ErrorCode

JOINING, SYNCING = "joining", "syncing"


def _td(ms: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=ms)


class GroupMember(Membership):
    def __init__(self, group_id: str, cfg: dict[str, Any], strategies: list[Any], client_id: str,
                 partition_counts: Callable[[list[str]], dict[str, int] | None]):
        super().__init__(group_id, cfg, client_id)
        self.strategies = strategies
        self.protocol = rebalance_protocol(strategies[0])
        self.partition_counts = partition_counts
        self.leader = ""
        self.previous: list[TP] = []  # eager: what was owned before the last revocation
        self.need_join = False
        self.pending_sync: Any = None  # a JoinGroup answer waiting for metadata (leader)
        self.left_for_poll_timeout = False

    # ---- from the application ------------------------------------------------------------
    def subscribe(self, topics: list[str], now: float) -> None:
        self.topics = sorted(set(topics))
        self.need_join = True
        self.last_poll = now

    def _waiting_for_app(self) -> bool:
        return self.app_done < self.seq

    # ---- the machine ---------------------------------------------------------------------------
    def step(self, now: float) -> list[Send]:
        out: list[Send] = []
        if self.state == FATAL:
            return out
        if not self.topics:
            self._find_coordinator_for_offsets(now, out)
            return out
        if self._poll_timed_out(now, out):
            return out
        if self.state == STABLE and not self.hb_in_flight and now >= self.next_heartbeat \
                and self.coordinator is not None:
            self.hb_in_flight = True
            self.next_heartbeat = now + self.cfg["heartbeat.interval.ms"] / 1000
            out.append((self.coordinator, HeartbeatRequest(
                group_id=self.group_id, generation_id=self.generation, member_id=self.member_id,
                group_instance_id=self.instance_id), self._on_heartbeat))
        if not self._coordinator_ready(now, out):
            return out
        if self.pending_sync is not None:
            self._sync_as_leader(self.pending_sync, now, out)
            return out
        if self.need_join and self.state in (UNJOINED, STABLE) and not self._waiting_for_app():
            if self.protocol != COOPERATIVE and self.owned:
                # Eager: give everything back (the application commits) before joining.
                self._event("revoke", self.owned)
                self.previous, self.owned = self.owned, []
                return out
            self._join(out)
        return out

    def _poll_timed_out(self, now: float, out: list[Send]) -> bool:
        if self.left_for_poll_timeout:
            if now - self.last_poll < self.cfg["max.poll.interval.ms"] / 1000:
                self.left_for_poll_timeout = False  # the application polls again: rejoin
                self.need_join = True
            return True
        if self._poll_expired(now):
            # A static member only forgets its generation: Kafka's classic consumer sends
            # LeaveGroup for dynamic members alone (AbstractCoordinator.maybeLeaveGroup), so the
            # coordinator keeps a static member's partitions until session.timeout.ms.
            self._leave_for_poll_timeout(out, send_leave=self.instance_id is None)
            self._lose(reset_member=True)
            self.left_for_poll_timeout = True
            return True
        return False

    def leave_request(self) -> Any:
        return lg_req.LeaveGroupRequest(group_id=self.group_id, members=(lg_req.MemberIdentity(
            member_id=self.member_id, group_instance_id=self.instance_id, reason="consumer leaving"),))

    def _join(self, out: list[Send]) -> None:
        # Eager members own nothing while joining; they still report what they had, so a
        # sticky assignor can give it back (Kafka's StickyAssignor puts it in user_data).
        owned = self.owned if self.protocol == COOPERATIVE else self.previous
        sub = Subscription(list(self.topics), owned, self.generation)
        protocols = tuple(jg_req.JoinGroupRequestProtocol(name=protocol_name(s), metadata=encode_subscription(sub))
                          for s in self.strategies)
        self.state = JOINING
        self.in_flight = True
        self.need_join = False
        out.append((self.coordinator, jg_req.JoinGroupRequest(
            group_id=self.group_id, session_timeout=_td(self.cfg["session.timeout.ms"]),
            rebalance_timeout=_td(self.cfg["max.poll.interval.ms"]), member_id=self.member_id,
            group_instance_id=self.instance_id, protocol_type="consumer", protocols=protocols,
            reason=None), self._on_join))

    def timeout_s(self, req: Any) -> float | None:
        # Like Kafka's consumer: a JoinGroup is answered only when the rebalance completes, so
        # it may take up to the rebalance timeout (max.poll.interval.ms), plus a margin.
        if isinstance(req, jg_req.JoinGroupRequest):
            return req.rebalance_timeout.total_seconds() + 5.0
        return None

    def _lose(self, reset_member: bool) -> None:
        if self.owned:
            self._event("lost", self.owned)
        self.owned = []
        self.previous = []
        self.generation = -1
        if reset_member:
            self.member_id = ""
        self.state = UNJOINED
        self.need_join = True

    def _instance_fenced(self) -> None:
        self._fatal(ErrorCode.fenced_instance_id, f"another consumer uses group.instance.id={self.instance_id!r}")

    def _code(self, resp: Any) -> Any:
        if isinstance(resp, Exception):
            return ErrorCode.coordinator_not_available
        return ErrorCode(resp.error_code)

    # ---- handlers (called by the driver with the response or an exception) -----------------
    def _on_join(self, resp: Any, now: float) -> None:
        self.in_flight = False
        code = self._code(resp)
        if code == ErrorCode.none:
            self.generation = int(resp.generation_id)
            self.member_id = str(resp.member_id)
            self.leader = str(resp.leader)
            self.state = SYNCING
            out: list[Send] = []
            if self.leader == self.member_id:
                self._sync_as_leader(resp, now, out)
            else:
                self._send_sync(out, ())
            self.deferred = out
            return
        self.state = UNJOINED if not self.owned else STABLE
        self.need_join = True
        if code == ErrorCode.member_id_required:
            self.member_id = str(resp.member_id)
        elif code in (ErrorCode.unknown_member_id, ErrorCode.illegal_generation):
            self._lose(reset_member=True)
        elif code == ErrorCode.fenced_instance_id:
            self._instance_fenced()
        elif code in (ErrorCode.inconsistent_group_protocol, ErrorCode.invalid_session_timeout):
            self._fatal(code, "the group refused this consumer's partition.assignment.strategy "
                              "or session.timeout.ms")
        elif code in COORDINATOR_ERRORS:
            self._coordinator_error(code, now)
        elif code != ErrorCode.rebalance_in_progress:
            self._back_off(now)

    def _sync_as_leader(self, join: Any, now: float, out: list[Send]) -> None:
        subs = {str(m.member_id): decode_subscription(bytes(m.metadata)) for m in join.members}
        topics = sorted({t for s in subs.values() for t in s.topics})
        counts = self.partition_counts(topics)
        if counts is None:  # the driver fetches metadata; try again on the next step
            self.pending_sync = join
            self.retry_at = now + 0.05
            return
        self.pending_sync = None
        strategy = next(s for s in self.strategies if protocol_name(s) == str(join.protocol_name))
        assignment = assignor(strategy)(counts, subs)
        check_assignment(assignment, counts, subs)
        # `out` is sent by whoever called: _on_join (as its deferred sends) or step() (as its
        # return value). Setting self.deferred here too made step() send the SyncGroup twice.
        self._send_sync(out, tuple(sg_req.SyncGroupRequestAssignment(member_id=m, assignment=encode_assignment(tps))
                                   for m, tps in sorted(assignment.items())))

    def _send_sync(self, out: list[Send], assignments: tuple) -> None:
        self.in_flight = True
        out.append((self.coordinator, sg_req.SyncGroupRequest(
            group_id=self.group_id, generation_id=self.generation, member_id=self.member_id,
            group_instance_id=self.instance_id, protocol_type="consumer", protocol_name=None,
            assignments=assignments), self._on_sync))

    def _on_sync(self, resp: Any, now: float) -> None:
        self.in_flight = False
        code = self._code(resp)
        if code != ErrorCode.none:
            self.state = STABLE if self.owned else UNJOINED
            self.need_join = True
            if code in (ErrorCode.unknown_member_id, ErrorCode.illegal_generation):
                self._lose(reset_member=code == ErrorCode.unknown_member_id)
            elif code == ErrorCode.fenced_instance_id:
                self._instance_fenced()
            elif code in COORDINATOR_ERRORS:
                self._coordinator_error(code, now)
            return
        new = decode_assignment(bytes(resp.assignment))
        self.state = STABLE
        self.next_heartbeat = now + self.cfg["heartbeat.interval.ms"] / 1000
        if self.protocol == COOPERATIVE:
            revoked = sorted(set(self.owned) - set(new))
            added = sorted(set(new) - set(self.owned))
            if revoked:
                self._event("revoke", revoked)
                self.need_join = True  # the follow-up round hands these to their new owners
            self._event("assign", added)
        else:
            self._event("assign", new)
        self.owned = new

    def _on_heartbeat(self, resp: Any, now: float) -> None:
        self.hb_in_flight = False
        code = self._code(resp)
        if self.state != STABLE:
            return
        if code == ErrorCode.rebalance_in_progress:
            self.need_join = True
        elif code in (ErrorCode.unknown_member_id, ErrorCode.illegal_generation):
            self._lose(reset_member=code == ErrorCode.unknown_member_id)
        elif code == ErrorCode.fenced_instance_id:
            self._instance_fenced()
        elif code in COORDINATOR_ERRORS:
            self._coordinator_error(code, now)

