"""The cluster's load producers: worker processes ("load-N") sending records at a rate, started
and stopped from a notebook or the dashboard's load panel (the worker: kafkalab/load_worker.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from kafkalab.cluster.events import EventLog
from kafkalab.config import client_config
from kafkalab.errors import KafkaLabError
from kafkalab.load_worker import KEY_DISTRIBUTIONS, producer_worker_main
from kafkalab.process import LabProcess, spawner


class LoadWorkers:
    def __init__(self, profile: str, events: EventLog, list_topics: Callable[[], list[str]]):
        self.profile, self.events, self.list_topics = profile, events, list_topics
        self.procs: dict[str, LabProcess] = {}  # node -> process

    def start(self, node: str, topic: str | None, rate: float, acks: str | int, compression: str, keys: str,
              key_count: int, value_bytes: int, seed: int, config: dict[str, Any] | None,
              wiring: dict[str, Any]) -> str:
        """`wiring`: brokers, fault_endpoint, faults_json, metrics_endpoint of the cluster."""
        from kafkalab.client.config import producer_config  # the client package: only when used
        if keys not in KEY_DISTRIBUTIONS:
            raise KafkaLabError(f"keys={keys!r}: choose one of {KEY_DISTRIBUTIONS}")
        if topic is None:  # the first topic a learner made
            topics = [t for t in self.list_topics() if not t.startswith("__")]
            if not topics:
                raise KafkaLabError("start_load() needs a topic: create one first")
            topic = topics[0]
        cfg = client_config(self.profile, "producer",
                            {"acks": str(acks), "compression.type": compression, "linger.ms": 5, **(config or {})})
        producer_config(cfg)  # fail here, in the notebook, on a bad key — not in the worker
        self.procs[node] = spawner().spawn(producer_worker_main, node, parent_pid=os.getpid(), node=node,
                                           topic=topic, rate=float(rate), config=cfg, keys=keys,
                                           key_count=key_count, value_bytes=value_bytes, seed=seed, **wiring)
        self.events.event("load_start", f"{node}: {rate:g} records/s to {topic}, acks={acks}, {compression}")
        return node

    def stop(self, node: str | None = None) -> None:
        """Stop one worker (by node name) or all of them."""
        for name in [node] if node else list(self.procs):
            proc = self.procs.pop(name, None)
            if proc is None:
                raise KafkaLabError(f"no load worker {name!r}; running: {sorted(self.procs)}")
            proc.kill()
            proc.join(timeout=5)
            self.events.event("load_stop", name)
