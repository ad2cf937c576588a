"""Share-group membership (KIP-932) as a pure class."""

from __future__ import annotations

import uuid

from kio.schema.errors import ErrorCode
from kio.schema.share_group_heartbeat.v1.request import ShareGroupHeartbeatRequest

from kafkalab.broker.consumer_group import Topic
from kafkalab.broker.share_group import ShareGroupCoordinator, simple_assign

T = str(uuid.UUID(int=5))


def coordinator(other=None):
    return ShareGroupCoordinator(topics=lambda: {"jobs": Topic(T, "jobs", 1)}, owns=lambda g: "yes",
                                 other_group=lambda g: other, session_timeout_ms=1000, heartbeat_interval_ms=100)


def hb(c, member, epoch, now, topics=("jobs",)):
    return c.heartbeat(ShareGroupHeartbeatRequest(group_id="q", member_id=member, member_epoch=epoch, rack_id=None,
                                                  subscribed_topic_names=topics if epoch == 0 else None), now)


def test_many_members_share_one_partition():
    c = coordinator()
    for m in "abc":
        assert hb(c, m, 0, 0)["error_code"] == ErrorCode.none
    for m in "abc":
        r = hb(c, m, c.groups["q"].members[m].member_epoch, 10)
        assert r["member_epoch"] == 3
    assert c.groups["q"].assignment == {m: {(T, 0)} for m in "abc"}


def test_simple_assign_spreads_partitions_when_there_are_more_of_them():
    out = simple_assign({"a": {"t"}, "b": {"t"}}, {"t": 4})
    assert out == {"a": {("t", 0), ("t", 2)}, "b": {("t", 1), ("t", 3)}}


def test_stale_unknown_and_foreign_groups_get_kafkas_errors():
    c = coordinator()
    hb(c, "a", 0, 0)
    assert hb(c, "a", 7, 10)["error_code"] == ErrorCode.fenced_member_epoch
    assert hb(c, "zz", 1, 10)["error_code"] == ErrorCode.unknown_member_id
    r = coordinator(other="consumer").heartbeat(ShareGroupHeartbeatRequest(
        group_id="q", member_id="a", member_epoch=0, rack_id=None, subscribed_topic_names=("jobs",)), 0)
    assert r["error_code"] == ErrorCode.group_id_not_found and "another group.id" in r["error_message"]


def test_a_silent_member_leaves_after_the_session_timeout():
    c = coordinator()
    hb(c, "a", 0, 0)
    hb(c, "b", 0, 0)
    assert hb(c, "a", c.groups["q"].members["a"].member_epoch, 900)["error_code"] == ErrorCode.none
    assert c.tick(1500) == [("q", "b")] and set(c.groups["q"].members) == {"a"}


def test_describe_gives_epochs_members_and_assignments_or_kafkas_errors():
    c = coordinator()
    hb(c, "a", 0, 0)
    hb(c, "b", 0, 0)
    d = c.describe("q")
    assert (d["error_code"], d["group_state"], d["group_epoch"], d["assignor_name"]) == (ErrorCode.none, "Stable", 2,
                                                                                         "simple")
    assert [(m["member_id"], m["assignment"]) for m in d["members"]] == [("a", [(T, 0)]), ("b", [(T, 0)])]
    assert [m["member_epoch"] for m in d["members"]] == [1, 2]  # a has not heartbeated since b joined
    assert c.describe("nope")["error_code"] == ErrorCode.group_id_not_found
    foreign = coordinator(other="classic").describe("q")
    assert foreign["error_code"] == ErrorCode.group_id_not_found and "classic group" in foreign["error_message"]
    elsewhere = ShareGroupCoordinator(topics=lambda: {}, owns=lambda g: "no", other_group=lambda g: None)
    assert elsewhere.describe("q")["error_code"] == ErrorCode.not_coordinator
