"""KIP-848's consumer group protocol under the simulator (ConsumerGroupHeartbeat).

The broker's `ConsumerGroupCoordinator` core runs next to the classic `GroupCoordinator` (which
keeps the offsets) on the simulated broker that leads the group's `__consumer_offsets` partition;
both write to one in-memory copy of it, and a failover replays it on another broker, as in
`kafkalab.sim.groups`. 3-6 members heartbeat on their own (no JoinGroup barrier), reconcile
towards the assignment they are sent (give up what they lose at once, fetch the committed offsets
of what they gain), process, commit with their member epoch, crash, pause past the session
timeout and wake up as zombies, lose their link to the coordinator one way for a while, and
leave.

Invariants, checked as each event happens:
- a partition is handed to a member only once its previous owner gave it up (the previous owner,
  if still a member, no longer holds it in its own view) - KIP-848's reconciliation rule;
- a commit is accepted only with the member's current epoch (the latest the coordinator sent it);
- a partition's committed offset never goes backwards.
"""

from __future__ import annotations

import datetime
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.consumer_group_heartbeat.v1 import request as chb
from kio.schema.errors import ErrorCode
from kio.schema.offset_commit.v8 import request as oc

from kafkalab.broker.consumer_group import ConsumerGroupCoordinator, Topic
from kafkalab.broker.group_coordinator import GroupCoordinator, decode_offset_record
from kafkalab.sim.invariants import RunSummary, Story
from kafkalab.sim.network import LinkFaults, Network
from kafkalab.sim.scheduler import Event, Scheduler

SCENARIO = "consumer-groups"
GROUP = "sim-consumers"
TOPIC = "in"
TOPIC_ID = "5f1d2a3b-0000-4000-8000-000000000001"
TP = tuple[str, int]  # (topic id, partition), as the KIP-848 core names partitions

SESSION_MS = 600
REBALANCE_MS = 1000
HEARTBEAT_MS = 100
REQUEST_TIMEOUT_MS = 300
COMMIT_EVERY_MS = 80
PROCESS_EVERY_MS = 30
RUN_MS = 20_000
QUIET_MS = 2_000


def _ms(ms: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=ms)


@dataclass
class Host:
    index: int
    node: str
    up: bool = True
    gc: GroupCoordinator | None = None  # offsets (and the classic side)
    cgc: ConsumerGroupCoordinator | None = None  # the consumer protocol's members and epochs
    last_seq: dict[str, int] = field(default_factory=dict)


@dataclass
class Member:
    index: int
    node: str
    rng: random.Random
    incarnation: int = 0
    alive: bool = True
    paused_until: int = -1
    member_id: str = ""
    epoch: int = 0
    owned: set[TP] = field(default_factory=set)  # what it holds (and processes) in its own view
    target: set[TP] = field(default_factory=set)  # the assignment it was last sent
    positions: dict[TP, int] = field(default_factory=dict)
    coordinator: int = 0
    inflight: dict[int, tuple[str, Event]] = field(default_factory=dict)
    left: bool = False
    processing: bool = True


class ConsumerGroupsSim(Story):
    def __init__(self, seed: int, *, brokers: int = 3, faults: bool = True, trace: bool = False) -> None:
        self.seed = seed
        self.sched = Scheduler(seed)
        self.net_rng = self.sched.fork()
        self.fault_rng = self.sched.fork()
        self.id_rng = self.sched.fork()
        self.faults_on = faults
        self.net = Network(self.sched, self.net_rng, LinkFaults(delay_ms=(1, 8), loss=0.01 if faults else 0.0))
        self.trace: list[str] | None = [] if trace else None
        self.partitions = self.fault_rng.randint(4, 8)
        self.log: list[tuple[bytes, bytes | None]] = []
        self.append_done_ms = 0
        self.hosts = [Host(i, f"broker-{i}") for i in range(max(brokers, 1))]
        self.owner = 0
        self.members = [Member(i, f"member-{i}", self.sched.fork()) for i in range(self.fault_rng.randint(3, 6))]
        self.seq = 0
        self.sent_epoch: dict[str, int] = {}  # member id -> the epoch the coordinator last sent it
        self.committed: dict[TP, int] = {}
        self.faults = self.acknowledged = self.checks = 0
        for h in self.hosts:
            self.net.attach(h.node, lambda src, msg, h=h: self._host_receive(h, src, msg))
        for m in self.members:
            self.net.attach(m.node, lambda src, msg, m=m: self._member_receive(m, msg))
        self._load(self.hosts[0])

    # -- coordinator hosts -----------------------------------------------------------------------
    def _load(self, h: Host) -> None:
        def owns(_: Any) -> str:
            return "yes" if self.owner == h.index and h.up else "no"

        gc = GroupCoordinator(num_partitions=1, append=lambda p, recs, done: self._append(h, recs, done),
                              owns=owns, new_member_id=lambda client_id: f"classic-{client_id}")
        cgc = ConsumerGroupCoordinator(
            topics=lambda: {TOPIC: Topic(TOPIC_ID, TOPIC, self.partitions)}, owns=owns,
            new_member_id=lambda: f"consumer-{self.id_rng.getrandbits(32):08x}",
            session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS)
        gc.load_other = cgc.load_record
        for offset, (key, value) in enumerate(self.log):
            gc.load_record(key, value, self.sched.now_ms, log_offset=offset)
        h.gc, h.cgc = gc, cgc
        self.owner = h.index
        g = cgc.groups.get(GROUP)
        # What the log says is what the new coordinator holds: member epochs as written.
        self.sent_epoch = {mid: m.member_epoch for mid, m in g.members.items()} if g else {}
        self.say(f"{h.node} loads the offsets partition ({len(self.log)} records): "
                 f"group epoch {g.group_epoch if g else 0}")

    def _append(self, h: Host, records: list[tuple[bytes, bytes | None]], done: Callable[..., None]) -> None:
        gc = h.gc

        def land() -> None:
            if not (h.up and self.owner == h.index and h.gc is gc):
                done(ErrorCode.not_leader_or_follower)
                return
            base = len(self.log)
            for key, value in records:
                decoded = decode_offset_record(key, value)
                if decoded is not None and decoded[2] is not None:
                    self._check_forward(decoded[1], decoded[2][0])
            self.log.extend(records)
            done(ErrorCode.none, base)

        self.append_done_ms = max(self.append_done_ms, self.sched.now_ms + self.net_rng.randint(1, 6))
        self.sched.at(self.append_done_ms, f"{h.node} appends to __consumer_offsets", land)

    def _check_forward(self, tp: tuple[str, int], offset: int) -> None:
        self.checks += 1
        before = self.committed.get(tp, -1)
        if offset < before:
            raise self.violation("committed offsets never go backwards",
                                 f"{tp[0]}-{tp[1]} committed {offset} after {before}")
        self.committed[tp] = offset

    def _host_receive(self, h: Host, src: str, msg: Any) -> None:
        _, seq, kind, req = msg
        if seq <= h.last_seq.get(src, 0):
            return  # overtaken on its way: TCP would not deliver it out of order
        h.last_seq[src] = seq

        def reply(result: Any) -> None:
            if h.up:
                self.net.send(h.node, src, ("resp", seq, kind, result))

        gc, cgc, now = h.gc, h.cgc, self.sched.now_ms
        if gc is None or cgc is None:
            reply({"error_code": ErrorCode.not_coordinator})
        elif kind == "heartbeat":
            resp, records = cgc.heartbeat(req, now)
            if resp["error_code"] == ErrorCode.none:
                self._handed_out(cgc, resp)
            if not records:
                reply(resp)
            else:
                gc.append(0, records, lambda code, *_: reply(
                    resp if code == ErrorCode.none else {**resp, "error_code": ErrorCode.not_coordinator}))
        elif kind == "commit":
            epoch, member_id = int(req.generation_id_or_member_epoch), str(req.member_id)
            code = cgc.validate_commit(GROUP, member_id, epoch)
            if code is not None and code != ErrorCode.none:
                reply({"error_code": code})
                return
            # As the broker's wiring: a checked commit goes to the offsets store with no member.
            checked = oc.OffsetCommitRequest(group_id=req.group_id, generation_id_or_member_epoch=-1, member_id="",
                                             group_instance_id=None, topics=req.topics)
            current = self.sent_epoch.get(member_id)  # as the commit is validated
            gc.commit_offsets(checked, now, lambda codes: self._commit_answered(member_id, epoch, current, codes,
                                                                                 reply))
        elif kind == "fetch":
            err, offsets = gc.fetch_offsets(GROUP, [(TOPIC, p) for _, p in req])
            reply({"error_code": err, "offsets": {(TOPIC_ID, p): o[0] for (_, p), o in offsets.items()}})

    def _handed_out(self, cgc: ConsumerGroupCoordinator, resp: dict[str, Any]) -> None:
        """The reconciliation rule: nothing goes to a member while another member holds it."""
        member_id = resp["member_id"]
        self.sent_epoch[member_id] = resp["member_epoch"]
        if resp["assignment"] is None:
            return
        g = cgc.groups[GROUP]
        for tp in resp["assignment"]:
            self.checks += 1
            holder = next((x for x in self.members if x.member_id != member_id and x.alive
                           and tp in x.owned and x.member_id in g.members), None)
            if holder is not None:
                raise self.violation("a partition is handed on only once its owner gave it up",
                                     f"{TOPIC}-{tp[1]} sent to {member_id} (epoch {resp['member_epoch']}) while "
                                     f"{holder.member_id} (a member at epoch {holder.epoch}) still holds it")

    def _commit_answered(self, member_id: str, epoch: int, current: int | None,
                         codes: dict[tuple[str, int], ErrorCode], reply: Callable[[Any], None]) -> None:
        self.checks += 1
        if any(c == ErrorCode.none for c in codes.values()):
            if current != epoch:
                raise self.violation("a commit is accepted only at the member's current epoch",
                                     f"{member_id} committed with epoch {epoch}; its current epoch is {current}")
            self.acknowledged += 1
        reply({"error_code": next(iter(codes.values()), ErrorCode.none)})

    def _tick(self) -> None:
        self.sched.after(50, "coordinator tick", self._tick)
        for h in self.hosts:
            if h.up and h.gc is not None and h.cgc is not None:
                for _gid, records in h.cgc.tick(self.sched.now_ms).items():
                    h.gc.append(0, records, lambda code, *_: None)

    # -- members ---------------------------------------------------------------------------------
    def _send(self, m: Member, kind: str, req: Any) -> None:
        self.seq += 1
        seq, inc = self.seq, m.incarnation
        timer = self.sched.after(REQUEST_TIMEOUT_MS, f"{m.node} {kind} times out",
                                 lambda: self._timed_out(m, inc, seq))
        m.inflight[seq] = (kind, timer)
        self.net.send(m.node, self.hosts[m.coordinator].node, ("req", seq, kind, req))

    def _timed_out(self, m: Member, inc: int, seq: int) -> None:
        if not m.alive or m.incarnation != inc or seq not in m.inflight:
            return
        if self._paused(m, lambda: self._timed_out(m, inc, seq)):
            return
        m.inflight.pop(seq)
        m.coordinator = self.owner  # FindCoordinator

    def _paused(self, m: Member, again: Callable[[], None]) -> bool:
        if self.sched.now_ms < m.paused_until:
            self.sched.at(m.paused_until, f"{m.node} wakes up", again)
            return True
        return False

    def _member_receive(self, m: Member, msg: Any) -> None:
        _, seq, kind, result = msg
        if seq not in m.inflight:
            return
        m.inflight.pop(seq)[1].cancelled = True
        if result["error_code"] in (ErrorCode.not_coordinator, ErrorCode.coordinator_not_available,
                                    ErrorCode.coordinator_load_in_progress):
            m.coordinator = self.owner
            return
        getattr(self, f"_on_{kind}")(m, result)

    def _busy(self, m: Member, kind: str) -> bool:
        return any(k == kind for k, _ in m.inflight.values())

    def _heartbeat(self, m: Member, inc: int) -> None:
        if not m.alive or m.incarnation != inc:
            return
        if self._paused(m, lambda: self._heartbeat(m, inc)):
            return
        self.sched.after(HEARTBEAT_MS, f"{m.node} heartbeat", lambda: self._heartbeat(m, inc))
        if m.left or self._busy(m, "heartbeat"):
            return
        self._send(m, "heartbeat", chb.ConsumerGroupHeartbeatRequest(
            group_id=GROUP, member_id=m.member_id, member_epoch=m.epoch, instance_id=None, rack_id=None,
            rebalance_timeout=_ms(REBALANCE_MS), subscribed_topic_names=(TOPIC,), subscribed_topic_regex=None,
            server_assignor=None,
            topic_partitions=(chb.TopicPartitions(topic_id=uuid.UUID(TOPIC_ID),
                                                  partitions=tuple(sorted(p for _, p in m.owned))),)))

    def _on_heartbeat(self, m: Member, r: dict[str, Any]) -> None:
        code = r["error_code"]
        if code in (ErrorCode.fenced_member_epoch, ErrorCode.unknown_member_id):
            # Out of the group: give everything up, join again (a fenced member keeps its id).
            self.say(f"{m.node} ({m.member_id}) is out of the group ({code.name}): rejoins")
            m.owned, m.target, m.positions, m.epoch = set(), set(), {}, 0
            if code == ErrorCode.unknown_member_id:
                m.member_id = ""
            return
        if code != ErrorCode.none or r["member_epoch"] < 0:
            return  # an error to retry, or the answer to its leaving
        m.member_id, m.epoch = r["member_id"], r["member_epoch"]
        if r["assignment"] is None:
            return
        target = {(str(t), int(p)) for t, p in r["assignment"]}
        gone = m.owned - target
        if gone or target != m.target:
            self.say(f"{m.node} ({m.member_id}) epoch {m.epoch}: {sorted(p for _, p in target)}")
        m.target = target
        for tp in gone:  # revoked: given up at once (its next heartbeat says so)
            m.owned.discard(tp)
            m.positions.pop(tp, None)
        new = sorted(target - m.owned)
        if new:
            self._send(m, "fetch", new)

    def _on_fetch(self, m: Member, r: dict[str, Any]) -> None:
        for tp, o in r["offsets"].items():
            if tp in m.target and tp not in m.owned:
                m.owned.add(tp)
                m.positions[tp] = max(o, 0)

    def _process(self, m: Member, inc: int) -> None:
        if not m.alive or m.incarnation != inc:
            return
        if self._paused(m, lambda: self._process(m, inc)):
            return
        self.sched.after(PROCESS_EVERY_MS, f"{m.node} polls", lambda: self._process(m, inc))
        if m.processing:
            for tp in m.positions:
                m.positions[tp] += m.rng.randint(0, 3)

    def _auto_commit(self, m: Member, inc: int) -> None:
        if not m.alive or m.incarnation != inc:
            return
        if self._paused(m, lambda: self._auto_commit(m, inc)):
            return
        self.sched.after(COMMIT_EVERY_MS, f"{m.node} commits", lambda: self._auto_commit(m, inc))
        if m.positions and m.epoch > 0 and not self._busy(m, "commit"):
            self._commit(m)

    def _commit(self, m: Member) -> None:
        self._send(m, "commit", oc.OffsetCommitRequest(
            group_id=GROUP, generation_id_or_member_epoch=m.epoch, member_id=m.member_id, group_instance_id=None,
            topics=(oc.OffsetCommitRequestTopic(name=TOPIC, partitions=tuple(
                oc.OffsetCommitRequestPartition(partition_index=p, committed_offset=o, committed_leader_epoch=-1,
                                                committed_metadata="")
                for (_, p), o in sorted(m.positions.items()))),)))

    def _on_commit(self, m: Member, r: dict[str, Any]) -> None:
        pass  # a stale epoch's commit is refused; the next one carries the new epoch

    def _start(self, m: Member) -> None:
        inc = m.incarnation
        m.coordinator = self.owner
        for step, every in ((self._heartbeat, HEARTBEAT_MS), (self._process, PROCESS_EVERY_MS),
                            (self._auto_commit, COMMIT_EVERY_MS)):
            self.sched.after(m.rng.randint(1, every), f"{m.node} timer", lambda step=step: step(m, inc))

    # -- faults ----------------------------------------------------------------------------------
    def _fault(self) -> None:
        if self.sched.now_ms >= RUN_MS - QUIET_MS:
            return
        self.sched.after(self.fault_rng.randint(200, 1200), "fault", self._fault)
        r = self.fault_rng
        kind = r.choice(["crash", "pause", "leave", "cut", "failover", "coordinator crash"])
        self.faults += 1
        now = self.sched.now_ms
        if kind in ("crash", "pause", "leave", "cut"):
            m = r.choice(self.members)
            if not m.alive or now < m.paused_until or m.left:
                return
            if kind == "crash":
                self.say(f"{m.node} crashes")
                self._crash_member(m)
                self.sched.after(r.randint(100, 1500), f"{m.node} restarts", lambda: self._restart_member(m))
            elif kind == "pause":
                d = r.randint(200, 1500)
                self.say(f"{m.node} pauses for {d} ms (session timeout {SESSION_MS} ms)")
                m.paused_until = now + d
                self.net.pause(m.node)
                self.sched.after(d, f"{m.node} resumes", lambda: self.net.resume(m.node))
            elif kind == "cut":
                host = self.hosts[self.owner]
                link = (m.node, host.node) if r.random() < 0.5 else (host.node, m.node)
                d = r.randint(200, 1500)
                self.say(f"the link {link[0]} -> {link[1]} is cut for {d} ms")
                self.net.cut_one_way(*link)
                self.sched.after(d, "link heals", lambda: self.net.cut.discard(link))
            else:
                self.say(f"{m.node} leaves the group")
                self._send(m, "heartbeat", chb.ConsumerGroupHeartbeatRequest(
                    group_id=GROUP, member_id=m.member_id, member_epoch=-1, instance_id=None, rack_id=None,
                    rebalance_timeout=_ms(REBALANCE_MS), subscribed_topic_names=None, subscribed_topic_regex=None,
                    server_assignor=None,
                    topic_partitions=None))
                m.left, m.member_id, m.epoch, m.owned, m.target, m.positions = True, "", 0, set(), set(), {}
                inc = m.incarnation
                self.sched.after(r.randint(100, 800), f"{m.node} rejoins",
                                 lambda: m.incarnation == inc and setattr(m, "left", False))
            return
        old = self.hosts[self.owner]
        others = [h for h in self.hosts if h.up and h is not old]
        if not others:
            return
        new = r.choice(others)
        if kind == "failover":
            self.say(f"leadership of the offsets partition moves {old.node} -> {new.node}")
            assert old.gc is not None and old.cgc is not None
            old.gc.unload_partition(0)
            old.cgc.unload(lambda gid: False)
            old.gc = old.cgc = None
        else:
            self.say(f"{old.node} (the coordinator) crashes")
            old.up, old.gc, old.cgc = False, None, None
            old.last_seq.clear()
            self.net.crash(old.node)
            self.sched.after(r.randint(200, 1000), f"{old.node} restarts", lambda: self._restart_host(old))
        self.owner = new.index
        self._load(new)

    def _restart_host(self, h: Host) -> None:
        h.up = True
        self.net.restart(h.node, lambda src, msg: self._host_receive(h, src, msg))
        self.say(f"{h.node} restarts")

    def _crash_member(self, m: Member) -> None:
        m.alive = False
        m.incarnation += 1
        for _, ev in m.inflight.values():
            ev.cancelled = True
        m.inflight.clear()
        self.net.crash(m.node)

    def _restart_member(self, m: Member) -> None:
        m.alive, m.member_id, m.epoch, m.left = True, "", 0, False
        m.owned, m.target, m.positions = set(), set(), {}
        self.net.restart(m.node, lambda src, msg: self._member_receive(m, msg))
        self.say(f"{m.node} restarts as a new member")
        self._start(m)

    def _quiet(self) -> None:
        self.net.faults.loss = 0.0
        for m in self.members:
            m.processing = False

    def run(self) -> RunSummary:
        self.say(f"{len(self.hosts)} brokers; {len(self.members)} members share {self.partitions} partitions of {TOPIC}")
        for m in self.members:
            self._start(m)
        self.sched.after(50, "coordinator tick", self._tick)
        if self.faults_on:
            self.sched.after(self.fault_rng.randint(300, 1000), "fault", self._fault)
        self.sched.at(RUN_MS - QUIET_MS // 2, "quiet", self._quiet)
        self.sched.run_until(RUN_MS)
        return RunSummary(SCENARIO, self.seed, RUN_MS / 1000, self.sched.events_run, self.faults,
                          self.acknowledged, self.checks, self.trace)

    def final_positions(self) -> dict[tuple[str, int], int]:
        return {(TOPIC, p): o for m in self.members if m.alive for (_, p), o in m.positions.items()}


def run(seed: int, *, brokers: int = 3, controllers: int = 1, trace: bool = False) -> RunSummary:
    """One seeded run of the KIP-848 consumer protocol; raises Violation when an invariant fails.
    `controllers` is accepted for the CLI's sake: the coordinator's failover is simulated here."""
    return ConsumerGroupsSim(seed, brokers=brokers, trace=trace).run()
