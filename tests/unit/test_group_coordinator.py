"""The GroupCoordinator state machine, driven with an injected clock and a fake log."""

from __future__ import annotations

import datetime

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.join_group.v9 import request as jg
from kio.schema.leave_group.v5 import request as lg
from kio.schema.offset_commit.v8 import request as oc
from kio.schema.sync_group.v5 import request as sg

from kafkalab.broker.group_coordinator import (
    COMPLETING,
    EMPTY,
    PREPARING,
    STABLE,
    GroupCoordinator,
    java_string_hashcode,
    partition_for,
)

SESSION = 1000


class Log:
    """Stands in for __consumer_offsets: keeps appended records, acks when told."""

    def __init__(self):
        self.records = []
        self.auto_ack = True
        self.waiting = []

    def append(self, partition, records, on_done):
        self.records.extend(records)
        if self.auto_ack:
            on_done(ErrorCode.none)
        else:
            self.waiting.append(on_done)


@pytest.fixture
def env():
    log = Log()
    c = GroupCoordinator(num_partitions=6, append=log.append, owns=lambda p: "yes")
    return c, log


def join(c, now, member_id="", instance=None, protocols=(("range", b"m"),), session=SESSION):
    out = []
    c.join_group(jg.JoinGroupRequest(
        group_id="g", session_timeout=datetime.timedelta(milliseconds=session),
        rebalance_timeout=datetime.timedelta(milliseconds=3000), member_id=member_id,
        group_instance_id=instance, protocol_type="consumer",
        protocols=tuple(jg.JoinGroupRequestProtocol(name=n, metadata=m) for n, m in protocols)),
        now, out.append)
    return out


def sync(c, now, member, generation, assignments=None):
    out = []
    c.sync_group(sg.SyncGroupRequest(group_id="g", generation_id=generation, member_id=member,
                                     assignments=tuple(sg.SyncGroupRequestAssignment(member_id=m, assignment=a)
                                                       for m, a in (assignments or {}).items())), now, out.append)
    return out


def hb(c, now, member, generation, instance=None):
    return c.heartbeat(HeartbeatRequest(group_id="g", generation_id=generation, member_id=member,
                                        group_instance_id=instance), now)


def first_join(c, now, **kw):
    r = join(c, now, **kw)
    if kw.get("instance") is None:
        assert r[0]["error_code"] == ErrorCode.member_id_required
        return join(c, now, member_id=r[0]["member_id"], **kw), r[0]["member_id"]
    return r, None


def test_java_hashcode_and_partition_rule():
    # Values Java prints for "".hashCode(), "a".hashCode(), "hello".hashCode(), "polygenelubricants"
    assert java_string_hashcode("") == 0
    assert java_string_hashcode("a") == 97
    assert java_string_hashcode("hello") == 99162322
    assert java_string_hashcode("polygenelubricants") == -2147483648
    assert partition_for("polygenelubricants", 50) == 0  # Utils.abs(MIN_VALUE) is 0
    assert partition_for("hello", 50) == 99162322 % 50


def test_member_id_required_then_join_sync_stable(env):
    c, log = env
    r, a = first_join(c, 0)
    assert r[0]["error_code"] == ErrorCode.none and r[0]["generation_id"] == 1
    assert r[0]["leader"] == a and [m[0] for m in r[0]["members"]] == [a]
    assert c.groups["g"].state == COMPLETING
    s = sync(c, 1, a, 1, {a: b"asg"})
    assert s[0]["assignment"] == b"asg" and c.groups["g"].state == STABLE
    assert any(k.startswith(b"\x00\x02") for k, _ in log.records)  # GroupMetadataKey v2 written


def test_second_member_waits_for_the_first_to_rejoin(env):
    c, _ = env
    (r1,), a = first_join(c, 0)
    sync(c, 1, a, 1, {a: b"x"})
    r2, b = first_join(c, 10)
    assert r2 == [] and c.groups["g"].state == PREPARING  # parked until a rejoins
    assert hb(c, 20, a, 1) == ErrorCode.rebalance_in_progress
    ra = join(c, 30, member_id=a)
    assert ra[0]["generation_id"] == r2[0]["generation_id"] == 2
    assert len(ra[0]["members"]) == 2 and r2[0]["members"] == []  # only the leader sees members
    follower = sync(c, 40, b, 2)
    assert follower == []  # waits for the leader's assignment
    sync(c, 50, a, 2, {a: b"A", b: b"B"})
    assert follower[0]["assignment"] == b"B"


def test_errors_unknown_member_illegal_generation_inconsistent_protocol(env):
    c, _ = env
    (r,), a = first_join(c, 0)
    sync(c, 1, a, 1, {a: b""})
    assert hb(c, 2, "nobody", 1) == ErrorCode.unknown_member_id
    assert hb(c, 2, a, 0) == ErrorCode.illegal_generation
    assert sync(c, 2, a, 7)[0]["error_code"] == ErrorCode.illegal_generation
    assert join(c, 3, protocols=(("roundrobin", b""),))[0]["error_code"] == ErrorCode.inconsistent_group_protocol


def test_a_member_of_a_group_marked_dead_is_told_to_find_its_coordinator_again(env):
    # Kafka's GroupMetadataManager: a Dead group was just removed (moved to another coordinator
    # or deleted); heartbeat, SyncGroup and OffsetCommit answer COORDINATOR_NOT_AVAILABLE.
    c, _ = env
    (r,), a = first_join(c, 0)
    sync(c, 1, a, 1, {a: b""})
    c.groups["g"].state = "Dead"
    assert hb(c, 2, a, 1) == ErrorCode.coordinator_not_available
    assert sync(c, 2, a, 1)[0]["error_code"] == ErrorCode.coordinator_not_available


def test_session_timeout_removes_member_and_rebalances(env):
    c, _ = env
    (r,), a = first_join(c, 0)
    sync(c, 1, a, 1, {a: b""})
    rb, b = first_join(c, 2)
    join(c, 3, member_id=a)
    sync(c, 4, b, 2)
    sync(c, 4, a, 2, {a: b"", b: b""})
    assert c.groups["g"].state == STABLE
    for t in range(100, SESSION + 500, 100):  # a heartbeats, b is silent
        hb(c, t, a, 2)
        c.tick(t)
    g = c.groups["g"]
    assert b not in g.members and g.state == PREPARING
    assert hb(c, SESSION + 600, a, 2) == ErrorCode.rebalance_in_progress
    ra = join(c, SESSION + 700, member_id=a)
    assert ra[0]["generation_id"] == 3 and len(ra[0]["members"]) == 1


def test_rebalance_timeout_drops_members_that_do_not_rejoin(env):
    c, _ = env
    (r,), a = first_join(c, 0)
    sync(c, 1, a, 1, {a: b""})
    rb, b = first_join(c, 2)  # a never rejoins
    for t in range(0, 3200, 100):
        c.tick(t)
    assert rb[0]["generation_id"] == 2 and a not in c.groups["g"].members
    assert rb[0]["leader"] == b


def test_leave_group_triggers_rebalance_and_last_leave_empties(env):
    c, _ = env
    (r,), a = first_join(c, 0)
    sync(c, 1, a, 1, {a: b""})
    err, results = c.leave_group(lg.LeaveGroupRequest(group_id="g", members=(lg.MemberIdentity(member_id=a),)), 5)
    assert err == ErrorCode.none and results[0][2] == ErrorCode.none
    assert c.groups["g"].state == EMPTY and c.groups["g"].generation == 2


def test_static_member_rejoins_without_rebalance_and_old_id_is_fenced(env):
    c, _ = env
    (r,), _ = first_join(c, 0, instance="host-1")
    a = r["member_id"]
    sync(c, 1, a, 1, {a: b"mine"})
    # restarted: joins with no member id, same instance id, inside the session timeout
    (r2,) = join(c, 500, instance="host-1")
    g = c.groups["g"]
    assert r2["error_code"] == ErrorCode.none and r2["generation_id"] == 1 and g.state == STABLE
    assert sync(c, 510, r2["member_id"], 1)[0]["assignment"] == b"mine"
    assert hb(c, 520, a, 1, instance="host-1") == ErrorCode.fenced_instance_id


def test_offsets_are_answered_only_once_appended(env):
    c, log = env
    (r,), a = first_join(c, 0)
    sync(c, 1, a, 1, {a: b""})
    log.auto_ack = False
    out = []
    c.commit_offsets(oc.OffsetCommitRequest(group_id="g", generation_id_or_member_epoch=1, member_id=a, topics=(
        oc.OffsetCommitRequestTopic(name="t", partitions=(oc.OffsetCommitRequestPartition(
            partition_index=0, committed_offset=42, committed_metadata=None),)),)), 2, out.append)
    assert out == [] and c.fetch_offsets("g", [("t", 0)])[1][("t", 0)][0] == -1
    log.waiting.pop()(ErrorCode.none)
    assert out == [{("t", 0): ErrorCode.none}]
    assert c.fetch_offsets("g", [("t", 0)])[1][("t", 0)][0] == 42
    # a new coordinator replays the log and knows the offset and the group
    c2 = GroupCoordinator(num_partitions=6, append=log.append, owns=lambda p: "yes")
    for k, v in log.records:
        c2.load_record(k, v, 100)
    assert c2.fetch_offsets("g", [("t", 0)])[1][("t", 0)][0] == 42
    assert c2.groups["g"].state == STABLE and a in c2.groups["g"].members


def test_commit_from_a_stale_generation_is_refused(env):
    c, _ = env
    (r,), a = first_join(c, 0)
    sync(c, 1, a, 1, {a: b""})
    out = []
    c.commit_offsets(oc.OffsetCommitRequest(group_id="g", generation_id_or_member_epoch=0, member_id=a, topics=(
        oc.OffsetCommitRequestTopic(name="t", partitions=(oc.OffsetCommitRequestPartition(
            partition_index=0, committed_offset=1, committed_metadata=None),)),)), 2, out.append)
    assert out[0][("t", 0)] == ErrorCode.illegal_generation


def commit(c, now, generation, member="", group="g"):
    out = []
    c.commit_offsets(oc.OffsetCommitRequest(group_id=group, generation_id_or_member_epoch=generation,
                                            member_id=member, topics=(oc.OffsetCommitRequestTopic(
                                                name="t", partitions=(oc.OffsetCommitRequestPartition(
                                                    partition_index=0, committed_offset=7,
                                                    committed_metadata=None),)),)), now, out.append)
    return out[0][("t", 0)]


def test_a_generation_for_a_group_that_does_not_exist_is_illegal_and_creates_nothing(env):
    # Kafka's OffsetMetadataManager: OffsetCommit < v9 answers ILLEGAL_GENERATION; only a commit
    # without a generation (the admin client, assign() consumers) creates a simple group.
    c, _ = env
    assert commit(c, 0, generation=3, member="m-1", group="nobody") == ErrorCode.illegal_generation
    assert "nobody" not in c.groups
    assert commit(c, 0, generation=-1, group="simple") == ErrorCode.none
    assert c.fetch_offsets("simple", [("t", 0)])[1][("t", 0)][0] == 7


def test_an_empty_group_takes_a_commit_without_a_generation_whatever_the_member_id(env):
    c, _ = env
    assert commit(c, 0, generation=-1, group="g") == ErrorCode.none  # creates the simple group
    assert commit(c, 1, generation=-1, member="old-member", group="g") == ErrorCode.none
    (r,), a = first_join(c, 2)
    assert commit(c, 3, generation=-1, group="g") == ErrorCode.unknown_member_id  # a live group


def test_not_coordinator_and_loading():
    state = {"v": "no"}
    c = GroupCoordinator(num_partitions=6, append=lambda *a: None, owns=lambda p: state["v"])
    assert join(c, 0)[0]["error_code"] == ErrorCode.not_coordinator
    state["v"] = "loading"
    assert join(c, 0)[0]["error_code"] == ErrorCode.coordinator_load_in_progress


def test_failed_offset_appends_are_reported_in_the_coordinators_words():
    from kafkalab.broker.group_coordinator import commit_error
    from kafkalab.protocol.errors import ErrorCode as E
    assert commit_error(E.not_leader_or_follower) == E.not_coordinator      # the client looks again
    assert commit_error(E.not_enough_replicas) == E.coordinator_not_available
    assert commit_error(E.record_list_too_large) == E.invalid_commit_offset_size
    assert commit_error(E.none) == E.none and commit_error(E.request_timed_out) == E.request_timed_out
