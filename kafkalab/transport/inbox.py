"""Inbox: what a node receives once the fault table has had its say. Pure: no sockets, no clock.

A message on a cut link is dropped. A message on a delayed link is held until now + delay.
Order on each link is kept (as TCP would): a message never overtakes an earlier one on the
same link that is still held, even if the delay was lowered or healed in between. A held
message whose link is cut before it is due is lost, like a packet in flight.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

from kafkalab.transport.faults import FaultTable

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    def __init__(self, faults: FaultTable, node: str):
        self.faults = faults
        self.node = node
        self._held: list[tuple[float, int, str, T]] = []  # (due, seq, src, item)
        self._seq = itertools.count()
        self._last_due: dict[str, float] = {}
        self._ready: list[T] = []
        self.dropped = 0  # messages lost to cuts, for metrics
        self.delayed = 0  # messages that were held

    def offer(self, src: str, item: T, now: float) -> None:
        """One message from src arrived at now."""
        self._release(now)
        if self.faults.is_cut(src, self.node):
            self.dropped += 1
            return
        delay_s = self.faults.delay_ms(src, self.node) / 1000.0
        behind = self._last_due.get(src, float("-inf"))
        if delay_s > 0 or behind > now:
            due = max(now + delay_s, behind)
            self._last_due[src] = due
            heapq.heappush(self._held, (due, next(self._seq), src, item))
            self.delayed += 1
        else:
            self._ready.append(item)

    def take(self, now: float) -> list[T]:
        """Everything deliverable at now, in arrival order per link."""
        self._release(now)
        ready, self._ready = self._ready, []
        return ready

    def put_back(self, items: list[T]) -> None:
        """Return taken items to the front, for the next take() (a caller that only wanted one)."""
        self._ready[:0] = items

    def next_due(self) -> float | None:
        """When the earliest held message is due (same clock as now), or None."""
        return self._held[0][0] if self._held else None

    def __len__(self) -> int:
        return len(self._held) + len(self._ready)

    def _release(self, now: float) -> None:
        while self._held and self._held[0][0] <= now:
            _, _, src, item = heapq.heappop(self._held)
            if self.faults.is_cut(src, self.node):
                self.dropped += 1
            else:
                self._ready.append(item)
        if not self._held:
            self._last_due.clear()
