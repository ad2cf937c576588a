"""The controller quorum: controller processes that replicate `__cluster_metadata` with KRaft.

Each controller process is a voter: a RaftNode (kafkalab.controller.raft, pure) over a
StorageRaftLog, wired here to ZeroMQ, a timer and the `quorum-state` file. The Raft leader is
the *active controller*: once its own epoch's LEADER_CHANGE record is committed (so it has
applied everything any earlier leader committed) it builds a Controller over a working copy of
the committed image and serves brokers and admins. Every Controller change becomes a Raft
append; the records are applied to the working image at once (the Controller reads its own
writes) but nobody hears of them before they are committed: answers wait for the high
watermark, and brokers fetch only committed batches. A controller that is not active answers
NOT_CONTROLLER (metadata fetches say who leads); one that loses leadership drops its working
image and its uncommitted answers, because a new leader may truncate those records.
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import zmq
from kio.schema.errors import ErrorCode

from kafkalab.controller.controller import Controller
from kafkalab.controller.raft import (
    Committed,
    NotLeader,
    Outbound,
    Output,
    PersistQuorumState,
    QuorumStateRecord,
    RaftNode,
    Role,
    RoleChanged,
    SnapshotLoaded,
)
from kafkalab.controller.raft_log import StorageRaftLog
from kafkalab.controller.requests import metadata_fetch_response, metadata_response
from kafkalab.controller.server import ControllerServer
from kafkalab.metadata.image import MetadataImage, decode_record, encode_record
from kafkalab.metadata.topic import METADATA_LOG_CONFIG, METADATA_TOPIC
from kafkalab.metrics_publisher import publisher_for
from kafkalab.nodes import controller_node
from kafkalab.process import die_with_parent, parent_alive
from kafkalab.protocol.apis import response_class, schema_module
from kafkalab.records.scan import iter_batches
from kafkalab.storage.files import write_atomic
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.loop import EventLoop
from kafkalab.transport.rpc import Envelope, FaultSubscriber, RpcClient, RpcServer

log = logging.getLogger(__name__)

NO_THROTTLE = datetime.timedelta(0)
QUORUM_STATE_FILE = "quorum-state"
RAFT_APIS = frozenset({52, 53, 54, 1, 59})  # Vote, Begin/EndQuorumEpoch, Fetch, FetchSnapshot
# KRaft's controller.quorum.* timeouts as RaftNode arguments. "kafka" is Kafka's defaults
# (election 1 s, randomised up to 2 s; fetch 2 s; request 2 s; 500 ms fetch wait); "lab" is
# tight enough that a killed active controller is replaced well within a second.
QUORUM_TIMEOUTS: dict[str, dict[str, Any]] = {
    "lab": {"election_timeout_ms": (100, 200), "fetch_timeout_ms": 300, "request_timeout_ms": 150,
            "fetch_max_wait_ms": 50},
    "kafka": {"election_timeout_ms": (1000, 2000), "fetch_timeout_ms": 2000, "request_timeout_ms": 2000,
              "fetch_max_wait_ms": 500},
}


def controller_id_of(node: str) -> int | None:
    prefix = "controller-"
    if node.startswith(prefix) and node[len(prefix):].isdigit():
        return int(node[len(prefix):])
    return None


def _mono_ms() -> int:
    # Raft timers run on the monotonic clock; wall time only stamps records and heartbeats.
    return int(time.monotonic() * 1000)


def _wall_ms() -> int:
    return int(time.time() * 1000)


# -- pure helpers ---------------------------------------------------------------------------


def read_committed(data: bytes, high_watermark: int) -> bytes:
    """The whole batches of `data` (a log read) that lie below the high watermark: brokers
    must never apply a record that a new leader could truncate."""
    end = 0
    for pos, h in iter_batches(data):
        if h.next_offset > high_watermark:
            break
        end = pos + h.size
    return bytes(data[:end])


def not_controller_response(api_key: int, version: int, request: Any) -> Any | None:
    """NOT_CONTROLLER in the shape of each controller API's response (None: no such API)."""
    cls = response_class(api_key, version)
    code = ErrorCode.not_controller
    if api_key == 62:
        return cls(throttle_time=NO_THROTTLE, error_code=code, broker_epoch=-1)
    if api_key == 63:
        return cls(throttle_time=NO_THROTTLE, error_code=code, is_caught_up=False, is_fenced=True,
                   should_shut_down=False)
    if api_key == 19:
        mod = schema_module(cls)
        return cls(throttle_time=NO_THROTTLE, topics=tuple(mod.CreatableTopicResult(
            name=t.name, topic_id=None, error_code=code, error_message="not the active controller",
            num_partitions=-1, replication_factor=-1, configs=None) for t in request.topics))
    if api_key == 20:
        mod = schema_module(cls)
        return cls(throttle_time=NO_THROTTLE, responses=tuple(mod.DeletableTopicResult(
            name=t.name, topic_id=t.topic_id, error_code=code, error_message=None) for t in request.topics))
    if api_key == 56:
        return cls(throttle_time=NO_THROTTLE, error_code=code, topics=())
    if api_key == 43:
        return cls(throttle_time=NO_THROTTLE, error_code=code, replica_election_results=())
    if api_key == 67:
        return cls(throttle_time=NO_THROTTLE, error_code=code, producer_id_start=-1, producer_id_len=0)
    if api_key in (33, 44):
        mod = schema_module(cls)
        return cls(throttle_time=NO_THROTTLE, responses=tuple(mod.AlterConfigsResourceResponse(
            error_code=code, error_message="not the active controller", resource_type=r.resource_type,
            resource_name=r.resource_name) for r in request.resources))
    if api_key == 37:
        mod = schema_module(cls)
        return cls(throttle_time=NO_THROTTLE, results=tuple(mod.CreatePartitionsTopicResult(
            name=t.name, error_code=code, error_message="not the active controller") for t in request.topics))
    return None


def metadata_fetch_error(resp_cls: Any, leader_hint: int, epoch: int) -> Any:
    """A broker's metadata fetch to a controller that is not active: who leads, if known."""
    mod = schema_module(resp_cls)
    part = mod.PartitionData(partition_index=0, error_code=ErrorCode.not_controller, high_watermark=-1,
                             current_leader=mod.LeaderIdAndEpoch(leader_id=leader_hint, leader_epoch=epoch),
                             aborted_transactions=None, records=None)
    return resp_cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, session_id=0,
                    responses=(mod.FetchableTopicResponse(topic=METADATA_TOPIC, partitions=(part,)),))


@dataclass
class PendingReplies:
    """Answers held until the metadata records they depend on are committed."""

    held: list[tuple[int, Envelope, Any]] = field(default_factory=list)  # (last offset, request, answer)

    def add(self, offset: int, env: Envelope, response: Any) -> None:
        self.held.append((offset, env, response))

    def release(self, high_watermark: int) -> list[tuple[Envelope, Any]]:
        ready = [(e, r) for off, e, r in self.held if off < high_watermark]
        self.held = [h for h in self.held if h[0] >= high_watermark]
        return ready

    def drop(self) -> list[Envelope]:
        gone, self.held = [e for _, e, _ in self.held], []
        return gone


# -- the process ----------------------------------------------------------------------------


class QuorumControllerServer(ControllerServer):
    """One voter of the controller quorum; the active controller when it leads."""

    def __init__(self, *, node_id: int, voters: dict[int, str], port: int, data_dir: str,
                 config: dict[str, Any], fault_endpoint: str, metrics_endpoint: str | None,
                 faults_json: str | None = None, raft: dict[str, Any] | None = None):
        self.node_id = node_id
        self.node = controller_node(node_id)
        self.ctx = zmq.Context()
        self.config = config
        self.faults = FaultTable.from_json(faults_json) if faults_json else FaultTable()
        self.loop = EventLoop()
        self.server = RpcServer(self.ctx, self.node, port, self.faults)
        self.fault_sub = FaultSubscriber(self.ctx, fault_endpoint, self.faults)
        self.metrics = publisher_for(self.ctx, metrics_endpoint, self.node)
        self.log_dir = os.path.join(data_dir, f"{METADATA_TOPIC}-0")
        self.raft_log = StorageRaftLog(self.log_dir, dict(METADATA_LOG_CONFIG), now_ms=_wall_ms(), clock=_wall_ms)
        self.state_path = os.path.join(self.log_dir, QUORUM_STATE_FILE)
        state = None
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                state = QuorumStateRecord.from_json(f.read())
        self.raft = RaftNode(node_id, sorted(voters), self.raft_log, rng=random.Random(),
                             quorum_state=state, cluster_id="kafkalab",
                             wall_clock_offset_ms=_wall_ms() - _mono_ms(),
                             **(raft or QUORUM_TIMEOUTS["lab"]))
        # The committed image (every node); the working image is a copy while active.
        self.committed = MetadataImage()
        self.image = self.committed
        self.controller: Controller | None = None  # type: ignore[assignment]
        self.active = False
        self.appended = -1  # last offset this active controller appended
        self.pending = PendingReplies()
        self.waiting_fetches: list[tuple[Envelope, int, float]] = []
        self._outputs: list[Output] = []
        self._peer_requests: dict[tuple[int, int], Envelope] = {}
        self._peer_corr: dict[tuple[int, int], int] = {}  # (peer, rpc correlation) -> raft's
        self.peers: dict[int, RpcClient] = {}
        for vid, endpoint in sorted(voters.items()):
            if vid == node_id:
                continue
            client = RpcClient(self.ctx, self.node, controller_node(vid), endpoint, self.faults)
            self.peers[vid] = client
            self.loop.add_socket(client.socket, lambda vid=vid: self._on_peer(vid))
            self.loop.add_due_source(client.next_due, lambda vid=vid: self._on_peer(vid))
        self.loop.add_socket(self.server.socket, self._on_requests)
        self.loop.add_due_source(self.server.next_due, self._on_requests)
        self.loop.add_socket(self.fault_sub.socket, self._on_faults)
        self.loop.add_due_source(lambda now: self.raft.next_deadline_ms() / 1000, self._poll)
        self.loop.call_every(0.05, self._tick)
        self.loop.call_every(0.5, self._expire_peer_requests)
        self.loop.call_every(config["metrics.publish.interval.ms"] / 1000, self._publish)
        self._run(self.raft.start(_mono_ms()))

    # -- Raft I/O ---------------------------------------------------------------------------
    def _run(self, out: Output | None = None) -> None:
        """Carry out the node's outputs: persist, apply, then send (the wiring guide's order)."""
        outs, self._outputs = [*self._outputs, *([out] if out is not None else [])], []
        role_changed = False
        for o in outs:
            for e in o.effects:
                if isinstance(e, PersistQuorumState):
                    # A vote granted must survive a crash before the reply leaves.
                    write_atomic(self.state_path, e.state.to_json().encode())
            for e in o.effects:
                if isinstance(e, Committed):
                    for b in e.batches:
                        for i, value in enumerate(b.values):
                            self.committed.apply(decode_record(value), b.base_offset + i)
                elif isinstance(e, SnapshotLoaded):
                    # Controllers here never create snapshots, so none can be fetched.
                    log.error("%s: snapshot %s received but snapshots are not wired", self.node, e.snapshot_id)
                elif isinstance(e, RoleChanged):
                    role_changed = True
                    self._event("quorum_role", {"role": str(e.role), "epoch": e.epoch,
                                                "leader": e.leader_id, "detail": f"{self.node} {e.role}"})
            if self.active and self.raft.role is not Role.LEADER:
                self._deactivate()
            for m in o.messages:
                self._send(m)
        if self.active and self.raft.role is not Role.LEADER:
            self._deactivate()
        if (not self.active and self.raft.role is Role.LEADER
                and self.raft.high_watermark > self.raft.epoch_start_offset >= 0):
            self._claim()
            role_changed = True
        if self.active:
            for env, resp in self.pending.release(self.raft.high_watermark):
                self.server.reply(env, resp)
            self._answer_fetches(force=False)
        if role_changed:
            self._publish()

    def _send(self, m: Outbound) -> None:
        if m.is_response:
            env = self._peer_requests.pop((m.destination, m.correlation_id), None)
            if env is not None:
                self.server.reply(env, m.message)
            return
        client = self.peers.get(m.destination)
        if client is None:
            return
        try:
            rpc_corr = client.send(m.message)
        except Exception:  # a peer down for long fills its queue: Raft retries anyway
            log.debug("%s: cannot send to %s", self.node, client.peer, exc_info=True)
            return
        self._peer_corr[(m.destination, rpc_corr)] = m.correlation_id

    def _on_peer(self, vid: int) -> None:
        client = self.peers[vid]
        for rpc_corr, resp in client.receive(time.monotonic()):
            corr = self._peer_corr.pop((vid, rpc_corr), None)
            if corr is not None:
                self._run(self.raft.handle_response(vid, corr, resp, _mono_ms()))

    def _poll(self) -> None:
        self._run(self.raft.poll(_mono_ms()))

    def _expire_peer_requests(self) -> None:
        # Raft times its own requests out; here only the transport's bookkeeping goes.
        now = time.monotonic()
        for vid, client in self.peers.items():
            for rpc_corr in client.expire(now, 2.0):
                self._peer_corr.pop((vid, rpc_corr), None)

    def _on_faults(self) -> None:
        self.fault_sub.drain()

    # -- active controller ------------------------------------------------------------------
    def _claim(self) -> None:
        """Leader with this epoch's first record committed: everything earlier is applied."""
        self.image = copy.deepcopy(self.committed)
        self.image.offset = self.raft.log.log_end_offset  # broker epoch = registration offset
        self.appended = self.raft.log.log_end_offset - 1
        # A fresh Controller: liveness is soft state, so every broker gets a new session.
        self.controller = Controller(self.image, self._commit, self.config, rng=random.Random(),
                                     on_event=self._event)
        self.controller.registration_offset = {b: r.epoch + 1 for b, r in self.image.brokers.items()}
        self.active = True
        self._event("controller_active", {"detail": f"{self.node} active in epoch {self.raft.epoch}"})

    def _deactivate(self) -> None:
        self.active = False
        self.controller = None  # type: ignore[assignment]
        self.image = self.committed
        # Uncommitted answers may never be true: the client retries with the new controller.
        for env in self.pending.drop():
            resp = not_controller_response(env.api_key, env.version, env.body)
            if resp is not None:
                self.server.reply(env, resp)
        self._answer_fetches(force=True)
        self._event("controller_inactive", {"detail": f"{self.node} no longer active (epoch {self.raft.epoch})"})

    def leader_hint(self) -> int:
        r = self.raft
        return r.leader_id if r.role in (Role.LEADER, Role.FOLLOWER) else -1

    def _commit(self, records: list[dict[str, Any]]) -> None:
        values = [encode_record(r)[1] for r in records]
        last, out = self.raft.append(values, _mono_ms())
        self._outputs.append(out)
        if isinstance(last, NotLeader):
            raise RuntimeError(f"{self.node} lost leadership while committing (leader {last.leader_id})")
        base = last - len(records) + 1
        for i, r in enumerate(records):
            self.image.apply(r, base + i)
        self.appended = last

    # -- requests ---------------------------------------------------------------------------
    def _respond(self, env: Envelope, response: Any) -> None:
        if self.active and self.appended >= self.raft.high_watermark:
            self.pending.add(self.appended, env, response)  # answered once committed
        else:
            self.server.reply(env, response)

    def _handle(self, env: Envelope) -> None:
        peer = controller_id_of(env.sender)
        if peer is not None and env.api_key in RAFT_APIS:
            self._peer_requests[(peer, env.correlation_id)] = env
            self._run(self.raft.handle_request(peer, env.correlation_id, env.body, _mono_ms()))
            return
        if env.api_key == 3:  # Metadata: committed state only; controller_id says who is active
            self.server.reply(env, metadata_response(
                self.committed, env.body, response_class(3, env.version),
                controller_id=self.node_id if self.active else self.leader_hint()))
            return
        if not self.active:
            if env.api_key == 1:
                self.server.reply(env, metadata_fetch_error(response_class(1, env.version),
                                                            self.leader_hint(), self.raft.epoch))
            else:
                resp = not_controller_response(env.api_key, env.version, env.body)
                if resp is not None:
                    self.server.reply(env, resp)
            return
        try:
            super()._handle(env)
        finally:
            self._run()

    def _answer_fetches(self, force: bool) -> None:
        if not self.waiting_fetches:
            return
        now = time.monotonic()
        hw = self.raft.high_watermark
        still = []
        for env, offset, deadline in self.waiting_fetches:
            cls = response_class(1, env.version)
            if not self.active:
                self.server.reply(env, metadata_fetch_error(cls, self.leader_hint(), self.raft.epoch))
            elif offset < hw or now >= deadline or force:
                data = b""
                if self.raft.log.log_start_offset <= offset < hw:
                    data = read_committed(self.raft.log.read(offset, 1 << 20), hw)
                self.server.reply(env, metadata_fetch_response(data, hw, cls))
            else:
                still.append((env, offset, deadline))
        self.waiting_fetches = still

    # -- timers -----------------------------------------------------------------------------
    def _tick(self) -> None:
        self._poll()  # a leader that lost its quorum resigns before it fences anyone
        if self.active:
            try:
                self.controller.tick(_wall_ms())
            finally:
                self._run()
        self._answer_fetches(force=False)

    def _publish(self) -> None:
        d = self.raft.describe()
        ends = {int(k): int(v) for k, v in d["voter_end_offsets"].items()}
        if self.raft.role is Role.LEADER:
            ends[self.node_id] = d["log_end_offset"]
        self.metrics.publish("quorum", {
            "controller_id": self.node_id, "role": d["role"], "epoch": d["epoch"], "leader": d["leader_id"],
            "active": self.active, "high_watermark": d["high_watermark"], "log_end_offset": d["log_end_offset"],
            "voter_end_offsets": ends,
        })
        self.metrics.publish("controller", {
            "controller_id": self.node_id, "active": self.active, "metadata_offset": d["high_watermark"],
            "rpc_request_errors": self.server.request_errors, "rpc_malformed_requests": self.server.malformed,
            "brokers": {b.broker_id: ("fenced" if b.fenced else "unfenced") for b in self.committed.brokers.values()},
        })

    def shutdown_gracefully(self) -> None:
        """SIGTERM: a leader resigns with EndQuorumEpoch so a successor need not time out."""
        self._run(self.raft.resign(_mono_ms()))
        self.loop.call_later(0.1, self.loop.stop)  # let EndQuorumEpoch leave before the sockets close

    def close(self) -> None:
        self.raft_log.close()
        for client in self.peers.values():
            client.close()
        self.server.close()
        self.fault_sub.close()
        self.metrics.close()
        self.ctx.term()


def quorum_controller_main(*, parent_pid: int, **kwargs: Any) -> None:
    """Entry point of a quorum controller process."""
    die_with_parent(parent_pid)
    logging.basicConfig(level=logging.WARNING,
                        format=f"{controller_node(kwargs['node_id'])} %(levelname)s %(message)s")
    server = QuorumControllerServer(**kwargs)
    signal.signal(signal.SIGTERM, lambda *_: server.loop.call_later(0, server.shutdown_gracefully))
    server.loop.call_every(0.5, lambda: parent_alive(parent_pid) or server.loop.stop())
    try:
        server.loop.run_forever()
    finally:
        server.close()
