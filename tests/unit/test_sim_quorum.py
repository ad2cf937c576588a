"""`kafkalab sim --controllers 3`: the replication scenario over a Raft quorum of controllers
(each voter the process's RaftNode + ActiveController + Controller). Seeded runs replay exactly,
a run without faults acknowledges everything, the cluster keeps acknowledging when the active
controller crashes, and breaking a quorum rule makes the simulator report a violation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kafkalab.cli import main
from kafkalab.controller.active import ActiveController, Reply
from kafkalab.controller.raft import RaftNode, Role
from kafkalab.sim.controller_quorum import ANSWERS_COMMITTED, RAFT_ONE_LEADER
from kafkalab.sim.invariants import Violation
from kafkalab.sim.replication import ReplicationRun, run


def test_same_seed_same_story_with_three_controllers() -> None:
    a, b = run(3, controllers=3, trace=True), run(3, controllers=3, trace=True)
    assert a == b
    assert a.trace and any("controller 1" in line or "controller 2" in line or "controller 3" in line
                           for line in a.trace if "leader in epoch" in line)
    assert run(3, controllers=3) != run(3, controllers=1)


def test_cli_runs_three_controllers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--seeds", "4", "--controllers", "3", "--scenario", "replication", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:2] == ["replication", "4"] for line in out.splitlines())
    assert "every invariant held" in out


def test_without_faults_three_controllers_acknowledge_everything() -> None:
    r = ReplicationRun(1, controllers=3, faults=False)
    summary = r.run()
    assert summary.faults == 0 and summary.acknowledged > 100
    for p in r.producers:
        assert p.sent > 0 and p.acked == p.sent and p.failed == 0
    assert sum(c.is_active for c in r.quorum) == 1


def test_the_cluster_keeps_acking_when_the_active_controller_crashes() -> None:
    """The active controller crashes, then a partition leader: only the new active controller
    can elect its successor, and brokers must find it (NOT_CONTROLLER, silence) to learn of it."""
    r = ReplicationRun(2, controllers=3, faults=False)
    seen: dict[str, Any] = {}

    def crash_the_active() -> None:
        active = next(c for c in r.quorum if c.is_active)
        seen["controller"], seen["epoch"] = active, active.raft.epoch  # type: ignore[union-attr]
        active.crash()
        r.sched.after(1_500, "restart", active.start)

    def crash_a_partition_leader() -> None:
        reg = r.committed_image().partition("t", 0)
        assert reg is not None
        seen["leader"], seen["leader epoch"] = reg.leader, reg.leader_epoch
        seen["acked"] = len(r.acked.get(("t", 0), {}))
        r.brokers[reg.leader].crash()
        r.sched.after(1_200, "restart", r.brokers[reg.leader].start)

    def count() -> None:
        seen["acked while down"] = len(r.acked.get(("t", 0), {})) - seen["acked"]

    r.sched.at(2_000, "crash the active controller", crash_the_active)
    r.sched.at(2_300, "crash the leader of t-0", crash_a_partition_leader)
    r.sched.at(3_450, "count", count)
    r.run()  # every invariant held, the acknowledged records included
    successor = next(c for c in r.quorum if c.is_active)
    assert successor is not seen["controller"] and successor.raft.epoch > seen["epoch"]  # type: ignore[union-attr]
    assert seen["acked while down"] > 20  # a new partition leader, elected by the new active controller
    reg = r.committed_image().partition("t", 0)
    assert reg is not None and reg.leader_epoch > seen["leader epoch"]
    for p in r.producers:
        assert p.acked == p.sent and p.failed == 0


_on_vote = RaftNode._on_vote


def _grant_twice(self: RaftNode, request: Any, now_ms: int) -> Any:
    """Raft's vote rule broken: a voter that already voted in this epoch votes again."""
    p = request.topics[0].partitions[0]
    if self.role is Role.VOTED and int(p.replica_epoch) == self.epoch and \
            (p.last_offset_epoch, p.last_offset) >= (self.log.last_fetched_epoch, self.log.log_end_offset):
        return self._vote_response(True)
    return _on_vote(self, request, now_ms)


def _commit_alone(self: RaftNode, now_ms: int) -> None:
    """Raft's commit rule broken: the leader commits what it has, whatever its voters fetched."""
    end = self.log.log_end_offset
    if self.role is Role.LEADER and end > self.epoch_start_offset and end > self.high_watermark:
        self._update_high_watermark(end)
        self._complete_parked(now_ms, force=True)


def _answer_at_once(self: ActiveController, request: Any, response: Any) -> list[Any]:
    """The commit rule broken: the active controller answers before its records are committed."""
    self._out.append(Reply(request, response))
    return self._take()


MUTATIONS: list[tuple[str, type, str, Callable[..., Any], list[int], str | None]] = [
    ("a voter grants two votes in one epoch", RaftNode, "_on_vote", _grant_twice, [1, 15], RAFT_ONE_LEADER),
    ("the active controller answers before commit", ActiveController, "respond", _answer_at_once, [1],
     ANSWERS_COMMITTED),
    # Caught by RaftNode's own check (a follower told to truncate below its high watermark),
    # which the run reports as an unexpected error; without it, by "committed metadata is never lost".
    ("the leader commits without a majority", RaftNode, "_maybe_advance_high_watermark", _commit_alone, [8], None),
]


@pytest.mark.parametrize("name, cls, attr, mutant, seeds, invariant", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_quorum_mutation_is_caught(name: str, cls: type, attr: str, mutant: Callable[..., Any], seeds: list[int],
                                   invariant: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    for seed in seeds:  # the real code holds on these seeds
        run(seed, controllers=3)
    monkeypatch.setattr(cls, attr, mutant)
    caught = []
    for seed in seeds:
        try:
            run(seed, controllers=3)
        except Violation as v:
            caught.append(v.invariant)
    assert caught and (invariant is None or invariant in caught), f"{name}: {caught or 'no violation'} on seeds {seeds}"
