"""The notebook's own clients of a cluster (Producer, Consumer, ShareConsumer): each a node
("client-N") of the lab network publishing its metrics straight into the collector. The client
package is imported when the first client is made: `from kafkalab import Cluster` stays light."""

from __future__ import annotations

import itertools
import time
from typing import Any

from kafkalab.config import client_config
from kafkalab.metrics import MetricsCollector
from kafkalab.transport.faults import FaultTable


class _CollectorPublisher:
    """Lets in-process clients publish into the collector like a process would."""

    def __init__(self, collector: MetricsCollector, node: str):
        self.collector, self.node = collector, node

    def publish(self, kind: str, row: dict[str, Any]) -> None:
        self.collector.record(kind, {"time": time.time(), "node": self.node, **row})

    def close(self) -> None:
        pass


class NotebookClients:
    """`numbers`: shared with the load workers, so client and load nodes never share a number."""

    def __init__(self, profile: str, faults: FaultTable, numbers: itertools.count):
        self.profile, self.faults, self.numbers = profile, faults, numbers
        self.clients: list[Any] = []

    def _context(self, brokers: dict[int, str], metrics: MetricsCollector) -> Any:
        from kafkalab.client.context import ClientContext
        node = f"client-{next(self.numbers)}"
        return ClientContext(node=node, brokers=brokers, faults=self.faults,
                             metrics=_CollectorPublisher(metrics, node))

    def _check_config(self, config: dict[str, Any] | None, what: str, bootstrap_servers: str) -> None:
        from kafkalab.client.config import check_bootstrap_servers
        if config and "bootstrap.servers" in config:
            check_bootstrap_servers(config["bootstrap.servers"], bootstrap_servers, what)

    def producer(self, config: dict[str, Any] | None, brokers: dict[int, str], bootstrap_servers: str,
                 metrics: MetricsCollector) -> Any:
        from kafkalab.client import Producer
        self._check_config(config, "producer", bootstrap_servers)
        return self._add(Producer(client_config(self.profile, "producer", config), self._context(brokers, metrics)))

    def consumer(self, config: dict[str, Any] | None, brokers: dict[int, str], bootstrap_servers: str,
                 metrics: MetricsCollector) -> Any:
        from kafkalab.client import Consumer
        self._check_config(config, "consumer", bootstrap_servers)
        return self._add(Consumer(client_config(self.profile, "consumer", config), self._context(brokers, metrics)))

    def share_consumer(self, config: dict[str, Any] | None, brokers: dict[int, str],
                       metrics: MetricsCollector) -> Any:
        from kafkalab.client.share_consumer import ShareConsumer
        return self._add(ShareConsumer(config, self._context(brokers, metrics)))

    def _add(self, client: Any) -> Any:
        self.clients.append(client)
        return client

    @property
    def nodes(self) -> list[str]:
        return [c.node for c in self.clients if getattr(c, "node", None)]

    @property
    def details(self) -> dict[str, str]:
        """What each client node is ({"client-1": "Producer", ...}), for the views."""
        return {c.node: type(c).__name__ for c in self.clients if getattr(c, "node", None)}

    def close_all(self, reason: str) -> None:
        for client in self.clients:
            try:
                client.closed_because = reason
                client.close()
            except Exception:  # noqa: BLE001 - closing must go on
                pass
