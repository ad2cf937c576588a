"""The schema registry as one more process of a Cluster: start, kill, restart.

Cluster keeps the process with its brokers (so close() ends it, and faults name it
"schema-registry"); this module holds what is particular to it."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from kafkalab.config import client_config
from kafkalab.errors import KafkaLabError
from kafkalab.registry.records import TOPIC
from kafkalab.registry.server import NODE

ROLE = "schema-registry"


def topic_config(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """`_schemas` is compacted, as Confluent creates it; overrides (e.g. a small
    segment.bytes, to watch compaction) on top."""
    return {"cleanup.policy": "compact", **(overrides or {})}


def start(cluster: Any, topic_overrides: Mapping[str, Any] | None = None, timeout: float = 30.0) -> None:
    """Create `_schemas` if missing, spawn the registry, return once it serves."""
    if TOPIC not in cluster.list_topics():
        cluster.create_topic(TOPIC, partitions=1, replication_factor=min(3, cluster.num_brokers),
                             config=topic_config(topic_overrides))
    from kafkalab.cluster import _free_port
    args = dict(port=_free_port(), brokers=cluster.broker_endpoints, fault_endpoint=cluster._fault_pub.endpoint,
                metrics_endpoint=cluster.metrics.endpoint,
                producer_config=client_config(cluster.profile, "producer",
                                              {"acks": "all", "linger.ms": 0, "enable.idempotence": True}),
                consumer_config=client_config(cluster.profile, "consumer",
                                              {"enable.auto.commit": False, "auto.offset.reset": "earliest"}))
    cluster._args[NODE] = args
    _spawn(cluster, timeout)


def url(cluster: Any) -> str:
    args = cluster._args.get(NODE)
    if args is None:
        raise KafkaLabError("this cluster has no schema registry: start it with Cluster(..., schema_registry=True)")
    return f"http://127.0.0.1:{args['port']}"


def state(cluster: Any) -> str:
    url(cluster)
    proc, st = cluster._procs[NODE], cluster._states[NODE]
    return "crashed" if st in ("running", "paused") and not proc.is_alive() else st


def kill(cluster: Any) -> None:
    url(cluster)
    cluster._kill(NODE, cluster._procs[NODE], "the schema registry", state(cluster), "restart_schema_registry()")


def restart(cluster: Any, timeout: float = 30.0) -> None:
    url(cluster)
    if cluster._procs[NODE].is_alive():
        raise KafkaLabError("the schema registry is still running; kill_schema_registry() first")
    _spawn(cluster, timeout)
    cluster._record_event("restart", NODE)


def _spawn(cluster: Any, timeout: float) -> None:
    cluster._start_process(NODE, ROLE, cluster._args[NODE])
    proc = cluster._procs[NODE]
    address = url(cluster) + "/config"
    deadline = time.monotonic() + timeout
    while True:
        if not proc.is_alive():
            reason = "see its log lines above"
            error_file = cluster._error_file(NODE)
            if os.path.exists(error_file):
                with open(error_file) as f:
                    reason = f.read().strip()
            raise KafkaLabError(f"the schema registry exited during start-up (exit code {proc.exitcode}): {reason}")
        try:
            with urllib.request.urlopen(address, timeout=1.0) as resp:
                json.load(resp)
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise KafkaLabError(f"the schema registry did not answer on {url(cluster)} within {timeout:g} s")
        time.sleep(0.05)
