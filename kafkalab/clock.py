"""The Clock seam: the one place process wiring reads the time.

Wiring never calls `time.time()` or `time.monotonic()` itself: it is given a Clock and passes
`now` to the cores. Two readings, as Kafka's `Time` has them: `monotonic()` (seconds, for
timeouts, backoffs and the event loop's timers: never jumps) and `wall_ms()` (milliseconds
since the epoch, for what is written down or shown: record timestamps, the cores' `now_ms`).
`ManualClock` is a clock a test (or a simulator) moves by hand, as trio's MockClock.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "SYSTEM_CLOCK", "long_poll_deadline_ms"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...

    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...


class SystemClock:
    """The machine's clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return int(time.time() * 1000)


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when told to: advance(seconds)."""

    def __init__(self, monotonic: float = 1000.0, wall_ms: int = 1_700_000_000_000):
        self._monotonic = monotonic
        self._wall_ms_at_zero = wall_ms - int(monotonic * 1000)

    def monotonic(self) -> float:
        return self._monotonic

    def wall_ms(self) -> int:
        return self._wall_ms_at_zero + int(self._monotonic * 1000)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock never goes back: advance({seconds!r}) needs seconds >= 0")
        self._monotonic += seconds


def long_poll_deadline_ms(now_ms: int, max_wait_ms: int) -> int:
    """When a cluster-internal long poll parked at now_ms (a follower's fetch, a broker's fetch
    of the metadata log) ends if nothing arrives: the last multiple of half its max wait, in
    wall-clock ms, at or before now + max wait. So it waits between half and all of its max wait
    (a max wait is a maximum), and an idle cluster's polls end together, on the grid its
    periodic timers (heartbeats, metrics) fire on: one wake-up for all of them instead of one
    each. Clients' fetches keep their exact wait."""
    end = now_ms + max_wait_ms
    step = max_wait_ms // 2
    return end - end % step if step > 0 else end
