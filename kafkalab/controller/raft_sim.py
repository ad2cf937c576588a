"""A seeded, deterministic simulation of a KRaft quorum of RaftNodes (in the spirit of Kafka's
RaftEventSimulationTest): a simulated clock and network (delays, drops, one-way cuts), kills
and restarts (a restarted node keeps only its log and its persisted quorum state), and the
safety checks run after every event. Used by the tests and to measure failover time.
"""

from __future__ import annotations

import heapq
import json
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafkalab.controller.raft import (
    Committed,
    HighWatermarkMoved,
    NotLeader,
    Output,
    PersistQuorumState,
    QuorumStateRecord,
    RaftNode,
    Role,
    RoleChanged,
    SnapshotLoaded,
)
from kafkalab.controller.raft_log import InMemoryRaftLog, RaftLog

__all__ = ["SafetyViolation", "SimConfig", "Simulation", "measure_failover"]


class SafetyViolation(AssertionError):
    pass


@dataclass
class SimConfig:
    voters: int = 3
    delay_ms: tuple[int, int] = (1, 5)
    drop_rate: float = 0.0
    election_timeout_ms: tuple[int, int] = (150, 300)
    fetch_timeout_ms: int = 500
    request_timeout_ms: int = 250
    fetch_max_wait_ms: int = 100
    snapshot_every: int | None = None  # records applied between snapshots on each node
    snapshot_chunk_bytes: int = 1 << 20
    wire: bool = False  # encode and decode every message with Kafka's codec


class StateMachine:
    """The replicated state: committed values by offset, rebuilt from snapshot + commits."""

    def __init__(self) -> None:
        self.values: dict[int, bytes] = {}
        self.last_offset = -1
        self.since_snapshot = 0

    def to_bytes(self) -> bytes:
        return json.dumps({str(k): v.hex() for k, v in sorted(self.values.items())}).encode()

    def load(self, data: bytes, end_offset: int) -> None:
        self.values = {int(k): bytes.fromhex(v) for k, v in json.loads(data).items()}
        self.last_offset = end_offset - 1
        self.since_snapshot = 0


@dataclass
class SimNode:
    node_id: int
    log: Any = None  # a RaftLog; reopened by the log factory on every restart
    persisted: QuorumStateRecord | None = None
    raft: RaftNode | None = None
    incarnation: int = 0
    sm: StateMachine = field(default_factory=StateMachine)
    high_watermark: int = -1  # per incarnation
    max_epoch: int = 0  # across incarnations
    pending: dict[int, bytes] = field(default_factory=dict)  # this life's appends awaiting commit


class Simulation:
    def __init__(self, seed: int, config: SimConfig | None = None, *,
                 log_factory: Callable[[int, Any], RaftLog] | None = None) -> None:
        """`log_factory(node_id, previous log or None)` opens a node's log at each (re)start;
        by default an InMemoryRaftLog that outlives the node's kills."""
        self.config = config or SimConfig()
        self.log_factory = log_factory or (lambda _id, prev: prev if prev is not None else InMemoryRaftLog())
        self.rng = random.Random(seed)
        self.now = 0
        self.ids = list(range(1, self.config.voters + 1))
        self.nodes = {i: SimNode(i) for i in self.ids}
        self.cut: set[tuple[int, int]] = set()  # (sender, receiver) links that drop everything
        self.drop_rate = self.config.drop_rate
        self._queue: list[tuple[int, int, str, tuple[Any, ...]]] = []
        self._seq = 0
        self._scheduled: dict[int, int | None] = dict.fromkeys(self.ids)
        self._reply_to: dict[tuple[int, int, int], int] = {}  # (responder, requester, corr) -> requester life
        self.leaders: dict[int, int] = {}  # epoch -> leader id
        self.committed: dict[int, bytes] = {}  # offset -> value, the first any node committed
        self.acked: dict[int, bytes] = {}  # committed as a leader told its client
        self.events = 0
        self._polls_at_now = 0
        for i in self.ids:
            self.restart(i)

    # -- faults -----------------------------------------------------------------------------

    def alive(self) -> list[int]:
        return [i for i in self.ids if self.nodes[i].raft is not None]

    def kill(self, node_id: int) -> None:
        n = self.nodes[node_id]
        n.raft, n.sm, n.pending = None, StateMachine(), {}
        close = getattr(n.log, "close", None)
        if close is not None:
            close()
        self._scheduled[node_id] = None

    def restart(self, node_id: int) -> None:
        n = self.nodes[node_id]
        if n.raft is not None:
            self.kill(node_id)
        n.incarnation += 1
        n.high_watermark = -1
        n.log = self.log_factory(node_id, n.log)
        c = self.config
        n.raft = RaftNode(
            node_id, self.ids, n.log, election_timeout_ms=c.election_timeout_ms,
            fetch_timeout_ms=c.fetch_timeout_ms, request_timeout_ms=c.request_timeout_ms,
            fetch_max_wait_ms=c.fetch_max_wait_ms, snapshot_chunk_bytes=c.snapshot_chunk_bytes,
            rng=random.Random(self.rng.getrandbits(64)), quorum_state=n.persisted,
        )
        self._process(node_id, n.raft.start(self.now))

    def partition(self, *groups: list[int]) -> None:
        """Cut every link between nodes of different groups (both ways)."""
        self.cut = {(a, b) for g in groups for h in groups if g is not h for a in g for b in h}

    def isolate(self, node_id: int) -> None:
        self.partition([node_id], [i for i in self.ids if i != node_id])

    def heal(self) -> None:
        self.cut = set()

    # -- the client -------------------------------------------------------------------------

    def leader(self) -> int | None:
        best = None
        for i in self.alive():
            r = self.nodes[i].raft
            assert r is not None
            if r.role is Role.LEADER and (best is None or r.epoch > self.nodes[best].raft.epoch):  # type: ignore[union-attr]
                best = i
        return best

    def append(self, value: bytes) -> int | None:
        """Append at the current leader; the offset, or None without a leader."""
        lid = self.leader()
        if lid is None:
            return None
        n = self.nodes[lid]
        assert n.raft is not None
        offset, out = n.raft.append([value], self.now)
        if isinstance(offset, NotLeader):
            return None
        n.pending[offset] = value
        self._process(lid, out)
        return offset

    # -- running ----------------------------------------------------------------------------

    def _push(self, at: int, kind: str, payload: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, payload))

    def _schedule_poll(self, node_id: int) -> None:
        r = self.nodes[node_id].raft
        if r is None:
            return
        at = max(self.now, r.next_deadline_ms())
        cur = self._scheduled[node_id]
        if cur is None or at < cur:
            self._scheduled[node_id] = at
            self._push(at, "poll", (node_id, self.nodes[node_id].incarnation))

    def run_until(self, t: int) -> None:
        while self._queue and self._queue[0][0] <= t:
            at, _, kind, payload = heapq.heappop(self._queue)
            if at > self.now:
                self.now, self._polls_at_now = at, 0
            self._step(kind, payload)
            self.events += 1
        self.now = max(self.now, t)

    def run_for(self, ms: int) -> None:
        self.run_until(self.now + ms)

    def _step(self, kind: str, payload: tuple[Any, ...]) -> None:
        if kind == "poll":
            node_id, inc = payload
            n = self.nodes[node_id]
            if n.raft is None or n.incarnation != inc or self._scheduled[node_id] != self.now:
                return
            self._scheduled[node_id] = None
            self._polls_at_now += 1
            if self._polls_at_now > 10_000:
                raise SafetyViolation(f"node {node_id} polls without end at {self.now} ms")
            self._process(node_id, n.raft.poll(self.now))
        else:
            src, src_inc, dst, dst_inc, corr, msg, is_response = payload
            n = self.nodes[dst]
            if n.raft is None or (src, dst) in self.cut:
                return
            if is_response:
                if n.incarnation != dst_inc:
                    return
                self._process(dst, n.raft.handle_response(src, corr, msg, self.now))
            else:
                self._reply_to[(dst, src, corr)] = src_inc
                self._process(dst, n.raft.handle_request(src, corr, msg, self.now))

    def _wire(self, msg: Any) -> Any:
        from kafkalab.protocol.apis import api_key_of, decode_request, decode_response, encode

        key, version = api_key_of(msg)
        body = encode(msg)
        if msg.__type__.name == "response":
            return decode_response(key, version, body)
        return decode_request(key, version, body)

    def _process(self, node_id: int, out: Output) -> None:
        n = self.nodes[node_id]
        r = n.raft
        assert r is not None
        for e in out.effects:  # the quorum state is "written" before any message goes
            self._check_effect(n, e)
        for m in out.messages:
            if m.destination == node_id:
                raise SafetyViolation(f"node {node_id} sent itself {type(m.message).__name__}")
            is_resp = m.is_response
            if is_resp:
                dst_inc = self._reply_to.pop((node_id, m.destination, m.correlation_id), -1)
            else:
                dst_inc = -1
            if (node_id, m.destination) in self.cut or self.rng.random() < self.drop_rate:
                continue
            msg = self._wire(m.message) if self.config.wire else m.message
            lo, hi = self.config.delay_ms
            self._push(self.now + self.rng.randint(lo, hi), "msg",
                       (node_id, n.incarnation, m.destination, dst_inc, m.correlation_id, msg, is_resp))
        self._maybe_snapshot(n)
        self._schedule_poll(node_id)

    def _maybe_snapshot(self, n: SimNode) -> None:
        every = self.config.snapshot_every
        r = n.raft
        if every and r is not None and n.sm.since_snapshot >= every and r.applied_offset > r.log.log_start_offset:
            r.create_snapshot(r.applied_offset, n.sm.to_bytes())
            n.sm.since_snapshot = 0

    # -- safety -----------------------------------------------------------------------------

    def _check_effect(self, n: SimNode, e: Any) -> None:
        if isinstance(e, PersistQuorumState):
            n.persisted = e.state
        elif isinstance(e, RoleChanged):
            if e.epoch < n.max_epoch:
                raise SafetyViolation(f"node {n.node_id}: epoch went back from {n.max_epoch} to {e.epoch}")
            n.max_epoch = e.epoch
            if e.role is Role.LEADER:
                other = self.leaders.setdefault(e.epoch, n.node_id)
                if other != n.node_id:
                    raise SafetyViolation(f"two leaders in epoch {e.epoch}: {other} and {n.node_id}")
        elif isinstance(e, HighWatermarkMoved):
            if e.high_watermark < n.high_watermark:
                raise SafetyViolation(f"node {n.node_id}: high watermark went back to {e.high_watermark}")
            n.high_watermark = e.high_watermark
        elif isinstance(e, SnapshotLoaded):
            n.sm.load(e.data, e.snapshot_id.end_offset)
            for off, v in n.sm.values.items():
                self._commit(n, off, v)
        elif isinstance(e, Committed):
            for b in e.batches:
                if b.base_offset <= n.sm.last_offset:
                    raise SafetyViolation(f"node {n.node_id}: commit at {b.base_offset} after {n.sm.last_offset}")
                for i, v in enumerate(b.values):
                    off = b.base_offset + i
                    n.sm.values[off] = v
                    self._commit(n, off, v)
                    if n.pending.pop(off, None) == v:
                        self.acked[off] = v
                n.sm.last_offset = b.last_offset
                n.sm.since_snapshot += len(b.values)

    def _commit(self, n: SimNode, offset: int, value: bytes) -> None:
        first = self.committed.setdefault(offset, value)
        if first != value:
            raise SafetyViolation(f"node {n.node_id} committed {value!r} at {offset}, another {first!r}")

    def check_converged(self) -> None:
        """Every voter holds the same committed records, and every acknowledged one."""
        states = {i: self.nodes[i].sm.values for i in self.ids}
        first = states[self.ids[0]]
        for i, s in states.items():
            if s != first:
                missing = sorted(set(first) ^ set(s))[:5]
                raise SafetyViolation(f"node {i} differs from node {self.ids[0]} (offsets {missing} ...)")
        for off, v in self.acked.items():
            if first.get(off) != v:
                raise SafetyViolation(f"acknowledged record at {off} is lost")


def measure_failover(seed: int, config: SimConfig | None = None, *, appends_every_ms: int = 10) -> int:
    """Ms from killing the leader of a steady quorum to a new leader committing its first
    record (its LEADER_CHANGE record, which commits before any client record of its epoch)."""
    sim = Simulation(seed, config)
    t = 0
    while t < 2000 or sim.leader() is None:
        t += appends_every_ms
        sim.run_until(t)
        sim.append(b"x")
        if t > 30_000:
            raise RuntimeError(f"seed {seed}: no leader after 30 s")
    old = sim.leader()
    assert old is not None
    old_epoch = sim.nodes[old].raft.epoch  # type: ignore[union-attr]
    killed_at = sim.now
    sim.kill(old)
    while sim.now < killed_at + 60_000:
        t += 1
        sim.run_until(t)
        if t % appends_every_ms == 0:
            sim.append(b"y")
        for i in sim.alive():
            r = sim.nodes[i].raft
            assert r is not None
            if r.role is Role.LEADER and r.epoch > old_epoch and r.high_watermark > r.epoch_start_offset:
                return sim.now - killed_at
    raise RuntimeError(f"seed {seed}: no new leader within 60 s")


def failover_stats(seeds: range, config: SimConfig | None = None) -> dict[str, float]:
    times = sorted(measure_failover(s, config) for s in seeds)
    return {
        "runs": len(times),
        "median_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
        "max_ms": times[-1],
    }
