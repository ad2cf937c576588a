"""The classic group protocol under the simulator, and what it found in the coordinator."""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode
from kio.schema.join_group.v9 import request as jg
from kio.schema.sync_group.v5 import request as sg

from kafkalab.broker.group_coordinator import COMPLETING, PREPARING, STABLE, GroupCoordinator
from kafkalab.sim import groups, groups_consumer


def test_same_seed_same_story():
    a, b = groups.run(5, trace=True), groups.run(5, trace=True)
    assert a == b and a.events > 1000 and a.faults > 0


def test_a_fault_free_run_commits_everything_processed():
    sim = groups.GroupsSim(3, faults=False)
    summary = sim.run()
    assert summary.faults == 0 and summary.acknowledged > 0
    final = sim.final_positions()
    assert sorted(final) == [(groups.TOPIC, p) for p in range(sim.partitions)]  # every partition owned
    g = sim.hosts[sim.owner].gc.groups[groups.GROUP]
    assert {tp: o[0] for tp, o in g.offsets.items()} == final and any(final.values())


def _one_member_completing(append):
    c = GroupCoordinator(num_partitions=1, append=append, owns=lambda p: "yes",
                         new_member_id=lambda client_id: "m1")

    def join(member_id):
        out = []
        c.join_group(jg.JoinGroupRequest(
            group_id="g", session_timeout=datetime.timedelta(seconds=10),
            rebalance_timeout=datetime.timedelta(seconds=10), member_id=member_id, group_instance_id=None,
            protocol_type="consumer", protocols=(jg.JoinGroupRequestProtocol(name="range", metadata=b""),)),
            0, out.append)
        return out

    join(join("")[0]["member_id"])
    assert c.groups["g"].state == COMPLETING
    out = []
    c.sync_group(sg.SyncGroupRequest(group_id="g", generation_id=1, member_id="m1", assignments=(
        sg.SyncGroupRequestAssignment(member_id="m1", assignment=b"A"),)), 1, out.append)
    return c, out


def test_sync_group_answers_only_once_the_assignment_is_stored():
    """Found by the simulator (seed 117 before the fix): the leader's SyncGroup answered before
    the group's record was written; a coordinator failover then loaded the previous generation
    and handed out the same generation again with another assignment (two owners of a
    partition in one generation)."""
    waiting = []
    c, out = _one_member_completing(lambda p, recs, done: waiting.append(done))
    assert out == [] and c.groups["g"].state == COMPLETING  # not before the write is acknowledged
    waiting.pop()(ErrorCode.none, 0)
    assert out[0]["assignment"] == b"A" and c.groups["g"].state == STABLE


def test_a_failed_store_of_the_assignment_restarts_the_round():
    waiting = []
    c, out = _one_member_completing(lambda p, recs, done: waiting.append(done))
    waiting.pop()(ErrorCode.not_leader_or_follower)
    assert out == [{"error_code": ErrorCode.not_coordinator}]
    assert c.groups["g"].state == PREPARING and c.groups["g"].members["m1"].assignment == b""


def test_consumer_protocol_same_seed_same_story():
    a, b = groups_consumer.run(4, trace=True), groups_consumer.run(4, trace=True)
    assert a == b and a.events > 1000 and a.faults > 0 and a.acknowledged > 0


def test_consumer_protocol_fault_free_run_commits_everything_processed():
    sim = groups_consumer.ConsumerGroupsSim(3, faults=False)
    summary = sim.run()
    assert summary.faults == 0 and summary.acknowledged > 0
    final = sim.final_positions()
    assert sorted(final) == [(groups_consumer.TOPIC, p) for p in range(sim.partitions)]
    g = sim.hosts[sim.owner].gc.groups[groups_consumer.GROUP]
    assert {tp: o[0] for tp, o in g.offsets.items()} == final and any(final.values())
