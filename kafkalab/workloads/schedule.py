"""A seeded fault schedule: a pure list of timed actions that break a cluster and mend it.

The schedule knows nothing of processes or time passing; `FaultInjector` (runner.py) applies it
to a live Cluster. Each fault is undone by a later action (kill -> restart, pause -> resume,
network cut -> heal), and at most `max_faulty` brokers are broken at any moment, so with a
replication factor above `max_faulty` every partition keeps a replica that can lead.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

# fault kind -> the action that undoes it
UNDO: dict[str, str] = {
    "kill": "restart",       # SIGKILL, then start again on the same data dir
    "stop": "restart",       # controlled shutdown (SIGTERM), then start again
    "pause": "resume",       # SIGSTOP / SIGCONT: a frozen process that wakes up with stale state
    "partition": "heal",     # the broker loses the other brokers and the controller, keeps clients
    "isolate": "heal",       # the broker loses everyone, clients included
    "cut_controller": "heal",  # the broker loses only the controller: it misses metadata and is fenced
}
FAULT_KINDS = tuple(UNDO)
ACTION_KINDS = FAULT_KINDS + ("restart", "resume", "heal")
# Faults that share the one fault table: a heal undoes them all at once.
NETWORK_KINDS = frozenset({"partition", "isolate", "cut_controller"})


@dataclass(frozen=True, slots=True)
class FaultAction:
    """At `at_s` seconds after the start, do `kind` to broker `target` (None for heal)."""

    at_s: float
    kind: str
    target: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"unknown fault action {self.kind!r}: use one of {', '.join(ACTION_KINDS)}")
        if self.at_s < 0:
            raise ValueError(f"a fault action happens at a time >= 0 s, not {self.at_s}")
        if self.kind != "heal" and self.target is None:
            raise ValueError(f"fault action {self.kind!r} needs a target broker id")

    def describe(self) -> str:
        who = "" if self.target is None else f" broker {self.target}"
        return f"{self.at_s:6.2f}s {self.kind}{who}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaultAction:
        return cls(float(d["at_s"]), str(d["kind"]), None if d.get("target") is None else int(d["target"]))


def fault_schedule(seed: int, duration_s: float, brokers: int | Sequence[int],
                   every_s: tuple[float, float] = (1.5, 3.0),
                   kinds: Iterable[str] = ("kill", "pause", "partition"),
                   *, max_faulty: int = 1, start_s: float | None = None) -> list[FaultAction]:
    """Faults and their repairs, sorted by time, the same list for the same arguments.

    Consecutive actions are `every_s` apart (uniform in the range); each is either a new fault
    on a healthy broker or the repair of the oldest fault (with max_faulty=1 they alternate).
    The first fault comes at `start_s` (default: every_s[0]), so the workload has a healthy
    start. No fault begins after `duration_s - every_s[0]` and every fault is repaired at or
    before `duration_s`: the cluster ends the schedule whole.
    `brokers` is a broker count (ids 1..N) or the ids themselves.
    """
    ids = list(range(1, brokers + 1)) if isinstance(brokers, int) else sorted(set(brokers))
    kinds = tuple(kinds)
    lo, hi = every_s
    if not ids:
        raise ValueError("a fault schedule needs at least one broker")
    if not kinds:
        raise ValueError("a fault schedule needs at least one fault kind")
    if bad := [k for k in kinds if k not in UNDO]:
        raise ValueError(f"unknown fault kind(s) {bad}: use some of {', '.join(FAULT_KINDS)}")
    if not 0 < lo <= hi:
        raise ValueError(f"every_s must be (low, high) with 0 < low <= high, not {every_s!r}")
    if not 1 <= max_faulty < len(ids) + 1:
        raise ValueError(f"max_faulty must be between 1 and the number of brokers ({len(ids)})")
    rng = random.Random(seed)
    actions: list[FaultAction] = []
    broken: dict[int, tuple[str, int]] = {}  # broker -> (fault kind, tick it was broken at)
    t = lo if start_s is None else start_s
    tick = 0
    # Each tick either repairs the oldest fault or starts a new one, never both: a broker
    # that just came back gets an interval to rejoin the ISR before the next one is broken.
    while t <= duration_s:
        oldest = min(broken, key=lambda b: broken[b][1], default=None)
        must_repair = len(broken) >= max_faulty or t > duration_s - lo
        if oldest is not None and (must_repair or rng.random() < 0.5):
            actions.extend(_repair(broken, oldest, min(round(t, 3), duration_s)))
        elif t <= duration_s - lo:
            b = rng.choice([b for b in ids if b not in broken])
            kind = rng.choice(kinds)
            actions.append(FaultAction(min(round(t, 3), duration_s), kind, b))
            broken[b] = (kind, tick)
        else:
            break
        tick += 1
        t += rng.uniform(lo, hi)
    # Whatever is still broken is repaired by the end.
    while broken:
        actions.extend(_repair(broken, min(broken, key=lambda b: broken[b][1]), duration_s))
    return actions


def _repair(broken: dict[int, tuple[str, int]], broker: int, t: float) -> list[FaultAction]:
    kind, _ = broken.pop(broker)
    if kind in NETWORK_KINDS:
        # One heal mends every cut in the fault table, so it repairs every network fault.
        for other in [b for b, (k, _) in broken.items() if k in NETWORK_KINDS]:
            del broken[other]
        return [FaultAction(t, "heal")]
    return [FaultAction(t, UNDO[kind], broker)]


def broken_after(actions: Iterable[FaultAction]) -> dict[int, str]:
    """Which brokers the actions leave broken, and how (empty: the cluster is whole)."""
    broken: dict[int, str] = {}
    for a in actions:
        if a.kind in UNDO:
            broken[a.target] = a.kind  # type: ignore[index]
        elif a.kind == "heal":
            broken = {b: k for b, k in broken.items() if k not in NETWORK_KINDS}
        else:
            broken.pop(a.target, None)  # type: ignore[arg-type]
    return broken
