"""The consumer's side of Kafka 4's consumer group protocol (KIP-848, `group.protocol=consumer`).

A pure state machine on `membership.Membership`, as the classic `GroupMember` is (events for
the application, `step(now)` returning the requests due, the coordinator lookup and backoff),
so the Consumer and its I/O-thread driver run either. There is no JoinGroup/SyncGroup: the member heartbeats
(ConsumerGroupHeartbeat) with its epoch, its subscription and the partitions it owns, and the
broker answers with its assignment (topic ids and partitions). The member reconciles:

    partitions no longer assigned -> "revoke" event; once the application has let them go,
        the next heartbeat reports the smaller set (the broker then hands them on)
    new partitions -> "assign" event (incremental: what it keeps, it keeps consuming)
    FENCED_MEMBER_EPOCH / UNKNOWN_MEMBER_ID -> "lost", rejoin with epoch 0

Topic ids become names through a Metadata request of the driver (`names`).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any

from kio.schema.consumer_group_heartbeat.v1 import request as cgh_req

from kafkalab.client.membership import (
    COORDINATOR_ERRORS,
    FATAL,
    STABLE,
    TP,
    UNJOINED,
    Membership,
    Send,
)
from kafkalab.protocol.build import metadata_request
from kafkalab.protocol.errors import ErrorCode

log = logging.getLogger(__name__)

FATAL_CODES = {ErrorCode.unsupported_assignor, ErrorCode.invalid_request, ErrorCode.group_id_not_found,
               ErrorCode.unreleased_instance_id, ErrorCode.invalid_regular_expression,
               ErrorCode.group_max_size_reached, ErrorCode.unsupported_version}


class ConsumerGroupMember(Membership):
    protocol = "consumer"

    def __init__(self, group_id: str, cfg: dict[str, Any], client_id: str):
        super().__init__(group_id, cfg, client_id)
        self.assignor: str | None = cfg.get("group.remote.assignor")
        self.revoking: set[TP] = set()
        self.revoke_seq = 0
        self.pending: set[tuple[str, int]] | None = None  # (topic id, partition) not yet named
        self.names: dict[str, str] = {}  # topic id -> name
        self.heartbeat_interval_s = 0.5
        self.metadata_at = 0.0
        self.subscription_sent = False

    # ---- from the application ------------------------------------------------------------
    def subscribe(self, topics: list[str], now: float) -> None:
        self.topics = sorted(set(topics))
        self.subscription_sent = False
        if self.generation < 0:
            self.generation = 0
        self.next_heartbeat = now
        self.last_poll = now

    # ---- the machine ---------------------------------------------------------------------------
    def step(self, now: float) -> list[Send]:
        out: list[Send] = []
        if self.state == FATAL:
            return out
        if self.revoking and self.app_done >= self.revoke_seq:
            self.revoking = set()
            self.next_heartbeat = now  # tell the broker at once: the new owner is waiting
        if not self.topics:
            self._find_coordinator_for_offsets(now, out)
            return out
        if self.generation < 0:  # unsubscribed and subscribed again, or fenced: join afresh
            self.generation = 0
        if self._poll_expired(now) and self.generation > 0:
            self._leave_for_poll_timeout(out)
            self._lose()
            return out
        if not self._coordinator_ready(now, out):
            return out
        if self.pending is not None:
            self._ask_names(now, out)
            return out
        if not self.hb_in_flight and now >= self.next_heartbeat:
            self._heartbeat(now, out)
        return out

    def _heartbeat(self, now: float, out: list[Send]) -> None:
        if not self.member_id:
            self.member_id = str(uuid.uuid4())  # v1: the member names itself
        joining = self.generation == 0
        owned = sorted(set(self.owned) | self.revoking)
        ids = {name: tid for tid, name in self.names.items()}
        by_topic: dict[str, list[int]] = {}
        for t, p in owned:
            if t in ids:
                by_topic.setdefault(ids[t], []).append(p)
        self.hb_in_flight = True
        self.next_heartbeat = now + self.heartbeat_interval_s
        out.append((self.coordinator, cgh_req.ConsumerGroupHeartbeatRequest(
            group_id=self.group_id, member_id=self.member_id, member_epoch=self.generation,
            instance_id=self.instance_id, rack_id=None,
            rebalance_timeout=datetime.timedelta(milliseconds=self.cfg["max.poll.interval.ms"]),
            subscribed_topic_names=tuple(self.topics) if joining or not self.subscription_sent else None,
            subscribed_topic_regex=None, server_assignor=self.assignor,
            topic_partitions=tuple(cgh_req.TopicPartitions(topic_id=uuid.UUID(t), partitions=tuple(sorted(ps)))
                                   for t, ps in sorted(by_topic.items()))), self._on_heartbeat))
        self.subscription_sent = True

    def leave_request(self) -> Any:
        epoch = -2 if self.instance_id is not None else -1
        return cgh_req.ConsumerGroupHeartbeatRequest(
            group_id=self.group_id, member_id=self.member_id, member_epoch=epoch, instance_id=self.instance_id,
            rack_id=None, rebalance_timeout=datetime.timedelta(milliseconds=-1), subscribed_topic_names=None,
            subscribed_topic_regex=None, server_assignor=None, topic_partitions=None)

    def _ask_names(self, now: float, out: list[Send]) -> None:
        self.in_flight = True
        self.metadata_at = now
        out.append((None, metadata_request(self.topics), self._on_metadata))

    def _lose(self) -> None:
        if self.owned or self.revoking:
            self._event("lost", sorted(set(self.owned) | self.revoking))
        self.owned, self.revoking, self.pending = [], set(), None
        self.generation = 0
        self.subscription_sent = False
        self.state = UNJOINED

    # ---- handlers ------------------------------------------------------------------------------
    def _on_metadata(self, resp: Any, now: float) -> None:
        self.in_flight = False
        if isinstance(resp, Exception):
            self._back_off(now)
            return
        for t in resp.topics:
            if t.topic_id is not None and t.name is not None:
                self.names[str(t.topic_id)] = str(t.name)
        if self.pending is not None and all(t in self.names for t, _ in self.pending):
            target, self.pending = self.pending, None
            self._apply({(self.names[t], p) for t, p in target})
        else:
            self._back_off(now)

    def _on_heartbeat(self, resp: Any, now: float) -> None:
        self.hb_in_flight = False
        if isinstance(resp, Exception):
            self._coordinator_lost(now)
            return
        code = ErrorCode(resp.error_code)
        if code != ErrorCode.none:
            why = resp.error_message or code.name
            if code in (ErrorCode.fenced_member_epoch, ErrorCode.unknown_member_id):
                log.info("%s: %s (%s): rejoining with epoch 0", self.client_id, code.name, why)
                self._lose()
                self.next_heartbeat = now
            elif code in COORDINATOR_ERRORS:
                self._coordinator_error(code, now)
            elif code in FATAL_CODES:
                self._fatal(code, why)
            else:
                self._back_off(now)
            return
        if self.generation < 0:
            return  # left meanwhile
        self.generation = int(resp.member_epoch)
        self.heartbeat_interval_s = max(0.01, resp.heartbeat_interval.total_seconds())
        self.next_heartbeat = now + self.heartbeat_interval_s  # the broker sets the pace
        self.state = STABLE
        if resp.assignment is None:
            return
        target = {(str(tp.topic_id), int(p)) for tp in resp.assignment.topic_partitions for p in tp.partitions}
        if all(t in self.names for t, _ in target):
            self._apply({(self.names[t], p) for t, p in target})
        else:
            self.pending = target

    def _apply(self, new: set[TP]) -> None:
        """Reconcile towards the broker's assignment: revoke first, then assign what is new."""
        old = set(self.owned)
        revoked, added = sorted(old - new), sorted(new - old)
        if revoked:
            self.revoking |= set(revoked)
            self.revoke_seq = self._event("revoke", revoked)
        if added:
            self._event("assign", added)
        self.owned = sorted(new)
