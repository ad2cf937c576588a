"""One transaction's markers, and when to send them again (Kafka's TransactionMarkerChannelManager).

Pure: no sockets, no clock (`now` in seconds is passed in). When a transaction ends, every
partition it wrote to needs a COMMIT or ABORT marker from its leader. The job sends one
WriteTxnMarkers per leader for the partitions not yet marked, and keeps going until each has
answered NONE: a retriable error (not leader, not enough replicas, a timeout) pauses the job
for a backoff, a partition whose topic was deleted needs no marker, and a fencing error (a
newer coordinator or producer epoch) ends the job: this coordinator is a zombie for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

TP = tuple[str, int]
RETRY_BACKOFF_S = 0.1
DONE_CODES = (ErrorCode.none, ErrorCode.unknown_topic_or_partition)
ZOMBIE_CODES = (ErrorCode.transaction_coordinator_fenced, ErrorCode.invalid_producer_epoch)


@dataclass
class MarkerJob:
    txn_partition: int
    coordinator_epoch: int
    producer_id: int
    producer_epoch: int
    commit: bool
    remaining: set[TP]
    on_done: Any
    in_flight: set[TP] = field(default_factory=set)
    retry_at: float = 0.0
    fenced: bool = False  # a leader refused the marker with a fencing error

    @property
    def done(self) -> bool:
        return not self.remaining

    def to_send(self, now: float, leader_of: Callable[[TP], int | None]) -> dict[int, list[TP]]:
        """The partitions to send a marker to now, by leader, marked in flight. leader_of(tp):
        its leader (-1 while it has none: wait), or None when the topic is gone (no marker)."""
        if now < self.retry_at or self.fenced:
            return {}
        by_leader: dict[int, list[TP]] = {}
        for tp in sorted(self.remaining - self.in_flight):
            leader = leader_of(tp)
            if leader is None:
                self.remaining.discard(tp)
            elif leader >= 0:
                by_leader.setdefault(leader, []).append(tp)
        for tps in by_leader.values():
            self.in_flight.update(tps)
        return by_leader

    def next_send(self, leader_of: Callable[[TP], int | None]) -> float | None:
        """When to_send() next has a partition to send (None: nothing until an answer comes
        or a partition without a leader gets one): the end of the backoff, or at once."""
        if self.fenced:
            return None
        if any(leader_of(tp) != -1 for tp in self.remaining - self.in_flight):
            return self.retry_at
        return None

    def answered(self, tps: list[TP], codes: dict[TP, ErrorCode], now: float) -> list[TP]:
        """A leader's answer for tps (a partition missing from codes: no answer, retry).
        Returns the partitions marked by it."""
        self.in_flight.difference_update(tps)
        written, retry = [], False
        for tp in tps:
            code = codes.get(tp, ErrorCode.request_timed_out)
            if code in DONE_CODES:
                if tp in self.remaining:
                    self.remaining.discard(tp)
                    written.append(tp)
            elif code in ZOMBIE_CODES:
                self.fenced = True
            else:
                retry = True
        if retry:
            self.retry_at = now + RETRY_BACKOFF_S
        return written


def marker_codes(resp: Any) -> dict[TP, ErrorCode]:
    """Error code per partition of a WriteTxnMarkers response."""
    return {(str(t.name), int(p.partition_index)): p.error_code
            for m in resp.markers for t in m.topics for p in t.partitions}
