"""The simulated controller quorum: each voter a `RaftNode` + `ActiveController` + `Controller`,
wired as the controller process wires them (kafkalab.controller.raft_listener.hear).

Voters speak Raft's own messages (Vote, BeginQuorumEpoch, EndQuorumEpoch, Fetch, FetchSnapshot,
the kio objects RaftNode makes) over the simulated network; Raft times its requests out itself.
Brokers and producers call whichever voter they believe active; one that is not answers
`("not_controller", leader hint)` and the caller turns to the hint or the next voter. A crash
keeps the voter's Raft log and its persisted quorum state (its disk) and loses the rest: the
restarted voter replays its log and rejoins as a follower or candidate.

`QuorumChecks` watches every voter's outputs and every broker's metadata: one Raft leader per
epoch, every voter commits the same record at an offset, and brokers apply only records the
quorum committed (so their metadata is a prefix of the committed log).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
from kafkalab.controller.quorum import QUORUM_TIMEOUTS
from kafkalab.controller.raft import (
    Committed,
    NotLeader,
    Output,
    QuorumStateRecord,
    RaftNode,
    Role,
    RoleChanged,
    SnapshotLoaded,
)
from kafkalab.controller.raft_listener import committed_read, hear, leader_and_epoch
from kafkalab.controller.raft_log import InMemoryRaftLog, decode_committed
from kafkalab.metadata.image import decode_record
from kafkalab.records.batch import decode_batch
from kafkalab.records.scan import iter_batches
from kafkalab.sim.controller_node import TICK_MS, serve
from kafkalab.sim.network import Network
from kafkalab.sim.node import Calls, SimNode
from kafkalab.sim.replication_checks import Broken
from kafkalab.sim.scheduler import Scheduler

RAFT_ONE_LEADER = "one Raft leader per epoch"
METADATA_KEPT = "committed metadata is never lost (brokers apply a prefix of the quorum's committed log)"
ANSWERS_COMMITTED = "a controller's answer leaves only once what it says is committed"
NOT_CONTROLLER = "not_controller"


@dataclass(frozen=True, slots=True)
class RaftMessage:
    """A Raft request or response between voters (Raft correlates and times out its own)."""

    source: int
    correlation_id: int
    message: Any
    is_response: bool


@dataclass
class QuorumChecks:
    checks: int = 0
    leaders: dict[int, int] = field(default_factory=dict)  # epoch -> voter
    committed: dict[int, bytes] = field(default_factory=dict)  # offset -> record value, first committed
    # What committed records say, for checking answers: registrations by offset, partition
    # epochs, and the producer-id blocks handed out so far.
    registrations: dict[int, int] = field(default_factory=dict)  # offset -> broker
    partition_epochs: set[tuple[str, int, int]] = field(default_factory=set)
    next_producer_id: int = 0

    def raft_output(self, voter: int, out: Output) -> None:
        self.checks += 2
        for e in out.effects:
            if isinstance(e, RoleChanged) and e.role is Role.LEADER:
                first = self.leaders.setdefault(e.epoch, voter)
                if first != voter:
                    raise Broken(RAFT_ONE_LEADER, f"epoch {e.epoch} led by controller {first} and controller {voter}")
            elif isinstance(e, Committed):
                for b in e.batches:
                    for i, value in enumerate(b.values):
                        self._committed(f"controller {voter}", b.base_offset + i, value)
            elif isinstance(e, SnapshotLoaded):
                raise Broken(METADATA_KEPT, f"controller {voter} loaded snapshot {e.snapshot_id}; none are made")

    def _committed(self, who: str, offset: int, value: bytes) -> None:
        first = self.committed.get(offset)
        if first is None:
            self.committed[offset] = value
            r = decode_record(value)
            if r["type"] == "RegisterBrokerRecord":
                self.registrations[offset] = r["broker_id"]
            elif r["type"] in ("PartitionRecord", "PartitionChangeRecord"):
                self.partition_epochs.add((r["topic"], r["partition"], r["partition_epoch"]))
            elif r["type"] == "ProducerIdsRecord":
                self.next_producer_id = max(self.next_producer_id, r["next_producer_id"])
        elif first != value:
            raise Broken(METADATA_KEPT, f"{who} committed a different record at metadata offset {offset} "
                                        "than an earlier commit")

    def answer(self, voter: int, body: Any, response: Any) -> None:
        """Controller `voter` sends `response` to the request `body`: what it tells the broker
        (a broker epoch, a new ISR, producer ids) must already be committed."""
        self.checks += 1
        kind, what = body[0], None
        if kind == "register" and self.registrations.get(response) != body[1]:
            what = f"broker {body[1]} epoch {response} (no committed registration at that offset)"
        elif kind == "alter_partition" and response[1] is not None and int(response[0]) == 0:
            reg = response[1]
            if (body[3], body[4], reg.partition_epoch) not in self.partition_epochs:
                what = f"{body[3]}-{body[4]} ISR {reg.isr} at partition epoch {reg.partition_epoch}"
        elif kind == "init_producer_id" and response >= self.next_producer_id:
            what = f"producer id {response} (committed blocks end at {self.next_producer_id})"
        if what is not None:
            raise Broken(ANSWERS_COMMITTED, f"controller {voter} answered {kind} with {what} before the "
                                            "quorum committed it")

    def broker_applies(self, broker: int, data: bytes) -> None:
        """A broker is about to apply this metadata (committed batches, as a fetch answered)."""
        self.checks += 1
        for pos, h in iter_batches(data):
            if h.is_control:
                continue
            for rec in decode_batch(data, pos).records:
                seen = self.committed.get(rec.offset)
                if seen != rec.value:
                    raise Broken(METADATA_KEPT, f"broker {broker} applies metadata offset {rec.offset}, which "
                                                + ("no voter committed" if seen is None else
                                                   "differs from what the quorum committed"))

    def final(self, log: InMemoryRaftLog, high_watermark: int, broker_offsets: dict[int, int]) -> None:
        """The active controller's log at the end holds every record any voter ever committed,
        and no broker has applied past its high watermark."""
        self.checks += 2
        batches, _, _ = decode_committed(log.read(log.log_start_offset, 1 << 30), log.log_start_offset,
                                         high_watermark)
        final = {b.base_offset + i: v for b in batches for i, v in enumerate(b.values)}
        for offset, value in sorted(self.committed.items()):
            if final.get(offset) != value:
                raise Broken(METADATA_KEPT, f"metadata offset {offset} was committed; the final log "
                                            + ("lacks it" if offset not in final else "has another record there"))
        for broker, offset in sorted(broker_offsets.items()):
            if offset > high_watermark:
                raise Broken(METADATA_KEPT, f"broker {broker} applied metadata up to {offset}, past the "
                                            f"quorum's high watermark {high_watermark}")


class SimQuorumController(SimNode):
    """One controller voter. `name_of(voter id)` is a voter's node name."""

    def __init__(self, node_id: int, voters: list[int], name_of: Callable[[int], str], scheduler: Scheduler,
                 network: Network, calls: Calls, config: dict[str, Any], rng: random.Random,
                 on_event: Callable[[str, dict[str, Any]], None], checks: QuorumChecks) -> None:
        super().__init__(name_of(node_id), scheduler, network, calls)
        self.node_id = node_id
        self.voters = voters
        self.name_of = name_of
        self.config = config
        self.rng = rng
        self.on_event = on_event
        self.checks = checks
        self.log = InMemoryRaftLog()  # the disk: kept across crashes, with the quorum state
        self.persisted: QuorumStateRecord | None = None
        self.raft: RaftNode | None = None
        self.active: ActiveController | None = None
        self._told = LeaderAndEpoch(-1, 0)
        self._outputs: list[Output] = []
        self._poll_at = -1
        self._pids: list[int] = []

    # -- life -----------------------------------------------------------------------------
    def on_start(self) -> None:
        now = self.sched.now_ms
        self.raft = RaftNode(self.node_id, self.voters, self.log, rng=random.Random(self.rng.getrandbits(64)),
                             quorum_state=self.persisted, cluster_id="kafkalab", **QUORUM_TIMEOUTS["lab"])
        self.active = ActiveController(self.node_id, self.config, self._append,
                                       rng=random.Random(self.rng.getrandbits(64)))
        self._told, self._outputs, self._poll_at, self._pids = LeaderAndEpoch(-1, 0), [], -1, []
        self._run(self.raft.start(now))
        self.timer(TICK_MS, "tick", self._tick)

    def on_crash(self) -> None:
        self.raft = self.active = None

    @property
    def is_active(self) -> bool:
        return self.up and self.active is not None and self.active.active

    def leader_hint(self) -> int:
        return leader_and_epoch(self.raft).leader_id if self.raft is not None else -1

    # -- Raft I/O (as controller/server.py) -----------------------------------------------
    def _run(self, out: Output | None = None) -> None:
        raft, active = self.raft, self.active
        assert raft is not None and active is not None
        outs, self._outputs = [*self._outputs, *([out] if out is not None else [])], []
        for o in outs:
            self.checks.raft_output(self.node_id, o)
        heard = hear(raft, active, self._told, outs)
        self._told = heard.leader
        if heard.quorum_state is not None:
            self.persisted = heard.quorum_state  # "fsynced" before any message leaves
        for e in heard.raft_events:
            if isinstance(e, RoleChanged) and e.role in (Role.LEADER, Role.CANDIDATE, Role.RESIGNED):
                self.on_event("quorum_role", {"controller": self.node_id, "role": str(e.role), "epoch": e.epoch})
        for m in heard.messages:
            self.net.send(self.name, self.name_of(m.destination),
                          RaftMessage(self.node_id, m.correlation_id, m.message, m.is_response))
        self._apply(heard.effects)
        self._arm_poll()

    def _arm_poll(self) -> None:
        if self.raft is None:
            return
        at = max(self.raft.next_deadline_ms(), self.sched.now_ms + 1)
        if 0 <= self._poll_at <= at:
            return  # an earlier poll is armed; it re-arms after it runs
        self._poll_at = at
        self.timer(at - self.sched.now_ms, "raft poll", lambda: self._poll(at))

    def _poll(self, at: int) -> None:
        if self._poll_at != at or self.raft is None:
            return
        self._poll_at = -1
        self._run(self.raft.poll(self.sched.now_ms))

    def _append(self, values: list[bytes]) -> int:
        assert self.raft is not None
        last, out = self.raft.append(values, self.sched.now_ms)
        self._outputs.append(out)
        if isinstance(last, NotLeader):
            raise RuntimeError(f"{self.name} lost leadership while committing (leader {last.leader_id})")
        return last

    def _apply(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Reply):
                src, corr, body = e.request
                self.checks.answer(self.node_id, body, e.response)
                self.reply(src, corr, e.response)
            elif isinstance(e, AnswerFetch):
                assert self.raft is not None
                src, corr, _ = e.request
                self.reply(src, corr, (e.offset, committed_read(self.raft.log, e.offset, e.high_watermark)))
            elif isinstance(e, Fail):
                src, corr, _ = e.request
                self.reply(src, corr, (NOT_CONTROLLER, self.leader_hint()))
            elif isinstance(e, Event):
                self.on_event(e.name, e.detail)
            elif isinstance(e, Activated | Deactivated):
                self._pids = []  # a block belongs to the active controller that allocated it
                self.on_event("controller_active" if isinstance(e, Activated) else "controller_inactive",
                              {"controller": self.node_id, "epoch": e.epoch})

    # -- messages -------------------------------------------------------------------------
    def _on_message(self, src: str, msg: Any) -> None:
        if not isinstance(msg, RaftMessage):
            super()._on_message(src, msg)
            return
        raft = self.raft
        assert raft is not None
        now = self.sched.now_ms
        if msg.is_response:
            self._run(raft.handle_response(msg.source, msg.correlation_id, msg.message, now))
        else:
            self._run(raft.handle_request(msg.source, msg.correlation_id, msg.message, now))

    def handle(self, src: str, corr: int, body: Any) -> None:
        active = self.active
        assert active is not None
        request = (src, corr, body)
        if active.controller is None:
            self._apply([Fail(request)])
            return
        now = self.sched.now_ms
        try:
            if body[0] == "fetch_metadata":
                _, offset, max_wait_ms = body
                effects = active.fetch(request, offset, max_wait_ms, now)
            else:
                effects = active.respond(request, serve(active.controller, src, body, now, self._pids))
        finally:
            self._run()  # what the Controller appended: replicate it
        self._apply(effects)

    def admin(self, fn: Callable[[Any], Any]) -> Any:
        """An admin request made on the active controller (create a topic): answered at once,
        durable once committed (the caller watches the committed image)."""
        assert self.active is not None and self.active.controller is not None
        try:
            return fn(self.active.controller)
        finally:
            self._apply(self.active.take())
            self._run()

    # -- timers ---------------------------------------------------------------------------
    def _tick(self) -> None:
        assert self.raft is not None and self.active is not None
        self._run(self.raft.poll(self.sched.now_ms))  # a leader that lost its quorum resigns first
        try:
            effects = self.active.tick(self.sched.now_ms)
        finally:
            self._run()
        self._apply(effects)
        self.timer(TICK_MS, "tick", self._tick)
