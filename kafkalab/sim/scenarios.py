"""Every scenario `kafkalab sim` runs for each seed: a name and its runner.

A runner is `run(seed, *, brokers, controllers, trace) -> RunSummary` and raises `Violation` when
an invariant does not hold. Add a scenario by adding it to SCENARIOS.
"""

from __future__ import annotations

from collections.abc import Callable

from kafkalab.sim import groups, groups_consumer, replication, transactions
from kafkalab.sim.invariants import RunSummary

Runner = Callable[..., RunSummary]

SCENARIOS: list[tuple[str, Runner]] = [
    ("replication", replication.run),
    ("groups", groups.run),
    ("consumer-groups", groups_consumer.run),
    ("transactions", transactions.run),
]
