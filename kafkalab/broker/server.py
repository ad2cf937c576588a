"""The broker process: wires the ReplicaManager to ZeroMQ, the controller and the followers.

One thread, one event loop: client and follower requests on the RPC socket, heartbeats and a
metadata long-poll to the controller, one fetcher per leader this broker follows, periodic ISR
checks and metrics.
"""

from __future__ import annotations

import datetime
import importlib.util
import logging
import signal
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import zmq
from kio.schema.allocate_producer_ids.v0.request import AllocateProducerIdsRequest
from kio.schema.alter_partition.v2 import request as ap_req
from kio.schema.broker_heartbeat.v2.request import BrokerHeartbeatRequest
from kio.schema.broker_registration.v4 import request as reg_req
from kio.schema.create_topics.v7 import request as ct_req
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fetch_req

from kafkalab.broker.replica_manager import NO_THROTTLE, TP, ReplicaManager
from kafkalab.controller.requests import metadata_response
from kafkalab.metadata.image import NO_LEADER, MetadataImage
from kafkalab.metadata.replay import apply_batches
from kafkalab.metadata.topic import METADATA_TOPIC
from kafkalab.metrics_publisher import publisher_for
from kafkalab.nodes import broker_node, controller_node
from kafkalab.process import die_with_parent, parent_alive
from kafkalab.protocol.apis import response_class
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.loop import EventLoop
from kafkalab.transport.rpc import Envelope, FaultSubscriber, RpcClient, RpcServer

log = logging.getLogger(__name__)


def _ms() -> int:
    return int(time.time() * 1000)


def _td(ms: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=ms)



@dataclass
class Fetcher:
    """The follower's fetch session with one leader."""

    leader: int
    client: RpcClient
    partitions: set[TP] = field(default_factory=set)
    in_flight: int | None = None
    sent_at: float = 0.0
    backoff_until: float = 0.0


class BrokerServer:
    def __init__(self, *, broker_id: int, port: int, kafka_port: int, data_dir: str,
                 config: dict[str, Any], controller_endpoints: dict[int, str], fault_endpoint: str,
                 metrics_endpoint: str | None, faults_json: str | None = None):
        self.broker_id = broker_id
        self.node = broker_node(broker_id)
        self.config = config
        self.kafka_port = kafka_port
        self.ctx = zmq.Context()
        self.faults = FaultTable.from_json(faults_json) if faults_json else FaultTable()
        self.loop = EventLoop()
        self.server = RpcServer(self.ctx, self.node, port, self.faults)
        # The controllers (one voter, id 0, node "controller"; or a quorum): we follow the active one.
        self.controllers = {c: RpcClient(self.ctx, self.node, controller_node(c), ep, self.faults)
                            for c, ep in sorted(controller_endpoints.items())}
        self.controller_id = next(iter(self.controllers))
        self._controller_heard = time.monotonic()
        # Heartbeats are answered at once, so this long a silence means the controller is gone.
        self._controller_silence_s = max(3 * config["broker.heartbeat.interval.ms"],
                                         1.5 * config["metadata.fetch.max.wait.ms"]) / 1000
        self.fault_sub = FaultSubscriber(self.ctx, fault_endpoint, self.faults)
        self.metrics = publisher_for(self.ctx, metrics_endpoint, self.node)
        self.rm = ReplicaManager(broker_id, data_dir, config)
        self.rm.on_event = self._event
        self.image = MetadataImage()
        self.broker_epoch = -1
        self.registered = False
        self.fenced = True
        self.want_shut_down = False
        # (controller id, correlation id) -> callback(response)
        self.controller_calls: dict[tuple[int, int], Any] = {}
        self.metadata_fetch_cid: tuple[int, int] | None = None
        self.fetchers: dict[int, Fetcher] = {}
        self.producer_ids: list[int] = []  # [next, end) of this broker's block
        self.pending_init_pid: list[tuple[int, Any]] = []
        self.latencies: list[float] = []
        self._allocating = False

        # Group coordination (kafkalab.broker.groups) and the Kafka TCP listener
        # (kafkalab.transport.kafka_listener) plug in here when present.
        self.groups: Any = _optional_groups(self)
        self.transactions: Any = _optional_transactions(self)
        from kafkalab.broker.admin import AdminService
        self.admin = AdminService(self)
        self.kafka_listener: Any = _optional_kafka_listener(self, kafka_port)
        self.loop.add_socket(self.server.socket, self._on_requests)
        self.loop.add_due_source(self.server.next_due, self._on_requests)
        for c, client in self.controllers.items():
            self.loop.add_socket(client.socket, lambda c=c: self._on_controller(c))
            self.loop.add_due_source(client.next_due, lambda c=c: self._on_controller(c))
        self.loop.add_socket(self.fault_sub.socket, self._on_faults)
        self.loop.call_every(config["broker.heartbeat.interval.ms"] / 1000, self._heartbeat)
        self.loop.call_every(0.05, self._tick)
        self.loop.call_every(config["metrics.publish.interval.ms"] / 1000, self._publish)
        self.loop.call_every(config["log.retention.check.interval.ms"] / 1000, self._clean)
        # Kafka leaves most fsyncs to the OS and checkpoints recovery points periodically;
        # here every few seconds, so a broker restarted after a kill rescans little.
        self.loop.call_every(5.0, self.rm.flush_logs)
        self.loop.call_every(config["producer.id.expiration.check.interval.ms"] / 1000,
                             lambda: self.rm.expire_producers(_ms()))
        self._register()

    def _on_faults(self) -> None:
        if not self.fault_sub.drain():
            return
        self._publish_broker()  # tells the Cluster this broker now applies the new table
        # A link came back (or went): requests lost on a cut link would otherwise wait for
        # request.timeout.ms. Like TCP retransmitting after a heal, send them again now.
        if self.metadata_fetch_cid is not None:
            self.controllers[self.metadata_fetch_cid[0]].forget(self.metadata_fetch_cid[1])
            self.controller_calls.pop(self.metadata_fetch_cid, None)
            self.metadata_fetch_cid = None
            if self.registered:
                self._fetch_metadata()
        for f in self.fetchers.values():
            if f.in_flight is not None:
                f.client.forget(f.in_flight)
                f.in_flight = None
        self._send_fetches()

    # -- controller ------------------------------------------------------------------------
    @property
    def controller(self) -> RpcClient:
        """The client of the controller this broker follows (the active one, in a quorum)."""
        return self.controllers[self.controller_id]

    def _call_controller(self, request: Any, callback: Any) -> None:
        cid = self.controller.send(request)
        self.controller_calls[(self.controller_id, cid)] = callback

    def _on_controller(self, controller_id: int) -> None:
        for cid, resp in self.controllers[controller_id].receive(time.monotonic()):
            cb = self.controller_calls.pop((controller_id, cid), None)
            if cb is not None:
                if controller_id == self.controller_id:
                    self._controller_heard = time.monotonic()
                try:
                    cb(resp)
                except Exception:
                    log.exception("%s: failed to handle controller response", self.node)

    def _drop_controller_call(self, key: tuple[int, int]) -> None:
        """Give up on a controller request (timed out, or sent to a controller we left)."""
        cb = self.controller_calls.pop(key, None)
        if cb == self._on_metadata and self.metadata_fetch_cid == key:
            self.metadata_fetch_cid = None
        if cb == self._on_producer_ids:
            self._allocating = False

    def _follow_controller(self, target: int | None) -> None:
        """Turn to controller `target` (None: the next one in turn). Requests in
        flight to the old one are given up as if they had timed out; the new active
        controller knows this broker's committed registration and gives it a fresh session."""
        ids = sorted(self.controllers)
        if target not in self.controllers:
            target = ids[(ids.index(self.controller_id) + 1) % len(ids)]
        self._controller_heard = time.monotonic()
        old = self.controller_id
        if target == old:
            return
        for key in [k for k in self.controller_calls if k[0] == old]:
            self.controllers[old].forget(key[1])
            self._drop_controller_call(key)
        self.controller_id = target
        if self.registered and self.metadata_fetch_cid is None:
            self._fetch_metadata()

    def _register(self) -> None:
        listeners = (
            reg_req.Listener(name="ZMQ", host="127.0.0.1", port=self.server.port, security_protocol=0),
            reg_req.Listener(name="PLAINTEXT", host="127.0.0.1", port=self.kafka_port, security_protocol=0),
        )
        req = reg_req.BrokerRegistrationRequest(
            broker_id=self.broker_id, cluster_id="kafkalab", incarnation_id=uuid.uuid4(),
            listeners=listeners, features=(), rack=None)
        self._call_controller(req, self._on_registered)
        self.registered = False

    def _on_registered(self, resp: Any) -> None:
        if resp.error_code == ErrorCode.not_controller:
            self._follow_controller(None)  # not active: the next controller may be
            self.loop.call_later(0.05, self._register)
            return
        if resp.error_code != ErrorCode.none:
            self.loop.call_later(0.2, self._register)
            return
        self.broker_epoch = int(resp.broker_epoch)
        self.registered = True
        self._fetch_metadata()

    def _heartbeat(self) -> None:
        # Requests the controller never answered (cut, paused) are forgotten after a timeout.
        now = time.monotonic()
        for c, client in self.controllers.items():
            for cid in client.expire(now, self.config["request.timeout.ms"] / 1000):
                self._drop_controller_call((c, cid))
        if now - self._controller_heard > self._controller_silence_s:
            self._follow_controller(None)  # killed, paused or cut off: try the next one
        if not self.registered:
            if self._on_registered not in self.controller_calls.values():
                self._register()
            return
        req = BrokerHeartbeatRequest(broker_id=self.broker_id, broker_epoch=self.broker_epoch,
                                     current_metadata_offset=self.image.offset, want_fence=False,
                                     want_shut_down=self.want_shut_down)
        self._call_controller(req, self._on_heartbeat)
        if self.metadata_fetch_cid is None:
            self._fetch_metadata()

    def _on_heartbeat(self, resp: Any) -> None:
        if resp.error_code == ErrorCode.not_controller:
            # The metadata fetch's answer names the active controller.
            if self.metadata_fetch_cid is None:
                self._fetch_metadata()
            return
        if resp.error_code == ErrorCode.stale_broker_epoch:
            self._register()
            return
        self.fenced = bool(resp.is_fenced)
        if self.want_shut_down and resp.should_shut_down:
            self.loop.stop()

    def _fetch_metadata(self) -> None:
        req = fetch_req.FetchRequest(
            replica_id=self.broker_id, max_wait=_td(self.config["metadata.fetch.max.wait.ms"]),
            min_bytes=1, topics=(fetch_req.FetchTopic(topic=METADATA_TOPIC, partitions=(
                fetch_req.FetchPartition(partition=0, fetch_offset=self.image.offset,
                                         partition_max_bytes=1 << 20),)),),
            forgotten_topics_data=())
        self.metadata_fetch_cid = (self.controller_id, self.controller.send(req))
        self.controller_calls[self.metadata_fetch_cid] = self._on_metadata

    def _on_metadata(self, resp: Any) -> None:
        self.metadata_fetch_cid = None
        part = resp.responses[0].partitions[0]
        if part.error_code == ErrorCode.not_controller:
            # A quorum controller that is not active says who leads (-1: an election is on).
            hint = int(part.current_leader.leader_id)
            if hint >= 0 and hint != self.controller_id:
                self._follow_controller(hint)
            else:
                self.loop.call_later(0.05, lambda: self._retry_metadata(rotate=hint < 0))
            return
        data = part.records or b""
        if data:
            apply_batches(bytes(data), self.image, self.image.offset)
            self._metadata_changed()
        self._fetch_metadata()

    def _retry_metadata(self, rotate: bool) -> None:
        if rotate:
            self._follow_controller(None)
        if self.registered and self.metadata_fetch_cid is None:
            self._fetch_metadata()

    def _metadata_changed(self) -> None:
        now = _ms()
        changes = self.rm.apply_metadata(self.image, now)
        self._update_fetchers()
        self._answer_init_pid()
        if changes:
            self._publish()  # a new leader shows on the charts now, not at the next tick

    # -- follower fetchers -----------------------------------------------------------------
    def _update_fetchers(self) -> None:
        wanted: dict[int, set[TP]] = {}
        for tp, part in self.rm.partitions.items():
            if not part.is_leader and part.leader != NO_LEADER:
                wanted.setdefault(part.leader, set()).add(tp)
        for leader, tps in wanted.items():
            f = self.fetchers.get(leader)
            reg = self.image.brokers.get(leader)
            if f is None and reg is not None:
                client = RpcClient(self.ctx, self.node, broker_node(leader), reg.endpoint, self.faults)
                f = self.fetchers[leader] = Fetcher(leader, client)
                self.loop.add_socket(client.socket, lambda f=f: self._on_fetch_response(f))
                self.loop.add_due_source(client.next_due, lambda f=f: self._on_fetch_response(f))
            if f is not None:
                f.partitions = tps
        for leader, f in self.fetchers.items():
            if leader not in wanted:
                f.partitions = set()
        self._send_fetches()

    def _send_fetches(self) -> None:
        now = time.monotonic()
        for f in self.fetchers.values():
            if f.in_flight is not None and now - f.sent_at > self.config["request.timeout.ms"] / 1000:
                f.client.forget(f.in_flight)
                f.in_flight = None
            if f.in_flight is not None or not f.partitions or now < f.backoff_until:
                continue
            req = self.rm.follower_fetch_request(f.partitions, self.config)
            if req is None:
                continue
            f.in_flight = f.client.send(req)
            f.sent_at = now

    def _on_fetch_response(self, f: Fetcher) -> None:
        now_ms = _ms()
        for cid, resp in f.client.receive(time.monotonic()):
            if cid != f.in_flight:
                continue
            f.in_flight = None
            failed = self.rm.apply_fetch_response(f.leader, resp, now_ms)
            if failed:
                f.backoff_until = time.monotonic() + self.config["replica.fetch.backoff.ms"] / 1000
        self._send_fetches()

    # -- requests --------------------------------------------------------------------------
    def _on_requests(self) -> None:
        for env in self.server.receive(time.monotonic()):
            self.server.serve(env, self._handle)  # a broker survives any single bad request

    def _reply(self, env: Envelope) -> Any:
        start = time.monotonic()

        def done(resp: Any) -> None:
            self.latencies.append((time.monotonic() - start) * 1000)
            self.server.reply(env, resp)
        return done

    def _handle(self, env: Envelope) -> None:
        self.handle(env.api_key, env.version, env.body, self._reply(env))

    def handle(self, api_key: int, version: int, req: Any, reply: Any, *, zero_copy: bool = False) -> bool:
        """Serve one request from either transport; `reply(response)` may be called later
        (purgatory). zero_copy: Fetch responses carry file regions for sendfile. Returns
        False for an API this broker does not serve."""
        now = _ms()
        # The transaction service first: it claims FindCoordinator only for transactional ids.
        if self.transactions is not None and self.transactions.accepts(api_key, req):
            self.transactions.handle(api_key, version, req, reply, now)
        elif self.groups is not None and api_key in self.groups.api_keys:
            self.groups.handle(api_key, version, req, reply, now)
        elif api_key == 0:
            self.rm.produce(req, now, reply)
            self._send_fetches()
        elif api_key == 1:
            self.rm.fetch(req, now, reply, zero_copy=zero_copy and self.config["fetch.sendfile.enable"])
        elif api_key == 2:
            reply(self.rm.list_offsets(req))
        elif api_key == 3:
            reply(self._metadata(req, response_class(3, version)))
        elif api_key == 23:
            reply(self.rm.offset_for_leader_epoch(req))
        elif api_key == 27:
            self.rm.write_txn_markers(req, response_class(27, version), now, reply)
        elif api_key == 22:
            self.pending_init_pid.append((version, reply))
            self._answer_init_pid()
        elif api_key in (19, 20):  # CreateTopics / DeleteTopics are the controller's: forward
            self._call_controller(req, reply)
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
                self._call_controller(ct_req.CreateTopicsRequest(
                    topics=tuple(ct_req.CreatableTopic(name=n, num_partitions=self.config["num.partitions"],
                                                       replication_factor=rf, assignments=(), configs=())
                                 for n in new), timeout=_td(5000)), lambda resp: None)
                missing = {n: ErrorCode.leader_not_available for n in new}
        return metadata_response(self.image, req, resp_cls, controller_id=-1, missing=missing)

    def _answer_init_pid(self) -> None:
        while self.pending_init_pid:
            if not self.producer_ids or self.producer_ids[0] >= self.producer_ids[1]:
                if not self._allocating:
                    self._allocating = True
                    self._call_controller(AllocateProducerIdsRequest(broker_id=self.broker_id,
                                                                     broker_epoch=self.broker_epoch),
                                          self._on_producer_ids)
                return
            version, reply = self.pending_init_pid.pop(0)
            pid = self.producer_ids[0]
            self.producer_ids[0] += 1
            reply(response_class(22, version)(
                throttle_time=NO_THROTTLE, error_code=ErrorCode.none, producer_id=pid, producer_epoch=0))

    def _on_producer_ids(self, resp: Any) -> None:
        self._allocating = False
        if resp.error_code == ErrorCode.none:
            start = int(resp.producer_id_start)
            self.producer_ids = [start, start + int(resp.producer_id_len)]
        self._answer_init_pid()

    # -- timers ----------------------------------------------------------------------------
    def _tick(self) -> None:
        now = _ms()
        self.rm.try_complete(now)
        for tp, part in self.rm.partitions.items():
            proposal = part.isr_change_to_propose(now)
            if proposal is None:
                continue
            topic = self.image.topics.get(tp[0])
            if topic is None:
                part.isr_change_failed()
                continue
            req = ap_req.AlterPartitionRequest(
                broker_id=self.broker_id, broker_epoch=self.broker_epoch,
                topics=(ap_req.TopicData(topic_id=uuid.UUID(topic.topic_id), partitions=(
                    ap_req.PartitionData(partition_index=tp[1], leader_epoch=part.leader_epoch,
                                         new_isr=tuple(proposal), partition_epoch=part.partition_epoch),)),))
            self._call_controller(req, lambda resp, part=part: self._on_alter_partition(part, resp))
        self._send_fetches()

    def _on_alter_partition(self, part: Any, resp: Any) -> None:
        p = resp.topics[0].partitions[0] if resp.topics else None
        if p is None or p.error_code != ErrorCode.none:
            part.isr_change_failed()
            return
        # Committed: adopt it now rather than waiting for the metadata to arrive.
        if int(p.leader_epoch) == part.leader_epoch:
            part.isr = [int(b) for b in p.isr]
            part.partition_epoch = int(p.partition_epoch)
            part.pending_isr = None
            part.maybe_advance_high_watermark()
            self.rm.try_complete(_ms())

    def _clean(self) -> None:
        self.rm.clean_logs(_ms())

    def _event(self, event: str, detail: dict[str, Any]) -> None:
        self.metrics.publish("event", {"event": event, "broker": self.broker_id, **detail,
                                       "detail": str(detail.get("detail", ""))})

    def _publish(self) -> None:
        now = _ms()
        for (topic, pid), part in self.rm.partitions.items():
            if part.is_leader:
                # The leader knows every follower's lag: offsets behind and ms since caught up.
                lags = {b: part.follower_lag(b, now) for b in part.followers}
                lag, lag_ms = 0, 0
            else:
                lags = {}
                # A follower only knows the leader's HW it last heard of.
                lag, lag_ms = max(0, part.high_watermark - part.log_end_offset), None
            self.metrics.publish("replica", {
                "broker": self.broker_id, "topic": topic, "partition": pid, "is_leader": part.is_leader,
                "leader": part.leader, "leader_epoch": part.leader_epoch,
                "log_start_offset": part.log_start_offset, "log_end_offset": part.log_end_offset,
                "high_watermark": part.high_watermark, "last_stable_offset": part.last_stable_offset,
                "isr": list(part.isr), "segments": len(part.log.segments), "size_bytes": part.log.size_bytes,
                "lag_offsets": lag, "lag_ms": lag_ms,
                "follower_lag": {b: off for b, (off, _ms_) in lags.items()},
                "follower_lag_ms": {b: ms for b, (_off, ms) in lags.items()},
            })
        self._publish_broker()

    def _publish_broker(self) -> None:
        lat = sorted(self.latencies[-1000:])
        self.latencies = lat[-1000:] if len(self.latencies) > 5000 else self.latencies
        c = self.rm.counters
        self.metrics.publish("broker", {
            "broker": self.broker_id, "state": "fenced" if self.fenced else "running", **c,
            "faults_version": self.faults.version, "metadata_offset": self.image.offset,
            "rpc_malformed_requests": self.server.malformed, "rpc_request_errors": self.server.request_errors,
            "request_latency_ms_p50": lat[len(lat) // 2] if lat else 0.0,
            "request_latency_ms_p99": lat[int(len(lat) * 0.99)] if lat else 0.0,
        })

    def shutdown_gracefully(self) -> None:
        """SIGTERM: controlled shutdown, moving leadership away before exiting."""
        self.want_shut_down = True
        self._heartbeat()
        self.loop.call_later(5.0, self.loop.stop)

    def close(self) -> None:
        # The context's term() waits for every socket: close the optional services' first.
        for service in (self.transactions, self.groups, self.kafka_listener):
            if service is not None and hasattr(service, "close"):
                try:
                    service.close()
                except Exception:
                    log.exception("%s: closing %s failed", self.node, type(service).__name__)
        self.rm.close()
        for f in self.fetchers.values():
            f.client.close()
        self.server.close()
        for client in self.controllers.values():
            client.close()
        self.fault_sub.close()
        self.metrics.close()
        self.ctx.term()


def _optional_groups(server: BrokerServer) -> Any:
    if importlib.util.find_spec("kafkalab.broker.groups") is None:
        return None
    from kafkalab.broker.groups import GroupService
    return GroupService(server)


def _optional_transactions(server: BrokerServer) -> Any:
    if importlib.util.find_spec("kafkalab.broker.transactions") is None:
        return None
    from kafkalab.broker.transactions import TransactionService
    return TransactionService(server)


def _optional_kafka_listener(server: BrokerServer, port: int) -> Any:
    if importlib.util.find_spec("kafkalab.transport.kafka_listener") is None:
        return None
    from kafkalab.transport.kafka_listener import KafkaListener
    return KafkaListener(server, port)


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
