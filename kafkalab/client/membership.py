"""What the consumer's two group members share, and the driver that runs either.

`GroupMember` (group_member.py: the classic protocol, JoinGroup/SyncGroup/Heartbeat) and
`ConsumerGroupMember` (consumer_group_member.py: KIP-848, ConsumerGroupHeartbeat) are pure
state machines with one face: `step(now)` returns the requests due (`Send`), handlers take
the answer (or a KafkaError) and the time, and changes of assignment become `events`
("revoke" | "assign" | "lost", partitions, seq) that the application's thread handles inside
poll()/consume() and acknowledges with `app_done = seq`. `Membership` holds what both
protocols do alike:

    no coordinator -> FindCoordinator to any broker; no answer or an error: again after
        retry.backoff.ms (an unsubscribed consumer looks only when commit()/committed() ask)
    NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or a lost connection -> forget the coordinator,
        find it again after retry.backoff.ms; COORDINATOR_LOAD_IN_PROGRESS -> the same coordinator
        again after retry.backoff.ms (it is the right one, still reading its log: Kafka's
        AbstractCoordinator); what else an error means is each protocol's rule
    no poll() for max.poll.interval.ms -> leave the group
    a fatal error -> the partitions are lost and the member stops (poll() raises the error)

`GroupDriver` runs a member inside the consumer's I/O thread, so heartbeats need no thread
of their own.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kio.schema.find_coordinator.v4 import request as fc_req

from kafkalab.protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

TP = tuple[str, int]
Send = tuple[Any, Any, Callable[[Any, float], None]]  # (node id | None for any, request, handler)

UNJOINED, STABLE, FATAL = "unjoined", "stable", "fatal"
COORDINATOR_ERRORS = {ErrorCode.not_coordinator, ErrorCode.coordinator_not_available,
                      ErrorCode.coordinator_load_in_progress}


def _no_answer_needed(resp: Any, now: float) -> None:
    pass


class Membership:
    """The state and rules both group members share; a subclass adds its protocol's."""

    def __init__(self, group_id: str, cfg: dict[str, Any], client_id: str):
        self.group_id = group_id
        self.cfg = cfg
        self.client_id = client_id
        self.instance_id: str | None = cfg.get("group.instance.id")
        self.topics: list[str] = []
        self.state = UNJOINED
        self.coordinator: int | None = None
        self.member_id = ""
        self.generation = -1  # classic: the generation; KIP-848: the member epoch (OffsetCommit carries it)
        self.owned: list[TP] = []
        self.events: deque[tuple[str, list[TP], int]] = deque()
        self.seq = 0
        self.app_done = 0  # written by the application thread
        self.last_poll = 0.0  # written by the application thread
        self.error: KafkaError | None = None
        self.in_flight = False
        self.hb_in_flight = False
        self.next_heartbeat = 0.0
        self.retry_at = 0.0
        self.deferred: list[Send] = []  # requests a handler wants sent right away
        self.want_coordinator = False  # set by commit()/committed() of an unsubscribed consumer

    # ---- the protocol's part --------------------------------------------------------------
    def step(self, now: float) -> list[Send]:
        raise NotImplementedError

    def leave_request(self) -> Any:
        raise NotImplementedError

    def timeout_s(self, req: Any) -> float | None:
        """How long the driver waits for the answer to `req` (None: request.timeout.ms)."""
        return None

    # ---- towards the application ----------------------------------------------------------
    def _event(self, kind: str, tps: list[TP]) -> int:
        self.seq += 1
        self.events.append((kind, sorted(tps), self.seq))
        return self.seq

    def _fatal(self, code: Any, why: str) -> None:
        self.state = FATAL
        self.error = KafkaError(code, f"group {self.group_id}: {why}")
        if self.owned:
            self._event("lost", self.owned)
        self.owned = []

    def _poll_expired(self, now: float) -> bool:
        return bool(self.member_id) and now - self.last_poll > self.cfg["max.poll.interval.ms"] / 1000

    def _leave_for_poll_timeout(self, out: list[Send], *, send_leave: bool = True) -> None:
        # Kafka's consumer leaves by itself when the application stops polling, so its
        # partitions go to members that do make progress.
        log.warning("%s: no poll() for max.poll.interval.ms=%d: leaving group %s", self.client_id,
                    self.cfg["max.poll.interval.ms"], self.group_id)
        if send_leave and self.coordinator is not None:
            out.append((self.coordinator, self.leave_request(), _no_answer_needed))

    # ---- the coordinator ------------------------------------------------------------------
    def _find_coordinator_for_offsets(self, now: float, out: list[Send]) -> None:
        """Not subscribed: only commit()/committed() need the coordinator."""
        if self.want_coordinator and self.coordinator is None and not self.in_flight and now >= self.retry_at:
            self._find_coordinator(out)

    def _coordinator_ready(self, now: float, out: list[Send]) -> bool:
        """Whether the next request may go to the coordinator (one at a time, after any
        backoff); looks the coordinator up first if it is unknown."""
        if self.in_flight or now < self.retry_at:
            return False
        if self.coordinator is None:
            self._find_coordinator(out)
            return False
        return True

    def _find_coordinator(self, out: list[Send]) -> None:
        self.in_flight = True
        out.append((None, fc_req.FindCoordinatorRequest(key_type=0, coordinator_keys=(self.group_id,)),
                    self._on_find_coordinator))

    def _on_find_coordinator(self, resp: Any, now: float) -> None:
        self.in_flight = False
        c = None if isinstance(resp, Exception) else resp.coordinators[0]
        if c is None or c.error_code != ErrorCode.none:
            self._back_off(now)
            return
        self.coordinator = int(c.node_id)
        self.next_heartbeat = now

    def _coordinator_error(self, code: ErrorCode, now: float) -> None:
        """One of COORDINATOR_ERRORS in an answer from the coordinator."""
        if code == ErrorCode.coordinator_load_in_progress:
            self._back_off(now)
            self.next_heartbeat = self.retry_at  # a failed heartbeat is retried after the backoff
        else:
            self._coordinator_lost(now)

    def _coordinator_lost(self, now: float) -> None:
        self.coordinator = None
        self._back_off(now)

    def _back_off(self, now: float) -> None:
        self.retry_at = now + self.cfg["retry.backoff.ms"] / 1000


class GroupDriver:
    """Runs a member inside the consumer's I/O thread: sends what it asks for."""

    def __init__(self, member: Membership):
        self.member = member
        self._metadata_asked = 0.0

    def step(self, net: Any, now: float) -> float:
        m = self.member
        m.deferred = []
        sends = m.step(now)
        while sends:
            for node, req, handler in sends:
                self._send(net, node, req, handler, now)
            sends, m.deferred = m.deferred, []
        return 0.05

    def _send(self, net: Any, node: Any, req: Any, handler: Callable[[Any, float], None], now: float) -> None:
        def done(resp: Any) -> None:
            m = self.member
            m.deferred = []
            handler(resp, time.monotonic())
            for n, r, h in m.deferred:
                self._send(net, n, r, h, time.monotonic())
            m.deferred = []

        try:
            net.send(net.any_broker() if node is None else node, req, done, now,
                     timeout_s=self.member.timeout_s(req))
        except KafkaError as e:
            done(e)

    def partition_counts(self, net: Any, topics: list[str]) -> dict[str, int] | None:
        """The topics' partition counts from the client's metadata (None: asked for, not here yet)."""
        counts = {}
        for t in topics:
            info = net.metadata.partition_info(t)
            if info is None:
                now = time.monotonic()
                if now - self._metadata_asked > 0.2:
                    self._metadata_asked = now
                    net.refresh_metadata(topics, now)
                return None
            counts[t] = info[0]
        return counts
