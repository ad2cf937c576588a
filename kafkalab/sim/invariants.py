"""What must hold after every event of a simulated run, and how a broken one is reported."""

from __future__ import annotations

from dataclasses import dataclass


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
