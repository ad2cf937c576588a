"""What the cluster object itself knows (process states, fencing, the fault table), read once.

The network picture, the story feed and the broker tiles all need it; a Dashboard shares one
`ClusterProbe`, so one refresh asks the controller about fencing once, not once per view.
Everything here is a plain dict, so views can also be driven from hand-built ones.
"""

from __future__ import annotations

import time
from typing import Any

from kafkalab.metrics import as_rows

# The cluster's process states in the words the views use.
PROCESS_STATES = {"running": "up", "crashed": "killed", "killed": "killed", "paused": "paused",
                  "stopped": "stopped", "starting": "starting"}

# What each kind of node is, in the words of the dropdowns and the network picture's hover.
NODE_HELP = {
    "controller": "the controller: keeps the metadata log, elects leaders, fences brokers",
    "broker": "a broker: holds replicas, leads some partitions",
    "client": "a Producer or Consumer made in this notebook (cluster.producer() / cluster.consumer())",
    "client-kafka": "every client on the brokers' Kafka TCP listeners (kafka-python, "
                    "confluent-kafka, kcat)",
    "load": "a producer worker process (cluster.start_load())",
    "worker": "a consumer worker process (cluster.spawn_consumers())",
}


def node_kind(name: str) -> str:
    if name.startswith("controller"):
        return "controller"
    if name.startswith("broker-"):
        return "broker"
    if name == "client-kafka":
        return "client-kafka"
    if name.startswith("client-"):
        return "client"
    if name.startswith("load-"):
        return "load"
    return "worker"


def node_label(name: str, detail: str | None = None) -> str:
    """A dropdown label that says what a node is: "client-1 (Producer in this notebook)"."""
    kind = node_kind(name)
    if kind == "client":
        return f"{name} ({detail or 'client'} in this notebook)"
    if kind == "client-kafka":
        return f"{name} (clients on the Kafka port)"
    if kind == "load":
        return f"{name} (load producer process)"
    if kind == "worker":
        return f"{name} (consumer worker)"
    return name


class ClusterProbe:
    """Reads a Cluster's own state, at most once per `max_age_s`; `read()` returns a dict:

    closed, brokers {id: "up"|"killed"|"paused"|"stopped"|"fenced"}, controllers
    {name: state}, active_controller (node name or None), nodes [names], node_details
    {name: "Producer"...}, links (FaultTable.links()), faults_version, cluster_rows (the
    cluster's describe_cluster rows as dicts, None when closed).
    """

    def __init__(self, cluster: Any, max_age_s: float = 0.2) -> None:
        self.cluster = cluster
        self.max_age_s = max_age_s
        self._cached: dict[str, Any] | None = None
        self._at = 0.0

    def read(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._cached is not None and now - self._at < self.max_age_s:
            return self._cached
        self._cached, self._at = self._read(), now
        return self._cached

    def _read(self) -> dict[str, Any]:
        cluster = self.cluster
        if getattr(cluster, "closed", False):
            return {"closed": True, "brokers": {}, "controllers": {}, "active_controller": None,
                    "nodes": [], "node_details": {}, "links": [], "faults_version": None,
                    "cluster_rows": None}
        describe_rows = getattr(cluster, "describe_cluster_rows", None)
        rows = describe_rows() if describe_rows is not None else as_rows(cluster.describe_cluster())
        brokers: dict[int, str] = {}
        for row in rows:
            state = PROCESS_STATES.get(str(row["state"]), str(row["state"]))
            if state == "up" and bool(row.get("fenced") or False):
                state = "fenced"
            brokers[int(row["broker"])] = state
        controllers: dict[str, str] = {}
        active = None
        if getattr(cluster, "quorum", False):
            for c in cluster.controller_ids:
                controllers[f"controller-{c}"] = PROCESS_STATES.get(cluster.controller_state(c), "up")
            leader = cluster.active_controller
            active = f"controller-{leader}" if leader is not None else None
        else:
            for name in getattr(cluster, "controller_nodes", ["controller"]):
                controllers[name] = "up"
                active = name
        faults = getattr(cluster, "faults", None)
        nodes = [str(n) for n in getattr(cluster, "node_names", [])]
        return {"closed": False, "brokers": brokers, "controllers": controllers,
                "active_controller": active, "nodes": nodes,
                "node_details": dict(getattr(cluster, "node_details", {}) or {}),
                "links": faults.links() if faults is not None else [],
                "faults_version": getattr(faults, "version", None), "cluster_rows": rows}


def leaders_by_broker(latest: Any, now: float, stale_after_s: float,
                      brokers: dict[int, str] | None = None) -> dict[int, list[str]]:
    """{broker: ["orders-0", ...]}: partitions each live broker leads (fresh reports only)."""
    from .base import current_leaders
    leaders = [r for r in current_leaders(latest) if now - r["time"] <= stale_after_s]
    out: dict[int, list[str]] = {}
    for row in sorted(leaders, key=lambda r: (r["topic"], r["partition"])):
        broker = int(row["broker"])
        if brokers is not None and brokers.get(broker, "up") not in ("up", "fenced"):
            continue
        if str(row["topic"]).startswith("__"):
            continue
        out.setdefault(broker, []).append(f"{row['topic']}-{int(row['partition'])}")
    return out
