"""The controller process: wires the Controller logic to its metadata log and its RPC socket.

Brokers register and heartbeat here, and long-poll the `__cluster_metadata` log with ordinary
Fetch requests (as KRaft brokers do), so a metadata change reaches every broker within one
round trip.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from typing import Any

import zmq
from kio.schema.errors import ErrorCode

from kafkalab.controller.controller import Controller
from kafkalab.metadata.image import MetadataImage, encode_record
from kafkalab.metadata.replay import replay
from kafkalab.metadata.topic import METADATA_LOG_CONFIG, METADATA_TOPIC
from kafkalab.metrics_publisher import publisher_for
from kafkalab.nodes import CONTROLLER_NODE
from kafkalab.process import die_with_parent, parent_alive
from kafkalab.protocol.apis import response_class
from kafkalab.records import encode_batch
from kafkalab.storage import Log
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.loop import EventLoop
from kafkalab.transport.rpc import Envelope, FaultSubscriber, RpcServer

log = logging.getLogger(__name__)

NO_THROTTLE = datetime.timedelta(0)


def _ms() -> int:
    return int(time.time() * 1000)


class ControllerServer:
    def __init__(self, *, port: int, data_dir: str, config: dict[str, Any], fault_endpoint: str,
                 metrics_endpoint: str | None, faults_json: str | None = None):
        self.ctx = zmq.Context()
        self.config = config
        self.faults = FaultTable.from_json(faults_json) if faults_json else FaultTable()
        self.loop = EventLoop()
        self.server = RpcServer(self.ctx, CONTROLLER_NODE, port, self.faults)
        self.fault_sub = FaultSubscriber(self.ctx, fault_endpoint, self.faults)
        self.metrics = publisher_for(self.ctx, metrics_endpoint, CONTROLLER_NODE)
        path = os.path.join(data_dir, f"{METADATA_TOPIC}-0")
        self.mlog = Log(path, dict(METADATA_LOG_CONFIG), now_ms=_ms())
        self.image = MetadataImage()
        replay(self.mlog, self.image)
        self.controller = Controller(self.image, self._commit, config, on_event=self._event)
        self.waiting_fetches: list[tuple[Envelope, int, float]] = []
        self.loop.add_socket(self.server.socket, self._on_requests)
        self.loop.add_due_source(self.server.next_due, self._on_requests)
        self.loop.add_socket(self.fault_sub.socket, self.fault_sub.drain)
        self.loop.call_every(0.05, self._tick)
        self.loop.call_every(config["metrics.publish.interval.ms"] / 1000, self._publish)

    # -- metadata log ----------------------------------------------------------------------
    def _commit(self, records: list[dict[str, Any]]) -> None:
        now = _ms()
        batch = encode_batch([(*encode_record(r), [], now) for r in records])
        base, _last = self.mlog.append(batch, assign_offsets=True, now_ms=now)
        self.mlog.flush()  # a metadata change is durable before anyone acts on it
        for i, r in enumerate(records):
            self.image.apply(r, base + i)
        self._answer_fetches(force=False)

    def _event(self, event: str, detail: dict[str, Any]) -> None:
        self.metrics.publish("event", {"event": event, **detail, "detail": str(detail.get("detail", ""))})

    # -- requests --------------------------------------------------------------------------
    def _on_requests(self) -> None:
        for env in self.server.receive(time.monotonic()):
            self.server.serve(env, self._handle)  # one bad request must not take the controller down

    def _respond(self, env: Envelope, response: Any) -> None:
        self.server.reply(env, response)

    def _handle(self, env: Envelope) -> None:
        now = _ms()
        req = env.body
        key = env.api_key
        resp_cls = response_class(key, env.version)
        if key == 62:  # BrokerRegistration
            zmq_l = next(lst for lst in req.listeners if lst.name == "ZMQ")
            kafka_l = next((lst for lst in req.listeners if lst.name != "ZMQ"), zmq_l)
            epoch = self.controller.register_broker(
                int(req.broker_id), f"tcp://{zmq_l.host}:{zmq_l.port}", str(kafka_l.host),
                int(kafka_l.port), now)
            self._respond(env, resp_cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, broker_epoch=epoch))
        elif key == 63:  # BrokerHeartbeat
            r = self.controller.heartbeat(int(req.broker_id), int(req.broker_epoch),
                                          int(req.current_metadata_offset), bool(req.want_shut_down), now)
            self._respond(env, resp_cls(throttle_time=NO_THROTTLE, error_code=r.error,
                                            is_caught_up=r.is_caught_up, is_fenced=r.is_fenced,
                                            should_shut_down=r.should_shut_down))
        elif key == 1:  # Fetch of the metadata log
            part = req.topics[0].partitions[0]
            wait = req.max_wait.total_seconds()
            self.waiting_fetches.append((env, int(part.fetch_offset), time.monotonic() + wait))
            self._answer_fetches(force=False)
        elif key == 19:  # CreateTopics
            from kafkalab.controller.requests import create_topics
            self._respond(env, create_topics(self.controller, req, resp_cls))
        elif key == 20:  # DeleteTopics
            from kafkalab.controller.requests import delete_topics
            self._respond(env, delete_topics(self.controller, req, resp_cls))
        elif key == 56:  # AlterPartition
            from kafkalab.controller.requests import alter_partition
            self._respond(env, alter_partition(self.controller, req, resp_cls))
        elif key == 43:  # ElectLeaders
            from kafkalab.controller.topic_admin import elect_leaders_response
            self._respond(env, elect_leaders_response(self.controller, req, resp_cls))
        elif key in (33, 44):  # AlterConfigs, IncrementalAlterConfigs (topic configs)
            from kafkalab.controller.topic_admin import alter_configs_response
            self._respond(env, alter_configs_response(self.controller, req, resp_cls, incremental=key == 44))
        elif key == 37:  # CreatePartitions
            from kafkalab.controller.topic_admin import create_partitions_response
            self._respond(env, create_partitions_response(self.controller, req, resp_cls))
        elif key == 67:  # AllocateProducerIds
            start, length = self.controller.allocate_producer_ids()
            self._respond(env, resp_cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                                            producer_id_start=start, producer_id_len=length))
        elif key == 3:  # Metadata (for the Cluster's describe calls)
            from kafkalab.controller.requests import metadata_response
            self._respond(env, metadata_response(self.image, req, resp_cls))
        else:
            log.warning("controller: %s is not a controller API; ignored", env.api_name)

    def _answer_fetches(self, force: bool) -> None:
        if not self.waiting_fetches:
            return
        from kafkalab.controller.requests import metadata_fetch_response
        now = time.monotonic()
        still = []
        for env, offset, deadline in self.waiting_fetches:
            if offset < self.mlog.log_end_offset or now >= deadline or force:
                data = b""
                if offset < self.mlog.log_end_offset:
                    data = bytes(self.mlog.read_bytes(offset, 1 << 20))
                self.server.reply(env, metadata_fetch_response(data, self.mlog.log_end_offset,
                                                               response_class(1, env.version)))
            else:
                still.append((env, offset, deadline))
        self.waiting_fetches = still

    # -- timers ----------------------------------------------------------------------------
    def _tick(self) -> None:
        self.controller.tick(_ms())
        self._answer_fetches(force=False)

    def _publish(self) -> None:
        self.metrics.publish("controller", {
            "controller_id": 0, "active": True, "metadata_offset": self.mlog.log_end_offset,
            "rpc_request_errors": self.server.request_errors, "rpc_malformed_requests": self.server.malformed,
            "brokers": {b.broker_id: ("fenced" if b.fenced else "unfenced") for b in self.image.brokers.values()},
        })

    def close(self) -> None:
        self.mlog.close()
        self.server.close()
        self.fault_sub.close()
        self.metrics.close()
        self.ctx.term()


def controller_main(*, parent_pid: int, **kwargs: Any) -> None:
    """Entry point of the single controller's process (a quorum voter's is quorum_controller_main)."""
    die_with_parent(parent_pid)
    logging.basicConfig(level=logging.WARNING, format="controller %(levelname)s %(message)s")
    server = ControllerServer(**kwargs)
    server.loop.call_every(0.5, lambda: parent_alive(parent_pid) or server.loop.stop())
    try:
        server.loop.run_forever()
    finally:
        server.close()
