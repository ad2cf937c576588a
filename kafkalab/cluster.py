"""Cluster: the one object a notebook holds. It starts, supervises, breaks and describes a
real cluster — a controller process and N broker processes on this machine.
"""

from __future__ import annotations

import atexit
import datetime
import itertools
import os
import random
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import zmq
from kio.schema.create_topics.v7 import request as ct_req
from kio.schema.delete_topics.v6 import request as dt_req
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12 import request as md_req

from kafkalab.config import TOPIC_CONFIGS, broker_config, client_config, resolve
from kafkalab.errors import ClusterAlreadyRunningWarning, KafkaLabError
from kafkalab.lazy_pandas import pd
from kafkalab.metrics import MetricsCollector
from kafkalab.nodes import CONTROLLER_NODE, SINGLE_CONTROLLER_ID, broker_node, controller_node
from kafkalab.process import run_role, spawner
from kafkalab.protocol.errors import KafkaError
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.rpc import FaultPublisher, RequestTimeoutError, RpcClient

_live: weakref.WeakSet[Cluster] = weakref.WeakSet()


def _close_all() -> None:
    for c in list(_live):
        c.close()


def _register_exit_cleanup() -> None:
    """Close every open cluster when the interpreter exits or is told to stop.

    Exit handlers run last-registered-first, and multiprocess registers one (again, when it
    first logs) that joins every non-daemon child: a running broker never ends, so a script that
    never called close() would hang there. Registering ours again after each start puts it
    first. SIGTERM would end the process without any exit handler: close, then die of it."""
    atexit.unregister(_close_all)
    atexit.register(_close_all)
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _close_all_and_die)


def _close_all_and_die(signum: int, frame: Any) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


OWNER_FILE = ".kafkalab-owner"


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None if it is gone): with the pid it
    names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _write_owner(data_dir: str) -> None:
    start = _process_start(os.getpid())
    if start is not None:
        with open(os.path.join(data_dir, OWNER_FILE), "w") as f:
            f.write(f"{os.getpid()} {start}\n")


def remove_orphaned_data_dirs(tmp: str | None = None) -> list[str]:
    """Remove temporary data dirs whose owning process is gone. A kernel that is killed
    (restarted from JupyterLab, or SIGKILLed) never runs Cluster.close(); its brokers die with
    it, but its data dir would stay in /tmp for good - on Binder, disk is scarce."""
    removed = []
    root = tmp or tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(root) if n.startswith("kafkalab-")]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(root, name)
        try:
            with open(os.path.join(path, OWNER_FILE)) as f:
                pid_text, start = f.read().split()
        except (OSError, ValueError):
            continue  # not one of ours, or still being created: leave it
        if _process_start(int(pid_text)) != start:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


_given_ports: set[int] = set()
_port_rng = random.Random()  # its own: a lab's random.seed() must not pick our ports, nor we its numbers


def _free_port() -> int:
    """A free loopback port below the ephemeral range. A port the kernel picks (bind to 0)
    lies inside it, and between our check and the child's bind an outgoing connection of any
    process may be handed the same port as its local end: the broker then fails to start."""
    low, _ = _ephemeral_range()
    candidates = range(max(1024, low - 12_000), low) if low > 3_000 else range(20_000, 30_000)
    for _ in range(200):
        port = _port_rng.choice(candidates)
        if port in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    with socket.socket() as s:  # everything there is taken: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll condition() until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


class _CollectorPublisher:
    """Lets in-process clients publish into the collector like a process would."""

    def __init__(self, collector: MetricsCollector, node: str):
        self.collector, self.node = collector, node

    def publish(self, kind: str, row: dict[str, Any]) -> None:
        self.collector.record(kind, {"time": time.time(), "node": self.node, **row})

    def close(self) -> None:
        pass


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
        self._schema_registry = schema_registry  # True, or `_schemas` topic configs: kafkalab.registry
        self._retried = False  # the last quorum admin call needed another attempt
        self.config = broker_config(profile, config)
        self.profile = profile
        self.num_brokers = brokers
        self.keep_data = keep_data or data_dir is not None
        self._own_data_dir = data_dir is None
        if data_dir is None:
            remove_orphaned_data_dirs()
            data_dir = tempfile.mkdtemp(prefix=f"kafkalab-{name}-" if name else "kafkalab-")  # mode 0700
            _write_owner(data_dir)
        else:
            try:
                os.makedirs(data_dir, exist_ok=True)
            except OSError as e:
                raise KafkaLabError(f"data_dir {data_dir!r} cannot be used ({e.strerror}): "
                                    "give a writable directory, or none for a temporary one") from None
            if not os.access(data_dir, os.W_OK):
                raise KafkaLabError(f"data_dir {data_dir!r} is not writable: choose another directory")
        self.data_dir = os.path.abspath(data_dir)
        self.startup_timeout = startup_timeout
        self.faults = FaultTable()
        self._procs: dict[str, Any] = {}
        self._states: dict[str, str] = {}
        self._args: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._client_ids = itertools.count(1)
        self._clients: list[Any] = []
        self._loads: dict[str, Any] = {}
        self._broker_admins: dict[int, RpcClient] = {}
        self.topic_configs: dict[str, dict[str, Any]] = {}
        self._closed = False
        self._started = False
        self.metrics: MetricsCollector | None = None
        if start:
            self.start()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Cluster:
        if self._started:
            return self
        if self._closed:
            raise KafkaLabError("this Cluster was closed; create a new one")
        self._started = True
        self._warn_if_another_is_open()
        _live.add(self)
        try:
            self._ctx = zmq.Context()
            self.metrics = MetricsCollector()
            self.metrics.cluster_name = self.name  # views label this cluster's nodes with it
            self._fault_pub = FaultPublisher(self._ctx)
            self.controller_port = _free_port()
            self._ports = {b: (_free_port(), _free_port()) for b in self.broker_ids}
            self._controller_ports = ({c: _free_port() for c in self.controller_ids} if self.quorum
                                      else {SINGLE_CONTROLLER_ID: self.controller_port})
            for c in self._controller_ports:
                self._spawn_controller(c)
            if self.quorum:
                self._active: int | None = None
                self._admins: dict[int, RpcClient] = {}
                self._admin = None
            else:
                self._admin = RpcClient(self._ctx, "admin", CONTROLLER_NODE,
                                        f"tcp://127.0.0.1:{self.controller_port}", self.faults)
            for b in self.broker_ids:
                self._spawn_broker(b)
            self._republisher = threading.Thread(target=self._republish_loop, name="kafkalab-faults",
                                                 daemon=True)
            self._republisher.start()
            _register_exit_cleanup()
            self._wait_brokers_unfenced(self.broker_ids, self.startup_timeout)
            if self._schema_registry:
                from kafkalab.registry import launcher
                launcher.start(self, self._schema_registry if isinstance(self._schema_registry, dict) else None)
        except BaseException:
            self.close()
            raise
        return self

    def _shape(self) -> tuple[Any, ...]:
        return (self.name, self.num_brokers, self.num_controllers, self.profile, sorted(self.config.items()))

    def _warn_if_another_is_open(self) -> None:
        others = [c for c in _live if c is not self and not c._closed and c._shape() == self._shape()]
        if others:
            other = others[0]
            warnings.warn(
                f"an identical Cluster is still running in this process: {other!r}. "
                "Call its close() first (or use `with Cluster(...) as cluster:`); a notebook cell that "
                "creates a Cluster starts a new one each time it runs. To run two clusters on purpose, "
                "give each its own name=...", ClusterAlreadyRunningWarning, stacklevel=4)

    def _spawn_controller(self, controller_id: int) -> None:
        from kafkalab.controller.quorum import QUORUM_TIMEOUTS
        node = controller_node(controller_id)
        args = dict(node_id=controller_id, voters=self._voters, port=self._controller_ports[controller_id],
                    data_dir=os.path.join(self.data_dir, node), config=self.config,
                    fault_endpoint=self._fault_pub.endpoint, metrics_endpoint=self.metrics.endpoint,
                    raft=dict(QUORUM_TIMEOUTS[self.profile]))
        self._args[node] = args
        self._start_process(node, "controller", args)

    def _spawn_broker(self, broker_id: int) -> None:
        zmq_port, kafka_port = self._ports[broker_id]
        args = dict(broker_id=broker_id, port=zmq_port, kafka_port=kafka_port,
                    data_dir=os.path.join(self.data_dir, f"broker-{broker_id}"), config=self.config,
                    controller_endpoints=self._voters,
                    fault_endpoint=self._fault_pub.endpoint, metrics_endpoint=self.metrics.endpoint)
        self._args[broker_node(broker_id)] = args
        self._start_process(broker_node(broker_id), "broker", args)

    def _error_file(self, node: str) -> str:
        return os.path.join(self.data_dir, f"{node}.error")

    def _start_process(self, node: str, role: str, args: dict[str, Any]) -> None:
        error_file = self._error_file(node)
        if os.path.exists(error_file):
            os.unlink(error_file)
        proc = spawner().spawn(run_role, node, role=role, parent_pid=os.getpid(), error_file=error_file,
                               faults_json=self.faults.to_json(), **args)
        self._procs[node] = proc
        self._states[node] = "running"
        self._record_state(node, "starting")

    def _republish_loop(self) -> None:
        # PUB/SUB drops what a subscriber missed while (re)connecting: repeat the table.
        while not self._closed:
            with self._lock:
                if self._closed:
                    return
                self._fault_pub.publish(self.faults)
            time.sleep(0.25)

    def close(self) -> None:
        """Stop every process and client; remove the data dir unless keep_data. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for client in self._clients:
            try:
                client.closed_because = f"its cluster was closed: {self!r}"
                client.close()
            except Exception:  # noqa: BLE001 - closing must go on
                pass
        for proc in [*self._loads.values(), *self._procs.values()]:
            try:
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, AttributeError, ValueError):
                pass
        for proc in [*self._loads.values(), *self._procs.values()]:
            try:
                proc.join(timeout=5)
            except (AssertionError, ValueError):
                pass
        for closer in ("_admin", "_fault_pub"):
            obj = getattr(self, closer, None)
            if obj is not None:
                obj.close()
        for admin in [*getattr(self, "_admins", {}).values(), *self._broker_admins.values()]:
            admin.close()
        if getattr(self, "_ctx", None) is not None:
            self._ctx.term()
        if self.metrics is not None:
            self.metrics.close()
        if self._own_data_dir and not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        _live.discard(self)

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

    # -- names -----------------------------------------------------------------------------
    @property
    def broker_ids(self) -> list[int]:
        return list(range(1, self.num_brokers + 1))

    @property
    def quorum(self) -> bool:
        """True when the controllers form a KRaft quorum (controllers > 1)."""
        return self.num_controllers > 1

    @property
    def controller_ids(self) -> list[int]:
        return list(range(1, self.num_controllers + 1)) if self.quorum else []

    @property
    def _voters(self) -> dict[int, str]:
        """Every controller process by id: one voter (id 0, node "controller") or a quorum."""
        return {c: f"tcp://127.0.0.1:{p}" for c, p in self._controller_ports.items()}

    @property
    def controller_endpoints(self) -> dict[int, str]:
        return {c: f"tcp://127.0.0.1:{self._controller_ports[c]}" for c in self.controller_ids}

    @property
    def controller_nodes(self) -> list[str]:
        return [controller_node(c) for c in self.controller_ids] if self.quorum else [CONTROLLER_NODE]

    @property
    def node_names(self) -> list[str]:
        clients = [c.node for c in self._clients if getattr(c, "node", None)]
        # "client-kafka": every client on the brokers' Kafka listeners (kafka-python, librdkafka).
        return [*self.controller_nodes, *[broker_node(b) for b in self.broker_ids], *clients, *self._loads,
                *(["schema-registry"] if self._schema_registry else []), "client-kafka"]

    @property
    def node_details(self) -> dict[str, str]:
        """What each notebook client node is ({"client-1": "Producer", ...}), for the views."""
        return {c.node: type(c).__name__ for c in self._clients if getattr(c, "node", None)}

    def node_label(self, node: str) -> str:
        """A node's name as views show it: "west/broker-1" for a named cluster."""
        return f"{self.name}/{node}" if self.name else node

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self._ports[b][1]}" for b in self.broker_ids)

    @property
    def broker_endpoints(self) -> dict[int, str]:
        return {b: f"tcp://127.0.0.1:{self._ports[b][0]}" for b in self.broker_ids}

    def _node(self, x: int | str) -> str:
        if isinstance(x, int) and not isinstance(x, bool):
            self._check_broker(x)
            return broker_node(x)
        if isinstance(x, str):
            if x.isdigit():
                return self._node(int(x))
            if x in self.node_names:
                return x
        raise KafkaLabError(f"unknown node {x!r}: use a broker id ({self.broker_ids}) or one of {self.node_names}")

    def _check_broker(self, broker_id: int) -> None:
        if broker_id not in self.broker_ids:
            raise KafkaLabError(f"there is no broker {broker_id!r}: this cluster has brokers {self.broker_ids}")

    # -- admin -----------------------------------------------------------------------------
    def _call(self, request: Any, timeout: float = 10.0) -> Any:
        with self._lock:
            self._check_open()
            if not self.quorum:
                return self._admin.call(request, timeout)
            return self._quorum_call(request, timeout)

    # A request the active controller did not answer in this long goes to whoever is active
    # now: a controller failover takes a fraction of a second in the lab profile.
    _QUORUM_ATTEMPT_S = 0.5

    def _quorum_call(self, request: Any, timeout: float) -> Any:
        """Send to the active controller; on NOT_CONTROLLER or silence find it again and retry.
        Sets self._retried when the answer came from a retry (a CreateTopics that the old
        controller committed before dying then answers TOPIC_ALREADY_EXISTS)."""
        deadline = time.monotonic() + timeout
        self._retried = False
        while True:
            target = self._active
            if target is None or self.controller_state(target) != "running":
                target = self._find_active(deadline)
            if target is not None:
                try:
                    resp = self._admin_client(target).call(
                        request, max(0.05, min(self._QUORUM_ATTEMPT_S, deadline - time.monotonic())))
                except KafkaError:
                    self._reset_admin(target)  # drop what is queued for a dead controller
                    resp = None
                if resp is not None and not _not_controller(resp, target):
                    return resp
                self._active = None
            if time.monotonic() >= deadline:
                raise RequestTimeoutError(f"no active controller answered {type(request).__name__} "
                                          f"within {timeout:g} s; is a majority of the controllers up?")
            self._retried = True
            time.sleep(0.02)

    def _admin_client(self, controller_id: int) -> RpcClient:
        client = self._admins.get(controller_id)
        if client is None:
            client = self._admins[controller_id] = RpcClient(
                self._ctx, "admin", controller_node(controller_id),
                self.controller_endpoints[controller_id], self.faults)
        return client

    def _reset_admin(self, controller_id: int) -> None:
        client = self._admins.pop(controller_id, None)
        if client is not None:
            client.close()

    def _find_active(self, deadline: float) -> int | None:
        """Ask every running controller who is active (Metadata's controller_id) at once."""
        probe = md_req.MetadataRequest(topics=(), allow_auto_topic_creation=False,
                                       include_topic_authorized_operations=False)
        asked: dict[int, int] = {}
        for c in self.controller_ids:
            if self.controller_state(c) == "running":
                asked[c] = self._admin_client(c).send(probe)
        end = min(deadline, time.monotonic() + 0.3)
        hint = None
        poller = zmq.Poller()
        for c in asked:
            poller.register(self._admins[c].socket, zmq.POLLIN)
        while asked and time.monotonic() < end:
            poller.poll(max(1, int((end - time.monotonic()) * 1000)))
            for c in list(asked):
                for corr, resp in self._admins[c].receive(time.monotonic()):
                    if corr != asked.get(c):
                        continue
                    del asked[c]
                    if int(resp.controller_id) == c:
                        self._forget_probes(asked)
                        self._active = c
                        return c
                    if int(resp.controller_id) in self.controller_ids:
                        hint = int(resp.controller_id)
        self._forget_probes(asked)
        return hint

    def _forget_probes(self, asked: dict[int, int]) -> None:
        for c, corr in asked.items():
            self._admins[c].forget(corr)

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaLabError(f"this cluster was closed ({self!r}): create a new Cluster (and new clients from it)")
        if not self._started:
            raise KafkaLabError("the cluster is not running: call start() or create a new Cluster")

    def _controller_metadata(self, topics: list[str] | None = None) -> Any:
        req = md_req.MetadataRequest(
            topics=None if topics is None else tuple(md_req.MetadataRequestTopic(topic_id=None, name=t) for t in topics),
            allow_auto_topic_creation=False, include_topic_authorized_operations=False)
        return self._call(req)

    def _wait_brokers_unfenced(self, ids: Iterable[int], timeout: float, since: float | None = None) -> None:
        """Wait until these brokers' current processes have registered and been unfenced.
        `since`: only reports after this time count (a restarted broker's old registration
        is still unfenced until its session times out)."""
        wanted = set(ids)

        def ready() -> bool:
            for node in [*self.controller_nodes, *(broker_node(b) for b in wanted)]:
                proc = self._procs[node]
                if not proc.is_alive():
                    reason = "see its log lines above"
                    if os.path.exists(self._error_file(node)):
                        with open(self._error_file(node)) as f:
                            reason = f.read().strip()
                    raise KafkaLabError(f"{node} exited during start-up (exit code {proc.exitcode}): {reason}")
            if since is not None:
                rows = self.metrics.brokers(since=since)
                if rows.empty or "produce_requests" not in rows:
                    return False
                rows = rows[rows.produce_requests.notna() & (rows.state == "running")]
                if not wanted <= set(rows.broker.astype(int)):
                    return False
            try:
                md = self._controller_metadata([])
            except KafkaError:
                return False
            return wanted <= {int(b.node_id) for b in md.brokers}
        wait_until(ready, timeout, f"brokers {sorted(wanted)} to register with the controller")

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1,
                     config: dict[str, Any] | None = None, *, timeout: float = 10.0) -> None:
        """Create a topic and wait until every partition has a leader serving it."""
        resolve(config or {}, TOPIC_CONFIGS, "topic")  # a typo fails here, naming the closest key
        req = ct_req.CreateTopicsRequest(topics=(ct_req.CreatableTopic(
            name=name, num_partitions=partitions, replication_factor=replication_factor, assignments=(),
            configs=tuple(ct_req.CreatableTopicConfig(name=k, value=_config_str(v))
                          for k, v in (config or {}).items())),), timeout=datetime.timedelta(seconds=timeout))
        result = self._call(req, timeout).topics[0]
        if result.error_code == ErrorCode.topic_already_exists and self.quorum and self._retried:
            pass  # our first attempt was committed by a controller that died before answering
        elif result.error_code != ErrorCode.none:
            raise KafkaError(result.error_code, result.error_message or f"cannot create topic {name!r}")
        self.topic_configs[name] = dict(config or {})  # what a mirror of this topic copies
        self._record_event("topic_created", f"{name}: {partitions} partitions, RF {replication_factor}")
        wait_until(lambda: self._topic_served(name), timeout, f"leaders of topic {name!r}")

    def _topic_served(self, name: str) -> bool:
        md = self._controller_metadata([name])
        t = md.topics[0]
        if t.error_code != ErrorCode.none or any(p.leader_id < 0 for p in t.partitions):
            return False
        # Every leader must have learned it leads (metadata reaches brokers by long-poll).
        rows = self.metrics.latest_replica_rows() if self.metrics else []
        latest = {(r.get("topic"), r.get("partition"), r.get("broker")): r for r in rows}
        for p in t.partitions:
            r = latest.get((name, int(p.partition_index), int(p.leader_id)))
            if r is None or not r.get("is_leader") or int(r.get("leader_epoch", -1)) != int(p.leader_epoch):
                return False
        return bool(rows)

    def delete_topic(self, name: str, timeout: float = 10.0) -> None:
        req = dt_req.DeleteTopicsRequest(topics=(dt_req.DeleteTopicState(name=name, topic_id=None),),
                                         timeout=datetime.timedelta(seconds=timeout))
        result = self._call(req, timeout).responses[0]
        if result.error_code != ErrorCode.none:
            raise KafkaError(result.error_code, f"cannot delete topic {name!r}")

    def list_topics(self) -> list[str]:
        return sorted(str(t.name) for t in self._controller_metadata().topics)

    # -- clients ---------------------------------------------------------------------------
    def _client_context(self) -> Any:
        from kafkalab.client.context import ClientContext
        node = f"client-{next(self._client_ids)}"
        return ClientContext(node=node, brokers=self.broker_endpoints, faults=self.faults,
                             metrics=_CollectorPublisher(self.metrics, node))

    def _check_client_config(self, config: dict[str, Any] | None, what: str) -> None:
        from kafkalab.client.config import check_bootstrap_servers
        if config and "bootstrap.servers" in config:
            check_bootstrap_servers(config["bootstrap.servers"], self.bootstrap_servers, what)

    def producer(self, config: dict[str, Any] | None = None) -> Any:
        from kafkalab.client import Producer
        self._check_open()
        self._check_client_config(config, "producer")
        p = Producer(client_config(self.profile, "producer", config), self._client_context())
        self._clients.append(p)
        return p

    def consumer(self, config: dict[str, Any] | None = None) -> Any:
        from kafkalab.client import Consumer
        self._check_open()
        self._check_client_config(config, "consumer")
        c = Consumer(client_config(self.profile, "consumer", config), self._client_context())
        self._clients.append(c)
        return c

    def share_consumer(self, config: dict[str, Any] | None = None) -> Any:
        """A share-group member (KIP-932) with confluent-kafka's ShareConsumer methods."""
        from kafkalab.client.share_consumer import ShareConsumer
        self._check_open()
        c = ShareConsumer(config, self._client_context())
        self._clients.append(c)
        return c

    # -- groups ------------------------------------------------------------------------------
    def describe_group(self, group: str) -> pd.DataFrame:
        """A row per member and partition (classic, consumer or share group): type, state,
        generation or group epoch, member, client id, member epoch, committed offset, log end
        offset, lag."""
        from kafkalab.broker.groups import describe_group
        return describe_group(self, group)

    def spawn_consumers(self, group: str, n: int, topics: list[str], config: dict[str, Any] | None = None,
                        handler: Any = None) -> list[Any]:
        """n consumer worker processes in `group`; handles can be killed, paused and resumed.
        `handler(message)` is any Python callable (shipped to the workers with dill)."""
        from kafkalab.workloads.consumers import spawn_consumers
        return spawn_consumers(self, group, n, topics, client_config(self.profile, "consumer", config), handler)

    # -- load --------------------------------------------------------------------------------
    def start_load(self, topic: str | None = None, rate: float = 1000.0, acks: str | int = "all",
                   compression: str = "none", keys: str = "uniform", key_count: int = 100,
                   value_bytes: int = 100, seed: int = 0, config: dict[str, Any] | None = None) -> str:
        """Start a producer worker process sending `rate` records/s; returns its node name.

        keys: "uniform" over key_count keys, "hot" (80% on one key: a hot partition), or
        "none" (null keys: the sticky partitioner)."""
        from kafkalab.client.config import producer_config
        from kafkalab.load import KEY_DISTRIBUTIONS, producer_worker_main

        self._check_open()
        if keys not in KEY_DISTRIBUTIONS:
            raise KafkaLabError(f"keys={keys!r}: choose one of {KEY_DISTRIBUTIONS}")
        if topic is None:
            topics = [t for t in self.list_topics() if not t.startswith("__")]
            if not topics:
                raise KafkaLabError("start_load() needs a topic: create one first")
            topic = topics[0]
        cfg = client_config(self.profile, "producer",
                            {"acks": str(acks), "compression.type": compression, "linger.ms": 5, **(config or {})})
        producer_config(cfg)  # fail here, in the notebook, on a bad key — not in the worker
        node = f"load-{next(self._client_ids)}"
        proc = spawner().spawn(producer_worker_main, node, parent_pid=os.getpid(), node=node,
                               brokers=self.broker_endpoints, fault_endpoint=self._fault_pub.endpoint,
                               faults_json=self.faults.to_json(), metrics_endpoint=self.metrics.endpoint,
                               topic=topic, rate=float(rate), config=cfg, keys=keys, key_count=key_count,
                               value_bytes=value_bytes, seed=seed)
        self._loads[node] = proc
        self._record_event("load_start", f"{node}: {rate:g} records/s to {topic}, acks={acks}, {compression}")
        return node

    def stop_load(self, node: str | None = None) -> None:
        """Stop one load worker (by node name) or all of them."""
        for name in [node] if node else list(self._loads):
            proc = self._loads.pop(name, None)
            if proc is None:
                raise KafkaLabError(f"no load worker {name!r}; running: {sorted(self._loads)}")
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
            proc.join(timeout=5)
            self._record_event("load_stop", name)

    # -- faults ----------------------------------------------------------------------------
    def _proc(self, broker_id: int) -> Any:
        self._check_broker(broker_id)
        return self._procs[broker_node(broker_id)]

    # Signals to a broker or controller process; `what` names it in errors ("broker 2").
    def _kill(self, node: str, proc: Any, what: str, state: str, restart_hint: str) -> None:
        if not proc.is_alive():
            raise KafkaLabError(f"{what} is not running (state {state}); {restart_hint} first")
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=5)
        self._set_state(node, "killed")

    def _stop(self, node: str, proc: Any, what: str, timeout: float) -> None:
        if not proc.is_alive():
            raise KafkaLabError(f"{what} is not running; nothing to stop")
        if self._states[node] == "paused":
            os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(timeout=timeout)
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(timeout=5)
        self._set_state(node, "stopped")

    def _pause(self, node: str, proc: Any, what: str, state: str) -> None:
        if not proc.is_alive() or self._states[node] == "paused":
            raise KafkaLabError(f"{what} is not running, cannot pause it (state {state})")
        os.kill(proc.pid, signal.SIGSTOP)
        self._set_state(node, "paused")

    def _resume(self, node: str, proc: Any, what: str, state: str) -> None:
        if self._states[node] != "paused":
            raise KafkaLabError(f"{what} is not paused (state {state})")
        os.kill(proc.pid, signal.SIGCONT)
        self._set_state(node, "running")

    def kill_broker(self, broker_id: int) -> None:
        """SIGKILL: no controlled shutdown, nothing flushed beyond what the OS already has."""
        proc = self._proc(broker_id)
        self._kill(broker_node(broker_id), proc, f"broker {broker_id}", self.broker_state(broker_id),
                   f"restart_broker({broker_id})")

    def stop_broker(self, broker_id: int, timeout: float = 10.0) -> None:
        """Controlled shutdown: the controller moves leadership away, then the broker exits."""
        self._stop(broker_node(broker_id), self._proc(broker_id), f"broker {broker_id}", timeout)

    def restart_broker(self, broker_id: int, timeout: float = 30.0) -> None:
        """Start a stopped or killed broker again on the same id, ports and data dir (log
        recovery runs as it opens its segments)."""
        proc = self._proc(broker_id)
        if proc.is_alive():
            raise KafkaLabError(f"broker {broker_id} is still running; kill_broker({broker_id}) or "
                                f"stop_broker({broker_id}) first")
        since = time.time()
        self._start_process(broker_node(broker_id), "broker", self._args[broker_node(broker_id)])
        self._record_event("restart", f"broker {broker_id}", broker=broker_id)
        self._wait_brokers_unfenced([broker_id], timeout, since=since)

    def pause_broker(self, broker_id: int) -> None:
        """SIGSTOP: the process freezes mid-flight (a GC pause, a stalled disk, a hung VM)."""
        proc = self._proc(broker_id)
        self._pause(broker_node(broker_id), proc, f"broker {broker_id}", self.broker_state(broker_id))

    def resume_broker(self, broker_id: int) -> None:
        proc = self._proc(broker_id)
        self._resume(broker_node(broker_id), proc, f"broker {broker_id}", self.broker_state(broker_id))

    # -- the schema registry (kafkalab/registry/) ---------------------------------------------
    @property
    def schema_registry_url(self) -> str:
        """Confluent's REST API of this cluster's registry: "http://127.0.0.1:PORT"."""
        from kafkalab.registry import launcher
        return launcher.url(self)

    def kill_schema_registry(self) -> None:
        """SIGKILL the registry; its schemas are safe in the `_schemas` topic."""
        from kafkalab.registry import launcher
        launcher.kill(self)

    def restart_schema_registry(self, timeout: float = 30.0) -> None:
        """Start it again on the same port: it rebuilds its state by reading `_schemas`."""
        from kafkalab.registry import launcher
        launcher.restart(self, timeout)

    # -- the controller quorum ----------------------------------------------------------------
    def _controller_proc(self, controller_id: int) -> Any:
        if not self.quorum:
            raise KafkaLabError("this cluster has a single controller; start it with "
                                "Cluster(controllers=3) to kill, pause or restart controllers")
        if controller_id not in self.controller_ids:
            raise KafkaLabError(f"there is no controller {controller_id!r}: this cluster has "
                                f"controllers {self.controller_ids}")
        return self._procs[controller_node(controller_id)]

    def controller_state(self, controller_id: int) -> str:
        proc = self._controller_proc(controller_id)
        state = self._states[controller_node(controller_id)]
        if state in ("running", "paused") and not proc.is_alive():
            return "crashed"
        return state

    def kill_controller(self, controller_id: int) -> None:
        """SIGKILL a quorum controller; if it was active, the others elect a successor."""
        proc = self._controller_proc(controller_id)
        self._kill(controller_node(controller_id), proc, f"controller {controller_id}",
                   self.controller_state(controller_id), f"restart_controller({controller_id})")

    def stop_controller(self, controller_id: int, timeout: float = 10.0) -> None:
        """SIGTERM: an active controller resigns (EndQuorumEpoch) before it exits."""
        self._stop(controller_node(controller_id), self._controller_proc(controller_id),
                   f"controller {controller_id}", timeout)

    def restart_controller(self, controller_id: int) -> None:
        """Start a killed or stopped controller on its data dir: it reads its quorum-state and
        log, and rejoins as a follower (or wins an election)."""
        proc = self._controller_proc(controller_id)
        if proc.is_alive():
            raise KafkaLabError(f"controller {controller_id} is still running; "
                                f"kill_controller({controller_id}) first")
        node = controller_node(controller_id)
        with self._lock:  # an admin call on another thread may be using the old socket
            self._reset_admin(controller_id)
        self._start_process(node, "controller", self._args[node])
        self._record_event("restart", node)

    def pause_controller(self, controller_id: int) -> None:
        """SIGSTOP: a frozen active controller stops heartbeating its followers, which elect."""
        proc = self._controller_proc(controller_id)
        self._pause(controller_node(controller_id), proc, f"controller {controller_id}",
                    self.controller_state(controller_id))

    def resume_controller(self, controller_id: int) -> None:
        proc = self._controller_proc(controller_id)
        self._resume(controller_node(controller_id), proc, f"controller {controller_id}",
                     self.controller_state(controller_id))

    @property
    def active_controller(self) -> int | None:
        """Id of the active controller (the quorum's leader serving requests), None while
        there is none. From the controllers' own reports: the running controller that says it
        is active in the newest epoch (a cut-off ex-leader says so until it resigns)."""
        if not self.quorum:
            return None
        frame = self.metrics.frame("quorum") if self.metrics is not None else pd.DataFrame()
        if frame.empty:
            return None
        newest = frame.sort_values("time", kind="stable").drop_duplicates("controller_id", keep="last")
        best: tuple[int, int] | None = None
        for row in newest.itertuples():
            c = int(row.controller_id)
            if bool(row.active) and c in self.controller_ids and self.controller_state(c) == "running":
                if best is None or int(row.epoch) > best[0]:
                    best = (int(row.epoch), c)
        return None if best is None else best[1]

    def describe_quorum(self) -> pd.DataFrame:
        """A row per controller (newest report): controller, state, role, epoch, leader,
        active, high_watermark, log_end_offset."""
        frame = self.metrics.frame("quorum") if self.metrics is not None else pd.DataFrame()
        newest = {}
        if not frame.empty:
            for row in frame.sort_values("time", kind="stable").itertuples():
                newest[int(row.controller_id)] = row
        rows = []
        for c in self.controller_ids:
            r = newest.get(c)
            rows.append({"controller": c, "state": self.controller_state(c),
                         "role": r.role if r is not None else None,
                         "epoch": int(r.epoch) if r is not None else -1,
                         "leader": int(r.leader) if r is not None else -1,
                         "active": bool(r.active) if r is not None else False,
                         "high_watermark": int(r.high_watermark) if r is not None else -1,
                         "log_end_offset": int(r.log_end_offset) if r is not None else -1})
        return pd.DataFrame(rows, columns=["controller", "state", "role", "epoch", "leader", "active",
                                           "high_watermark", "log_end_offset"])

    def broker_state(self, broker_id: int) -> str:
        proc = self._proc(broker_id)
        state = self._states[broker_node(broker_id)]
        if state in ("running", "paused") and not proc.is_alive():
            return "crashed"
        return state

    def _apply_faults(self, event: str, detail: str) -> None:
        with self._lock:
            self._fault_pub.publish(self.faults)
            version = self.faults.version
        self._record_event(event, detail)
        # The table reaches processes asynchronously: return once every running broker says
        # it applies it, so that the next line of a lab already runs on the changed network.
        running = [b for b in self.broker_ids if self.broker_state(b) == "running"]

        def applied() -> bool:
            rows = self.metrics.brokers()
            if rows.empty or "faults_version" not in rows:
                return False
            rows = rows[rows.faults_version.notna()]
            newest = rows.groupby("broker")["faults_version"].max()
            return all(b in newest.index and newest[b] >= version for b in running)
        try:
            wait_until(applied, 3.0, "brokers to apply the new network faults")
        except TimeoutError:
            pass  # a broker cut from the collector cannot say so; the table still reaches it

    def partition(self, *groups: Iterable[int | str]) -> None:
        """Cut every link between nodes of different groups: partition([1], [2, 3])."""
        if len(groups) < 2:
            raise KafkaLabError("partition() needs at least two groups, e.g. partition([1], [2, 3])")
        named = [[self._node(x) for x in g] for g in groups]
        with self._lock:  # the republisher thread reads the table
            self.faults.partition(*named)
        self._apply_faults("cut", " | ".join(",".join(g) for g in named))

    def cut(self, a: int | str, b: int | str, one_way: bool = False) -> None:
        na, nb = self._node(a), self._node(b)
        with self._lock:  # the republisher thread reads the table
            self.faults.cut(na, nb, one_way=one_way)
        self._apply_faults("cut", f"{na} {'->' if one_way else '<->'} {nb}")

    def delay(self, a: int | str, b: int | str, ms: int, one_way: bool = False) -> None:
        na, nb = self._node(a), self._node(b)
        with self._lock:  # the republisher thread reads the table
            self.faults.delay(na, nb, ms, one_way=one_way)
        self._apply_faults("delay", f"{na} {'->' if one_way else '<->'} {nb}: {ms} ms")

    def isolate(self, x: int | str) -> None:
        node = self._node(x)
        with self._lock:  # the republisher thread reads the table
            self.faults.isolate(node, [n for n in self.node_names if n != node])
        self._apply_faults("cut", f"{node} isolated")

    def heal(self) -> None:
        with self._lock:  # the republisher thread reads the table
            self.faults.heal()
        self._apply_faults("heal", "all links restored")

    # -- description ------------------------------------------------------------------------
    def describe_topic(self, name: str, fresh: bool = True) -> pd.DataFrame:
        """A row per partition: partition, leader (-1 if none), leader_epoch, replicas, isr,
        high_watermark, log_end_offsets {broker: LEO}."""
        since = time.time()
        md = self._controller_metadata([name]).topics[0]
        if md.error_code != ErrorCode.none:
            raise KafkaError(md.error_code, f"topic {name!r}")
        if fresh:
            self._wait_fresh_metrics(since)
        rows = self.metrics.latest_replicas()
        out = []
        for p in sorted(md.partitions, key=lambda p: p.partition_index):
            pid = int(p.partition_index)
            mine = rows[(rows.topic == name) & (rows.partition == pid)] if not rows.empty else rows
            leos = {int(r.broker): int(r.log_end_offset) for r in mine.itertuples()
                    if self.broker_state(int(r.broker)) == "running"}
            lead = mine[mine.broker == int(p.leader_id)] if not mine.empty else mine
            hw = int(lead.iloc[-1].high_watermark) if not lead.empty else -1
            out.append({"partition": pid, "leader": int(p.leader_id), "leader_epoch": int(p.leader_epoch),
                        "replicas": [int(b) for b in p.replica_nodes], "isr": [int(b) for b in p.isr_nodes],
                        "high_watermark": hw, "log_end_offsets": leos})
        return pd.DataFrame(out, columns=["partition", "leader", "leader_epoch", "replicas", "isr",
                                          "high_watermark", "log_end_offsets"])

    def _wait_fresh_metrics(self, since: float) -> None:
        running = [b for b in self.broker_ids if self.broker_state(b) == "running"]

        def fresh() -> bool:
            rows = self.metrics.brokers()
            if rows.empty:
                return False
            newest = rows.groupby("broker")["time"].max()
            return all(b in newest.index and newest[b] >= since for b in running)
        try:
            wait_until(fresh, 3 * self.config["metrics.publish.interval.ms"] / 1000 + 1, "fresh metrics")
        except TimeoutError:
            pass  # a cut or paused broker publishes nothing: describe with what we have

    def describe_cluster(self) -> pd.DataFrame:
        """A row per broker: broker, state, fenced, pid, endpoint, kafka port."""
        try:
            md = self._controller_metadata([])
            unfenced = {int(b.node_id) for b in md.brokers}
        except KafkaError:
            unfenced = set()
        rows = []
        for b in self.broker_ids:
            proc = self._procs[broker_node(b)]
            rows.append({"broker": b, "state": self.broker_state(b), "fenced": b not in unfenced,
                         "pid": proc.pid, "endpoint": self.broker_endpoints[b],
                         "kafka_port": self._ports[b][1]})
        return pd.DataFrame(rows)

    # -- topic admin (Kafka's admin APIs: the controller decides, brokers apply) ----------------
    def _broker_call(self, broker_id: int, request: Any, timeout: float = 10.0) -> Any:
        """One request to one broker over the lab transport (as an AdminClient would send it)."""
        with self._lock:
            self._check_open()
            self._check_broker(broker_id)
            if broker_id not in self._broker_admins:  # one per broker: a ZeroMQ identity is reused
                self._broker_admins[broker_id] = RpcClient(self._ctx, "admin", broker_node(broker_id),
                                                           self.broker_endpoints[broker_id], self.faults)
            return self._broker_admins[broker_id].call(request, timeout)

    def describe_configs(self, topic: str | None = None, *, broker: int | None = None) -> pd.DataFrame:
        """A topic's (or a broker's) configs, a row each: name, value, source (topic, broker or
        default: where the value comes from), read_only - Kafka's DescribeConfigs."""
        from kio.schema.describe_configs.v4 import request as dc_req

        from kafkalab.broker.admin import BROKER_RESOURCE, TOPIC_RESOURCE
        if (topic is None) == (broker is None):
            raise KafkaLabError("describe_configs(topic) or describe_configs(broker=ID): name one of them")
        target = broker if broker is not None else self._any_running_broker()
        req = dc_req.DescribeConfigsRequest(resources=(dc_req.DescribeConfigsResource(
            resource_type=TOPIC_RESOURCE if topic is not None else BROKER_RESOURCE,
            resource_name=topic if topic is not None else str(broker), configuration_keys=None),),
            include_synonyms=False, include_documentation=True)
        result = self._broker_call(target, req).results[0]
        if result.error_code != ErrorCode.none:
            raise KafkaError(result.error_code, result.error_message or "DescribeConfigs failed")
        sources = {1: "topic", 4: "broker", 5: "default"}
        return pd.DataFrame([{"name": c.name, "value": c.value, "source": sources.get(int(c.config_source), "?"),
                              "read_only": bool(c.read_only), "doc": c.documentation or ""} for c in result.configs])

    def _any_running_broker(self) -> int:
        for b in self.broker_ids:
            if self.broker_state(b) == "running":
                return b
        raise KafkaLabError("no broker is running: restart one first")

    def alter_topic_config(self, name: str, config: dict[str, Any], *, timeout: float = 10.0) -> None:
        """Set topic configs (a value of None removes the override: back to the broker's default).
        The controller checks and records the change; every broker applies it to the topic's log
        (Kafka's IncrementalAlterConfigs). Returns once every running broker shows it."""
        from kio.schema.incremental_alter_configs.v1 import request as iac_req

        from kafkalab.broker.admin import TOPIC_RESOURCE
        from kafkalab.controller.topic_admin import DELETE, SET
        resolve({k: v for k, v in config.items() if v is not None}, TOPIC_CONFIGS, "topic")  # typos fail here
        req = iac_req.IncrementalAlterConfigsRequest(resources=(iac_req.AlterConfigsResource(
            resource_type=TOPIC_RESOURCE, resource_name=name, configs=tuple(
                iac_req.AlterableConfig(name=k, config_operation=DELETE if v is None else SET,
                                        value=None if v is None else _config_str(v)) for k, v in config.items())),),
            validate_only=False)
        result = self._call(req, timeout).responses[0]
        if result.error_code != ErrorCode.none:
            raise KafkaError(result.error_code, result.error_message or f"cannot alter topic {name!r}")
        self._record_event("topic_config", f"{name}: " + ", ".join(f"{k}={v}" for k, v in config.items()))
        wanted = {k: None if v is None else _config_str(v) for k, v in config.items()}

        def applied() -> bool:
            return all(self._topic_config_shown(b, name, wanted) for b in self.broker_ids
                       if self.broker_state(b) == "running")
        wait_until(applied, timeout, f"brokers to apply the new config of topic {name!r}")

    def _topic_config_shown(self, broker_id: int, name: str, wanted: dict[str, str | None]) -> bool:
        """Whether this broker's DescribeConfigs shows these overrides (None: no override)."""
        from kio.schema.describe_configs.v4 import request as dc_req

        from kafkalab.broker.admin import TOPIC_CONFIG, TOPIC_RESOURCE
        res = self._broker_call(broker_id, dc_req.DescribeConfigsRequest(resources=(dc_req.DescribeConfigsResource(
            resource_type=TOPIC_RESOURCE, resource_name=name, configuration_keys=tuple(wanted)),),
            include_synonyms=False, include_documentation=False)).results[0]
        got = {c.name: (c.value, int(c.config_source)) for c in res.configs}
        return all((got.get(k, (None, 0))[1] == TOPIC_CONFIG) == (v is not None)
                   and (v is None or got[k][0] == v) for k, v in wanted.items())

    def create_partitions(self, name: str, total: int, *, timeout: float = 10.0) -> None:
        """Grow topic `name` to `total` partitions (Kafka's CreatePartitions: partitions are only
        ever added - keys that hashed to one partition may now go to another)."""
        from kio.schema.create_partitions.v3 import request as cp_req
        req = cp_req.CreatePartitionsRequest(topics=(cp_req.CreatePartitionsTopic(name=name, count=total,
                                                                                   assignments=None),),
                                             timeout=datetime.timedelta(seconds=timeout), validate_only=False)
        result = self._call(req, timeout).results[0]
        if result.error_code != ErrorCode.none:
            raise KafkaError(result.error_code, result.error_message or f"cannot add partitions to {name!r}")
        self._record_event("partitions_created", f"{name}: {total} partitions")
        wait_until(lambda: self._topic_served(name), timeout, f"leaders of the new partitions of {name!r}")

    def delete_records(self, name: str, offsets: dict[int, int], *, timeout: float = 10.0) -> dict[int, int]:
        """Delete every record below `offsets[partition]` (-1: up to the high watermark) - Kafka's
        DeleteRecords, sent to each partition's leader. Returns each partition's new log start
        offset (its low watermark)."""
        from kio.schema.delete_records.v2 import request as dr_req
        md = self._controller_metadata([name]).topics[0]
        if md.error_code != ErrorCode.none:
            raise KafkaError(md.error_code, f"topic {name!r} does not exist")
        leaders = {int(p.partition_index): int(p.leader_id) for p in md.partitions}
        out: dict[int, int] = {}
        for partition, offset in offsets.items():
            if partition not in leaders:
                raise KafkaLabError(f"topic {name!r} has no partition {partition} (it has {len(leaders)})")
            if leaders[partition] < 0:
                raise KafkaError(ErrorCode.leader_not_available, f"{name}-{partition} has no leader now")
            req = dr_req.DeleteRecordsRequest(topics=(dr_req.DeleteRecordsTopic(name=name, partitions=(
                dr_req.DeleteRecordsPartition(partition_index=partition, offset=offset),)),),
                timeout=datetime.timedelta(seconds=timeout))
            result = self._broker_call(leaders[partition], req, timeout).topics[0].partitions[0]
            if result.error_code != ErrorCode.none:
                raise KafkaError(result.error_code, f"cannot delete records of {name}-{partition} below {offset}")
            out[partition] = int(result.low_watermark)
        self._record_event("delete_records", f"{name}: " + ", ".join(f"{p} < {o}" for p, o in out.items()))
        return out

    def elect_preferred_leaders(self) -> None:
        from kio.schema.elect_leaders.v2 import request as el_req
        self._call(el_req.ElectLeadersRequest(election_type=0, topic_partitions=None,
                                              timeout=datetime.timedelta(seconds=5)))

    # -- metrics helpers ---------------------------------------------------------------------
    def _set_state(self, node: str, state: str) -> None:
        self._states[node] = state
        self._record_state(node, state)
        verb = {"killed": "kill", "stopped": "stop", "paused": "pause", "running": "resume"}[state]
        self._record_event(verb, node, broker=int(node.split("-")[1]) if node.startswith("broker-") else None)

    def _record_state(self, node: str, state: str) -> None:
        if self.metrics is not None and node.startswith("broker-"):
            self.metrics.record("broker", {"time": time.time(), "node": node,
                                           "broker": int(node.split("-")[1]), "state": state})

    def _record_event(self, event: str, detail: str, **extra: Any) -> None:
        if self.metrics is not None:
            self.metrics.record("event", {"time": time.time(), "node": "cluster", "event": event,
                                          "detail": detail, **{k: v for k, v in extra.items() if v is not None}})

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._started else "not started")
        named = f" {self.name!r}" if self.name is not None else ""
        return (f"<Cluster{named} {self.num_brokers} brokers, profile={self.profile!r}, {state}, "
                f"data_dir={self.data_dir!r}>")


def _config_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return ",".join(map(str, v))
    return str(v)


def _not_controller(resp: Any, asked: int) -> bool:
    """Whether a quorum controller's answer means "ask the active controller instead"."""
    if hasattr(resp, "controller_id") and hasattr(resp, "brokers"):  # Metadata
        return int(resp.controller_id) != asked
    for field in ("topics", "responses", "results"):
        items = getattr(resp, field, None)
        if items and getattr(items[0], "error_code", None) == ErrorCode.not_controller:
            return True
    return getattr(resp, "error_code", None) == ErrorCode.not_controller
