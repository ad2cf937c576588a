"""Targeted tests of the KRaft quorum core (kafkalab.controller.raft)."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

import pytest

from kafkalab.controller.raft import (
    Committed,
    LogTruncated,
    NotLeader,
    Outbound,
    Output,
    PersistQuorumState,
    QuorumStateRecord,
    RaftNode,
    Role,
    SnapshotLoaded,
)
from kafkalab.controller.raft_log import (
    InMemoryRaftLog,
    StorageRaftLog,
    decode_committed,
    encode_data_batch,
    encode_leader_change,
    parse_leader_change,
)
from kafkalab.controller.raft_sim import SimConfig, Simulation, failover_stats
from kafkalab.records.scan import iter_batches


def node(node_id: int, log: InMemoryRaftLog | None = None, voters: tuple[int, ...] = (1, 2, 3), **kw) -> RaftNode:
    return RaftNode(node_id, voters, log or InMemoryRaftLog(), rng=random.Random(node_id), **kw)


class Net:
    """Hand-delivered messages between RaftNodes: the test decides what arrives."""

    def __init__(self, nodes: dict[int, RaftNode]) -> None:
        self.nodes = nodes
        self.queue: deque[tuple[int, Outbound]] = deque()
        self.now = 0

    def feed(self, src: int, out: Output) -> Output:
        self.queue.extend((src, m) for m in out.messages)
        return out

    def pump(self, allow: Callable[[int, Outbound], bool] = lambda s, m: True) -> None:
        while self.queue:
            src, m = self.queue.popleft()
            if not allow(src, m):
                continue
            n = self.nodes[m.destination]
            if m.is_response:
                self.feed(m.destination, n.handle_response(src, m.correlation_id, m.message, self.now))
            else:
                self.feed(m.destination, n.handle_request(src, m.correlation_id, m.message, self.now))


# -- Vote -----------------------------------------------------------------------------------


def test_vote_needs_an_up_to_date_log_and_one_vote_per_epoch() -> None:
    log = InMemoryRaftLog()
    log.append_as_leader(encode_leader_change(1, [1, 2, 3], [1, 2], 0), 1)
    log.append_as_leader(encode_data_batch([b"a"], 0), 1)  # (epoch 1, end offset 2)
    voter = node(3, log)
    voter.start(0)
    candidates = {n: node(n) for n in (1, 2)}
    for c in candidates.values():
        c.start(0)

    def ask(cand: RaftNode, epoch: int, last_epoch: int, last_offset: int) -> tuple[bool, Output]:
        cand.epoch = epoch
        req = cand._vote_request()
        p = req.topics[0].partitions[0]
        req = type(req)(cluster_id=None, topics=(type(req.topics[0])(topic_name=req.topics[0].topic_name, partitions=(
            type(p)(partition_index=0, replica_epoch=epoch, replica_id=cand.node_id,
                    last_offset_epoch=last_epoch, last_offset=last_offset),)),))
        out = voter.handle_request(cand.node_id, 7, req, 0)
        return out.messages[0].message.topics[0].partitions[0].vote_granted, out

    assert ask(candidates[1], 2, 1, 1)[0] is False  # shorter log
    assert ask(candidates[1], 2, 0, 5)[0] is False  # longer log, older last epoch
    granted, out = ask(candidates[1], 3, 1, 2)
    assert granted and voter.role is Role.VOTED and voter.voted_id == 1
    assert isinstance(out.effects[-2], PersistQuorumState) or any(
        isinstance(e, PersistQuorumState) and e.state.voted_id == 1 for e in out.effects)
    assert ask(candidates[2], 3, 2, 9)[0] is False  # already voted in epoch 3
    assert ask(candidates[1], 3, 1, 2)[0] is True  # the same vote again
    assert ask(candidates[2], 2, 5, 9)[0] is False  # stale epoch
    assert ask(candidates[2], 4, 1, 2)[0] is True  # a new epoch frees the vote


def test_quorum_state_file_and_restart_as_resigned() -> None:
    st = QuorumStateRecord(7, 2, 2, (1, 2, 3))
    assert QuorumStateRecord.from_json(st.to_json()) == st
    assert '"leaderEpoch": 7' in st.to_json()
    n = node(2, quorum_state=st)
    n.start(0)
    assert n.role is Role.RESIGNED and n.epoch == 7  # leadership does not survive a restart
    n.poll(1000)
    assert n.role is Role.CANDIDATE and n.epoch == 8


def test_single_voter_elects_itself_and_commits_at_once() -> None:
    n = node(1, voters=(1,))
    n.start(0)
    assert n.is_leader
    off, out = n.append([b"r1", b"r2"], 5)
    assert off == 2  # offset 0 is the LEADER_CHANGE control record
    committed = [b for e in out.effects if isinstance(e, Committed) for b in e.batches]
    assert [v for b in committed for v in b.values] == [b"r1", b"r2"]
    assert n.high_watermark == 3


@pytest.mark.parametrize(("state", "epoch"), [
    (None, 1),  # a fresh log
    (QuorumStateRecord(3, 0, 0, (0,)), 4),  # it led epoch 3 before a restart: leads the next
    (QuorumStateRecord(3, -1, 0, (0,)), 3),  # it stood in epoch 3: its own vote wins that epoch
    (QuorumStateRecord(3, -1, -1, (0,)), 4),  # it only knew epoch 3
])
def test_a_single_voter_leads_at_start_without_waiting_for_an_election_timeout(state, epoch) -> None:
    n = RaftNode(0, (0,), InMemoryRaftLog(), rng=random.Random(0), quorum_state=state,
                 election_timeout_ms=(1000, 2000), fetch_timeout_ms=2000, request_timeout_ms=2000,
                 fetch_max_wait_ms=500)
    out = n.start(0)
    assert n.role is Role.LEADER and n.leader_id == 0 and n.epoch == epoch and not out.messages
    assert n.high_watermark == n.log.log_end_offset == n.epoch_start_offset + 1  # its LEADER_CHANGE is committed
    assert n.next_deadline_ms() > 10**12  # no election timer, and no check-quorum to resign on


def test_batches_carry_wall_clock_create_time_while_timers_use_now_ms() -> None:
    from kafkalab.records.batch import decode_batch

    n = node(1, voters=(1,), wall_clock_offset_ms=1_700_000_000_000)
    n.start(0)
    n.append([b"r"], 5)
    stamps = [r.timestamp for _, h in iter_batches(n.log.read(0, 1 << 20))
              for r in decode_batch(n.log.read(h.base_offset, 1 << 20)).records[:1]]
    assert stamps == [1_700_000_000_000, 1_700_000_000_005]  # LeaderChange at 0, the data at 5


def test_leader_change_record_is_kafkas_control_batch() -> None:
    raw = encode_leader_change(2, [1, 2, 3], [2, 3], 0)
    (_, h), = iter_batches(raw)
    assert h.is_control and not h.is_transactional
    from kafkalab.records.batch import decode_batch

    rec = decode_batch(raw).records[0]
    assert rec.key == b"\x00\x00\x00\x02"  # version 0, type LEADER_CHANGE
    msg = parse_leader_change(rec.value)
    assert msg.leader_id == 2 and [v.voter_id for v in msg.granting_voters] == [2, 3]
    assert decode_committed(raw, 0, 1)[0] == []  # control records never reach the state machine


# -- commit rule ----------------------------------------------------------------------------


def test_leader_commits_nothing_before_its_own_epoch_is_replicated() -> None:
    """Raft's Figure 8: an old-epoch entry on a majority is not committed by counting replicas."""
    lc = encode_leader_change
    a_log, b_log, c_log = InMemoryRaftLog(), InMemoryRaftLog(), InMemoryRaftLog()
    for log in (a_log, b_log, c_log):
        log.append_as_leader(lc(1, [1, 2, 3], [1, 2], 0), 1)
    a_log.append_as_leader(lc(1, [1, 2, 3], [1, 2], 0), 2)  # node 1 led epoch 2 ...
    a_log.append_as_leader(encode_data_batch([b"x"], 0), 2)  # ... and wrote x, never committed
    c_log.append_as_leader(lc(3, [1, 2, 3], [3, 2], 0), 3)  # node 3 led epoch 3
    c_log.append_as_leader(encode_data_batch([b"y"], 0), 3)
    a = node(1, a_log, quorum_state=QuorumStateRecord(3, -1, -1, (1, 2, 3)))
    b = node(2, b_log, quorum_state=QuorumStateRecord(3, -1, -1, (1, 2, 3)), fetch_max_bytes=1)
    c = node(3, c_log, quorum_state=QuorumStateRecord(3, -1, -1, (1, 2, 3)))
    net = Net({1: a, 2: b, 3: c})
    for n in (a, b, c):
        net.feed(n.node_id, n.start(0))
    net.now = 300
    net.feed(1, a.poll(300))  # node 1 stands in epoch 4
    not_c = lambda s, m: 3 not in (s, m.destination)  # noqa: E731
    net.pump(not_c)
    assert a.is_leader and a.epoch == 4
    # Node 2 fetches one batch at a time (epoch 2's LEADER_CHANGE, then x); the answer to its
    # fetch at offset 3, which would carry epoch 4's record, is lost.
    lose = lambda s, m: not_c(s, m) and not (m.is_response and s == 1 and b.log.log_end_offset == 3)  # noqa: E731
    net.now = 301
    net.feed(2, b.poll(301))
    net.pump(lose)
    assert b.log.log_end_offset == 3 and b.log.last_fetched_epoch == 2
    assert a.describe()["voter_end_offsets"][2] == 3
    assert a.high_watermark == 0, "x is on a majority but not in the leader's epoch: not committed"
    # Node 3 (last epoch 3) could still win node 2's vote and overwrite x: it must be able to.
    assert (c.log.last_fetched_epoch, c.log.log_end_offset) > (b.log.last_fetched_epoch, b.log.log_end_offset)
    net.now = 301 + b.request_timeout_ms  # node 2's fetch times out; it asks again
    net.feed(2, b.poll(net.now))
    net.pump(not_c)
    assert b.log.log_end_offset == 4 and a.high_watermark == 4  # epoch 4 replicated: now x commits


# -- scenarios in the simulation ------------------------------------------------------------


def steady(seed: int = 3, **cfg) -> tuple[Simulation, int]:
    sim = Simulation(seed, SimConfig(**cfg))
    sim.run_for(5000 if "election_timeout_ms" in cfg else 1000)
    leader = sim.leader()
    assert leader is not None
    return sim, leader


def test_election_after_leader_kill() -> None:
    sim, old = steady()
    old_epoch = sim.nodes[old].raft.epoch  # type: ignore[union-attr]
    sim.append(b"before")
    sim.run_for(100)
    sim.kill(old)
    sim.run_for(2000)
    new = sim.leader()
    assert new is not None and new != old
    assert sim.nodes[new].raft.epoch > old_epoch  # type: ignore[union-attr]
    assert sim.append(b"after") is not None
    sim.run_for(200)
    assert b"after" in sim.acked.values() and b"before" in sim.acked.values()
    sim.restart(old)
    sim.run_for(1000)
    assert sim.nodes[old].raft.role is Role.FOLLOWER  # type: ignore[union-attr]
    sim.check_converged()


def test_partitioned_leader_cannot_commit_and_resigns() -> None:
    sim, old = steady()
    sim.isolate(old)
    r = sim.nodes[old].raft
    assert r is not None
    off, _ = r.append([b"lonely"], sim.now)
    assert isinstance(off, int)
    sim.run_for(400)
    assert r.role is Role.LEADER and r.high_watermark <= off  # cannot commit alone
    sim.run_for(800)  # check-quorum: 1.5 x fetch timeout without a majority fetching
    assert r.role is not Role.LEADER
    new = sim.leader()
    assert new is not None and new != old
    assert sim.append(b"majority") is not None
    sim.run_for(300)
    sim.heal()
    sim.run_for(1500)
    sim.check_converged()
    assert b"lonely" not in sim.nodes[old].sm.values.values()
    assert b"majority" in sim.nodes[old].sm.values.values()


def test_follower_with_divergent_tail_truncates() -> None:
    sim, old = steady()
    sim.isolate(old)
    r = sim.nodes[old].raft
    assert r is not None
    for i in range(5):  # an uncommitted tail in the old epoch
        r.append([b"tail%d" % i], sim.now)
    tail_end = r.log.log_end_offset
    sim.run_for(1500)
    new = sim.leader()
    assert new is not None and new != old
    sim.append(b"new")
    sim.run_for(200)
    truncations: list[int] = []
    orig = sim._check_effect

    def spy(n, e):
        if n.node_id == old and isinstance(e, LogTruncated):
            truncations.append(e.offset)
        orig(n, e)

    sim._check_effect = spy  # type: ignore[method-assign]
    sim.heal()
    sim.run_for(1500)
    assert truncations and truncations[0] < tail_end
    leader_log = sim.nodes[new].log.read(0, 1 << 30)
    assert sim.nodes[old].log.read(0, 1 << 30) == leader_log
    sim.check_converged()


def test_snapshot_catch_up() -> None:
    sim, leader = steady(snapshot_every=5, snapshot_chunk_bytes=100)
    lagging = next(n for n in sim.ids if n != leader)
    sim.kill(lagging)
    for i in range(40):
        sim.append(b"r%d" % i)
        sim.run_for(10)
    sim.run_for(300)
    lr = sim.nodes[leader].raft
    assert lr is not None and lr.log.log_start_offset > sim.nodes[lagging].log.log_end_offset
    loaded: list[SnapshotLoaded] = []
    orig = sim._check_effect

    def spy(n, e):
        if n.node_id == lagging and isinstance(e, SnapshotLoaded):
            loaded.append(e)
        orig(n, e)

    sim._check_effect = spy  # type: ignore[method-assign]
    sim.restart(lagging)
    sim.run_for(1500)
    assert loaded, "the lagging follower never fetched the snapshot"
    assert sim.nodes[lagging].raft.high_watermark == lr.high_watermark  # type: ignore[union-attr]
    sim.check_converged()
    assert len(sim.nodes[lagging].sm.values) == 40


def test_graceful_resign_hands_over_faster_than_a_timeout() -> None:
    sim, old = steady(election_timeout_ms=(1000, 2000), fetch_timeout_ms=3000)
    r = sim.nodes[old].raft
    assert r is not None
    t0 = sim.now
    sim._process(old, r.resign(sim.now))
    while sim.now < t0 + 5000:
        sim.run_for(1)
        new = sim.leader()
        if new is not None and new != old:
            break
    assert sim.now - t0 < 100, "EndQuorumEpoch should start the election at once"
    assert isinstance(r.append([b"x"], sim.now)[0], NotLeader)


def test_quorum_on_the_storage_engine(tmp_path) -> None:
    """The same chaos over StorageRaftLog: restarts reopen the segment files from disk."""

    def open_log(node_id: int, prev: object) -> StorageRaftLog:
        return StorageRaftLog(str(tmp_path / f"node-{node_id}"), {"segment.bytes": 2048},
                              now_ms=sim_now(), clock=sim_now)

    sim: Simulation | None = None

    def sim_now() -> int:
        return sim.now if sim is not None else 0

    sim = Simulation(5, SimConfig(delay_ms=(1, 5), snapshot_every=20), log_factory=open_log)
    rng = random.Random(5)
    for i in range(300):
        sim.append(b"s%d" % i)
        sim.run_for(10)
        if i % 60 == 30:
            sim.restart(rng.choice(sim.ids))  # a crash: the log is reopened from its files
    sim.run_for(2000)
    sim.check_converged()
    assert len(sim.acked) > 200
    leader = sim.leader()
    assert leader is not None
    d = tmp_path / f"node-{leader}"
    assert list(d.glob("*.checkpoint")) and list(d.glob("*.log"))
    assert (d / "leader-epoch-checkpoint").exists()


@pytest.mark.parametrize("voters", [3, 5])
def test_failover_time_with_lab_timeouts(voters: int) -> None:
    stats = failover_stats(range(30), SimConfig(voters=voters))
    # Fetch timeout 500 ms to notice, then one or two elections of 150-300 ms.
    assert 300 < stats["median_ms"] < 1000, stats
    assert stats["p99_ms"] < 2000, stats


def test_append_on_a_follower_is_refused_with_the_leader() -> None:
    sim, leader = steady()
    f = next(n for n in sim.ids if n != leader)
    res, _ = sim.nodes[f].raft.append([b"x"], sim.now)  # type: ignore[union-attr]
    assert res == NotLeader(leader, sim.nodes[leader].raft.epoch)  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        sim.nodes[leader].raft.create_snapshot(10_000, b"")  # type: ignore[union-attr]


def test_a_vote_survives_a_restart() -> None:
    """The vote is in the quorum state the wiring persists before replying: a restarted voter
    cannot vote again in the same epoch (else two leaders)."""
    voter, c1, c2 = node(3), node(1), node(2)
    for n in (voter, c1, c2):
        n.start(0)
    c1.poll(1000)
    c2.poll(1000)
    assert c1.epoch == c2.epoch == 1
    out = voter.handle_request(1, 1, c1._vote_request(), 1000)
    assert out.messages[0].message.topics[0].partitions[0].vote_granted
    persisted = [e.state for e in out.effects if isinstance(e, PersistQuorumState)][-1]
    again = node(3, voter.log, quorum_state=persisted)
    again.start(1001)
    out = again.handle_request(2, 1, c2._vote_request(), 1001)
    assert not out.messages[0].message.topics[0].partitions[0].vote_granted


def test_fetch_below_or_at_the_snapshot_in_another_epoch_gets_the_snapshot() -> None:
    import dataclasses

    sim, leader = steady()
    for i in range(5):
        sim.append(b"v%d" % i)
        sim.run_for(20)
    lr = sim.nodes[leader].raft
    assert lr is not None
    sid = lr.create_snapshot(lr.applied_offset, b"state")
    f = sim.nodes[next(n for n in sim.ids if n != leader)].raft
    assert f is not None
    req = f._fetch_request()
    part = req.topics[0].partitions[0]

    def answer(offset: int, last_epoch: int):
        p = dataclasses.replace(part, fetch_offset=offset, last_fetched_epoch=last_epoch)
        r = dataclasses.replace(req, topics=(dataclasses.replace(req.topics[0], partitions=(p,)),),
                                max_wait=dataclasses.replace(req).max_wait * 0)
        out = lr.handle_request(f.node_id, 99, r, sim.now)
        return out.messages[0].message.responses[0].partitions[0]

    assert answer(sid.end_offset - 1, sid.epoch).snapshot_id.end_offset == sid.end_offset
    assert answer(sid.end_offset, sid.epoch - 1).snapshot_id.end_offset == sid.end_offset
    ok = answer(sid.end_offset, sid.epoch)
    assert ok.snapshot_id.end_offset == -1 and ok.diverging_epoch.end_offset == -1
