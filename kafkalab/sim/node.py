"""What every simulated process shares: timers that stop when it is paused or crashed, and
request/response calls over the simulated network with a timeout.

A node's soft state lives in its object and is thrown away on a crash (a restart builds a new
incarnation); only what it keeps on disk (a broker's log dir, the controller's metadata log)
survives. A paused node neither receives messages (the network holds them) nor fires timers (they
are held too): when it resumes, the held timers fire at once, late, as after a long GC pause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafkalab.sim.network import Network
from kafkalab.sim.scheduler import Scheduler


@dataclass(frozen=True, slots=True)
class Request:
    corr: int
    body: Any


@dataclass(frozen=True, slots=True)
class Response:
    corr: int
    body: Any


class Calls:
    """A process-wide counter of correlation ids, so that a reply meant for a crashed
    incarnation never matches a request of the next one."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last += 1
        return self.last


class SimNode:
    def __init__(self, name: str, scheduler: Scheduler, network: Network, calls: Calls) -> None:
        self.name = name
        self.sched = scheduler
        self.net = network
        self.calls = calls
        self.up = False
        self.paused = False
        self.incarnation = 0
        self._held: list[Callable[[], None]] = []
        self._pending: dict[int, Callable[[Any], None]] = {}

    # -- life -----------------------------------------------------------------------------
    def start(self) -> None:
        self.incarnation += 1
        self.up, self.paused = True, False
        self._held, self._pending = [], {}
        self.net.attach(self.name, self._on_message)
        self.on_start()

    def crash(self) -> None:
        self.up = False
        self.incarnation += 1
        self._held, self._pending = [], {}
        self.net.crash(self.name)
        self.on_crash()

    def pause(self) -> None:
        self.paused = True
        self.net.pause(self.name)

    def resume(self) -> None:
        self.paused = False
        held, self._held = self._held, []
        self.net.resume(self.name)
        for fire in held:
            fire()

    def on_start(self) -> None:  # overridden
        pass

    def on_crash(self) -> None:  # overridden
        pass

    def handle(self, src: str, corr: int, body: Any) -> None:  # overridden: a request arrived
        pass

    # -- timers ---------------------------------------------------------------------------
    def timer(self, delay_ms: int, label: str, fn: Callable[[], None]) -> None:
        inc = self.incarnation

        def fire() -> None:
            if not self.up or self.incarnation != inc:
                return
            if self.paused:
                self._held.append(fire)
                return
            fn()
        self.sched.after(delay_ms, f"{self.name} {label}", fire)

    # -- messages -------------------------------------------------------------------------
    def call(self, dst: str, body: Any, on_reply: Callable[[Any], None], timeout_ms: int) -> None:
        """Send a request; `on_reply(response body)`, or `on_reply(None)` after the timeout."""
        corr = self.calls.next()
        self._pending[corr] = on_reply
        self.net.send(self.name, dst, Request(corr, body))

        def expire() -> None:
            cb = self._pending.pop(corr, None)
            if cb is not None:
                cb(None)
        self.timer(timeout_ms, "request timeout", expire)

    def reply(self, dst: str, corr: int, body: Any) -> None:
        if self.up:
            self.net.send(self.name, dst, Response(corr, body))

    def _on_message(self, src: str, msg: Any) -> None:
        if isinstance(msg, Response):
            cb = self._pending.pop(msg.corr, None)
            if cb is not None:
                cb(msg.body)
        else:
            self.handle(src, msg.corr, msg.body)
