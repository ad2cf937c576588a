"""The classic group protocol under the simulator, and what it found in the coordinator."""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode
from kio.schema.join_group.v9 import request as jg
from kio.schema.offset_commit.v8 import request as oc
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


def _static_member_stable(append):
    ids = iter(["old", "new"])
    c = GroupCoordinator(num_partitions=1, append=append, owns=lambda p: "yes",
                         new_member_id=lambda client_id: next(ids))

    def join(member_id):
        out = []
        c.join_group(jg.JoinGroupRequest(
            group_id="g", session_timeout=datetime.timedelta(seconds=10),
            rebalance_timeout=datetime.timedelta(seconds=10), member_id=member_id, group_instance_id="i1",
            protocol_type="consumer", protocols=(jg.JoinGroupRequestProtocol(name="range", metadata=b""),)),
            0, out.append)
        return out

    join("")
    c.sync_group(sg.SyncGroupRequest(group_id="g", generation_id=1, member_id="old", group_instance_id="i1",
                                     assignments=(sg.SyncGroupRequestAssignment(member_id="old", assignment=b"A"),)),
                 1, lambda r: None)
    return c, join


def test_a_replaced_static_member_is_answered_once_its_new_id_is_stored():
    """Found by the simulator (seed 11 before the fix): a second process took a static member's
    group.instance.id, was answered at once, and the coordinator moved before the new id was
    written; the next coordinator loaded the old id, fenced the new process and accepted the
    old one's commits."""
    log, waiting = [], []

    def append(p, records, done):
        waiting.append(lambda code: (code == ErrorCode.none and log.extend(records), done(code, 0)))

    c, join = _static_member_stable(append)
    while waiting:
        waiting.pop(0)(ErrorCode.none)
    out = join("")  # the same group.instance.id from a new process
    assert out == [] and waiting  # not before the new member id is written
    waiting.pop(0)(ErrorCode.none)
    assert out[0]["error_code"] == ErrorCode.none and out[0]["member_id"] == "new"
    moved = GroupCoordinator(num_partitions=1, append=append, owns=lambda p: "yes")
    for key, value in log:
        moved.load_record(key, value, 5)
    assert moved.groups["g"].static == {"i1": "new"}


def test_a_static_replacement_that_cannot_be_stored_keeps_the_old_member():
    waiting = []
    c, join = _static_member_stable(lambda p, records, done: waiting.append(done))
    while waiting:
        waiting.pop(0)(ErrorCode.none)
    out = join("")
    waiting.pop(0)(ErrorCode.not_leader_or_follower)
    assert out == [{"error_code": ErrorCode.not_coordinator}]
    g = c.groups["g"]
    assert g.static == {"i1": "old"} and list(g.members) == ["old"] and g.members["old"].assignment == b"A"


def test_a_static_replacement_made_during_a_rebalance_is_lost_with_the_coordinator():
    """Kafka's rule (the simulator's seed 371 held the invariant to a stricter one): while the
    group rebalances, a new process with a known group.instance.id takes the member's place in
    memory only; the group record naming it is written with the leader's SyncGroup. A coordinator
    that loads the log before then maps the id to the old process: that one commits at the
    generation the log holds, and the new process is fenced when it syncs."""
    log = []

    def append(p, records, done):
        log.extend(records)
        done(ErrorCode.none, 0)

    ids = iter(["old", "d", "new"])
    c = GroupCoordinator(num_partitions=1, append=append, owns=lambda p: "yes",
                         new_member_id=lambda client_id: next(ids))

    def join(member_id, instance):
        out = []
        c.join_group(jg.JoinGroupRequest(
            group_id="g", session_timeout=datetime.timedelta(seconds=10),
            rebalance_timeout=datetime.timedelta(seconds=10), member_id=member_id, group_instance_id=instance,
            protocol_type="consumer", protocols=(jg.JoinGroupRequestProtocol(name="range", metadata=b""),)),
            0, out.append)
        return out

    join("", "i1")
    c.sync_group(sg.SyncGroupRequest(group_id="g", generation_id=1, member_id="old", group_instance_id="i1",
                                     assignments=(sg.SyncGroupRequestAssignment(member_id="old", assignment=b"A"),)),
                 1, lambda r: None)
    written = len(log)
    join("", None)  # a dynamic member: MEMBER_ID_REQUIRED, then it joins and the group rebalances
    join("d", None)
    assert c.groups["g"].state == PREPARING
    out = join("", "i1")  # a new process takes i1's place while the group rebalances
    assert out[0]["error_code"] == ErrorCode.none and out[0]["member_id"] == "new"
    assert out[0]["generation_id"] == 2 and c.groups["g"].state == COMPLETING
    assert len(log) == written  # nothing written yet: the leader has not synced

    moved = GroupCoordinator(num_partitions=1, append=append, owns=lambda p: "yes")
    for key, value in log:
        moved.load_record(key, value, 5)
    assert moved.groups["g"].generation == 1 and moved.groups["g"].static == {"i1": "old"}
    codes = []
    moved.commit_offsets(oc.OffsetCommitRequest(
        group_id="g", generation_id_or_member_epoch=1, member_id="old", group_instance_id="i1",
        topics=(oc.OffsetCommitRequestTopic(name="t", partitions=(oc.OffsetCommitRequestPartition(
            partition_index=0, committed_offset=7, committed_leader_epoch=-1, committed_metadata=""),)),)),
        6, codes.append)
    assert codes == [{("t", 0): ErrorCode.none}]
    synced = []
    moved.sync_group(sg.SyncGroupRequest(group_id="g", generation_id=2, member_id="new", group_instance_id="i1",
                                         assignments=()), 7, synced.append)
    assert synced[0]["error_code"] == ErrorCode.fenced_instance_id


def test_seed_371_holds():
    """Seed 371 reported the old process's commit after such a move as a violation; with the
    invariant as Kafka has it the run holds, and the new process is the one fenced."""
    story = groups.run(371, trace=True)
    assert story.acknowledged > 0
    assert any("member-6" in line and "is fenced" in line for line in story.trace or [])
