"""The schema registry as one more process of a Cluster: start, kill, restart.

The cluster's supervisor keeps the process with its brokers (so close() ends it, and faults name
it "schema-registry"); this module holds what is particular to it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from kafkalab.config import client_config
from kafkalab.errors import KafkaLabError
from kafkalab.ports import free_port
from kafkalab.registry.records import TOPIC
from kafkalab.registry.server import NODE

ROLE = "schema-registry"


def topic_config(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """`_schemas` is compacted, as Confluent creates it; overrides (e.g. a small
    segment.bytes, to watch compaction) on top."""
    return {"cleanup.policy": "compact", **(overrides or {})}


def start(cluster: Any, supervisor: Any, topic_overrides: Mapping[str, Any] | None = None,
          timeout: float = 30.0) -> None:
    """Create `_schemas` if missing (through the cluster's public API), spawn the registry
    under the cluster's supervisor, return once it serves."""
    if TOPIC not in cluster.list_topics():
        cluster.create_topic(TOPIC, partitions=1, replication_factor=min(3, cluster.num_brokers),
                             config=topic_config(topic_overrides))
    args = dict(port=free_port(), brokers=cluster.broker_endpoints, fault_endpoint=cluster.fault_endpoint,
                metrics_endpoint=cluster.metrics.endpoint,
                producer_config=client_config(cluster.profile, "producer",
                                              {"acks": "all", "linger.ms": 0, "enable.idempotence": True}),
                consumer_config=client_config(cluster.profile, "consumer",
                                              {"enable.auto.commit": False, "auto.offset.reset": "earliest"}))
    supervisor.start(NODE, ROLE, args)
    _wait_serving(supervisor, timeout)


def url(supervisor: Any) -> str:
    args = supervisor.args.get(NODE)
    if args is None:
        raise KafkaLabError("this cluster has no schema registry: start it with Cluster(..., schema_registry=True)")
    return f"http://127.0.0.1:{args['port']}"


def kill(supervisor: Any) -> None:
    url(supervisor)
    supervisor.kill(NODE, "the schema registry", "restart_schema_registry()")


def restart(supervisor: Any, timeout: float = 30.0) -> None:
    url(supervisor)
    if supervisor.is_alive(NODE):
        raise KafkaLabError("the schema registry is still running; kill_schema_registry() first")
    supervisor.restart(NODE)
    _wait_serving(supervisor, timeout)


def _wait_serving(supervisor: Any, timeout: float) -> None:
    proc = supervisor.procs[NODE]
    address = url(supervisor) + "/config"
    deadline = time.monotonic() + timeout
    while True:
        if not proc.is_alive():
            raise KafkaLabError(f"the schema registry exited during start-up (exit code {proc.exitcode}): "
                                f"{supervisor.exit_reason(NODE)}")
        try:
            with urllib.request.urlopen(address, timeout=1.0) as resp:
                json.load(resp)
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise KafkaLabError(f"the schema registry did not answer on {url(supervisor)} within {timeout:g} s")
        time.sleep(0.05)
