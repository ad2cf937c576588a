"""Cluster: the one object a notebook holds. It starts, supervises, breaks and describes a
real cluster — a controller process and N broker processes on this machine.

A facade: each job is a part of this package (topology, supervisor, admin client and topic
admin, network faults, descriptions, notebook clients, load workers); Cluster composes them
and keeps the public API in one place.
"""

from __future__ import annotations

import itertools
import re
import shutil
import threading
import time
from collections.abc import Iterable
from typing import Any

import zmq

from kafkalab.cluster import describe, open_clusters
from kafkalab.cluster.admin import TopicAdmin
from kafkalab.cluster.admin_client import AdminClient
from kafkalab.cluster.clients import NotebookClients
from kafkalab.cluster.data_dirs import make_data_dir
from kafkalab.cluster.events import EventLog
from kafkalab.cluster.faults import NetworkFaults
from kafkalab.cluster.load import LoadWorkers
from kafkalab.cluster.supervisor import Supervisor
from kafkalab.cluster.topology import Topology
from kafkalab.cluster.waiting import wait_until
from kafkalab.config import broker_config, client_config
from kafkalab.errors import KafkaLabError
from kafkalab.lazy_pandas import pd
from kafkalab.metrics import MetricsCollector
from kafkalab.nodes import broker_node, controller_node
from kafkalab.protocol.errors import KafkaError
from kafkalab.transport.faults import FaultTable


class Cluster:
    """A controller and `brokers` broker processes (ids 1..N) on 127.0.0.1.

    profile="lab" shortens timeouts so failures show within a second; profile="kafka" keeps
    Kafka's defaults. `config` overrides broker configs by Kafka's names.

    controllers=3 (or any number above 1) runs a KRaft controller quorum instead of the one
    controller: processes "controller-1".."controller-N" replicate `__cluster_metadata` with
    Raft, and the leader is the active controller (`active_controller`).

    Starting a cluster just like one this process still has open (same brokers, controllers,
    profile, config and `name`) warns (ClusterAlreadyRunningWarning): that is a notebook cell run
    again, which would otherwise leave the first cluster running unseen. A cluster that differs
    (another size or config, or its own `name=`) runs beside it without a warning.

    schema_registry=True adds a Schema Registry process with Confluent's REST API on
    `schema_registry_url`, its state in the compacted topic `_schemas` (a dict: that topic's
    configs); see kafkalab/registry/.
    """

    def __init__(self, brokers: int = 3, data_dir: str | None = None, profile: str = "lab",
                 config: dict[str, Any] | None = None, *, keep_data: bool = False,
                 start: bool = True, startup_timeout: float = 30.0, controllers: int = 1,
                 name: str | None = None, schema_registry: bool | dict[str, Any] = False):
        if not isinstance(brokers, int) or brokers < 1:
            raise ValueError(f"brokers must be a positive integer, not {brokers!r}")
        if not isinstance(controllers, int) or isinstance(controllers, bool) or controllers < 1:
            raise ValueError(f"controllers must be a positive integer (1, or 3 for a quorum), not {controllers!r}")
        if name is not None and not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_-]+", name)):
            raise ValueError(f"name={name!r}: a cluster name is letters, digits, '-' or '_' (no '.', "
                             "which separates a remote topic's source from its name), e.g. 'west'")
        self.name = name  # several clusters in one kernel: remote topics and views say which
        self.num_controllers = controllers
        self.num_brokers = brokers
        self._schema_registry = schema_registry  # True, or `_schemas` topic configs: kafkalab.registry
        self.config = broker_config(profile, config)
        self.profile = profile
        self.keep_data = keep_data or data_dir is not None
        self._own_data_dir = data_dir is None
        self.data_dir = make_data_dir(data_dir, name)
        self.startup_timeout = startup_timeout
        self.faults = FaultTable()
        self._lock = threading.RLock()
        self._closed = False
        self._started = False
        self.metrics: MetricsCollector | None = None
        self._topology = Topology(brokers, controllers, name)
        self._events = EventLog()
        self._supervisor = Supervisor(self.data_dir, self.faults, self._events)
        self._network = NetworkFaults(self.faults, self._lock, self._events)
        self._numbers = itertools.count(1)  # client-N and load-N
        self._clients = NotebookClients(profile, self.faults, self._numbers)
        self._loads = LoadWorkers(profile, self._events, self.list_topics)
        self._admin: AdminClient | None = None
        self._topics: TopicAdmin | None = None
        if start:
            self.start()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Cluster:
        if self._started:
            return self
        if self._closed:
            raise KafkaLabError("this Cluster was closed; create a new one")
        self._started = True
        open_clusters.add(self, (self.name, self.num_brokers, self.num_controllers, self.profile,
                                 sorted(self.config.items())))
        try:
            self._ctx = zmq.Context()
            self.metrics = MetricsCollector()
            self.metrics.cluster_name = self.name  # views label this cluster's nodes with it
            self._events.metrics = self.metrics
            self._network.start(self._ctx)
            self._topology.allocate_ports()
            self._admin = AdminClient(self._ctx, self.faults, self._topology, self._supervisor, self._lock,
                                      self._check_open)
            self._topics = TopicAdmin(self._admin, self._events, self.metrics, self._running_brokers)
            from kafkalab.controller.quorum import (
                QUORUM_TIMEOUTS,  # the controller's code: only to start one
            )
            wiring = {"config": self.config, "fault_endpoint": self._network.endpoint,
                      "metrics_endpoint": self.metrics.endpoint}
            for node, role, args in self._topology.process_plan(self.data_dir, wiring,
                                                                dict(QUORUM_TIMEOUTS[self.profile])):
                self._supervisor.start(node, role, args)
            open_clusters.register_exit_cleanup()
            self._wait_brokers_unfenced(self.broker_ids, self.startup_timeout)
            if self._schema_registry:
                from kafkalab.registry import launcher  # the registry's code: only when asked for
                launcher.start(self, self._supervisor,
                               self._schema_registry if isinstance(self._schema_registry, dict) else None)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every process and client; remove the data dir unless keep_data. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._clients.close_all(f"its cluster was closed: {self!r}")
        self._supervisor.end_all(list(self._loads.procs.values()))
        self._network.close()
        if self._admin is not None:
            self._admin.close()
        if getattr(self, "_ctx", None) is not None:
            self._ctx.term()
        if self.metrics is not None:
            self.metrics.close()
        if self._own_data_dir and not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        open_clusters.discard(self)

    @property
    def closed(self) -> bool:
        """True once close() ran: views and clients bound to this cluster say so and stop acting."""
        return self._closed

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaLabError(f"this cluster was closed ({self!r}): create a new Cluster (and new clients from it)")
        if not self._started:
            raise KafkaLabError("the cluster is not running: call start() or create a new Cluster")

    def _wait_brokers_unfenced(self, ids: Iterable[int], timeout: float, since: float | None = None) -> None:
        """Wait until these brokers' current processes have registered and been unfenced.
        `since`: only reports after this time count (a restarted broker's old registration
        is still unfenced until its session times out)."""
        wanted = set(ids)

        def ready() -> bool:
            for node in [*self.controller_nodes, *(broker_node(b) for b in wanted)]:
                if not self._supervisor.is_alive(node):
                    raise KafkaLabError(f"{node} exited during start-up (exit code "
                                        f"{self._supervisor.procs[node].exitcode}): {self._supervisor.exit_reason(node)}")
            if since is not None:  # plain rows: a Dashboard's Restart must not import pandas
                running = {int(r["broker"]) for r in self.metrics.rows("broker", since)
                           if r.get("produce_requests") is not None and r.get("state") == "running"}
                if not wanted <= running:
                    return False
            try:
                md = self._admin.metadata([])
            except KafkaError:
                return False
            return wanted <= {int(b.node_id) for b in md.brokers}
        wait_until(ready, timeout, f"brokers {sorted(wanted)} to register with the controller")

    # -- names -----------------------------------------------------------------------------
    @property
    def broker_ids(self) -> list[int]:
        return self._topology.broker_ids

    @property
    def quorum(self) -> bool:
        """True when the controllers form a KRaft quorum (controllers > 1)."""
        return self._topology.quorum

    @property
    def controller_ids(self) -> list[int]:
        return self._topology.controller_ids

    @property
    def controller_port(self) -> int:
        return self._topology.controller_port

    @property
    def controller_endpoints(self) -> dict[int, str]:
        return self._topology.controller_endpoints

    @property
    def controller_nodes(self) -> list[str]:
        return self._topology.controller_nodes

    @property
    def node_names(self) -> list[str]:
        # "client-kafka": every client on the brokers' Kafka listeners (kafka-python, librdkafka).
        return [*self.controller_nodes, *[broker_node(b) for b in self.broker_ids], *self._clients.nodes,
                *self._loads.procs, *(["schema-registry"] if self._schema_registry else []), "client-kafka"]

    @property
    def node_details(self) -> dict[str, str]:
        """What each notebook client node is ({"client-1": "Producer", ...}), for the views."""
        return self._clients.details

    def node_label(self, node: str) -> str:
        """A node's name as views show it: "west/broker-1" for a named cluster."""
        return self._topology.node_label(node)

    @property
    def bootstrap_servers(self) -> str:
        return self._topology.bootstrap_servers

    @property
    def broker_endpoints(self) -> dict[int, str]:
        return self._topology.broker_endpoints

    @property
    def fault_endpoint(self) -> str:
        """Where a process of this cluster's network subscribes to its fault table."""
        return self._network.endpoint

    @property
    def processes(self) -> dict[str, Any]:
        """Node name -> process of every controller, broker and the registry (for pids)."""
        return dict(self._supervisor.procs)

    def _node(self, x: int | str) -> str:
        if isinstance(x, int) and not isinstance(x, bool):
            self._topology.check_broker(x)
            return broker_node(x)
        if isinstance(x, str):
            if x.isdigit():
                return self._node(int(x))
            if x in self.node_names:
                return x
        raise KafkaLabError(f"unknown node {x!r}: use a broker id ({self.broker_ids}) or one of {self.node_names}")

    def _running_brokers(self) -> list[int]:
        return [b for b in self.broker_ids if self.broker_state(b) == "running"]

    def record_event(self, event: str, detail: str) -> None:
        """Put an event on this cluster's timeline (what a mirror or a lab did to it)."""
        self._events.event(event, detail)

    # -- topic admin (Kafka's admin APIs: the controller decides, brokers apply) ----------------
    def _topic_admin(self) -> TopicAdmin:
        self._check_open()
        return self._topics

    @property
    def topic_configs(self) -> dict[str, dict[str, Any]]:
        """The configs each topic was created with (what a mirror of it copies)."""
        return self._topics.topic_configs if self._topics is not None else {}

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     config: dict[str, Any] | None = None, *, timeout: float = 10.0) -> None:
        """Create a topic and wait until every partition has a leader serving it."""
        self._topic_admin().create_topic(name, partitions, replication_factor, config, timeout)

    def delete_topic(self, name: str, timeout: float = 10.0) -> None:
        self._topic_admin().delete_topic(name, timeout)

    def list_topics(self) -> list[str]:
        return self._topic_admin().list_topics()

    def alter_topic_config(self, name: str, config: dict[str, Any], *, timeout: float = 10.0) -> None:
        """Set topic configs (a value of None removes the override: back to the broker's default).
        The controller checks and records the change; every broker applies it to the topic's log
        (Kafka's IncrementalAlterConfigs). Returns once every running broker shows it."""
        self._topic_admin().alter_topic_config(name, config, timeout)

    def create_partitions(self, name: str, total: int, *, timeout: float = 10.0) -> None:
        """Grow topic `name` to `total` partitions (Kafka's CreatePartitions: partitions are only
        ever added - keys that hashed to one partition may now go to another)."""
        self._topic_admin().create_partitions(name, total, timeout)

    def delete_records(self, name: str, offsets: dict[int, int], *, timeout: float = 10.0) -> dict[int, int]:
        """Delete every record below `offsets[partition]` (-1: up to the high watermark) - Kafka's
        DeleteRecords, sent to each partition's leader. Returns each partition's new log start
        offset (its low watermark)."""
        return self._topic_admin().delete_records(name, offsets, timeout)

    def elect_preferred_leaders(self) -> None:
        self._topic_admin().elect_preferred_leaders()

    # -- description ------------------------------------------------------------------------
    def describe_topic(self, name: str, fresh: bool = True) -> pd.DataFrame:
        """A row per partition: partition, leader (-1 if none), leader_epoch, replicas, isr,
        high_watermark, log_end_offsets {broker: LEO}."""
        since = time.time()
        if fresh:
            self._network.publish_metrics_now()  # rows newer than the call, without waiting for a tick
        md = describe.topic_metadata(name, self._topic_admin().client.metadata([name]))
        if fresh:
            describe.wait_fresh_metrics(self.metrics, self._running_brokers(), since,
                                        self.config["metrics.publish.interval.ms"])
        return describe.topic_frame(name, md, self.metrics, self._running_brokers())

    def describe_cluster(self) -> pd.DataFrame:
        """A row per broker: broker, state, fenced, pid, endpoint, kafka port."""
        return describe.cluster_frame(self.describe_cluster_rows())

    def describe_cluster_rows(self) -> list[dict[str, Any]]:
        """`describe_cluster()` as plain dicts (what the Dashboard reads: no pandas)."""
        try:
            unfenced = {int(b.node_id) for b in self._topic_admin().client.metadata([]).brokers}
        except KafkaError:
            unfenced = set()
        return [{"broker": b, "state": self.broker_state(b), "fenced": b not in unfenced,
                 "pid": self._supervisor.procs[broker_node(b)].pid, "endpoint": self.broker_endpoints[b],
                 "kafka_port": self._topology.broker_ports[b][1]} for b in self.broker_ids]

    def describe_configs(self, topic: str | None = None, *, broker: int | None = None) -> pd.DataFrame:
        """A topic's (or a broker's) configs, a row each: name, value, source (topic, broker or
        default: where the value comes from), read_only - Kafka's DescribeConfigs."""
        return describe.configs_frame(self._topic_admin().describe_configs(topic, broker))

    def describe_group(self, group: str) -> pd.DataFrame:
        """A row per member and partition (classic, consumer or share group): type, state,
        generation or group epoch, member, client id, member epoch, committed offset, log end
        offset, lag."""
        return describe.group_frame(self.metrics, group, publish_now=self._network.publish_metrics_now)

    @property
    def active_controller(self) -> int | None:
        """Id of the active controller (the quorum's leader serving requests), None while
        there is none. From the controllers' own reports: the running controller that says it
        is active in the newest epoch (a cut-off ex-leader says so until it resigns)."""
        if not self.quorum:
            return None
        return describe.active_controller(self.metrics, self.controller_ids, self.controller_state)

    def describe_quorum(self) -> pd.DataFrame:
        """A row per controller (newest report): controller, state, role, epoch, leader,
        active, high_watermark, log_end_offset."""
        return describe.quorum_frame(self.metrics, self.controller_ids, self.controller_state)

    # -- clients ---------------------------------------------------------------------------
    def producer(self, config: dict[str, Any] | None = None) -> Any:
        self._check_open()
        return self._clients.producer(config, self.broker_endpoints, self.bootstrap_servers, self.metrics)

    def consumer(self, config: dict[str, Any] | None = None) -> Any:
        self._check_open()
        return self._clients.consumer(config, self.broker_endpoints, self.bootstrap_servers, self.metrics)

    def share_consumer(self, config: dict[str, Any] | None = None) -> Any:
        """A share-group member (KIP-932) with confluent-kafka's ShareConsumer methods."""
        self._check_open()
        return self._clients.share_consumer(config, self.broker_endpoints, self.metrics)

    def spawn_consumers(self, group: str, n: int, topics: list[str], config: dict[str, Any] | None = None,
                        handler: Any = None) -> list[Any]:
        """n consumer worker processes in `group`; handles can be killed, paused and resumed.
        `handler(message)` is any Python callable (a self-contained function crosses to the
        workers as its code; one that uses the notebook's names, with dill)."""
        # Imported here: a cluster that never spawns a worker leaves the workloads package out.
        from kafkalab.workloads.consumers import spawn_consumers
        return spawn_consumers(self, group, n, topics, client_config(self.profile, "consumer", config), handler)

    # -- load --------------------------------------------------------------------------------
    def start_load(self, topic: str | None = None, rate: float = 1000.0, acks: str | int = "all",
                   compression: str = "none", keys: str = "uniform", key_count: int = 100,
                   value_bytes: int = 100, seed: int = 0, config: dict[str, Any] | None = None) -> str:
        """Start a producer worker process sending `rate` records/s; returns its node name.

        keys: "uniform" over key_count keys, "hot" (80% on one key: a hot partition), or
        "none" (null keys: the sticky partitioner)."""
        self._check_open()
        return self._loads.start(
            f"load-{next(self._numbers)}", topic, rate, acks, compression, keys, key_count, value_bytes, seed,
            config, wiring=dict(brokers=self.broker_endpoints, fault_endpoint=self.fault_endpoint,
                                faults_json=self.faults.to_json(), metrics_endpoint=self.metrics.endpoint))

    def stop_load(self, node: str | None = None) -> None:
        """Stop one load worker (by node name) or all of them."""
        self._loads.stop(node)

    # -- brokers ---------------------------------------------------------------------------
    def _broker(self, broker_id: int) -> str:
        self._topology.check_broker(broker_id)
        return broker_node(broker_id)

    def broker_state(self, broker_id: int) -> str:
        return self._supervisor.state(self._broker(broker_id))

    def kill_broker(self, broker_id: int) -> None:
        """SIGKILL: no controlled shutdown, nothing flushed beyond what the OS already has."""
        self._supervisor.kill(self._broker(broker_id), f"broker {broker_id}", f"restart_broker({broker_id})")

    def stop_broker(self, broker_id: int, timeout: float = 10.0) -> None:
        """Controlled shutdown: the controller moves leadership away, then the broker exits."""
        self._supervisor.stop(self._broker(broker_id), f"broker {broker_id}", timeout)

    def restart_broker(self, broker_id: int, timeout: float = 30.0) -> None:
        """Start a stopped or killed broker again on the same id, ports and data dir (log
        recovery runs as it opens its segments)."""
        node = self._broker(broker_id)
        if self._supervisor.is_alive(node):
            raise KafkaLabError(f"broker {broker_id} is still running; kill_broker({broker_id}) or "
                                f"stop_broker({broker_id}) first")
        since = time.time()
        self._supervisor.restart(node)
        self._events.event("restart", f"broker {broker_id}", broker=broker_id)
        self._wait_brokers_unfenced([broker_id], timeout, since=since)

    def pause_broker(self, broker_id: int) -> None:
        """SIGSTOP: the process freezes mid-flight (a GC pause, a stalled disk, a hung VM)."""
        self._supervisor.pause(self._broker(broker_id), f"broker {broker_id}")

    def resume_broker(self, broker_id: int) -> None:
        self._supervisor.resume(self._broker(broker_id), f"broker {broker_id}")

    # -- the controller quorum ----------------------------------------------------------------
    def _controller(self, controller_id: int) -> str:
        self._topology.check_controller(controller_id)
        return controller_node(controller_id)

    def controller_state(self, controller_id: int) -> str:
        return self._supervisor.state(self._controller(controller_id))

    def kill_controller(self, controller_id: int) -> None:
        """SIGKILL a quorum controller; if it was active, the others elect a successor."""
        self._supervisor.kill(self._controller(controller_id), f"controller {controller_id}",
                             f"restart_controller({controller_id})")

    def stop_controller(self, controller_id: int, timeout: float = 10.0) -> None:
        """SIGTERM: an active controller resigns (EndQuorumEpoch) before it exits."""
        self._supervisor.stop(self._controller(controller_id), f"controller {controller_id}", timeout)

    def restart_controller(self, controller_id: int) -> None:
        """Start a killed or stopped controller on its data dir: it reads its quorum-state and
        log, and rejoins as a follower (or wins an election)."""
        node = self._controller(controller_id)
        if self._supervisor.is_alive(node):
            raise KafkaLabError(f"controller {controller_id} is still running; "
                                f"kill_controller({controller_id}) first")
        with self._lock:  # an admin call on another thread may be using the old socket
            self._admin.reset(controller_id)
        self._supervisor.restart(node)
        self._events.event("restart", node)

    def pause_controller(self, controller_id: int) -> None:
        """SIGSTOP: a frozen active controller stops heartbeating its followers, which elect."""
        self._supervisor.pause(self._controller(controller_id), f"controller {controller_id}")

    def resume_controller(self, controller_id: int) -> None:
        self._supervisor.resume(self._controller(controller_id), f"controller {controller_id}")

    # -- the schema registry (kafkalab/registry/) ---------------------------------------------
    @property
    def schema_registry_url(self) -> str:
        """Confluent's REST API of this cluster's registry: "http://127.0.0.1:PORT"."""
        from kafkalab.registry import launcher
        return launcher.url(self._supervisor)

    def kill_schema_registry(self) -> None:
        """SIGKILL the registry; its schemas are safe in the `_schemas` topic."""
        from kafkalab.registry import launcher
        launcher.kill(self._supervisor)

    def restart_schema_registry(self, timeout: float = 30.0) -> None:
        """Start it again on the same port: it rebuilds its state by reading `_schemas`."""
        from kafkalab.registry import launcher
        launcher.restart(self._supervisor, timeout)
        self._events.event("restart", launcher.NODE)

    # -- network faults ----------------------------------------------------------------------
    def _apply(self, change: tuple[str, str]) -> None:
        self._network.apply(*change, self.metrics, self._running_brokers())

    def partition(self, *groups: Iterable[int | str]) -> None:
        """Cut every link between nodes of different groups: partition([1], [2, 3])."""
        if len(groups) < 2:
            raise KafkaLabError("partition() needs at least two groups, e.g. partition([1], [2, 3])")
        self._apply(self._network.partition([[self._node(x) for x in g] for g in groups]))

    def cut(self, a: int | str, b: int | str, one_way: bool = False) -> None:
        self._apply(self._network.cut(self._node(a), self._node(b), one_way))

    def delay(self, a: int | str, b: int | str, ms: int, one_way: bool = False) -> None:
        self._apply(self._network.delay(self._node(a), self._node(b), ms, one_way))

    def isolate(self, x: int | str) -> None:
        node = self._node(x)
        self._apply(self._network.isolate(node, [n for n in self.node_names if n != node]))

    def heal(self) -> None:
        self._apply(self._network.heal())

    def cut_from_brokers(self, nodes: Iterable[str], cut: bool, detail: str) -> None:
        """Cut (cut=False: restore) every link between these client nodes - not yet known to this
        cluster, e.g. a mirror's clients - and this cluster's brokers."""
        self._network.set_links([(n, broker_node(b)) for n in nodes for b in self.broker_ids], cut)
        self._apply(("cut" if cut else "heal", detail))

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._started else "not started")
        named = f" {self.name!r}" if self.name is not None else ""
        return (f"<Cluster{named} {self.num_brokers} brokers, profile={self.profile!r}, {state}, "
                f"data_dir={self.data_dir!r}>")
