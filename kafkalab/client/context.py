"""What a client needs from the cluster that built it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ClientContext:
    """node: this client's name on the (fault-injecting) network, e.g. "producer-1".
    brokers: broker node_id -> ZeroMQ endpoint ("tcp://127.0.0.1:port").
    faults: the cluster's FaultTable, so cut links and delays apply to clients too.
    metrics: an object with publish(kind, row), or None for no metrics.
    """

    node: str
    brokers: dict[int, str]
    faults: Any
    metrics: Any | None = None
