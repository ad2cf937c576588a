"""The group leader sends exactly one SyncGroup per generation, also when it had to wait for
the topic's metadata before it could run the assignor (a duplicate SyncGroup answer used to
hand the consumer the same assignment twice, which reset its positions and re-delivered records)."""

from __future__ import annotations

import time
from types import SimpleNamespace

from kafkalab.client.assignors import (
    Subscription,
    decode_assignment,
    encode_assignment,
    encode_subscription,
)
from kafkalab.client.config import consumer_config
from kafkalab.client.group_member import GroupMember
from kafkalab.client.membership import STABLE, GroupDriver


class FakeNet:
    def __init__(self):
        self.sent = []

    def send(self, node, req, done, now, timeout_s=None):
        self.sent.append((type(req).__name__, req, done))

    def any_broker(self):
        return 1


def _joined_leader(counts_ready_after: int):
    cfg = consumer_config({"group.id": "g"})
    calls = []

    def partition_counts(topics):
        calls.append(topics)
        return {"t": 2} if len(calls) > counts_ready_after else None

    member = GroupMember("g", cfg, list(cfg["partition.assignment.strategy"]), "c1", partition_counts)
    member.subscribe(["t"], now=time.monotonic())
    member.coordinator = 1
    net, driver = FakeNet(), GroupDriver(member)
    driver.step(net, time.monotonic())
    (name, join_req, on_join), = net.sent
    assert name == "JoinGroupRequest"
    net.sent.clear()
    protocol = join_req.protocols[0].name
    join = SimpleNamespace(error_code=0, generation_id=1, member_id="m1", leader="m1", protocol_name=protocol,
                           members=[SimpleNamespace(member_id="m1",
                                                    metadata=encode_subscription(Subscription(["t"])))])
    on_join(join)
    return member, net, driver


def _syncs(net):
    return [s for s in net.sent if s[0] == "SyncGroupRequest"]


def test_leader_with_metadata_sends_one_sync_group():
    member, net, driver = _joined_leader(counts_ready_after=0)
    assert len(_syncs(net)) == 1


def test_leader_waiting_for_metadata_sends_one_sync_group():
    member, net, driver = _joined_leader(counts_ready_after=1)
    assert _syncs(net) == [] and member.pending_sync is not None
    for _ in range(3):  # the metadata arrives; later steps must not send it again
        time.sleep(0.06)  # past the leader's retry_at (the driver hands handlers monotonic time)
        driver.step(net, time.monotonic())
    syncs = _syncs(net)
    assert len(syncs) == 1, [s[0] for s in net.sent]
    (_, sync_req, on_sync), = syncs
    assignment = {a.member_id: decode_assignment(bytes(a.assignment)) for a in sync_req.assignments}
    assert assignment == {"m1": [("t", 0), ("t", 1)]}
    on_sync(SimpleNamespace(error_code=0, assignment=encode_assignment(assignment["m1"])))
    assert member.state == STABLE
    assert [kind for kind, _, _ in member.events] == ["assign"]
