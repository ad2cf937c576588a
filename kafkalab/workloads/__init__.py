"""Workloads: fault schedules, the workload runner, and the history checker.

schedule, history and checker are pure; runner drives a live Cluster. Every name loads with its
module on first use: a worker process (consumers, eos) imports this package for its own module
and needs none of them.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "KINDS": "checker", "CheckResult": "checker", "check": "checker",
    "History": "history", "Read": "history", "Sent": "history",
    "FAULT_KINDS": "schedule", "FaultAction": "schedule", "fault_schedule": "schedule",
    # The runner pulls in the cluster and its clients.
    "run_workload": "runner", "FaultInjector": "runner", "apply_action": "runner", "restore": "runner",
    "read_back": "runner", "wait_for_leaders": "runner",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"kafkalab.workloads.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'kafkalab.workloads' has no attribute {name!r}")
