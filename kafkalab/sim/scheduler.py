"""The seeded scheduler: a virtual clock in milliseconds and one queue of events.

Everything that happens in a simulated run is an event taken from this queue in (time, sequence)
order, so a run is a pure function of its seed: the same seed replays the same story.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class Event:
    at_ms: int
    seq: int
    label: str = field(compare=False)
    action: Callable[[], None] = field(compare=False, repr=False)
    cancelled: bool = field(default=False, compare=False)


class Scheduler:
    """Virtual time and the event queue. `rng` is the run's only source of randomness; give each
    component its own `fork()` so adding a draw in one place does not reshuffle the others."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now_ms = 0
        self.events_run = 0
        self._queue: list[Event] = []
        self._seq = 0

    def fork(self) -> random.Random:
        return random.Random(self.rng.getrandbits(64))

    def at(self, at_ms: int, label: str, action: Callable[[], None]) -> Event:
        self._seq += 1
        ev = Event(max(at_ms, self.now_ms), self._seq, label, action)
        heapq.heappush(self._queue, ev)
        return ev

    def after(self, delay_ms: int, label: str, action: Callable[[], None]) -> Event:
        return self.at(self.now_ms + delay_ms, label, action)

    def pending(self) -> int:
        return sum(not e.cancelled for e in self._queue)

    def step(self) -> Event | None:
        """Run the next event; None when the queue is empty."""
        while self._queue:
            ev = heapq.heappop(self._queue)
            if ev.cancelled:
                continue
            self.now_ms = ev.at_ms
            self.events_run += 1
            ev.action()
            return ev
        return None

    def run_until(self, end_ms: int, after_each: Callable[[Event], None] | None = None) -> None:
        while self._queue and self._queue[0].at_ms <= end_ms:
            ev = self.step()
            if ev is not None and after_each is not None:
                after_each(ev)
        self.now_ms = max(self.now_ms, end_ms)
