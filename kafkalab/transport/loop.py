"""EventLoop: one thread's poll loop over zmq sockets, plain sockets, timers and due sources.

A process's wiring registers its sockets (RpcServer.socket, RpcClient.socket, the fault
SUB ...) with a callback, its periodic work as timers, and its delay queues as due
sources, then calls run_forever(). The poll timeout is the earliest timer or due time, so
the loop sleeps exactly until there is something to do, however long that is: stop() and a
timer set from another thread or a signal handler wake it through a socket pair. A callback
that raises is logged with its traceback and the loop goes on: one bad event must not stop a
broker.

An idle process's cost is its wake-ups, so the loop makes few: a periodic timer fires when the
wall clock is at a multiple of its interval (kept on the monotonic clock, which never jumps;
the two are paired once when the loop starts), so that every timer of one interval (a broker's
heartbeat and its metrics; every broker's heartbeat on the machine) fires in the same instant:
one wake-up per process, and the controller receives the brokers' heartbeats together. The
cluster's internal long polls end on the same grid (clock.long_poll_deadline_ms). Under run_forever() the due sources are asked once per wake-up, not before
and after the poll, unless a due source's own callback ran since.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import socket
from collections.abc import Callable
from typing import Any

import zmq

from kafkalab.clock import SYSTEM_CLOCK, Clock

__all__ = ["EventLoop", "Handle"]

log = logging.getLogger(__name__)

DueSource = Callable[[float], "float | None"]
TIMER_SLACK_MAX_S = 0.05
TIMER_SLACK_FRACTION = 0.2


class Handle:
    """A scheduled timer or due source; cancel() stops it (idempotent)."""

    __slots__ = ("callback", "when", "interval", "cancelled", "source")

    def __init__(
        self,
        callback: Callable[[], Any] | None,
        when: float = 0.0,
        interval: float | None = None,
        source: DueSource | None = None,
    ):
        self.callback = callback
        self.when = when
        self.interval = interval
        self.source = source
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    def __init__(self, clock: Clock = SYSTEM_CLOCK):
        self.clock = clock  # timers and due sources are in clock.monotonic() seconds
        # Wall-clock seconds minus monotonic seconds: where the wall clock's multiples fall.
        self.grid_phase = clock.wall_ms() / 1000 - clock.monotonic()
        self._poller = zmq.Poller()
        self._callbacks: dict[Any, Callable[[], Any]] = {}
        self._lazy: dict[zmq.Socket, Callable[[], Any]] = {}  # add_socket(wake=False)
        self._timers: list[tuple[float, int, Handle]] = []
        self._seq = itertools.count()
        self._sources: list[Handle] = []
        # Each source's due time as last asked, while nothing has run since (run_forever only).
        self._dues: list[tuple[Handle, float | None]] | None = None
        self._stopped = False
        self._polling = False  # inside poll(): a new timer or stop() must wake us
        self._forever = False  # inside run_forever(): only stop() ends it
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._poller.register(self._wake_r.fileno(), zmq.POLLIN)

    def time(self) -> float:
        """Now, on the clock timers are set on."""
        return self.clock.monotonic()

    # -- registration ----------------------------------------------------------------------

    def add_socket(self, sock: Any, callback: Callable[[], Any], *, wake: bool = True) -> None:
        """Call callback() whenever sock is readable (zmq socket, socket object or fd).

        wake=False (zmq sockets only): what arrives never wakes the loop by itself; it is
        taken at the loop's next wake-up for anything else (a broker's heartbeat responses,
        read at the next beat at the latest, instead of a wake-up each)."""
        if not wake:
            if not isinstance(sock, zmq.Socket):
                raise TypeError(f"add_socket(wake=False) takes a zmq socket, not {type(sock).__name__}")
            self._lazy[sock] = callback
            return
        key = self._key(sock)
        self._poller.register(key, zmq.POLLIN)
        self._callbacks[key] = callback

    def set_events(self, sock: Any, flags: int) -> None:
        """Change what wakes a registered socket, e.g. zmq.POLLIN | zmq.POLLOUT while output
        is queued on a non-blocking TCP connection."""
        self._poller.register(sock, flags)

    def remove_socket(self, sock: Any) -> None:
        if self._lazy.pop(sock, None) is not None:
            return
        key = self._key(sock)
        if self._callbacks.pop(key, None) is not None:
            self._poller.unregister(key)

    @staticmethod
    def _key(sock: Any) -> Any:
        # zmq.Poller reports plain sockets by file descriptor, so register those by fd.
        if isinstance(sock, zmq.Socket) or isinstance(sock, int):
            return sock
        return sock.fileno()

    def call_at(self, when: float, fn: Callable[[], Any]) -> Handle:
        """Run fn() once at loop time `when` (see time())."""
        handle = Handle(fn, when)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        if self._polling:  # set from a signal handler or another thread: poll again
            self.wake()
        return handle

    def call_later(self, delay_s: float, fn: Callable[[], Any]) -> Handle:
        return self.call_at(self.time() + delay_s, fn)

    def call_every(self, interval_s: float, fn: Callable[[], Any]) -> Handle:
        """Run fn() every interval_s, when the wall clock is at a multiple of interval_s (the
        first between half an interval and one and a half from now). Late runs are not
        bunched up."""
        if not interval_s > 0:
            raise ValueError(f"call_every() needs an interval > 0 seconds, not {interval_s!r}")
        first = _grid_at_or_after(self.time() + interval_s / 2 + self.grid_phase, interval_s) - self.grid_phase
        handle = Handle(fn, first, interval_s)
        heapq.heappush(self._timers, (handle.when, next(self._seq), handle))
        if self._polling:
            self.wake()
        return handle

    def add_due_source(
        self, fn: DueSource, callback: Callable[[], Any] | None = None
    ) -> Handle:
        """Wake up when fn(now) says (absolute loop time or None), e.g. RpcServer.next_due.

        If callback is given it is called when that time has come; pass the same callback
        as the source's socket, so that delayed messages are released by receive().
        """
        handle = Handle(callback, source=fn)
        self._sources.append(handle)
        self._dues = None
        if self._polling:
            self.wake()
        return handle

    # -- running ---------------------------------------------------------------------------

    def run_once(self, max_wait_s: float | None = None) -> int:
        """Poll once (up to max_wait_s, None = until something is due), run what is ready.

        Returns the number of callbacks run.
        """
        now = self.time()
        if not self._forever:
            self._dues = None  # the caller may have changed a source's state since
        wake = self._next_wake(now)
        if max_wait_s is not None:
            wake = min(wake, now + max_wait_s) if wake is not None else now + max_wait_s
        if wake is None:
            timeout_ms = None
        else:
            timeout_ms = max(0, math.ceil((wake - now) * 1000))
        ran = 0
        if timeout_ms is None and not self._callbacks and not self._forever:
            return 0  # nothing registered could ever wake us (but stop(), in run_forever)
        self._polling = True
        try:
            ready = self._poller.poll(timeout_ms)
        finally:
            self._polling = False
        woken = False
        for sock, _ in ready:
            callback = self._callbacks.get(sock)
            if callback is not None:
                ran += self._run(callback)
            elif sock == self._wake_r.fileno():
                self._drain_wake()
                woken = True  # another thread or a signal handler may have changed a source
        for sock, callback in list(self._lazy.items()):
            if not sock.closed and sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                ran += self._run(callback)
        now = self.time()
        while self._timers and self._timers[0][0] <= now + self._slack(self._timers[0][2]):
            _, _, handle = heapq.heappop(self._timers)
            if handle.cancelled:
                continue
            if handle.interval is not None:
                # The next multiple of the interval: a late run never makes the next one bunch up.
                phase = self.grid_phase
                handle.when = _next_on_grid(handle.when + phase, handle.interval, now + phase) - phase
                heapq.heappush(self._timers, (handle.when, next(self._seq), handle))
            ran += self._run(handle.callback)
        if ran or woken or self._dues is None:
            self._dues = self._ask_sources(now)  # what ran may have changed what is due
        sources_ran = 0
        for handle, due in self._dues:
            if handle.callback is not None and not handle.cancelled and due is not None and due <= now:
                sources_ran += self._run(handle.callback)
        if sources_ran:
            self._dues = None  # asked again before the next poll
        return ran + sources_ran

    def run_forever(self) -> None:
        """Run until stop() is called."""
        self._stopped = False
        self._forever = True
        try:
            while not self._stopped:
                self.run_once()
        finally:
            self._forever = False

    def stop(self) -> None:
        self._stopped = True
        self.wake()

    def wake(self) -> None:
        """Make a poll in progress return now (safe from any thread and signal handlers)."""
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed

    def close(self) -> None:
        self._poller.unregister(self._wake_r.fileno())
        self._wake_r.close()
        self._wake_w.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass  # drained

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _slack(handle: Handle) -> float:
        """How early a timer may run with others: a periodic one (heartbeats, ticks,
        publishing) joins a wake-up that comes up to a fifth of its interval (at most 50 ms)
        before it is due (a 250 ms publish would ride a 100 ms timer's wake-ups at 200, 500,
        700 ...: still four a second, on its own grid), so timers share wake-ups instead of
        each having its own a few ms apart. A one-shot timer (a deadline) never runs early."""
        return 0.0 if handle.interval is None else min(TIMER_SLACK_MAX_S, TIMER_SLACK_FRACTION * handle.interval)

    def _next_wake(self, now: float) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        times = [self._timers[0][0]] if self._timers else []
        if self._dues is None:
            self._dues = self._ask_sources(now)
        times += [due for handle, due in self._dues if due is not None and not handle.cancelled]
        return min(times) if times else None

    def _ask_sources(self, now: float) -> list[tuple[Handle, float | None]]:
        self._sources = [h for h in self._sources if not h.cancelled]
        return [(handle, self._due(handle, now)) for handle in self._sources]

    def _due(self, handle: Handle, now: float) -> float | None:
        try:
            return handle.source(now)  # type: ignore[misc]
        except Exception:
            log.exception("due source %r failed; ignoring it this round", handle.source)
            return None

    @staticmethod
    def _run(callback: Callable[[], Any] | None) -> int:
        if callback is None:
            return 0
        try:
            callback()
        except Exception:
            log.exception("event loop callback %r failed; carrying on", callback)
        return 1


def _grid_at_or_after(t: float, interval: float) -> float:
    """The first multiple of interval at or after t."""
    return math.ceil(t / interval - 1e-9) * interval


def _next_on_grid(when: float, interval: float, now: float) -> float:
    """A periodic timer's next time after running for `when`: one interval on, or, if the
    run was so late that this is less than half an interval away, the next multiple after
    that (a skipped beat rather than two runs in a row)."""
    following = (round(when / interval) + 1) * interval
    if following < now + interval / 2:
        following = _grid_at_or_after(now + interval / 2, interval)
    return following
