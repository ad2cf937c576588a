"""KIP-848's coordinator as a pure class: heartbeats and an injected clock in, responses out."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import struct
import uuid

import pytest
from kio.schema.consumer_group_heartbeat.v1.request import (
    ConsumerGroupHeartbeatRequest,
    TopicPartitions,
)
from kio.schema.errors import ErrorCode

from kafkalab.broker.consumer_group import (
    ASSIGNORS,
    ConsumerGroupCoordinator,
    Topic,
    range_assign,
    uniform_assign,
)

T = str(uuid.UUID(int=7))
TOPICS = {"orders": Topic(T, "orders", 6)}


def coordinator(**kw):
    ids = (f"m{i}" for i in itertools.count())
    return ConsumerGroupCoordinator(topics=lambda: TOPICS, owns=lambda g: "yes",
                                    new_member_id=lambda: next(ids), session_timeout_ms=1000,
                                    heartbeat_interval_ms=100, **kw)


def hb(c, member, epoch, now, owned=None, topics=("orders",), assignor=None, instance=None, group="g"):
    req = ConsumerGroupHeartbeatRequest(
        group_id=group, member_id=member, member_epoch=epoch, instance_id=instance, rack_id=None,
        rebalance_timeout=datetime.timedelta(seconds=5), subscribed_topic_names=topics if epoch == 0 else None,
        subscribed_topic_regex=None, server_assignor=assignor,
        topic_partitions=None if owned is None else tuple(
            TopicPartitions(topic_id=uuid.UUID(T), partitions=tuple(sorted(p for _, p in owned)))
            for _ in [0] if owned))
    resp, records = c.heartbeat(req, now)
    return resp, records


class Client:
    """A well-behaved member: revokes what the broker no longer gives it, reports what it owns."""

    def __init__(self, c, member_id, now=0, **kw):
        self.c, self.id, self.epoch, self.owned = c, member_id, 0, set()
        self.beat(now, **kw)

    def beat(self, now, **kw):
        r, _ = hb(self.c, self.id, self.epoch, now, owned=self.owned if self.epoch else None, **kw)
        assert r["error_code"] == ErrorCode.none, r
        self.epoch = r["member_epoch"]
        if r["assignment"] is not None:
            self.owned = set(r["assignment"])
        return r


def settle(clients, now):
    for _ in range(6):
        for cl in clients:
            cl.beat(now)
    return now


def test_three_members_share_six_partitions_exactly_and_reach_the_group_epoch():
    c = coordinator()
    cs = [Client(c, f"c{i}") for i in range(3)]
    settle(cs, 10)
    owned = [cl.owned for cl in cs]
    assert sorted(len(o) for o in owned) == [2, 2, 2]
    assert set().union(*owned) == {(T, p) for p in range(6)}
    g = c.groups["g"]
    assert g.state == "Stable" and {cl.epoch for cl in cs} == {g.group_epoch} == {3}


def test_a_leaving_member_only_moves_its_partitions_and_others_never_revoke():
    c = coordinator()
    cs = [Client(c, f"c{i}") for i in range(3)]
    settle(cs, 10)
    kept = {cl.id: set(cl.owned) for cl in cs[:2]}
    r, records = hb(c, "c2", -1, 20)
    assert r["member_epoch"] == -1 and any(v is None for _, v in records)  # tombstones
    for _ in range(3):
        for cl in cs[:2]:
            cl.beat(30)
            assert kept[cl.id] <= cl.owned  # nothing was taken away, ever
            assert not c.groups["g"].members[cl.id].revoking
    assert set().union(*(cl.owned for cl in cs[:2])) == {(T, p) for p in range(6)}


def test_a_partition_moves_only_after_its_owner_revoked_it():
    c = coordinator()
    a = Client(c, "a")
    settle([a], 10)
    assert len(a.owned) == 6
    b = Client(c, "b", now=20)
    assert b.owned == set()  # everything is still a's
    assert c.groups["g"].members["b"].state == "UNRELEASED_PARTITIONS"
    r = hb(c, "a", a.epoch, 30, owned=a.owned)[0]
    assert len(r["assignment"]) == 3 and r["member_epoch"] == a.epoch  # a must revoke first
    b.beat(35)
    assert b.owned == set()  # a has not said it revoked yet
    a.owned, a.epoch = set(r["assignment"]), r["member_epoch"]
    a.beat(40)  # reports three partitions: the others are free
    b.beat(50)
    assert len(b.owned) == 3 and not (a.owned & b.owned)
    assert c.groups["g"].state == "Stable"


def test_stale_and_unknown_members_get_kafkas_errors_and_the_group_keeps_working():
    c = coordinator()
    a = Client(c, "a")
    settle([a], 10)
    assert hb(c, "a", a.epoch + 5, 20)[0]["error_code"] == ErrorCode.fenced_member_epoch
    r = hb(c, "ghost", 3, 20)[0]
    assert r["error_code"] == ErrorCode.unknown_member_id and "rejoin with member epoch 0" in r["error_message"]
    r = hb(c, "x", 0, 20, assignor="sticky")[0]
    assert r["error_code"] == ErrorCode.unsupported_assignor and "uniform" in r["error_message"]
    assert a.beat(30)["error_code"] == ErrorCode.none and len(a.owned) == 6


def test_session_timeout_fences_a_silent_member():
    c = coordinator()
    a, b = Client(c, "a"), Client(c, "b")
    settle([a, b], 10)
    for t in range(100, 1500, 100):
        a.beat(t)
    out = c.tick(1500)
    assert "b" not in c.groups["g"].members and out["g"]
    settle([a], 1600)
    assert len(a.owned) == 6
    assert hb(c, "b", b.epoch, 1700)[0]["error_code"] == ErrorCode.unknown_member_id


def test_range_assignor_when_members_ask_for_it():
    c = coordinator()
    cs = [Client(c, n, assignor="range") for n in ("a", "b", "c", "d")]
    settle(cs, 10)
    assert [sorted(p for _, p in cl.owned) for cl in cs] == [[0, 1], [2, 3], [4], [5]]


def test_unknown_assignor_in_the_broker_config_names_the_choices():
    with pytest.raises(ValueError, match="uniform"):
        coordinator(assignors=("sticky",))
    assert ASSIGNORS[0] == "uniform"


def test_static_member_restart_keeps_its_partitions_without_a_new_group_epoch():
    c = coordinator()
    a, b = Client(c, "a", instance="i-a"), Client(c, "b", instance="i-b")
    settle([a, b], 10)
    epoch, held = c.groups["g"].group_epoch, set(a.owned)
    assert hb(c, "a", -2, 20, instance="i-a")[0]["member_epoch"] == -2
    r = hb(c, "a2", 0, 30, instance="i-a")[0]
    assert r["error_code"] == ErrorCode.none and set(r["assignment"]) == held
    assert c.groups["g"].group_epoch == epoch
    r = hb(c, "a3", 0, 40, instance="i-a")[0]  # the instance is in use again
    assert r["error_code"] == ErrorCode.unreleased_instance_id


def test_offset_commits_are_checked_against_the_member_epoch():
    c = coordinator()
    a = Client(c, "a")
    settle([a], 10)
    assert c.validate_commit("g", "a", a.epoch) == ErrorCode.none
    assert c.validate_commit("g", "a", a.epoch - 1) == ErrorCode.stale_member_epoch
    assert c.validate_commit("g", "nobody", 1) == ErrorCode.unknown_member_id
    assert c.validate_commit("classic", "x", 1) is None  # not ours: the classic rules apply


def test_a_busy_classic_group_is_refused_and_an_empty_one_upgraded():
    c = coordinator(classic_state=lambda g: "active" if g == "busy" else "empty")
    r = hb(c, "a", 0, 0, group="busy")[0]
    assert r["error_code"] == ErrorCode.group_id_not_found and "group.protocol" in r["error_message"]
    assert hb(c, "a", 0, 0, group="old")[0]["error_code"] == ErrorCode.none
    assert c.list_groups() == [("old", "Reconciling")] or c.list_groups() == [("old", "Stable")]


def test_records_use_kafkas_coordinator_record_types():
    c = coordinator()
    _, records = hb(c, "a", 0, 0)
    types = [struct.unpack(">h", k[:2])[0] for k, _ in records]
    # member metadata (5), group epoch (3), target member (7), target epoch (6), current (8)
    assert types == [5, 3, 7, 6, 8]
    key, value = records[1]
    assert key == struct.pack(">hh", 3, 1) + b"g" and value == struct.pack(">hi", 0, 1) + b"\x00"


@pytest.mark.parametrize("assign", [uniform_assign, range_assign])
def test_assignors_cover_every_subscribed_partition_once(assign):
    members = {"a": {"t1", "t2"}, "b": {"t1"}, "c": {"t2"}}
    out = assign(members, {"t1": 3, "t2": 4}, {})
    got = [tp for tps in out.values() for tp in tps]
    assert sorted(got) == sorted([("t1", p) for p in range(3)] + [("t2", p) for p in range(4)])
    assert all(t in members[m] for m, tps in out.items() for t, _ in tps)


def test_uniform_is_sticky_when_a_member_joins():
    before = uniform_assign({"a": {"t"}, "b": {"t"}}, {"t": 6}, {})
    after = uniform_assign({"a": {"t"}, "b": {"t"}, "c": {"t"}}, {"t": 6}, before)
    assert all(after[m] <= before[m] for m in "ab") and len(after["c"]) == 2


def test_a_new_coordinator_replays_the_records_into_the_same_group():
    c2, full = coordinator(), []
    for cl_id in ("a", "b", "c"):
        full += hb(c2, cl_id, 0, 0)[1]
    for _ in range(6):
        for cl_id in ("a", "b", "c"):
            m = c2.groups["g"].members[cl_id]
            full += hb(c2, cl_id, m.member_epoch, 10, owned=m.assigned)[1]
    full += hb(c2, "c", -1, 20)[1]
    fresh = coordinator()
    for key, value in full:
        fresh.load_record(key, value, 30)
    a, b = c2.groups["g"], fresh.groups["g"]
    assert (b.group_epoch, b.assignment_epoch, b.target) == (a.group_epoch, a.assignment_epoch, a.target)
    assert {mid: (m.member_epoch, m.assigned, m.subscribed_topic_names) for mid, m in b.members.items()} == \
        {mid: (m.member_epoch, m.assigned, m.subscribed_topic_names) for mid, m in a.members.items()}
    assert set(b.members) == {"a", "b"}


def test_an_empty_consumer_group_can_turn_classic_again():
    c = coordinator()
    hb(c, "a", 0, 0)
    hb(c, "a", -1, 10)
    assert c.is_consumer_group("g") and not c.groups["g"].members
    records = c.downgrade("g")
    assert [v for _, v in records] == [None, None] and not c.is_consumer_group("g")


def test_a_regex_subscription_follows_the_topics_that_match():
    topics = {"orders": Topic(T, "orders", 2)}
    c = ConsumerGroupCoordinator(topics=lambda: topics, owns=lambda g: "yes", new_member_id=lambda: "x")
    req = ConsumerGroupHeartbeatRequest(
        group_id="g", member_id="a", member_epoch=0, instance_id=None, rack_id=None,
        rebalance_timeout=datetime.timedelta(seconds=5), subscribed_topic_names=None,
        subscribed_topic_regex="ord.*", server_assignor=None, topic_partitions=None)
    r, _ = c.heartbeat(req, 0)
    assert sorted(r["assignment"]) == [(T, 0), (T, 1)]
    epoch = r["member_epoch"]
    other = str(uuid.UUID(int=8))
    topics["orders-eu"] = Topic(other, "orders-eu", 1)  # a new topic that matches: a new group epoch
    r, _ = hb(c, "a", epoch, 10, owned={(T, 0), (T, 1)}, topics=None)
    assert r["member_epoch"] == epoch + 1 and (other, 0) in r["assignment"]
    bad = dataclasses.replace(req, member_id="b", subscribed_topic_regex="ord[")
    r, _ = c.heartbeat(bad, 20)
    assert r["error_code"] == ErrorCode.invalid_regular_expression and "ord[" in r["error_message"]


def test_a_member_that_never_revokes_is_fenced_after_its_rebalance_timeout():
    c = coordinator()
    a = Client(c, "a")
    settle([a], 10)
    b = Client(c, "b", now=20)
    r = hb(c, "a", a.epoch, 30, owned=a.owned)[0]  # told to revoke three partitions; it never does
    assert len(r["assignment"]) == 3
    for t in range(100, 5_100, 100):  # heartbeats keep the session alive, still owning all six
        assert hb(c, "a", a.epoch, t, owned=a.owned)[0]["error_code"] == ErrorCode.none
        b.beat(t)
        c.tick(t)
        assert "a" in c.groups["g"].members and not b.owned
    c.tick(5_100)  # the rebalance timeout (5 s) has passed since the revocation was asked
    assert "a" not in c.groups["g"].members
    b.beat(5_200)
    assert len(b.owned) == 6


def test_metadata_answers_a_request_by_topic_id():
    from kio.schema.metadata.v12 import request as md_req

    from kafkalab.controller.requests import metadata_response
    from kafkalab.metadata.image import MetadataImage
    image = MetadataImage()
    image.apply({"type": "TopicRecord", "name": "orders", "topic_id": T})
    unknown = uuid.UUID(int=99)
    req = md_req.MetadataRequest(topics=(md_req.MetadataRequestTopic(topic_id=uuid.UUID(T), name=None),
                                         md_req.MetadataRequestTopic(topic_id=unknown, name=None)),
                                 allow_auto_topic_creation=False, include_topic_authorized_operations=False)
    out = metadata_response(image, req)
    assert [(t.name, t.error_code) for t in out.topics] == [("orders", ErrorCode.none),
                                                           (None, ErrorCode.unknown_topic_id)]
