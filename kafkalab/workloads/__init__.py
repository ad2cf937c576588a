"""Workloads: fault schedules, the workload runner, and the history checker.

schedule, history and checker are pure; runner (imported on first use) drives a live Cluster.
"""

from __future__ import annotations

from typing import Any

from kafkalab.workloads.checker import KINDS, CheckResult, check
from kafkalab.workloads.history import History, Read, Sent
from kafkalab.workloads.schedule import FAULT_KINDS, FaultAction, fault_schedule

_RUNNER = ("run_workload", "FaultInjector", "apply_action", "restore", "read_back", "wait_for_leaders")

__all__ = ["FAULT_KINDS", "KINDS", "CheckResult", "FaultAction", "History", "Read", "Sent", "check",
           "fault_schedule", *_RUNNER]


def __getattr__(name: str) -> Any:
    # The runner pulls in the cluster and its clients: only load it when asked for.
    if name in _RUNNER:
        from kafkalab.workloads import runner
        return getattr(runner, name)
    raise AttributeError(f"module 'kafkalab.workloads' has no attribute {name!r}")
