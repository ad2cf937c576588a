"""The broker process: wiring only. Builds the broker's managers, hands them the channel and
the clock, and dispatches requests (Kafka's BrokerServer and KafkaApis).

One thread, one event loop. Who does what:
- `ControllerChannelManager` (controller_channel.py): every request to the controller(s);
- `BrokerLifecycleManager` (lifecycle.py): registration, heartbeats, controlled shutdown;
- `BrokerMetadataListener` (metadata_listener.py): the metadata long-poll, applied to the
  image and the ReplicaManager;
- `ReplicaFetcherManager` (replica_fetcher.py): one fetch session per leader followed;
- `ProducerIdManager` (producer_id_manager.py): producer id blocks from the controller;
- `ReplicaManager` (replica_manager.py): the replicas, Produce/Fetch, the purgatory, ISR changes;
- the services (groups, transactions, admin) get a `BrokerContext`.
"""

from __future__ import annotations

import datetime
import logging
import signal
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
from kio.schema.errors import ErrorCode

from kafkalab.broker.admin import AdminService
from kafkalab.broker.context import BrokerContext
from kafkalab.broker.controller_channel import ControllerChannelManager
from kafkalab.broker.groups import GroupService
from kafkalab.broker.lifecycle import BrokerLifecycleManager
from kafkalab.broker.metadata_listener import BrokerMetadataListener
from kafkalab.broker.metrics_rows import broker_row, replica_row, replica_signature
from kafkalab.broker.producer_id_manager import ProducerIdManager
from kafkalab.broker.replica_fetcher import ReplicaFetcherManager
from kafkalab.broker.replica_manager import NO_THROTTLE, TP, ReplicaManager
from kafkalab.broker.transactions import TransactionService
from kafkalab.clock import SYSTEM_CLOCK, Clock
from kafkalab.metadata.image import MetadataImage
from kafkalab.metadata.responses import metadata_response
from kafkalab.metrics_publisher import BROKER_NOT_NEWS, publisher_for
from kafkalab.metrics_publisher import HEARTBEAT_S as METRICS_HEARTBEAT_S
from kafkalab.nodes import broker_node, controller_node
from kafkalab.process import die_with_parent, parent_alive
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import lazy_schema, response_class
from kafkalab.transport.channel import Channel
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.kafka_listener import KafkaListener
from kafkalab.transport.loop import EventLoop
from kafkalab.transport.rpc import Envelope, FaultSubscriber, RpcClient, RpcServer

reg_req = lazy_schema("kio.schema.broker_registration.v4.request")
ct_req = lazy_schema("kio.schema.create_topics.v7.request")

log = logging.getLogger(__name__)

# ISR changes and the purgatory are looked at when their time comes, and after each follower
# fetch; never more often than this.
REPLICA_CHECK_MIN_S = 0.05
# Kafka leaves most fsyncs to the OS and checkpoints recovery points periodically; here every
# few seconds, so a broker restarted after a kill rescans little.
FLUSH_INTERVAL_S = 5.0
CONTROLLED_SHUTDOWN_MAX_S = 5.0
HEARTBEAT_CHANNEL_SUFFIX = "/heartbeat"  # a sender "broker-1/heartbeat" is broker-1 to the fault table
CREATE_TOPICS_TIMEOUT = datetime.timedelta(seconds=5)


class BrokerServer:
    def __init__(self, *, broker_id: int, port: int, kafka_port: int, data_dir: str,
                 config: dict[str, Any], controller_endpoints: dict[int, str], fault_endpoint: str,
                 metrics_endpoint: str | None, faults_json: str | None = None, clock: Clock = SYSTEM_CLOCK,
                 incarnation_id: Callable[[], uuid.UUID] = uuid.uuid4):
        self.broker_id = broker_id
        self.node = broker_node(broker_id)
        self.config = config
        self.kafka_port = kafka_port
        self.clock = clock
        self.ctx = zmq.Context()
        self.faults = FaultTable.from_json(faults_json) if faults_json else FaultTable()
        self.loop = EventLoop(clock)
        self.server = RpcServer(self.ctx, self.node, port, self.faults)
        self.fault_sub = FaultSubscriber(self.ctx, fault_endpoint, self.faults)
        self.metrics = publisher_for(self.ctx, metrics_endpoint, self.node)
        self.rm = ReplicaManager(broker_id, data_dir, config)
        self.rm.on_event = self._event
        self.image = MetadataImage()
        self.latencies: deque[float] = deque(maxlen=1000)  # the latest requests' latencies, ms
        self._replicas_checked = 0.0  # loop time of the last _check_replicas
        # Per replica and for "broker": the signature of the last row sent and when (monotonic).
        self._said: dict[Any, tuple[tuple[Any, ...], float]] = {}

        # The managers, wired to one another.
        self.controller = ControllerChannelManager(
            self._controller_channels(controller_endpoints), clock,
            # Heartbeats are answered at once, so this long a silence means the controller is gone
            # (whatever the metadata long poll's wait: an idle cluster's polls are long); well
            # inside the session, so that the next controller hears from us before it ends.
            silence_s=min(3 * config["broker.heartbeat.interval.ms"], config["broker.session.timeout.ms"] / 2) / 1000,
            # Their answers are read at the next wake-up instead of waking the broker each.
            heartbeat_channels=self._controller_channels(controller_endpoints, suffix=HEARTBEAT_CHANNEL_SUFFIX))
        self.lifecycle = BrokerLifecycleManager(
            broker_id=broker_id, controller=self.controller, metadata_offset=lambda: self.image.offset,
            listeners=(
                reg_req.Listener(name="ZMQ", host="127.0.0.1", port=self.server.port, security_protocol=0),
                reg_req.Listener(name="PLAINTEXT", host="127.0.0.1", port=kafka_port, security_protocol=0)),
            call_later=self.loop.call_later, incarnation_id=incarnation_id)
        self.metadata = BrokerMetadataListener(
            broker_id=broker_id, controller=self.controller, image=self.image, rm=self.rm, clock=clock,
            max_wait_ms=config["metadata.fetch.max.wait.ms"], call_later=self.loop.call_later)
        self.fetchers = ReplicaFetcherManager(
            rm=self.rm, image=self.image, config=config, clock=clock, call_at=self.loop.call_at,
            connect=self._connect)
        self.producer_ids = ProducerIdManager(broker_id=broker_id, controller=self.controller,
                                              broker_epoch=lambda: self.lifecycle.broker_epoch)
        self.controller.on_follow = self._controller_changed
        self.lifecycle.on_registered = self.metadata.start
        self.lifecycle.ensure_metadata_fetch = self.metadata.ensure_fetching
        self.lifecycle.on_shut_down = self.loop.stop
        self.metadata.on_applied = self._metadata_applied

        # The services, and the Kafka TCP listener that serves them too.
        context = BrokerContext(
            broker_id=broker_id, node=self.node, config=config, clock=clock, loop=self.loop, faults=self.faults,
            rm=self.rm, image=self.image, metrics=self.metrics, controller=self.controller,
            producer_ids=self.producer_ids, connect=self._connect, handle=self.handle)
        self.groups = GroupService(context)
        self.transactions = TransactionService(context)
        self.admin = AdminService(context, self.groups, self.transactions)
        self.kafka_listener = KafkaListener(self, kafka_port)

        self.loop.add_socket(self.server.socket, self._on_requests)
        self.loop.add_due_source(self.server.next_due, self._on_requests)
        self.controller.attach(self.loop)
        self.loop.add_socket(self.fault_sub.socket, self._on_faults)
        self.loop.call_every(config["broker.heartbeat.interval.ms"] / 1000, self.lifecycle.heartbeat)
        self.loop.add_due_source(self._replica_check_due, self._check_replicas)
        self.loop.call_every(config["metrics.publish.interval.ms"] / 1000, self._publish)
        self.loop.call_every(config["log.retention.check.interval.ms"] / 1000,
                             lambda: self.rm.clean_logs(clock.wall_ms()))
        self.loop.call_every(FLUSH_INTERVAL_S, self.rm.flush_logs)
        self.loop.call_every(config["producer.id.expiration.check.interval.ms"] / 1000,
                             lambda: self.rm.expire_producers(clock.wall_ms()))
        self.lifecycle.register()

    # -- channels ----------------------------------------------------------------------------
    def _controller_channels(self, voters: dict[int, str], suffix: str = "") -> dict[int, Channel]:
        """Every controller voter by id: one (id 0, node "controller") or a quorum's."""
        return {c: Channel(RpcClient(self.ctx, self.node + suffix, controller_node(c), ep, self.faults),
                           self.clock, self.config["request.timeout.ms"] / 1000)
                for c, ep in voters.items()}

    def _connect(self, broker_id: int, endpoint: str, *, suffix: str = "", fail_fast_on_cut: bool = False) -> Channel:
        client = RpcClient(self.ctx, f"{self.node}{suffix}", broker_node(broker_id), endpoint, self.faults)
        channel = Channel(client, self.clock, self.config["request.timeout.ms"] / 1000,
                          fail_fast_on_cut=fail_fast_on_cut)
        channel.attach(self.loop)
        return channel

    def _controller_changed(self) -> None:
        """A new controller is followed: learn from it now, and heartbeat it before its session
        for this broker (fresh when it became active) runs out."""
        self.metadata.refetch()
        self.lifecycle.heartbeat_soon()

    def _on_faults(self) -> None:
        changed = self.fault_sub.drain()
        if self.fault_sub.take_publish_request():
            self._publish(force=True)
        if not changed:
            return
        self._publish_broker()  # tells the Cluster this broker now applies the new table
        # A link came back (or went): requests lost on a cut link would otherwise wait for
        # request.timeout.ms. Like TCP retransmitting after a heal, send them again now.
        self.metadata.refetch()
        self.fetchers.restart()

    def _metadata_applied(self, changes: dict[TP, str]) -> None:
        self._propose_isr_changes(self.clock.wall_ms())
        self.fetchers.update()
        self.producer_ids.answer_waiting()
        self.groups.metadata_applied()  # coordinators load (or drop) the partitions they now lead (or not)
        self.transactions.metadata_applied()
        if changes:
            self._publish()  # a new leader shows on the charts now, not at the next tick

    # -- requests --------------------------------------------------------------------------
    def _on_requests(self) -> None:
        for env in self.server.receive(self.clock.monotonic()):
            self.server.serve(env, self._handle)  # a broker survives any single bad request

    def _handle(self, env: Envelope) -> None:
        start = self.clock.monotonic()

        def reply(resp: Any) -> None:
            self.latencies.append((self.clock.monotonic() - start) * 1000)
            self.server.reply(env, resp)

        self.handle(env.api_key, env.version, env.body, reply)

    def handle(self, api_key: int, version: int, req: Any, reply: Any, *, zero_copy: bool = False) -> bool:
        """Serve one request from either transport; `reply(response)` may be called later
        (purgatory). zero_copy: Fetch responses carry file regions for sendfile. Returns
        False for an API this broker does not serve."""
        now = self.clock.wall_ms()
        # The transaction service first: it claims FindCoordinator only for transactional ids.
        if self.transactions.accepts(api_key, req):
            self.transactions.handle(api_key, version, req, reply, now)
        elif api_key in self.groups.api_keys:
            self.groups.handle(api_key, version, req, reply, now)
        elif api_key == ApiKey.PRODUCE:
            self.rm.produce(req, now, reply)
        elif api_key == ApiKey.FETCH:
            self.rm.fetch(req, now, reply, zero_copy=zero_copy and self.config["fetch.sendfile.enable"])
            if int(req.replica_id) >= 0:  # a follower caught up may join the ISR now
                self._propose_isr_changes(now, [(str(t.topic), int(p.partition)) for t in req.topics
                                                for p in t.partitions])
        elif api_key == ApiKey.LIST_OFFSETS:
            reply(self.rm.list_offsets(req))
        elif api_key == ApiKey.METADATA:
            reply(self._metadata(req, response_class(ApiKey.METADATA, version)))
        elif api_key == ApiKey.OFFSET_FOR_LEADER_EPOCH:
            reply(self.rm.offset_for_leader_epoch(req))
        elif api_key == ApiKey.WRITE_TXN_MARKERS:
            self.rm.write_txn_markers(req, response_class(ApiKey.WRITE_TXN_MARKERS, version), now, reply)
        elif api_key == ApiKey.INIT_PRODUCER_ID:
            cls = response_class(ApiKey.INIT_PRODUCER_ID, version)
            self.producer_ids.generate(lambda pid: reply(cls(
                throttle_time=NO_THROTTLE, error_code=ErrorCode.none, producer_id=pid, producer_epoch=0)))
        elif api_key in (ApiKey.CREATE_TOPICS, ApiKey.DELETE_TOPICS):  # the controller's: forward
            self.controller.send(req, reply)
        elif api_key in self.admin.api_keys:
            self.admin.handle(api_key, version, req, reply, now)
        else:
            log.warning("%s: api key %d is not supported yet; ignored", self.node, api_key)
            return False
        return True

    def _metadata(self, req: Any, resp_cls: Any) -> Any:
        missing: dict[str, ErrorCode] = {}
        if req.topics and req.allow_auto_topic_creation and self.config["auto.create.topics.enable"]:
            new = [str(t.name) for t in req.topics if t.name and str(t.name) not in self.image.topics]
            if new:
                rf = min(self.config["default.replication.factor"], max(1, len(self.image.live_brokers())))
                self.controller.send(ct_req.CreateTopicsRequest(
                    topics=tuple(ct_req.CreatableTopic(name=n, num_partitions=self.config["num.partitions"],
                                                       replication_factor=rf, assignments=(), configs=())
                                 for n in new), timeout=CREATE_TOPICS_TIMEOUT), lambda resp: None)
                missing = {n: ErrorCode.leader_not_available for n in new}
        return metadata_response(self.image, req, resp_cls, controller_id=-1, missing=missing)

    # -- timers ----------------------------------------------------------------------------
    def _replica_check_due(self, now: float) -> float | None:
        due_ms = self.rm.next_check_ms()
        if due_ms is None:
            return None
        return max(now + (due_ms - self.clock.wall_ms()) / 1000, self._replicas_checked + REPLICA_CHECK_MIN_S)

    def _check_replicas(self) -> None:
        """Complete what the purgatory's deadlines release; send the ISR changes led
        partitions propose."""
        self._replicas_checked = self.clock.monotonic()
        now = self.clock.wall_ms()
        self.rm.try_complete(now)
        self._propose_isr_changes(now)

    def _propose_isr_changes(self, now: int, tps: list[TP] | None = None) -> None:
        """Send the controller the AlterPartition requests the led partitions propose."""
        for part, req in self.rm.alter_partition_requests(self.lifecycle.broker_epoch, now, tps):
            self.controller.send(
                req, lambda resp, part=part: self.rm.alter_partition_answered(part, resp, self.clock.wall_ms()),
                lambda _error, part=part: self.rm.alter_partition_answered(part, None, self.clock.wall_ms()))

    def _event(self, event: str, detail: dict[str, Any]) -> None:
        self.metrics.publish("event", {"event": event, "broker": self.broker_id, **detail,
                                       "detail": str(detail.get("detail", ""))})

    def _publish(self, force: bool = False) -> None:
        """One tick's rows, as one message: the replicas and this broker's row if they changed
        or their keep-alive is due, its coordinators' groups and transactions (which the
        publisher filters likewise); force: all of them (the Cluster asked)."""
        now, mono = self.clock.wall_ms(), self.clock.monotonic()
        if len(self._said) > len(self.rm.partitions) + 1:  # some were deleted or moved away
            self._said = {k: v for k, v in self._said.items() if k in self.rm.partitions or k == "broker"}
        with self.metrics.batch(force=force):
            for tp, part in self.rm.partitions.items():
                if self._worth_a_row(tp, replica_signature(part), mono, force):
                    self.metrics.publish("replica", replica_row(self.broker_id, part, now))
            if self._worth_a_row("broker", self._broker_signature(), mono, force):
                self._publish_broker()
            self.groups.publish_state()
            self.transactions.publish_state()

    def _worth_a_row(self, key: Any, signature: tuple[Any, ...], mono: float, force: bool) -> bool:
        """Whether to build and send a row whose content `signature` stands for: it changed,
        its keep-alive is due, or force. Building rows to find them unchanged was most of an
        idle broker's metrics cost."""
        said = self._said.get(key)
        if not force and said is not None and said[0] == signature and mono - said[1] < METRICS_HEARTBEAT_S:
            return False
        self._said[key] = (signature, mono)
        return True

    def _broker_state(self) -> dict[str, Any]:
        """The broker row's fields besides its counters and latencies."""
        return {"fenced": self.lifecycle.fenced, "faults_version": self.faults.version,
                "metadata_offset": self.image.offset, "rpc_malformed_requests": self.server.malformed,
                "rpc_request_errors": self.server.request_errors}

    def _broker_signature(self) -> tuple[Any, ...]:
        """What the broker row says but for what the replicas' long polls move (not news)."""
        return (*self._broker_state().values(),
                *(v for k, v in self.rm.counters.items() if k not in BROKER_NOT_NEWS))

    def _publish_broker(self) -> None:
        self.metrics.publish("broker", broker_row(
            self.broker_id, counters=self.rm.counters, latencies_ms=self.latencies, **self._broker_state()))

    def shutdown_gracefully(self) -> None:
        """SIGTERM: controlled shutdown, moving leadership away before exiting."""
        self.lifecycle.begin_controlled_shutdown()
        self.loop.call_later(CONTROLLED_SHUTDOWN_MAX_S, self.loop.stop)

    def close(self) -> None:
        # The context's term() waits for every socket: close the services' first.
        for service in (self.transactions, self.groups, self.kafka_listener):
            try:
                service.close()
            except Exception:
                log.exception("%s: closing %s failed", self.node, type(service).__name__)
        self.rm.close()
        self.fetchers.close()
        self.server.close()
        self.controller.close()
        self.fault_sub.close()
        self.metrics.close()
        self.ctx.term()


def broker_main(*, parent_pid: int, **kwargs: Any) -> None:
    """Entry point of a broker process."""
    die_with_parent(parent_pid)
    logging.basicConfig(level=logging.WARNING, format=f"broker-{kwargs['broker_id']} %(levelname)s %(message)s")
    server = BrokerServer(**kwargs)
    signal.signal(signal.SIGTERM, lambda *_: server.loop.call_later(0, server.shutdown_gracefully))
    server.loop.call_every(0.5, lambda: parent_alive(parent_pid) or server.loop.stop())
    try:
        server.loop.run_forever()
    finally:
        server.close()
