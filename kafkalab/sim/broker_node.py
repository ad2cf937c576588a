"""The simulated broker: the real `ReplicaManager` (partitions, segment files, purgatories) wired
to the controller and the other brokers over the simulated network.

It does what the broker process does, with the sim's timers instead of an event loop: register
and heartbeat, fetch the metadata log and apply it, run a replica fetcher per leader, propose ISR
changes (AlterPartition), answer Produce and Fetch, flush its logs now and then. A crash throws
the process away and cuts every segment file back to what was flushed (the page cache is lost),
sometimes leaving a torn batch; the restarted broker reopens its logs and recovers them as the
real one does.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.fetch_session_handler import FetchSessionHandler
from kafkalab.broker.replica_manager import ReplicaManager
from kafkalab.metadata.image import NO_LEADER, MetadataImage
from kafkalab.metadata.replay import apply_batches
from kafkalab.records.header import HEADER_SIZE, parse_header
from kafkalab.sim.controller_node import CONTROLLER
from kafkalab.sim.network import Network
from kafkalab.sim.node import Calls, SimNode
from kafkalab.sim.scheduler import Scheduler
from kafkalab.storage import RECOVERY_POINT_CHECKPOINT, CorruptCheckpointError
from kafkalab.storage.files import LOG_SUFFIX, offset_from_name

TP = tuple[str, int]
TICK_MS = 50
FLUSH_EVERY_MS = 200


def broker_node(broker_id: int) -> str:
    return f"broker-{broker_id}"


class SimBroker(SimNode):
    def __init__(self, broker_id: int, data_dir: str, config: dict[str, Any], scheduler: Scheduler,
                 network: Network, calls: Calls, rng: random.Random,
                 on_event: Callable[[int, str, dict[str, Any]], None], controllers: list[str] | None = None,
                 on_metadata: Callable[[int, bytes], None] | None = None) -> None:
        super().__init__(broker_node(broker_id), scheduler, network, calls)
        self.controllers = controllers or [CONTROLLER]  # voters, in the order tried
        self.on_metadata = on_metadata  # sees each metadata answer before it is applied
        self.broker_id = broker_id
        self.data_dir = data_dir
        self.config = config
        self.rng = rng
        self.on_event = on_event
        self.rm: ReplicaManager | None = None
        self.image = MetadataImage()
        self.broker_epoch = -1
        self.fenced = True
        self._fetching: set[int] = set()  # leaders with a replica fetch in flight
        self._fetch_sessions: dict[int, FetchSessionHandler] = {}  # by leader (KIP-227)
        self._metadata_in_flight = False
        self._last_flush = 0
        self._registering = False
        self._ctrl = 0  # the controller followed
        self._ctrl_heard = 0
        self._metadata_gen = 0
        self.lose_page_cache = True  # a crash is a power loss (else a process kill)

    # -- life -----------------------------------------------------------------------------
    def on_start(self) -> None:
        self.rm = ReplicaManager(self.broker_id, self.data_dir, self.config)
        self.rm.on_event = lambda e, d: self.on_event(self.broker_id, e, d)
        self.image = MetadataImage()
        self.broker_epoch, self.fenced, self._registering = -1, True, False
        self._fetching, self._metadata_in_flight = set(), False
        self._fetch_sessions = {}
        self._ctrl_heard = self.sched.now_ms
        self._last_flush = self.sched.now_ms
        self._register()
        self.timer(TICK_MS, "tick", self._tick)

    def on_crash(self) -> None:
        rm, self.rm = self.rm, None
        if rm is None:
            return
        try:
            on_disk = rm.checkpoints[RECOVERY_POINT_CHECKPOINT].read()
        except (CorruptCheckpointError, OSError):
            on_disk = {}
        for tp, part in rm.partitions.items():
            flushed = part.log.recovery_point
            # A torn batch only where the checkpoint agrees with the flushed point: a recovery
            # point checkpointed above a truncation is trusted by recovery and not rescanned.
            torn = on_disk.get(tp) == flushed and self.rng.random() < 0.5
            part.log.close(flush=False)
            if self.lose_page_cache:
                lose_unflushed_tail(part.log.dir, flushed, self.rng if torn else None)

    # -- controller -----------------------------------------------------------------------
    def _call_controller(self, body: Any, on_reply: Callable[[Any], None], timeout_ms: int) -> None:
        """Call the controller followed. NOT_CONTROLLER turns to the voter it names (or the next
        one) and reaches `on_reply` as no answer, as does silence."""
        ctrl = self._ctrl

        def answered(reply: Any) -> None:
            if isinstance(reply, tuple) and reply[:1] == ("not_controller",):
                self._follow(reply[1] if ctrl == self._ctrl else -2)
                reply = None
            elif reply is not None and ctrl == self._ctrl:
                self._ctrl_heard = self.sched.now_ms
            on_reply(reply)
        self.call(self.controllers[ctrl], body, answered, timeout_ms)

    def _follow(self, hint: int) -> None:
        """Turn to controller voter `hint` (-1: none known, try the next; -2: stay)."""
        if hint == -2 or len(self.controllers) == 1:
            return
        names = self.controllers
        target = next((i for i, n in enumerate(names) if n.endswith(f"-{hint}")), None) if hint >= 0 else None
        if target is None:
            target = (self._ctrl + 1) % len(names)
        if target == self._ctrl:
            return
        self._ctrl, self._ctrl_heard = target, self.sched.now_ms
        if self.broker_epoch >= 0:
            self._metadata_gen += 1  # the fetch parked on the old one is not waited for
            self._metadata_in_flight = False
            self._fetch_metadata()

    def _register(self) -> None:
        self._registering = True
        self._call_controller(("register", self.broker_id), self._on_registered,
                  self.config["request.timeout.ms"])

    def _on_registered(self, epoch: int | None) -> None:
        self._registering = False
        if epoch is None:
            self.timer(100, "register retry", self._register)
            return
        first = self.broker_epoch < 0
        self.broker_epoch = epoch
        if first:
            self._heartbeat()
        self._fetch_metadata()

    def _heartbeat(self) -> None:
        """Every broker.heartbeat.interval.ms, answered or not (a lost one is not waited for)."""
        epoch = self.broker_epoch
        silence = max(3 * self.config["broker.heartbeat.interval.ms"], 3 * self.config["metadata.fetch.max.wait.ms"])
        if self.sched.now_ms - self._ctrl_heard > silence:
            self._follow(-1)  # crashed, paused or cut off: try the next voter
        self._call_controller(("heartbeat", self.broker_id, epoch, self.image.offset),
                  lambda result: self._on_heartbeat(epoch, result), self.config["request.timeout.ms"])
        self.timer(self.config["broker.heartbeat.interval.ms"], "heartbeat", self._heartbeat)

    def _on_heartbeat(self, epoch: int, result: Any) -> None:
        if result is None or epoch != self.broker_epoch:
            return  # lost, or about a session this broker has already replaced
        if result.error == ErrorCode.stale_broker_epoch and not self._registering:
            self._register()  # the controller fenced this session: join again with a new epoch
        else:
            self.fenced = bool(result.is_fenced)

    def _fetch_metadata(self) -> None:
        if self._metadata_in_flight:
            return
        self._metadata_in_flight = True
        wait = self.config["metadata.fetch.max.wait.ms"]
        gen = self._metadata_gen
        self._call_controller(("fetch_metadata", self.image.offset, wait),
                              lambda reply: self._on_metadata(gen, reply), wait + self.config["request.timeout.ms"])

    def _on_metadata(self, gen: int, reply: tuple[int, list[dict[str, Any]] | bytes] | None) -> None:
        if gen != self._metadata_gen:
            return  # asked of a controller this broker has left
        self._metadata_in_flight = False
        if reply is None:
            self.timer(50, "metadata retry", self._fetch_metadata)
            return
        offset, records = reply
        if offset == self.image.offset and records:
            if isinstance(records, bytes):  # a quorum's committed batches
                if self.on_metadata is not None:
                    self.on_metadata(self.broker_id, records)
                apply_batches(records, self.image, offset)
            else:
                for i, record in enumerate(records):
                    self.image.apply(record, offset + i)
            assert self.rm is not None
            self.rm.apply_metadata(self.image, self.sched.now_ms)
            self._send_fetches()
        self._fetch_metadata()

    # -- replica fetchers ------------------------------------------------------------------
    def _send_fetches(self) -> None:
        rm = self.rm
        assert rm is not None
        by_leader: dict[int, set[TP]] = {}
        for tp, part in rm.partitions.items():
            if not part.is_leader and part.leader != NO_LEADER:
                by_leader.setdefault(part.leader, set()).add(tp)
        # A leader no longer followed still gets one request: it forgets the session's partitions.
        leaders = set(by_leader) | {b for b, s in self._fetch_sessions.items() if s.session_partitions}
        for leader in sorted(leaders):
            if leader in self._fetching:
                continue
            session = self._fetch_sessions.setdefault(leader, FetchSessionHandler(leader))
            req = rm.follower_fetch_request(by_leader.get(leader, set()), self.config, session)
            if req is None:
                continue
            self._fetching.add(leader)
            self.call(broker_node(leader), ("fetch", req),
                      lambda resp, leader=leader: self._on_fetch(leader, resp),
                      self.config["request.timeout.ms"])

    def _on_fetch(self, leader: int, resp: Any) -> None:
        self._fetching.discard(leader)
        rm = self.rm
        assert rm is not None
        session = self._fetch_sessions[leader]
        if resp is None:
            session.start_over()  # lost or timed out: the leader may have counted its epoch
        failed = resp is None or rm.apply_fetch_response(leader, resp, self.sched.now_ms, session)
        if failed:
            self.timer(self.config["replica.fetch.backoff.ms"], "fetch backoff", self._send_fetches)
        else:
            self._send_fetches()

    # -- requests -------------------------------------------------------------------------
    def handle(self, src: str, corr: int, body: Any) -> None:
        rm = self.rm
        assert rm is not None
        now = self.sched.now_ms
        kind = body[0]
        if kind == "produce":
            rm.produce(body[1], now, lambda resp: self.reply(src, corr, resp))
            rm.try_complete(now)  # a follower's parked fetch may now have data
        elif kind == "fetch":
            rm.fetch(body[1], now, lambda resp: self.reply(src, corr, resp))
        elif kind == "metadata":
            self.reply(src, corr, {(t.name, pid): (p.leader, p.leader_epoch)
                                   for t in self.image.topics.values() for pid, p in t.partitions.items()})

    # -- timers ---------------------------------------------------------------------------
    def _tick(self) -> None:
        rm = self.rm
        assert rm is not None
        now = self.sched.now_ms
        rm.try_complete(now)
        for tp, part in sorted(rm.partitions.items()):
            proposal = part.isr_change_to_propose(now)
            if proposal is None:
                continue
            body = ("alter_partition", self.broker_id, self.broker_epoch, tp[0], tp[1], part.leader_epoch,
                    part.partition_epoch, proposal)
            self._call_controller(body, lambda resp, part=part: self._on_alter_partition(part, resp),
                      self.config["request.timeout.ms"])
        if now - self._last_flush >= FLUSH_EVERY_MS:
            self._last_flush = now
            rm.flush_logs()
        self._send_fetches()
        self.timer(TICK_MS, "tick", self._tick)

    def _on_alter_partition(self, part: Any, resp: Any) -> None:
        if self.rm is None or self.rm.partitions.get((part.topic, part.partition)) is not part:
            return
        if resp is None:
            return  # unanswered: the leader proposes again after request.timeout.ms
        code, reg = resp
        if code != ErrorCode.none or reg is None:
            part.isr_change_failed()
            return
        # Committed: adopt it now rather than waiting for the metadata to arrive (as the broker does).
        if reg.leader_epoch == part.leader_epoch:
            part.isr = list(reg.isr)
            part.partition_epoch = reg.partition_epoch
            part.pending_isr = None
            part.maybe_advance_high_watermark()
            self.rm.try_complete(self.sched.now_ms)


def lose_unflushed_tail(log_dir: str, flushed_offset: int, torn: random.Random | None) -> None:
    """Cut a partition's segment files back to `flushed_offset` (what a power loss keeps);
    with `torn`, keep a random prefix of the first lost batch, as a half-written page."""
    bases = sorted(b for name in os.listdir(log_dir)
                   if name.endswith(LOG_SUFFIX) and (b := offset_from_name(name)) is not None)
    if not bases:
        return
    floor = max([b for b in bases if b <= flushed_offset] or [bases[0]])
    for base in bases:
        if base > floor:
            prefix = f"{base:020d}."
            for name in os.listdir(log_dir):
                if name.startswith(prefix):
                    os.unlink(os.path.join(log_dir, name))
    path = os.path.join(log_dir, f"{floor:020d}{LOG_SUFFIX}")
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + HEADER_SIZE <= len(data):
        h = parse_header(data, pos)
        if h.base_offset >= flushed_offset or pos + h.size > len(data):
            break
        pos += h.size
    cut = pos
    if torn is not None and pos + HEADER_SIZE <= len(data):
        cut = pos + torn.randrange(1, min(parse_header(data, pos).size, len(data) - pos))
    if cut < len(data):
        os.truncate(path, cut)
