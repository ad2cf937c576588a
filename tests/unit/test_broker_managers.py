"""The broker's managers without a process: a fake controller channel answers by hand, a
ManualClock stands for time. Lifecycle, the controller channel, producer id blocks, the
follower's fetch sessions and the markers' retries."""

from __future__ import annotations

import uuid
from types import SimpleNamespace as NS
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from kafkalab.broker.controller_channel import ControllerChannelManager
from kafkalab.broker.lifecycle import (
    RETRY_NOT_CONTROLLER_S,
    STARTING_HEARTBEAT_S,
    BrokerLifecycleManager,
)
from kafkalab.broker.producer_id_manager import PREFETCH_WHEN_LEFT, ProducerIdManager
from kafkalab.broker.replica_fetcher import FetcherState
from kafkalab.broker.txn_markers import RETRY_BACKOFF_S, MarkerJob
from kafkalab.clock import ManualClock
from kafkalab.protocol.errors import KafkaError


class FakeController:
    """Records what is sent to the controller; the test answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, Any]] = []
        self.followed: list[int | None] = []
        self.silence_checks = 0
        self.on_heartbeat_channel: list[bool] = []  # per send: on the heartbeat channel?

    def send(self, request: Any, on_response: Any, on_error: Any = None, *, heartbeat: bool = False) -> int:
        self.calls.append((request, on_response, on_error))
        self.on_heartbeat_channel.append(heartbeat)
        return len(self.calls)

    def follow(self, target: int | None) -> None:
        self.followed.append(target)

    def check_silence(self) -> None:
        self.silence_checks += 1

    def take(self, kind: str) -> list[tuple[Any, Any, Any]]:
        got = [c for c in self.calls if type(c[0]).__name__ == kind]
        self.calls = [c for c in self.calls if type(c[0]).__name__ != kind]
        return got


# -- lifecycle ---------------------------------------------------------------------------------

def lifecycle(controller: FakeController, later: list) -> BrokerLifecycleManager:
    lc = BrokerLifecycleManager(broker_id=2, controller=controller, listeners=(), metadata_offset=lambda: 41,  # type: ignore[arg-type]
                                call_later=lambda d, fn: later.append((d, fn)),
                                incarnation_id=lambda: uuid.UUID(int=7))
    lc.events = []  # type: ignore[attr-defined]
    lc.on_registered = lambda: lc.events.append("registered")  # type: ignore[attr-defined]
    lc.on_shut_down = lambda: lc.events.append("shut down")  # type: ignore[attr-defined]
    return lc


def test_registration_carries_the_injected_incarnation_id_and_yields_the_epoch() -> None:
    c, later = FakeController(), []
    lc = lifecycle(c, later)
    lc.register()
    ((req, ok, _err),) = c.take("BrokerRegistrationRequest")
    assert (req.broker_id, req.incarnation_id) == (2, uuid.UUID(int=7))
    lc.heartbeat()  # not registered yet: no heartbeat, and no second registration in flight
    assert c.calls == []
    ok(NS(error_code=ErrorCode.none, broker_epoch=12))
    assert (lc.registered, lc.broker_epoch, lc.events) == (True, 12, ["registered"])
    ((hb, _ok, _e),) = c.take("BrokerHeartbeatRequest")  # at once, not at the next tick
    assert (hb.broker_epoch, hb.current_metadata_offset, hb.want_shut_down) == (12, 41, False)


def test_a_starting_broker_heartbeats_every_10_ms_until_caught_up_then_at_its_interval() -> None:
    """Kafka's BrokerLifecycleManager in STARTING: a heartbeat when registered, the next 10 ms
    after each answer until the controller says caught up (and unfences), each answer awaited
    on the main channel; from then on the heartbeat channel's beats at the interval."""
    c, later = FakeController(), []
    lc = lifecycle(c, later)
    lc.register()
    c.take("BrokerRegistrationRequest")[0][1](NS(error_code=ErrorCode.none, broker_epoch=5))
    ((_hb, ok, _e),) = c.take("BrokerHeartbeatRequest")
    ok(NS(error_code=ErrorCode.none, is_caught_up=False, is_fenced=True, should_shut_down=False))
    assert [d for d, _ in later] == [STARTING_HEARTBEAT_S] and lc.fenced
    later.pop()[1]()
    ((_hb, ok, _e),) = c.take("BrokerHeartbeatRequest")
    ok(NS(error_code=ErrorCode.none, is_caught_up=True, is_fenced=False, should_shut_down=False))
    assert later == [] and not lc.fenced and lc.caught_up
    lc.heartbeat()  # the periodic beat
    assert len(c.take("BrokerHeartbeatRequest")) == 1
    assert c.on_heartbeat_channel == [False, False, False, True]


def test_not_controller_turns_to_the_next_controller_and_registers_again_shortly() -> None:
    c, later = FakeController(), []
    lc = lifecycle(c, later)
    lc.register()
    ((_req, ok, _err),) = c.take("BrokerRegistrationRequest")
    ok(NS(error_code=ErrorCode.not_controller))
    assert c.followed == [None] and [d for d, _ in later] == [RETRY_NOT_CONTROLLER_S]
    later[0][1]()
    assert len(c.take("BrokerRegistrationRequest")) == 1


def test_a_heartbeat_answered_not_controller_is_sent_again_shortly_not_at_the_next_tick() -> None:
    """A broker following a controller that is no longer active must reach the active one
    before that one's session for it ends (Kafka: the next communication after a failure)."""
    c, later = FakeController(), []
    lc = lifecycle(c, later)
    lc.register()
    c.take("BrokerRegistrationRequest")[0][1](NS(error_code=ErrorCode.none, broker_epoch=5))
    c.take("BrokerHeartbeatRequest")[0][1](NS(error_code=ErrorCode.not_controller))
    assert [d for d, _ in later] == [RETRY_NOT_CONTROLLER_S]
    later.pop()[1]()
    assert len(c.take("BrokerHeartbeatRequest")) == 1


def test_a_lost_registration_is_sent_again_by_the_next_heartbeat_tick() -> None:
    c, later = FakeController(), []
    lc = lifecycle(c, later)
    lc.register()
    ((_req, _ok, err),) = c.take("BrokerRegistrationRequest")
    err(KafkaError(ErrorCode.request_timed_out, "lost"))
    lc.heartbeat()
    assert len(c.take("BrokerRegistrationRequest")) == 1 and c.silence_checks == 1


def test_a_stale_epoch_registers_again_and_controlled_shutdown_ends_when_the_controller_says() -> None:
    c, later = FakeController(), []
    lc = lifecycle(c, later)
    lc.register()
    c.take("BrokerRegistrationRequest")[0][1](NS(error_code=ErrorCode.none, broker_epoch=3))
    c.take("BrokerHeartbeatRequest")[0][1](NS(error_code=ErrorCode.stale_broker_epoch))
    assert not lc.registered
    c.take("BrokerRegistrationRequest")[0][1](NS(error_code=ErrorCode.none, broker_epoch=4))
    c.take("BrokerHeartbeatRequest")[0][1](NS(error_code=ErrorCode.none, is_caught_up=True, is_fenced=False,
                                              should_shut_down=False))
    lc.begin_controlled_shutdown()
    ((hb, ok, _e),) = c.take("BrokerHeartbeatRequest")
    assert hb.want_shut_down and hb.broker_epoch == 4
    ok(NS(error_code=ErrorCode.none, is_fenced=False, should_shut_down=False))
    assert "shut down" not in lc.events and not lc.fenced
    lc.heartbeat()
    c.take("BrokerHeartbeatRequest")[0][1](NS(error_code=ErrorCode.none, is_fenced=True, should_shut_down=True))
    assert lc.events[-1] == "shut down" and lc.fenced


# -- the controller channel ---------------------------------------------------------------------

class FakeChannel:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any, Any]] = []
        self.failed: list[KafkaError] = []
        self.attached: list[bool] = []  # wake= of each attach

    def attach(self, loop: Any, *, wake: bool = True) -> None:
        self.attached.append(wake)

    def send(self, request: Any, on_response: Any, on_error: Any = None) -> int:
        self.sent.append((request, on_response, on_error))
        return len(self.sent)

    def fail_all(self, error: KafkaError) -> None:
        self.failed.append(error)


def test_one_controller_is_always_the_one_followed() -> None:
    clock = ManualClock()
    ch = FakeChannel()
    m = ControllerChannelManager({0: ch}, clock, silence_s=1.0)  # type: ignore[dict-item]
    clock.advance(60)
    m.check_silence()
    m.follow(None)
    assert (m.quorum, m.active_id, ch.failed) == (False, 0, [])


def test_a_quorum_broker_leaves_a_silent_controller_and_fails_what_it_asked_it() -> None:
    clock = ManualClock()
    chans = {1: FakeChannel(), 2: FakeChannel(), 3: FakeChannel()}
    m = ControllerChannelManager(chans, clock, silence_s=1.0)  # type: ignore[arg-type]
    followed: list[int] = []
    m.on_follow = lambda: followed.append(m.active_id)
    m.send("req", lambda r: None)
    clock.advance(0.9)
    chans[1].sent[0][1]("answer")  # heard from: the silence starts again
    clock.advance(0.9)
    m.check_silence()
    assert m.active_id == 1
    clock.advance(0.2)
    m.check_silence()
    assert m.active_id == 2 and followed == [2]
    assert [e.code for e in chans[1].failed] == [ErrorCode.not_controller]
    m.follow(1)  # named by a "not controller" answer
    assert m.active_id == 1 and followed == [2, 1]
    m.send("req", lambda r: None)
    assert len(chans[1].sent) == 2


def test_an_answer_from_a_controller_left_behind_does_not_count_as_hearing_from_the_active_one() -> None:
    clock = ManualClock()
    chans = {1: FakeChannel(), 2: FakeChannel()}
    m = ControllerChannelManager(chans, clock, silence_s=1.0)  # type: ignore[arg-type]
    m.send("req", lambda r: None)
    m.follow(2)
    clock.advance(1.1)
    chans[1].sent[0][1]("late answer")
    m.check_silence()
    assert m.active_id == 1  # 2 stayed silent: the broker moved on


def test_heartbeats_go_on_their_own_channels_which_never_wake_the_broker() -> None:
    """The heartbeat channels carry heartbeats only and are attached without wake-ups; a
    turn to another controller fails what either channel had in flight."""
    clock = ManualClock()
    chans = {1: FakeChannel(), 2: FakeChannel()}
    beats = {1: FakeChannel(), 2: FakeChannel()}
    m = ControllerChannelManager(chans, clock, silence_s=1.0, heartbeat_channels=beats)  # type: ignore[arg-type]
    m.attach(object())
    assert [c.attached for c in (*chans.values(), *beats.values())] == [[True], [True], [False], [False]]
    m.send("heartbeat", lambda r: None, heartbeat=True)
    m.send("alter partition", lambda r: None)
    assert [r for r, _, _ in beats[1].sent] == ["heartbeat"] and [r for r, _, _ in chans[1].sent] == ["alter partition"]
    clock.advance(0.9)
    beats[1].sent[0][1]("answer")  # a heartbeat's answer is hearing from the controller
    clock.advance(0.9)
    m.check_silence()
    assert m.active_id == 1
    m.follow(2)
    assert [e.code for e in beats[1].failed] == [e.code for e in chans[1].failed] == [ErrorCode.not_controller]
    with pytest.raises(ValueError, match="must match"):
        ControllerChannelManager(chans, clock, silence_s=1.0, heartbeat_channels={1: FakeChannel()})  # type: ignore[arg-type]


def test_a_broker_heartbeats_on_the_heartbeat_channel_but_asks_to_shut_down_on_the_main_one() -> None:
    c, later = FakeController(), []
    lc = lifecycle(c, later)
    lc.register()
    c.calls[0][1](NS(error_code=ErrorCode.none, broker_epoch=4))
    c.calls[1][1](NS(error_code=ErrorCode.none, is_caught_up=True, is_fenced=False, should_shut_down=False))
    lc.heartbeat()
    lc.begin_controlled_shutdown()  # its answer is awaited: read as soon as it comes
    assert [type(r).__name__ for r, _, _ in c.calls] == ["BrokerRegistrationRequest", *["BrokerHeartbeatRequest"] * 3]
    assert c.on_heartbeat_channel == [False, False, True, False]


# -- producer ids --------------------------------------------------------------------------------

def test_producer_ids_come_from_the_block_and_the_next_block_is_asked_for_before_it_runs_dry() -> None:
    c = FakeController()
    pids = ProducerIdManager(broker_id=2, broker_epoch=lambda: 9, controller=c)  # type: ignore[arg-type]
    got: list[int] = []
    pids.generate(got.append)
    pids.generate(got.append)
    ((req, ok, _err),) = c.take("AllocateProducerIdsRequest")  # one request for both
    assert (req.broker_id, req.broker_epoch, got) == (2, 9, [])
    ok(NS(error_code=ErrorCode.none, producer_id_start=1000, producer_id_len=PREFETCH_WHEN_LEFT + 2))
    assert got == [1000, 1001] and c.calls == []
    assert pids.try_next() == 1002
    assert len(c.take("AllocateProducerIdsRequest")) == 1  # few left: the next block is on its way
    assert pids.try_next() == 1003


def test_a_lost_block_request_is_asked_again_by_the_next_request() -> None:
    c = FakeController()
    pids = ProducerIdManager(broker_id=2, broker_epoch=lambda: 9, controller=c)  # type: ignore[arg-type]
    assert pids.try_next() is None
    ((_req, _ok, err),) = c.take("AllocateProducerIdsRequest")
    assert pids.try_next() is None and c.calls == []  # still on its way
    err(KafkaError(ErrorCode.request_timed_out, "lost"))
    assert pids.try_next() is None and len(c.take("AllocateProducerIdsRequest")) == 1


# -- fetch sessions ------------------------------------------------------------------------------

def test_a_fetch_session_sends_one_fetch_at_a_time_and_backs_off_after_a_failure() -> None:
    s = FetcherState(leader=1, backoff_s=0.1, partitions={("t", 0)})
    assert s.may_send(10.0)
    s.sent(5)
    assert not s.may_send(10.0)
    s.answered(failed=False, now=10.2)
    assert s.may_send(10.2)
    s.sent(6)
    s.answered(failed=True, now=10.3)
    assert not s.may_send(10.39) and s.may_send(10.4)
    s.sent(7)
    s.lost(11.0)  # timed out: the same backoff
    assert not s.may_send(11.05)
    s.forget_in_flight()  # the fault table changed: ask again now
    assert s.may_send(11.05)
    s.partitions = set()
    assert not s.may_send(20.0)


# -- markers -------------------------------------------------------------------------------------

def job(*tps: tuple[str, int]) -> MarkerJob:
    return MarkerJob(0, 1, 100, 2, True, set(tps), None)


def test_markers_go_to_each_partitions_leader_and_wait_while_one_has_none() -> None:
    j = job(("a", 0), ("a", 1), ("b", 0), ("gone", 0))
    leaders = {("a", 0): 1, ("a", 1): 2, ("b", 0): -1}
    assert j.to_send(0.0, leaders.get) == {1: [("a", 0)], 2: [("a", 1)]}
    assert j.remaining == {("a", 0), ("a", 1), ("b", 0)}  # a deleted topic needs no marker
    assert j.to_send(0.0, leaders.get) == {}  # in flight already
    leaders[("b", 0)] = 3
    assert j.to_send(0.0, leaders.get) == {3: [("b", 0)]}


def test_a_retriable_answer_pauses_the_job_and_a_fencing_one_ends_it() -> None:
    j = job(("a", 0), ("a", 1))
    leaders = {("a", 0): 1, ("a", 1): 1}
    (tps,) = j.to_send(5.0, leaders.get).values()
    written = j.answered(tps, {("a", 0): ErrorCode.none, ("a", 1): ErrorCode.not_leader_or_follower}, 5.0)
    assert written == [("a", 0)] and j.remaining == {("a", 1)}
    assert j.to_send(5.0 + RETRY_BACKOFF_S / 2, leaders.get) == {}
    assert j.to_send(5.0 + RETRY_BACKOFF_S, leaders.get) == {1: [("a", 1)]}
    j.answered([("a", 1)], {}, 6.0)  # no answer at all: retried too
    assert not j.done and j.retry_at == pytest.approx(6.0 + RETRY_BACKOFF_S)
    j.to_send(7.0, leaders.get)
    j.answered([("a", 1)], {("a", 1): ErrorCode.invalid_producer_epoch}, 7.0)
    assert j.fenced and j.to_send(9.0, leaders.get) == {}
    k = job(("a", 0))
    k.to_send(0.0, leaders.get)
    assert k.answered([("a", 0)], {("a", 0): ErrorCode.none}, 0.0) == [("a", 0)] and k.done


# -- the metadata listener -----------------------------------------------------------------------

def metadata_answer(error: ErrorCode = ErrorCode.none, leader: int = -1, records: bytes = b"") -> Any:
    part = NS(error_code=error, current_leader=NS(leader_id=leader), records=records)
    return NS(responses=[NS(partitions=[part])])


def listener(c: FakeController, later: list) -> Any:
    from kafkalab.broker.metadata_listener import BrokerMetadataListener
    from kafkalab.metadata.image import MetadataImage

    rm = NS(apply_metadata=lambda image, now: {("t", 0): "leader"})
    c.active_id = 1  # type: ignore[attr-defined]
    ml = BrokerMetadataListener(broker_id=2, controller=c, image=MetadataImage(), rm=rm,  # type: ignore[arg-type]
                                clock=ManualClock(), max_wait_ms=200, call_later=lambda d, fn: later.append(fn))
    ml.applied = []
    ml.on_applied = ml.applied.append
    return ml


def test_the_metadata_fetch_is_one_long_poll_at_a_time_and_follows_the_named_controller() -> None:
    c, later = FakeController(), []
    ml = listener(c, later)
    ml.ensure_fetching()
    assert c.calls == []  # not before registration
    ml.start()
    ml.ensure_fetching()
    ((req, ok, _err),) = c.take("FetchRequest")
    assert req.topics[0].partitions[0].fetch_offset == 0 and req.max_wait.total_seconds() == 0.2
    ok(metadata_answer(ErrorCode.not_controller, leader=3))
    assert c.followed == [3] and len(c.take("FetchRequest")) == 1
    ml.refetch()  # e.g. the fault table changed: the fetch in flight may be lost
    ((_req, ok2, _e),) = c.take("FetchRequest")
    ok(metadata_answer())  # the superseded fetch's answer is ignored
    assert c.calls == []
    ok2(metadata_answer(ErrorCode.not_controller, leader=-1))  # an election is on
    assert c.calls == [] and len(later) == 1
    later[0]()
    assert c.followed == [3, None] and len(c.take("FetchRequest")) == 1
