"""The follower's fetchers (Kafka's ReplicaFetcherManager and one ReplicaFetcherThread per leader).

For every leader this broker follows some partition of there is one fetcher: one Fetch in flight
at a time, built by the ReplicaManager from the replicas' log end offsets and applied by it when
answered (append, or truncate a diverged tail); the next one goes out at once. Each fetcher keeps
a fetch session (KIP-227) with its leader: after the first, full request, a request lists only
the partitions whose fetch state changed, and the answer only those with news. A response with
a partition in error, or none at all within request.timeout.ms, pauses that leader's fetches for
replica.fetch.backoff.ms. When metadata changes the partitions move between fetchers (added to
one session, forgotten by another).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafkalab.broker.fetch_session_handler import FetchSessionHandler
from kafkalab.broker.replica_manager import TP, ReplicaManager
from kafkalab.clock import Clock
from kafkalab.metadata.image import NO_LEADER, MetadataImage
from kafkalab.transport.channel import Channel


@dataclass
class FetcherState:
    """When one leader's fetcher may send: the rule, with the time passed in; and its fetch
    session with that leader (what the next request lists)."""

    leader: int
    backoff_s: float
    partitions: set[TP] = field(default_factory=set)
    in_flight: int | None = None  # correlation id of the Fetch waiting for its answer
    backoff_until: float = 0.0
    leader_broker_epoch: int = -1  # of the leader's registration the session was opened with
    session: FetchSessionHandler = field(init=False)

    def __post_init__(self) -> None:
        self.session = FetchSessionHandler(self.leader)

    def may_send(self, now: float) -> bool:
        # With no partition left, one more request tells the leader to forget the session's.
        return self.in_flight is None and bool(self.partitions or self.session.session_partitions) \
            and now >= self.backoff_until

    def sent(self, correlation_id: int) -> None:
        self.in_flight = correlation_id

    def answered(self, failed: bool, now: float) -> None:
        """The leader answered; a partition that failed backs the whole session off."""
        self.in_flight = None
        if failed:
            self.backoff_until = now + self.backoff_s

    def lost(self, now: float) -> None:
        """No answer (timed out, or could not be sent): back off before asking again, with a
        full request (the leader may or may not have counted the lost one's epoch)."""
        self.session.start_over()
        self.answered(True, now)

    def forget_in_flight(self) -> None:
        """The network changed: the request in flight may be lost, send a new one now (full,
        as after a loss)."""
        if self.in_flight is not None:
            self.session.start_over()
        self.in_flight = None
        self.backoff_until = 0.0

    def leader_registered(self, broker_epoch: int) -> None:
        """The leader's registration in the metadata: a new one (a restarted broker) has no
        session for us, so start over rather than wait to be told."""
        if broker_epoch != self.leader_broker_epoch:
            if self.leader_broker_epoch >= 0:
                self.session.start_over()
            self.leader_broker_epoch = broker_epoch


class ReplicaFetcherManager:
    def __init__(self, *, rm: ReplicaManager, image: MetadataImage, config: dict[str, Any], clock: Clock,
                 connect: Callable[[int, str], Channel],
                 call_at: Callable[[float, Callable[[], Any]], Any]):
        self.rm = rm
        self.image = image
        self.config = config
        self.clock = clock
        self.connect = connect  # (leader id, endpoint) -> a channel to that broker, attached
        self.call_at = call_at
        self.sessions: dict[int, FetcherState] = {}
        self.channels: dict[int, Channel] = {}
        self._backoff_s = config["replica.fetch.backoff.ms"] / 1000

    def update(self) -> None:
        """Match the sessions to the followed partitions (after a metadata change)."""
        wanted: dict[int, set[TP]] = {}
        for tp, part in self.rm.partitions.items():
            if not part.is_leader and part.leader != NO_LEADER:
                wanted.setdefault(part.leader, set()).add(tp)
        for leader, tps in wanted.items():
            s = self.sessions.get(leader)
            reg = self.image.brokers.get(leader)
            if s is None and reg is not None:
                self.channels[leader] = self.connect(leader, reg.endpoint)
                s = self.sessions[leader] = FetcherState(leader, self._backoff_s)
            if s is not None:
                s.partitions = tps
                if reg is not None:
                    s.leader_registered(reg.epoch)
        for leader, s in self.sessions.items():
            if leader not in wanted:
                s.partitions = set()
        self.send_fetches()

    def restart(self) -> None:
        """The fault table changed: fetches lost on a cut link would otherwise wait for
        request.timeout.ms. Like TCP retransmitting after a heal, send them again now."""
        for leader, s in self.sessions.items():
            if s.in_flight is not None:
                self.channels[leader].cancel(s.in_flight)
            s.forget_in_flight()
        self.send_fetches()

    def send_fetches(self) -> None:
        now = self.clock.monotonic()
        for leader, s in self.sessions.items():
            if not s.may_send(now):
                continue
            req = self.rm.follower_fetch_request(s.partitions, self.config, s.session)
            if req is None:
                continue
            s.sent(self.channels[leader].send(
                req, lambda resp, s=s: self._on_response(s, resp), lambda _e, s=s: self._on_lost(s)))

    def _on_response(self, s: FetcherState, resp: Any) -> None:
        failed = self.rm.apply_fetch_response(s.leader, resp, self.clock.wall_ms(), s.session)
        s.answered(failed, self.clock.monotonic())
        self._resume(s)

    def _on_lost(self, s: FetcherState) -> None:
        s.lost(self.clock.monotonic())
        self._resume(s)

    def _resume(self, s: FetcherState) -> None:
        if s.backoff_until > self.clock.monotonic():
            self.call_at(s.backoff_until, self.send_fetches)
        else:
            self.send_fetches()

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
