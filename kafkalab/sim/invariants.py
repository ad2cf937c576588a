"""What must hold after every event of a simulated run, and how a broken one is reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Violation(AssertionError):
    """An invariant that did not hold: which, when, and how to replay it."""

    seed: int
    event: int
    invariant: str
    detail: str
    trace: list[str] | None = None  # the run's story up to the violation, when it was traced

    def __str__(self) -> str:
        return (f"seed {self.seed}, event {self.event}: {self.invariant} violated: {self.detail}\n"
                f"replay: kafkalab sim --seeds {self.seed} --trace {self.seed}")


@dataclass
class RunSummary:
    """One seeded run of one scenario, as `kafkalab sim` prints it (a row per seed)."""

    scenario: str
    seed: int
    virtual_s: float
    events: int
    faults: int
    acknowledged: int  # records (or commits) the clients were told are durable
    checks: int  # invariant checks made (invariants x events)
    trace: list[str] | None = None  # the story in words, when asked for


class Story:
    """A scenario's story in words and its violations (the coordinator scenarios share it):
    subclasses set `seed`, `sched` (the Scheduler) and `trace` (a list, or None when untold)."""

    seed: int
    sched: Any
    trace: list[str] | None

    def say(self, text: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.sched.now_ms:>6} ms  {text}")

    def violation(self, invariant: str, detail: str) -> Violation:
        self.say(f"VIOLATION {invariant}: {detail}")
        # The story up to here goes with it, for `kafkalab sim --trace`.
        return Violation(self.seed, self.sched.events_run, invariant, detail, trace=self.trace)
