"""What the classic member (JoinGroup/SyncGroup/Heartbeat) and the KIP-848 member
(ConsumerGroupHeartbeat) share, checked on both: the coordinator lookup and its backoff, a
coordinator error or a lost connection during a heartbeat (look the coordinator up again,
keep the generation/epoch and the partitions), leaving after max.poll.interval.ms, a fatal
error, and the driver that sends their requests."""

from __future__ import annotations

import datetime
import time
import uuid
from types import SimpleNamespace as NS

import pytest

from kafkalab.client.assignors import Subscription, encode_assignment, encode_subscription
from kafkalab.client.config import consumer_config
from kafkalab.client.consumer_group_member import ConsumerGroupMember
from kafkalab.client.group_member import GroupMember
from kafkalab.client.membership import FATAL, STABLE, GroupDriver
from kafkalab.protocol.errors import ErrorCode, KafkaError

TID = uuid.UUID(int=7)
PROTOCOLS = ["classic", "consumer"]


def make(protocol: str, **cfg):
    conf = consumer_config({"group.id": "g", "group.protocol": protocol, **cfg})
    if protocol == "classic":
        return GroupMember("g", conf, list(conf["partition.assignment.strategy"]), "c1", lambda topics: {"t": 2})
    return ConsumerGroupMember("g", conf, "c1")


def found(node: int = 1):
    return NS(coordinators=[NS(error_code=ErrorCode.none, node_id=node)])


def only(sends):
    (send,) = sends
    return send


def backoff(m) -> float:
    return m.cfg["retry.backoff.ms"] / 1000


def stable(protocol: str, **cfg):
    """A member that found coordinator 1 and owns t[0], t[1] (generation/epoch 5)."""
    m = make(protocol, **cfg)
    m.subscribe(["t"], 0.0)
    _, fc, on_found = only(m.step(0.0))
    assert type(fc).__name__ == "FindCoordinatorRequest" and fc.coordinator_keys == ("g",)
    on_found(found(1), 0.0)
    if protocol == "classic":
        _, join, on_join = only(m.step(0.0))
        on_join(NS(error_code=ErrorCode.none, generation_id=5, member_id="m1", leader="m1",
                   protocol_name=join.protocols[0].name,
                   members=[NS(member_id="m1", metadata=encode_subscription(Subscription(["t"])))]), 0.0)
        _, _, on_sync = only(m.deferred)
        on_sync(NS(error_code=ErrorCode.none, assignment=encode_assignment([("t", 0), ("t", 1)])), 0.0)
    else:
        m.names[str(TID)] = "t"
        _, _, on_beat = only(m.step(0.0))
        on_beat(NS(error_code=ErrorCode.none, error_message=None, member_epoch=5,
                   heartbeat_interval=datetime.timedelta(milliseconds=3000),
                   assignment=NS(topic_partitions=[NS(topic_id=TID, partitions=[0, 1])])), 0.0)
    assert m.state == STABLE and m.owned == [("t", 0), ("t", 1)] and m.generation == 5
    m.app_done = m.seq
    return m


def heartbeat_due(m, now: float):
    node, req, handler = only(m.step(now))
    assert type(req).__name__ in ("HeartbeatRequest", "ConsumerGroupHeartbeatRequest")
    return node, req, handler


def epoch(req) -> int:
    return req.generation_id if hasattr(req, "generation_id") else req.member_epoch


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unsubscribed_member_looks_up_the_coordinator_only_for_offsets_and_backs_off(protocol):
    m = make(protocol)
    assert m.step(0.0) == []  # nothing to do until commit()/committed() asks
    m.want_coordinator = True
    node, req, on_found = only(m.step(0.0))
    assert node is None and req.coordinator_keys == ("g",)
    assert m.step(0.0) == []  # one lookup at a time
    on_found(NS(coordinators=[NS(error_code=ErrorCode.coordinator_not_available, node_id=-1)]), 1.0)
    assert m.coordinator is None and m.step(1.0 + backoff(m) / 2) == []
    _, _, on_found = only(m.step(1.0 + backoff(m)))
    on_found(KafkaError(ErrorCode.request_timed_out, "no answer"), 2.0)  # a lost request backs off too
    assert m.step(2.0) == []
    _, _, on_found = only(m.step(2.0 + backoff(m)))
    on_found(found(3), 3.0)
    assert m.coordinator == 3 and m.step(3.0) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("error", [ErrorCode.not_coordinator, ErrorCode.coordinator_not_available,
                                   "connection lost"])
def test_a_coordinator_error_on_heartbeat_finds_it_again_and_keeps_the_membership(protocol, error):
    m = stable(protocol)
    seq = m.seq
    _, before, on_beat = heartbeat_due(m, 10.0)
    if error == "connection lost":
        on_beat(KafkaError(ErrorCode.network_exception, "broker 1 is gone"), 10.0)
    else:
        on_beat(NS(error_code=error, error_message=None), 10.0)
    assert m.coordinator is None and m.state == STABLE and m.seq == seq  # nothing lost
    assert m.step(10.0 + backoff(m) / 2) == []
    node, fc, on_found = only(m.step(10.0 + backoff(m)))
    assert node is None and type(fc).__name__ == "FindCoordinatorRequest"
    on_found(found(2), 11.0)
    node, after, _ = heartbeat_due(m, 11.0)  # at once, to the new coordinator
    assert node == 2 and epoch(after) == epoch(before) == 5 and after.member_id == before.member_id
    assert m.owned == [("t", 0), ("t", 1)] and m.seq == seq


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_coordinator_still_loading_is_asked_again_after_the_backoff_not_looked_up_again(protocol):
    # Kafka's AbstractCoordinator and heartbeat request manager: COORDINATOR_LOAD_IN_PROGRESS
    # means the right coordinator is reading its log; only NOT_COORDINATOR,
    # COORDINATOR_NOT_AVAILABLE or a disconnect mark it unknown.
    m = stable(protocol)
    seq = m.seq
    _, before, on_beat = heartbeat_due(m, 10.0)
    on_beat(NS(error_code=ErrorCode.coordinator_load_in_progress, error_message=None), 10.0)
    assert m.coordinator == 1 and m.state == STABLE and m.seq == seq
    assert m.step(10.0 + backoff(m) / 2) == []
    node, after, _ = heartbeat_due(m, 10.0 + backoff(m))
    assert node == 1 and epoch(after) == epoch(before) == 5 and m.owned == [("t", 0), ("t", 1)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_poll_for_max_poll_interval_leaves_the_group_and_loses_the_partitions(protocol):
    m = stable(protocol)
    m.last_poll = 0.0
    limit = m.cfg["max.poll.interval.ms"] / 1000
    assert all(type(r).__name__ != "LeaveGroupRequest" and epoch(r) >= 0 for _, r, _ in m.step(limit))
    m.hb_in_flight = False
    sends = m.step(limit + 1)
    leaves = [(node, r) for node, r, _ in sends
              if type(r).__name__ == "LeaveGroupRequest" or getattr(r, "member_epoch", 0) < 0]
    assert [node for node, _ in leaves] == [1]
    assert m.events[-1][:2] == ("lost", [("t", 0), ("t", 1)]) and m.owned == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_static_member_that_stops_polling_keeps_its_place_at_the_coordinator(protocol):
    """Kafka's classic consumer sends LeaveGroup on a poll timeout for dynamic members only;
    the KIP-848 member leaves with epoch -2 (a static member's temporary leave), never -1."""
    m = stable(protocol, **{"group.instance.id": "i1"})
    m.last_poll = 0.0
    m.hb_in_flight = False
    sends = m.step(m.cfg["max.poll.interval.ms"] / 1000 + 1)
    assert not [r for _, r, _ in sends if type(r).__name__ == "LeaveGroupRequest" or getattr(r, "member_epoch", 0) == -1]
    if protocol == "consumer":
        assert [r.member_epoch for _, r, _ in sends if getattr(r, "member_epoch", 0) < 0] == [-2]
    assert m.events[-1][:2] == ("lost", [("t", 0), ("t", 1)]) and m.owned == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_fatal_error_loses_the_partitions_and_stops_the_member(protocol):
    m = stable(protocol)
    _, _, on_beat = heartbeat_due(m, 10.0)
    fatal = ErrorCode.fenced_instance_id if protocol == "classic" else ErrorCode.group_max_size_reached
    on_beat(NS(error_code=fatal, error_message=None), 10.0)
    assert m.state == FATAL and isinstance(m.error, KafkaError) and m.error.code == fatal
    assert "group g" in str(m.error)
    assert m.events[-1][:2] == ("lost", [("t", 0), ("t", 1)]) and m.owned == []
    assert m.step(100.0) == []


class RecordingNet:
    def __init__(self):
        self.sent = []

    def send(self, node, req, done, now, timeout_s=None):
        self.sent.append((node, type(req).__name__, timeout_s, done))

    def any_broker(self):
        return 9


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_driver_sends_a_lookup_to_any_broker_and_waits_for_a_join_as_long_as_a_rebalance(protocol):
    m = make(protocol, **{"max.poll.interval.ms": 20_000})
    m.subscribe(["t"], 0.0)
    net, driver = RecordingNet(), GroupDriver(m)
    driver.step(net, time.monotonic())
    (node, name, timeout_s, done), = net.sent
    assert (node, name, timeout_s) == (9, "FindCoordinatorRequest", None)
    done(found(1))
    net.sent.clear()
    driver.step(net, time.monotonic())  # the driver hands handlers monotonic time
    (node, name, timeout_s, _), = net.sent
    if protocol == "classic":  # answered only when the rebalance completes
        assert (node, name, timeout_s) == (1, "JoinGroupRequest", 25.0)
    else:
        assert (node, name, timeout_s) == (1, "ConsumerGroupHeartbeatRequest", None)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_driver_hands_a_send_failure_to_the_handler(protocol):
    class DeadNet(RecordingNet):
        def send(self, node, req, done, now, timeout_s=None):
            raise KafkaError(ErrorCode.network_exception, "no broker reachable")

    m = make(protocol)
    m.subscribe(["t"], 0.0)
    GroupDriver(m).step(DeadNet(), 0.0)
    assert not m.in_flight and m.coordinator is None and m.retry_at > 0  # backing off, not stuck
