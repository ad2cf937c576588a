"""The classic consumer-group protocol under the simulator.

The broker's `GroupCoordinator` core runs on one of the simulated brokers (the leader of the
group's `__consumer_offsets` partition); its records go to one in-memory copy of that partition
(acknowledged writes are durable, as with acks=all). Coordinator failover is what Kafka does on a
leader change: the old host unloads the partition, the new one replays the log and carries on.
3-6 members speak JoinGroup, SyncGroup, Heartbeat, OffsetCommit, OffsetFetch and LeaveGroup over
the simulated network (kio request objects, as the core takes them); the leader runs a seeded
assignor. Members crash and come back, pause past their session timeout and wake up as zombies,
lose their link to the coordinator one way for a while, leave and rejoin, and commit what they
processed; static members (group.instance.id) come back under their id, and a second process
with the same id takes a running one's place.

Invariants, checked as each event happens:
- one owner per partition per generation (by the members' own view of their assignment; a static
  member and the process that takes its place count as one);
- a commit carrying a generation older than one the coordinator already handed out (or loaded
  from the log) is never accepted;
- a replaced static member's commit is never accepted: the replacement is the one the
  coordinator answered, or after a failover the one the log holds (a replacement made during a
  rebalance and not yet written is lost with the old coordinator, as in Kafka);
- a partition's committed offset never goes backwards (members here never reset on purpose).
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode
from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.join_group.v9 import request as jg
from kio.schema.leave_group.v5 import request as lg
from kio.schema.offset_commit.v8 import request as oc
from kio.schema.sync_group.v5 import request as sg

from kafkalab.broker.group_coordinator import GroupCoordinator, decode_offset_record
from kafkalab.client.assignors import (
    Subscription,
    decode_assignment,
    encode_assignment,
    encode_subscription,
)
from kafkalab.sim.invariants import RunSummary, Story
from kafkalab.sim.network import LinkFaults, Network
from kafkalab.sim.scheduler import Event, Scheduler

SCENARIO = "groups"
GROUP = "sim-group"
TOPIC = "in"
TP = tuple[str, int]

SESSION_MS = 600
REBALANCE_MS = 1000
HEARTBEAT_MS = 100
REQUEST_TIMEOUT_MS = 300
COMMIT_EVERY_MS = 80
PROCESS_EVERY_MS = 30
RUN_MS = 30_000
QUIET_MS = 2_000  # the end of a run: no new faults, members finish and commit


def _ms(ms: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=ms)


class OffsetsLog:
    """The group's __consumer_offsets partition: what was acknowledged, in log order."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []


@dataclass
class Host:
    """A broker that may be the group's coordinator."""

    index: int
    node: str
    up: bool = True
    gc: GroupCoordinator | None = None  # while it leads the offsets partition
    last_seq: dict[str, int] = field(default_factory=dict)  # per connection: in order, as TCP


@dataclass
class Member:
    index: int
    node: str
    rng: random.Random
    incarnation: int = 0
    alive: bool = True
    paused_until: int = -1
    member_id: str = ""
    generation: int = -1
    state: str = "joining"  # joining, syncing, stable, left
    assignment: list[TP] = field(default_factory=list)
    positions: dict[TP, int] = field(default_factory=dict)  # next offset to process
    coordinator: int = 0  # the host it believes coordinates the group
    inflight: dict[int, tuple[str, Event]] = field(default_factory=dict)
    commit_inflight: bool = False
    processing: bool = True
    # Eager members commit, then rejoin; the others rejoin at once and keep auto-committing
    # their old assignment with its generation until the join answers (commits race the round).
    eager: bool = True
    instance: str | None = None  # group.instance.id of a static member


class GroupsSim(Story):
    def __init__(self, seed: int, *, brokers: int = 3, faults: bool = True, trace: bool = False) -> None:
        self.seed = seed
        self.sched = Scheduler(seed)
        self.net_rng = self.sched.fork()
        self.fault_rng = self.sched.fork()
        self.id_rng = self.sched.fork()
        self.faults_on = faults
        self.net = Network(self.sched, self.net_rng,
                           LinkFaults(delay_ms=(1, 8), loss=0.01 if faults else 0.0))
        self.trace: list[str] | None = [] if trace else None
        self.partitions = self.fault_rng.randint(4, 8)
        self.log = OffsetsLog()
        self.hosts = [Host(i, f"broker-{i}") for i in range(max(brokers, 1))]
        self.owner = 0
        self.members = [Member(i, f"member-{i}", self.sched.fork(), eager=self.fault_rng.random() < 0.5)
                        for i in range(self.fault_rng.randint(3, 6))]
        for m in self.members:
            if self.fault_rng.random() < 0.4:
                m.instance = f"static-{m.index}"  # a static member: it comes back under the same id
        self.seq = 0
        self.append_done_ms = 0  # when the last append in flight is acknowledged
        # what the invariants remember
        self.max_generation = 0  # the highest generation the current coordinator handed out or loaded
        # (generation, partition) -> who owns it: the group.instance.id of a static member (a
        # restarted one takes its place and assignment in the same generation), else the member id
        self.owners: dict[tuple[int, TP], str] = {}
        # group.instance.id -> the member id the current coordinator gave it (or loaded)
        self.static_holder: dict[str, str] = {}
        self.committed: dict[TP, int] = {}
        self.faults = self.acknowledged = self.checks = 0
        for h in self.hosts:
            self.net.attach(h.node, lambda src, msg, h=h: self._host_receive(h, src, msg))
        for m in self.members:
            self.net.attach(m.node, lambda src, msg, m=m: self._member_receive(m, src, msg))
        self._load(self.hosts[0])

    # -- coordinator hosts -----------------------------------------------------------------------
    def _load(self, h: Host) -> None:
        """h becomes the leader of the offsets partition: a fresh coordinator replays the log."""
        gc = GroupCoordinator(num_partitions=1, append=lambda p, recs, done, h=h: self._append(h, recs, done),
                              owns=lambda p, h=h: "yes" if self.owner == h.index and h.up else "no",
                              new_member_id=lambda client_id: f"{client_id or 'consumer'}-{self.id_rng.getrandbits(32):08x}",
                              min_session_timeout_ms=100)
        for offset, (key, value) in enumerate(self.log.records):
            gc.load_record(key, value, self.sched.now_ms, log_offset=offset)
        h.gc = gc
        self.owner = h.index
        g = gc.groups.get(GROUP)
        # A generation handed out but never written (the leader's SyncGroup had not landed) is
        # lost with the old coordinator, as in Kafka: the new one starts from what the log says.
        self.max_generation = g.generation if g else 0
        # So is a static member's replacement made while the group rebalanced: Kafka's classic
        # coordinator (updateStaticMemberThenRebalanceOrCompleteJoin) swaps the member id in
        # memory only in PreparingRebalance and CompletingRebalance (Stable alone writes the
        # group record first), and the id reaches the log with the leader's SyncGroup. The next
        # coordinator loads the last group record: its group.instance.id -> member id is the one
        # OffsetCommit checks (validateMember: FENCED_INSTANCE_ID for any other id), so the old
        # process commits again and the new one is the fenced one.
        self.static_holder = dict(g.static) if g else {}
        self.say(f"{h.node} loads the offsets partition ({len(self.log.records)} records): "
                 f"generation {g.generation if g else 0}")

    def _append(self, h: Host, records: list[tuple[bytes, bytes | None]], done: Callable[..., None]) -> None:
        gc = h.gc

        def land() -> None:
            if not (h.up and self.owner == h.index and h.gc is gc):
                done(ErrorCode.not_leader_or_follower)
                return
            base = len(self.log.records)
            for key, value in records:
                decoded = decode_offset_record(key, value)
                if decoded is not None and decoded[2] is not None:
                    self._check_forward(decoded[1], decoded[2][0])
            self.log.records.extend(records)
            done(ErrorCode.none, base)

        # A partition's appends complete in the order they were made.
        self.append_done_ms = max(self.append_done_ms, self.sched.now_ms + self.net_rng.randint(1, 6))
        self.sched.at(self.append_done_ms, f"{h.node} appends to __consumer_offsets", land)

    def _check_forward(self, tp: TP, offset: int) -> None:
        self.checks += 1
        before = self.committed.get(tp, -1)
        if offset < before:
            raise self.violation("committed offsets never go backwards",
                                 f"{tp[0]}-{tp[1]} committed {offset} after {before}")
        self.committed[tp] = offset

    def _host_receive(self, h: Host, src: str, msg: Any) -> None:
        _, seq, kind, req = msg
        if seq <= h.last_seq.get(src, 0):
            return  # an older request overtaken on its way: TCP would not deliver it out of order
        h.last_seq[src] = seq

        def reply(result: Any) -> None:
            if h.up:
                self.net.send(h.node, src, ("resp", seq, kind, result))

        gc = h.gc
        now = self.sched.now_ms
        if gc is None:
            reply(ErrorCode.not_coordinator if kind in ("heartbeat", "leave") else
                  {"error_code": ErrorCode.not_coordinator})
            return
        if kind == "join":
            gc.join_group(req, now, lambda r: self._join_answered(req, r, reply))
        elif kind == "sync":
            gc.sync_group(req, now, reply)
        elif kind == "heartbeat":
            reply(gc.heartbeat(req, now))
        elif kind == "leave":
            reply(gc.leave_group(req, now)[0])
        elif kind == "commit":
            # what the invariants compare with, as the commit is validated
            issued, holder = self.max_generation, self.static_holder.get(req.group_instance_id or "")
            gc.commit_offsets(req, now, lambda codes: self._commit_answered(req, issued, holder, codes, reply))
        elif kind == "fetch":
            err, offsets = gc.fetch_offsets(GROUP, req)
            reply({"error_code": err, "offsets": {tp: o[0] for tp, o in offsets.items()}})

    def _join_answered(self, req: Any, r: dict[str, Any], reply: Callable[[Any], None]) -> None:
        if r.get("error_code") == ErrorCode.none:
            self.max_generation = max(self.max_generation, r["generation_id"])
            if req.group_instance_id is not None:
                self.static_holder[req.group_instance_id] = r["member_id"]
        reply(r)

    def _commit_answered(self, req: Any, issued: int, holder: str | None, codes: dict[TP, ErrorCode],
                         reply: Callable[[Any], None]) -> None:
        self.checks += 1
        gen = int(req.generation_id_or_member_epoch)
        if any(c == ErrorCode.none for c in codes.values()):
            if gen < issued:
                raise self.violation("a commit carrying a stale generation is never accepted",
                                     f"{req.member_id} committed with generation {gen} after the "
                                     f"coordinator handed out generation {issued}")
            if holder not in (None, req.member_id):
                raise self.violation("a replaced static member's commit is never accepted",
                                     f"{req.member_id} committed as {req.group_instance_id}, which "
                                     f"{holder} holds now")
            self.acknowledged += 1
        reply(codes)

    def _tick(self) -> None:
        for h in self.hosts:
            if h.up and h.gc is not None:
                h.gc.tick(self.sched.now_ms)
        self.sched.after(50, "coordinator tick", self._tick)

    # -- members ---------------------------------------------------------------------------------
    def _send(self, m: Member, kind: str, req: Any) -> None:
        self.seq += 1
        seq = self.seq
        inc = m.incarnation
        timer = self.sched.after(REQUEST_TIMEOUT_MS, f"{m.node} {kind} times out",
                                 lambda: self._timed_out(m, inc, seq))
        m.inflight[seq] = (kind, timer)
        self.net.send(m.node, self.hosts[m.coordinator].node, ("req", seq, kind, req))

    def _timed_out(self, m: Member, inc: int, seq: int) -> None:
        if not m.alive or m.incarnation != inc or seq not in m.inflight:
            return
        if self._paused(m, lambda: self._timed_out(m, inc, seq)):
            return
        kind, _ = m.inflight.pop(seq)
        self._find_coordinator(m)
        if kind == "commit":
            m.commit_inflight = False
        if kind in ("join", "sync", "fetch") or (kind == "commit" and m.state == "revoking"):
            self._join(m)

    def _find_coordinator(self, m: Member) -> None:
        m.coordinator = self.owner  # FindCoordinator, answered from the metadata

    def _paused(self, m: Member, again: Callable[[], None]) -> bool:
        """A paused member does nothing until it wakes up (then it carries on where it was)."""
        if self.sched.now_ms < m.paused_until:
            self.sched.at(m.paused_until, f"{m.node} wakes up", again)
            return True
        return False

    def _member_receive(self, m: Member, src: str, msg: Any) -> None:
        _, seq, kind, result = msg
        if seq not in m.inflight:
            return  # timed out already, or from an earlier life
        m.inflight.pop(seq)[1].cancelled = True
        codes = set(result.values()) if kind == "commit" else {result if kind in ("heartbeat", "leave")
                                                                else result["error_code"]}
        if ErrorCode.fenced_instance_id in codes:
            # Another process holds this group.instance.id: for a consumer that is fatal.
            self.say(f"{m.node} ({m.member_id}) is fenced: {m.instance} has another member")
            self._crash_member(m)
            return
        getattr(self, f"_on_{kind}")(m, result)

    def _join(self, m: Member, keep: bool = False) -> None:
        m.state = "joining"
        if not keep:
            m.assignment, m.positions = [], {}
        for seq in [s for s, (k, _) in m.inflight.items() if k in ("join", "sync", "fetch", "heartbeat")]:
            m.inflight.pop(seq)[1].cancelled = True
        sub = encode_subscription(Subscription(topics=[TOPIC]))
        self._send(m, "join", jg.JoinGroupRequest(
            group_id=GROUP, session_timeout=_ms(SESSION_MS), rebalance_timeout=_ms(REBALANCE_MS),
            member_id=m.member_id, group_instance_id=m.instance, protocol_type="consumer",
            protocols=(jg.JoinGroupRequestProtocol(name="sim", metadata=sub),)))

    def _on_join(self, m: Member, r: dict[str, Any]) -> None:
        code = r["error_code"]
        if code == ErrorCode.member_id_required:
            m.member_id = r["member_id"]
            self._join(m)
        elif code == ErrorCode.unknown_member_id:
            m.member_id = ""
            self._join(m)
        elif code == ErrorCode.rebalance_in_progress:
            pass  # a later join of ours took this one's place
        elif code != ErrorCode.none:
            self._find_coordinator(m)
            inc = m.incarnation
            self.sched.after(20, f"{m.node} retries its join", lambda: m.incarnation == inc and self._join(m))
        else:
            m.member_id, m.generation, m.state = r["member_id"], r["generation_id"], "syncing"
            m.assignment, m.positions = [], {}
            assignments = ()
            if r["leader"] == m.member_id:
                ids = sorted(mid for mid, _, _ in r["members"])
                tps = [(TOPIC, p) for p in range(self.partitions)]
                m.rng.shuffle(tps)  # the seeded assignor: a random deal
                plan: dict[str, list[TP]] = {mid: [] for mid in ids}
                for i, tp in enumerate(tps):
                    plan[ids[i % len(ids)]].append(tp)
                assignments = tuple(sg.SyncGroupRequestAssignment(member_id=mid, assignment=encode_assignment(ps))
                                    for mid, ps in plan.items())
                self.say(f"{m.node} leads generation {m.generation}: "
                         + "; ".join(f"{mid} {sorted(p for _, p in ps)}" for mid, ps in plan.items()))
            self._send(m, "sync", sg.SyncGroupRequest(group_id=GROUP, generation_id=m.generation,
                                                      member_id=m.member_id, group_instance_id=m.instance,
                                                      assignments=assignments))

    def _on_sync(self, m: Member, r: dict[str, Any]) -> None:
        code = r["error_code"]
        if code != ErrorCode.none:
            if code == ErrorCode.unknown_member_id:
                m.member_id = ""
            if code in (ErrorCode.not_coordinator, ErrorCode.coordinator_not_available):
                self._find_coordinator(m)
            self._join(m)
            return
        m.assignment = decode_assignment(r["assignment"])
        self.say(f"{m.node} ({m.member_id}) owns {sorted(p for _, p in m.assignment)} in generation {m.generation}")
        me = m.instance or m.member_id
        for tp in m.assignment:
            self.checks += 1
            other = self.owners.setdefault((m.generation, tp), me)
            if other != me:
                raise self.violation("one owner per partition per generation",
                                     f"{tp[0]}-{tp[1]} is owned by {other} and {me} "
                                     f"in generation {m.generation}")
        m.state = "fetching"
        self._send(m, "fetch", list(m.assignment))

    def _on_fetch(self, m: Member, r: dict[str, Any]) -> None:
        if r["error_code"] != ErrorCode.none:
            self._find_coordinator(m)
            self._join(m)
            return
        m.positions = {tp: max(o, 0) for tp, o in r["offsets"].items()}
        m.state = "stable"

    def _heartbeat(self, m: Member, inc: int) -> None:
        if not m.alive or m.incarnation != inc:
            return
        if self._paused(m, lambda: self._heartbeat(m, inc)):
            return
        self.sched.after(HEARTBEAT_MS, f"{m.node} heartbeat", lambda: self._heartbeat(m, inc))
        if m.state in ("stable", "fetching") and not any(k == "heartbeat" for k, _ in m.inflight.values()):
            self._send(m, "heartbeat", HeartbeatRequest(group_id=GROUP, generation_id=m.generation,
                                                        member_id=m.member_id, group_instance_id=m.instance))

    def _on_heartbeat(self, m: Member, code: ErrorCode) -> None:
        if m.state not in ("stable", "fetching"):
            return
        if code == ErrorCode.rebalance_in_progress:
            # Eager protocol: commit what was processed, give everything up, rejoin.
            if not m.eager:
                self._join(m, keep=True)
                return
            m.state = "revoking"
            if m.positions and not m.commit_inflight:
                self._commit(m)
            else:
                self._join(m)
        elif code == ErrorCode.unknown_member_id:
            m.member_id = ""
            self._join(m)
        elif code == ErrorCode.illegal_generation:
            self._join(m)
        elif code in (ErrorCode.not_coordinator, ErrorCode.coordinator_not_available,
                      ErrorCode.coordinator_load_in_progress):
            self._find_coordinator(m)

    def _process(self, m: Member, inc: int) -> None:
        if not m.alive or m.incarnation != inc:
            return
        if self._paused(m, lambda: self._process(m, inc)):
            return
        self.sched.after(PROCESS_EVERY_MS, f"{m.node} polls", lambda: self._process(m, inc))
        if m.state == "stable" and m.processing:
            for tp in m.positions:
                m.positions[tp] += m.rng.randint(0, 3)

    def _auto_commit(self, m: Member, inc: int) -> None:
        if not m.alive or m.incarnation != inc:
            return
        if self._paused(m, lambda: self._auto_commit(m, inc)):
            return
        self.sched.after(COMMIT_EVERY_MS, f"{m.node} commits", lambda: self._auto_commit(m, inc))
        if m.state in ("stable", "joining") and m.positions and not m.commit_inflight:
            self._commit(m)

    def _commit(self, m: Member) -> None:
        m.commit_inflight = True
        by_topic: dict[str, list[oc.OffsetCommitRequestPartition]] = {}
        for (t, p), o in sorted(m.positions.items()):
            by_topic.setdefault(t, []).append(oc.OffsetCommitRequestPartition(
                partition_index=p, committed_offset=o, committed_leader_epoch=-1, committed_metadata=""))
        self._send(m, "commit", oc.OffsetCommitRequest(
            group_id=GROUP, generation_id_or_member_epoch=m.generation, member_id=m.member_id,
            group_instance_id=m.instance, topics=tuple(oc.OffsetCommitRequestTopic(name=t, partitions=tuple(ps))
                                                 for t, ps in by_topic.items())))

    def _on_commit(self, m: Member, codes: Any) -> None:
        m.commit_inflight = False
        if m.state == "left":
            return
        errors = set(codes.values()) if isinstance(codes, dict) else {codes}
        if m.state == "revoking":
            self._join(m)
        elif ErrorCode.unknown_member_id in errors:
            m.member_id = ""
            self._join(m)
        elif ErrorCode.illegal_generation in errors and m.state == "stable":
            self._join(m)
        elif errors & {ErrorCode.illegal_generation, ErrorCode.rebalance_in_progress} and m.state == "joining":
            m.assignment, m.positions = [], {}  # the round moved on: the old assignment is gone
        elif errors & {ErrorCode.not_coordinator, ErrorCode.coordinator_not_available}:
            self._find_coordinator(m)

    def _on_leave(self, m: Member, code: ErrorCode) -> None:
        pass

    def _start(self, m: Member) -> None:
        inc = m.incarnation
        self._find_coordinator(m)
        self._join(m)
        for step, every in ((self._heartbeat, HEARTBEAT_MS), (self._process, PROCESS_EVERY_MS),
                            (self._auto_commit, COMMIT_EVERY_MS)):
            self.sched.after(m.rng.randint(1, every), f"{m.node} timer",
                             lambda step=step: step(m, inc))

    # -- faults ----------------------------------------------------------------------------------
    def _fault(self) -> None:
        if self.sched.now_ms >= RUN_MS - QUIET_MS:
            return
        self.sched.after(self.fault_rng.randint(200, 1200), "fault", self._fault)
        r = self.fault_rng
        kind = r.choice(["crash", "pause", "leave", "cut", "twin", "failover", "coordinator crash"])
        self.faults += 1
        now = self.sched.now_ms
        if kind in ("crash", "pause", "leave", "cut", "twin"):
            m = r.choice(self.members)
            if not m.alive or now < m.paused_until or m.state == "left":
                return
            if kind == "twin":
                if m.instance is not None:  # a second process with the same group.instance.id
                    twin = Member(len(self.members), f"member-{len(self.members)}", self.sched.fork(),
                                  eager=m.eager, instance=m.instance)
                    self.members.append(twin)
                    self.net.attach(twin.node, lambda src, msg: self._member_receive(twin, src, msg))
                    self.say(f"{twin.node} starts as {m.instance} while {m.node} still runs")
                    self._start(twin)
                    if r.random() < 0.5:  # and the coordinator moves while the twin takes over
                        self.sched.after(r.randint(2, 40), "failover", lambda: self._move_coordinator("failover"))
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
                self.sched.after(d, f"{m.node} resumes", lambda: self._wake(m))
            elif kind == "cut":
                host = self.hosts[self.owner]
                link = (m.node, host.node) if r.random() < 0.5 else (host.node, m.node)
                d = r.randint(200, 1500)
                self.say(f"the link {link[0]} -> {link[1]} is cut for {d} ms")
                self.net.cut_one_way(*link)
                self.sched.after(d, "link heals", lambda: self.net.cut.discard(link))
            else:
                self.say(f"{m.node} leaves the group")
                self._send(m, "leave", lg.LeaveGroupRequest(group_id=GROUP, members=(
                    lg.MemberIdentity(member_id=m.member_id, group_instance_id=m.instance, reason="sim"),)))
                for _, ev in m.inflight.values():
                    ev.cancelled = True
                m.inflight.clear()
                m.commit_inflight = False
                m.state, m.member_id, m.assignment, m.positions = "left", "", [], {}
                inc = m.incarnation
                self.sched.after(r.randint(100, 800), f"{m.node} rejoins",
                                 lambda: m.incarnation == inc and m.state == "left" and self._join(m))
            return
        self._move_coordinator(kind)

    def _move_coordinator(self, kind: str) -> None:
        """The offsets partition's leadership moves ("failover") or its leader dies."""
        r = self.fault_rng
        old = self.hosts[self.owner]
        others = [h for h in self.hosts if h.up and h is not old]
        if not others:
            return
        new = r.choice(others)
        if kind == "failover":
            self.say(f"leadership of the offsets partition moves {old.node} -> {new.node}")
            assert old.gc is not None
            gc, old.gc = old.gc, None
            self.owner = new.index
            gc.unload_partition(0)
        else:
            self.say(f"{old.node} (the coordinator) crashes")
            old.up, old.gc = False, None
            old.last_seq.clear()
            self.net.crash(old.node)
            self.owner = new.index
            self.sched.after(r.randint(200, 1000), f"{old.node} restarts", lambda: self._restart_host(old))
        self._load(new)

    def _restart_host(self, h: Host) -> None:
        h.up = True
        self.net.restart(h.node, lambda src, msg: self._host_receive(h, src, msg))
        self.say(f"{h.node} restarts")

    def _wake(self, m: Member) -> None:
        self.net.resume(m.node)
        self.say(f"{m.node} wakes up (generation {m.generation}, state {m.state})")
        if m.alive and m.state == "stable" and m.positions and not m.commit_inflight:
            self._commit(m)  # a zombie's first act: commit what it processed before the pause

    def _crash_member(self, m: Member) -> None:
        m.alive = False
        m.incarnation += 1
        for _, ev in m.inflight.values():
            ev.cancelled = True
        m.inflight.clear()
        self.net.crash(m.node)

    def _restart_member(self, m: Member) -> None:
        m.alive, m.member_id, m.generation, m.state = True, "", -1, "joining"
        m.assignment, m.positions, m.commit_inflight = [], {}, False
        self.net.restart(m.node, lambda src, msg: self._member_receive(m, src, msg))
        self.say(f"{m.node} restarts as a new member")
        self._start(m)

    def _quiet(self) -> None:
        """The last stretch: processing stops, so the last commits say where everyone got."""
        self.net.faults.loss = 0.0
        for m in self.members:
            m.processing = False

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        self.say(f"{len(self.hosts)} brokers; {len(self.members)} members "
                 f"({sum(m.eager for m in self.members)} eager) share {self.partitions} partitions of {TOPIC}")
        for m in self.members:
            self._start(m)
        self.sched.after(50, "coordinator tick", self._tick)
        if self.faults_on:
            self.sched.after(self.fault_rng.randint(300, 1000), "fault", self._fault)
        self.sched.at(RUN_MS - QUIET_MS // 2, "quiet", self._quiet)
        self.sched.run_until(RUN_MS)
        return RunSummary(SCENARIO, self.seed, RUN_MS / 1000, self.sched.events_run, self.faults,
                          self.acknowledged, self.checks, self.trace)

    def final_positions(self) -> dict[TP, int]:
        """Where the current owners got (members in a Stable generation)."""
        return {tp: o for m in self.members if m.alive and m.state == "stable" for tp, o in m.positions.items()}


def run(seed: int, *, brokers: int = 3, controllers: int = 1, trace: bool = False) -> RunSummary:
    """One seeded run of the classic group protocol; raises Violation when an invariant fails.
    `controllers` is accepted for the CLI's sake: the coordinator's failover is simulated here."""
    return GroupsSim(seed, brokers=brokers, trace=trace).run()
