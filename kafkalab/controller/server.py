"""The controller process: one voter of `__cluster_metadata`, the active controller when it leads.

The same process serves a single controller (a quorum of one voter, id 0, node "controller")
and each member of a quorum ("controller-1".."controller-N"). It wires a RaftNode
(kafkalab.controller.raft, pure) over a StorageRaftLog to ZeroMQ, a timer and the `quorum-state`
file, and hands what Raft commits and who leads to an ActiveController
(kafkalab.controller.active, pure), which decides when this node serves and when an answer may
leave. Brokers register and heartbeat with the active controller and long-poll the metadata
log with ordinary Fetch requests (as KRaft brokers do), getting only committed batches; a
controller that is not active answers NOT_CONTROLLER (metadata fetches say who leads).
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import signal
from typing import Any

import zmq
from kio.schema.errors import ErrorCode

from kafkalab.clock import SYSTEM_CLOCK, Clock
from kafkalab.controller.active import (
    Activated,
    ActiveController,
    AnswerFetch,
    Deactivated,
    Effect,
    Event,
    Fail,
    LeaderAndEpoch,
    Reply,
)
from kafkalab.controller.quorum import (
    QUORUM_TIMEOUTS,
    RAFT_APIS,
    controller_id_of,
    metadata_fetch_error,
    not_controller_response,
)
from kafkalab.controller.raft import (
    NotLeader,
    Outbound,
    Output,
    QuorumStateRecord,
    RaftNode,
    Role,
    SnapshotLoaded,
)
from kafkalab.controller.raft_listener import committed_read, hear
from kafkalab.controller.raft_log import StorageRaftLog
from kafkalab.controller.requests import metadata_fetch_response, metadata_response
from kafkalab.metadata.topic import METADATA_LOG_CONFIG, METADATA_TOPIC
from kafkalab.metrics_publisher import publisher_for
from kafkalab.nodes import controller_node
from kafkalab.process import die_with_parent, parent_alive
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import response_class
from kafkalab.storage.files import write_atomic
from kafkalab.transport.channel import Channel
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.loop import EventLoop
from kafkalab.transport.rpc import Envelope, FaultSubscriber, RpcClient, RpcServer

log = logging.getLogger(__name__)

NO_THROTTLE = datetime.timedelta(0)
QUORUM_STATE_FILE = "quorum-state"


class ControllerServer:
    """One controller process: a Raft voter, and the active controller while it leads."""

    def __init__(self, *, node_id: int, voters: dict[int, str], port: int, data_dir: str,
                 config: dict[str, Any], fault_endpoint: str, metrics_endpoint: str | None,
                 faults_json: str | None = None, raft: dict[str, Any] | None = None,
                 clock: Clock = SYSTEM_CLOCK):
        self.node_id = node_id
        self.clock = clock
        self.node = controller_node(node_id)
        self.ctx = zmq.Context()
        self.config = config
        self.faults = FaultTable.from_json(faults_json) if faults_json else FaultTable()
        self.loop = EventLoop(clock)
        self.server = RpcServer(self.ctx, self.node, port, self.faults)
        self.fault_sub = FaultSubscriber(self.ctx, fault_endpoint, self.faults)
        self.metrics = publisher_for(self.ctx, metrics_endpoint, self.node)
        self.log_dir = os.path.join(data_dir, f"{METADATA_TOPIC}-0")
        self.raft_log = StorageRaftLog(self.log_dir, dict(METADATA_LOG_CONFIG), now_ms=clock.wall_ms(),
                                       clock=clock.wall_ms)
        self.state_path = os.path.join(self.log_dir, QUORUM_STATE_FILE)
        state = None
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                state = QuorumStateRecord.from_json(f.read())
        self.raft = RaftNode(node_id, sorted(voters), self.raft_log, rng=random.Random(),
                             quorum_state=state, cluster_id="kafkalab",
                             wall_clock_offset_ms=clock.wall_ms() - self._mono_ms(),
                             **(raft or QUORUM_TIMEOUTS["lab"]))
        # Replica placement is seeded, as the single controller's always was: a lab's topics get
        # the same replica lists run after run (its saved outputs show them).
        self.active = ActiveController(node_id, config, self._append, rng=random.Random(0))
        self._leader = LeaderAndEpoch(-1, 0)  # last leader change told to the ActiveController
        self._outputs: list[Output] = []
        self._peer_requests: dict[tuple[int, int], Envelope] = {}
        # Raft times its own requests out (request_timeout_ms) and ignores a late answer, so a
        # channel only has to remember a request longer than Raft does; it calls nothing on errors.
        peer_timeout_s = 2 * self.raft.request_timeout_ms / 1000
        self.peers: dict[int, Channel] = {}
        for vid, endpoint in sorted(voters.items()):
            if vid == node_id:
                continue
            client = RpcClient(self.ctx, self.node, controller_node(vid), endpoint, self.faults)
            self.peers[vid] = Channel(client, clock, peer_timeout_s)
            self.peers[vid].attach(self.loop)
        self.loop.add_socket(self.server.socket, self._on_requests)
        self.loop.add_due_source(self.server.next_due, self._on_requests)
        self.loop.add_socket(self.fault_sub.socket, self._on_faults)
        self.loop.add_due_source(lambda now: self.raft.next_deadline_ms() / 1000, self._poll)
        # The Controller's timers (broker sessions, parked fetches) wake the loop when due.
        self.loop.add_due_source(self._tick_due, self._tick)
        self.loop.call_every(config["metrics.publish.interval.ms"] / 1000, self._publish)
        self._run(self.raft.start(self._mono_ms()))  # a single voter elects itself here, at once

    # -- Raft I/O ---------------------------------------------------------------------------
    def _run(self, out: Output | None = None) -> None:
        """Carry out the node's outputs: persist, apply, then send (the wiring guide's order),
        telling the ActiveController what was committed and who leads."""
        outs, self._outputs = [*self._outputs, *([out] if out is not None else [])], []
        heard = hear(self.raft, self.active, self._leader, outs)
        self._leader = heard.leader
        if heard.quorum_state is not None:
            # A vote granted must survive a crash before the reply leaves.
            write_atomic(self.state_path, heard.quorum_state.to_json().encode())
        for e in heard.raft_events:
            if isinstance(e, SnapshotLoaded):
                # Controllers here never create snapshots, so none can be fetched.
                log.error("%s: snapshot %s received but snapshots are not wired", self.node, e.snapshot_id)
            else:
                self._event("quorum_role", {"role": str(e.role), "epoch": e.epoch,
                                            "leader": e.leader_id, "detail": f"{self.node} {e.role}"})
        for m in heard.messages:
            self._send(m)
        self._apply(heard.effects)

    def _apply(self, effects: list[Effect]) -> None:
        changed = False
        for e in effects:
            if isinstance(e, Reply):
                self.server.reply(e.request, e.response)
            elif isinstance(e, AnswerFetch):
                data = committed_read(self.raft.log, e.offset, e.high_watermark)
                self.server.reply(e.request, metadata_fetch_response(
                    data, e.high_watermark, response_class(1, e.request.version)))
            elif isinstance(e, Fail):
                self._not_controller(e.request)
            elif isinstance(e, Event):
                self._event(e.name, e.detail)
            elif isinstance(e, Activated):
                changed = True
                self._event("controller_active", {"detail": f"{self.node} active in epoch {e.epoch}"})
            elif isinstance(e, Deactivated):
                changed = True
                self._event("controller_inactive", {"detail": f"{self.node} no longer active (epoch {e.epoch})"})
        if changed:
            self._publish()

    def _not_controller(self, env: Envelope) -> None:
        """This node does not serve (or an answer it gave may never come true): the client asks
        the active controller; a broker's metadata fetch learns who that is."""
        if env.api_key == ApiKey.FETCH:
            self.server.reply(env, metadata_fetch_error(response_class(1, env.version),
                                                        self.leader_hint(), self.raft.epoch))
            return
        resp = not_controller_response(env.api_key, env.version, env.body)
        if resp is not None:
            self.server.reply(env, resp)

    def _append(self, values: list[bytes]) -> int:
        last, out = self.raft.append(values, self._mono_ms())
        self._outputs.append(out)
        if isinstance(last, NotLeader):
            raise RuntimeError(f"{self.node} lost leadership while committing (leader {last.leader_id})")
        return last

    def _send(self, m: Outbound) -> None:
        if m.is_response:
            env = self._peer_requests.pop((m.destination, m.correlation_id), None)
            if env is not None:
                self.server.reply(env, m.message)
            return
        channel = self.peers.get(m.destination)
        if channel is None:
            return
        # No on_error: a request that cannot leave (a peer down for long fills its queue) or is
        # not answered is one Raft times out and retries itself.
        vid, corr = m.destination, m.correlation_id
        channel.send(m.message,
                     lambda resp: self._run(self.raft.handle_response(vid, corr, resp, self._mono_ms())))

    def _mono_ms(self) -> int:
        # Raft timers run on the monotonic clock; wall time only stamps records and heartbeats.
        return int(self.clock.monotonic() * 1000)

    def _poll(self) -> None:
        self._run(self.raft.poll(self._mono_ms()))

    def _event(self, event: str, detail: dict[str, Any]) -> None:
        self.metrics.publish("event", {"event": event, **detail, "detail": str(detail.get("detail", ""))})

    def leader_hint(self) -> int:
        r = self.raft
        return r.leader_id if r.role in (Role.LEADER, Role.FOLLOWER) else -1

    # -- requests ---------------------------------------------------------------------------
    def _on_requests(self) -> None:
        for env in self.server.receive(self.clock.monotonic()):
            self.server.serve(env, self._handle)  # one bad request must not take the controller down

    def _handle(self, env: Envelope) -> None:
        peer = controller_id_of(env.sender)
        if peer is not None and env.api_key in RAFT_APIS:
            self._peer_requests[(peer, env.correlation_id)] = env
            self._run(self.raft.handle_request(peer, env.correlation_id, env.body, self._mono_ms()))
            return
        if env.api_key == ApiKey.METADATA:  # committed state only; controller_id says who is active
            self.server.reply(env, metadata_response(
                self.active.committed, env.body, response_class(3, env.version),
                controller_id=self.node_id if self.active.active else self.leader_hint()))
            return
        if not self.active.active:
            self._apply([Fail(env)])
            return
        try:
            if env.api_key == ApiKey.FETCH:  # the metadata log's long poll
                part = env.body.topics[0].partitions[0]
                effects = self.active.fetch(env, int(part.fetch_offset),
                                            int(env.body.max_wait.total_seconds() * 1000), self.clock.wall_ms())
            else:
                response = self._serve(env)
                effects = self.active.respond(env, response) if response is not None else self.active.take()
        finally:
            self._run()  # what the Controller appended: commit (one voter) or replicate
        self._apply(effects)

    def _serve(self, env: Envelope) -> Any | None:
        """The active Controller's answer to a broker's or admin's request (None: none yet)."""
        controller = self.active.controller
        assert controller is not None
        now = self.clock.wall_ms()
        req = env.body
        key = env.api_key
        resp_cls = response_class(key, env.version)
        if key == ApiKey.BROKER_REGISTRATION:
            zmq_l = next(lst for lst in req.listeners if lst.name == "ZMQ")
            kafka_l = next((lst for lst in req.listeners if lst.name != "ZMQ"), zmq_l)
            epoch = controller.register_broker(int(req.broker_id), f"tcp://{zmq_l.host}:{zmq_l.port}",
                                               str(kafka_l.host), int(kafka_l.port), now)
            return resp_cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, broker_epoch=epoch)
        if key == ApiKey.BROKER_HEARTBEAT:
            r = controller.heartbeat(int(req.broker_id), int(req.broker_epoch),
                                     int(req.current_metadata_offset), bool(req.want_shut_down), now)
            return resp_cls(throttle_time=NO_THROTTLE, error_code=r.error, is_caught_up=r.is_caught_up,
                            is_fenced=r.is_fenced, should_shut_down=r.should_shut_down)
        if key == ApiKey.CREATE_TOPICS:
            from kafkalab.controller.requests import create_topics
            return create_topics(controller, req, resp_cls)
        if key == ApiKey.DELETE_TOPICS:
            from kafkalab.controller.requests import delete_topics
            return delete_topics(controller, req, resp_cls)
        if key == ApiKey.ALTER_PARTITION:
            from kafkalab.controller.requests import alter_partition
            return alter_partition(controller, req, resp_cls)
        if key == ApiKey.ELECT_LEADERS:
            from kafkalab.controller.topic_admin import elect_leaders_response
            return elect_leaders_response(controller, req, resp_cls)
        if key in (ApiKey.ALTER_CONFIGS, ApiKey.INCREMENTAL_ALTER_CONFIGS):  # topic configs
            from kafkalab.controller.topic_admin import alter_configs_response
            return alter_configs_response(controller, req, resp_cls, incremental=key == ApiKey.INCREMENTAL_ALTER_CONFIGS)
        if key == ApiKey.CREATE_PARTITIONS:
            from kafkalab.controller.topic_admin import create_partitions_response
            return create_partitions_response(controller, req, resp_cls)
        if key == ApiKey.ALLOCATE_PRODUCER_IDS:
            start, length = controller.allocate_producer_ids()
            return resp_cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none,
                            producer_id_start=start, producer_id_len=length)
        log.warning("%s: %s is not a controller API; ignored", self.node, env.api_name)
        return None

    # -- timers -----------------------------------------------------------------------------
    def _tick_due(self, now: float) -> float | None:
        due_ms = self.active.next_tick_ms()
        # +1 ms: tick() compares whole wall-clock ms, so it never runs a hair too early.
        return None if due_ms is None else now + (due_ms + 1 - self.clock.wall_ms()) / 1000

    def _tick(self) -> None:
        self._poll()  # a leader that lost its quorum resigns before it fences anyone
        try:
            effects = self.active.tick(self.clock.wall_ms())
        finally:
            self._run()
        self._apply(effects)

    def _on_faults(self) -> None:
        self.fault_sub.drain()
        if self.fault_sub.take_publish_request():
            self._publish(force=True)

    def _publish(self, force: bool = False) -> None:
        d = self.raft.describe()
        ends = {int(k): int(v) for k, v in d["voter_end_offsets"].items()}
        if self.raft.role is Role.LEADER:
            ends[self.node_id] = d["log_end_offset"]
        active = self.active.active
        with self.metrics.batch(force=force):  # one message a tick
            self.metrics.publish("quorum", {
                "controller_id": self.node_id, "role": d["role"], "epoch": d["epoch"], "leader": d["leader_id"],
                "active": active, "high_watermark": d["high_watermark"], "log_end_offset": d["log_end_offset"],
                "voter_end_offsets": ends,
            })
            self.metrics.publish("controller", {
                "controller_id": self.node_id, "active": active, "metadata_offset": d["high_watermark"],
                "rpc_request_errors": self.server.request_errors, "rpc_malformed_requests": self.server.malformed,
                "brokers": {b.broker_id: ("fenced" if b.fenced else "unfenced")
                            for b in self.active.committed.brokers.values()},
            })

    def shutdown_gracefully(self) -> None:
        """SIGTERM: a leader resigns with EndQuorumEpoch so a successor need not time out."""
        self._run(self.raft.resign(self._mono_ms()))
        # Let EndQuorumEpoch leave before the sockets close (a single voter has no one to tell).
        self.loop.call_later(0.1 if self.peers else 0, self.loop.stop)

    def close(self) -> None:
        self.raft_log.close()
        for channel in self.peers.values():
            channel.close()
        self.server.close()
        self.fault_sub.close()
        self.metrics.close()
        self.ctx.term()


def controller_main(*, parent_pid: int, **kwargs: Any) -> None:
    """Entry point of a controller process."""
    die_with_parent(parent_pid)
    logging.basicConfig(level=logging.WARNING,
                        format=f"{controller_node(kwargs['node_id'])} %(levelname)s %(message)s")
    server = ControllerServer(**kwargs)
    signal.signal(signal.SIGTERM, lambda *_: server.loop.call_later(0, server.shutdown_gracefully))
    server.loop.call_every(0.5, lambda: parent_alive(parent_pid) or server.loop.stop())
    try:
        server.loop.run_forever()
    finally:
        server.close()
