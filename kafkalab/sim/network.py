"""In-memory channels between simulated nodes, with the faults a real network has.

A message from `src` to `dst` is delivered after a random delay (so messages reorder), unless the
link is cut (one-way cuts and partitions), the message is lost, or the receiver is down or paused;
it may also be delivered twice. A paused node receives nothing until it resumes, then gets what
was held (a long GC pause); a crashed node loses what was in flight to it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafkalab.sim.scheduler import Scheduler

Handler = Callable[[str, Any], None]  # (source node, message)


@dataclass
class LinkFaults:
    delay_ms: tuple[int, int] = (1, 5)
    loss: float = 0.0  # probability a message is dropped
    duplicate: float = 0.0  # probability a message is delivered twice


class Network:
    def __init__(self, scheduler: Scheduler, rng: random.Random, faults: LinkFaults | None = None) -> None:
        self.scheduler = scheduler
        self.rng = rng
        self.faults = faults or LinkFaults()
        self.handlers: dict[str, Handler] = {}
        self.up: dict[str, bool] = {}
        self.paused: dict[str, list[tuple[str, Any]]] = {}
        self.cut: set[tuple[str, str]] = set()  # (sender, receiver) links that drop everything
        self.sent = self.delivered = self.dropped = 0

    # -- membership ---------------------------------------------------------------------------
    def attach(self, node: str, handler: Handler) -> None:
        self.handlers[node] = handler
        self.up[node] = True

    def crash(self, node: str) -> None:
        self.up[node] = False
        self.paused.pop(node, None)

    def restart(self, node: str, handler: Handler) -> None:
        self.attach(node, handler)

    def pause(self, node: str) -> None:
        self.paused.setdefault(node, [])

    def resume(self, node: str) -> None:
        for src, msg in self.paused.pop(node, []):
            self._deliver(src, node, msg)

    # -- links --------------------------------------------------------------------------------
    def cut_one_way(self, src: str, dst: str) -> None:
        self.cut.add((src, dst))

    def partition(self, *groups: list[str]) -> None:
        """Cut every link between nodes of different groups, both ways (replaces earlier cuts)."""
        self.cut = {(a, b) for g in groups for h in groups if g is not h for a in g for b in h}

    def heal(self) -> None:
        self.cut.clear()

    # -- messages -----------------------------------------------------------------------------
    def send(self, src: str, dst: str, msg: Any) -> None:
        self.sent += 1
        f = self.faults
        if (src, dst) in self.cut or self.rng.random() < f.loss:
            self.dropped += 1
            return
        copies = 2 if self.rng.random() < f.duplicate else 1
        for _ in range(copies):
            delay = self.rng.randint(*f.delay_ms)
            self.scheduler.after(delay, f"deliver {src}->{dst}", lambda: self._arrive(src, dst, msg))

    def _arrive(self, src: str, dst: str, msg: Any) -> None:
        if (src, dst) in self.cut or not self.up.get(dst, False):
            self.dropped += 1
            return
        if dst in self.paused:
            self.paused[dst].append((src, msg))
            return
        self._deliver(src, dst, msg)

    def _deliver(self, src: str, dst: str, msg: Any) -> None:
        if not self.up.get(dst, False):
            self.dropped += 1
            return
        self.delivered += 1
        self.handlers[dst](src, msg)
