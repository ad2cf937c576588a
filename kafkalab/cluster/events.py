"""What the cluster itself did, as metric rows the views draw: events ("kill", "topic_created",
"cut", ...) and the broker states it set."""

from __future__ import annotations

import time
from typing import Any

from kafkalab.metrics import MetricsCollector

_VERBS = {"killed": "kill", "stopped": "stop", "paused": "pause", "running": "resume"}


class EventLog:
    """Writes into the cluster's collector once it has one (start() makes it)."""

    def __init__(self) -> None:
        self.metrics: MetricsCollector | None = None

    def event(self, event: str, detail: str, **extra: Any) -> None:
        if self.metrics is not None:
            self.metrics.record("event", {"time": time.time(), "node": "cluster", "event": event,
                                          "detail": detail, **{k: v for k, v in extra.items() if v is not None}})

    def process_state(self, node: str, state: str) -> None:
        """A broker's state as the cluster knows it ("starting", "killed", ...) for the views."""
        if self.metrics is not None and node.startswith("broker-"):
            self.metrics.record("broker", {"time": time.time(), "node": node,
                                           "broker": int(node.split("-")[1]), "state": state})

    def state_changed(self, node: str, state: str) -> None:
        """The cluster moved a process to `state`: its state row and the event the timeline shows."""
        self.process_state(node, state)
        self.event(_VERBS[state], node, broker=int(node.split("-")[1]) if node.startswith("broker-") else None)
