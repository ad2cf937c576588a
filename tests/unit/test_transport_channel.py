"""Channel: responses reach their callbacks, timeouts fail them on a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from kafkalab.clock import ManualClock, SystemClock
from kafkalab.protocol import build
from kafkalab.protocol.errors import ErrorCode, KafkaError
from kafkalab.transport.channel import Channel
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.loop import EventLoop
from kafkalab.transport.rpc import RequestTimeoutError, RpcClient, RpcServer

pytestmark = pytest.mark.timeout(30)


class FakeClient:
    """What a Channel uses of an RpcClient; the test plays the peer."""

    def __init__(self, faults: FaultTable | None = None):
        self.node, self.peer = "broker-1", "controller"
        self.faults = faults or FaultTable()
        self.sent: dict[int, Any] = {}
        self.forgotten: list[int] = []
        self.arrived: list[tuple[int, Any]] = []
        self.full = False
        self._next = 0

    def send(self, request: Any, now: float | None = None) -> int:
        if self.full:
            raise KafkaError(ErrorCode.network_exception, "send queue full")
        corr, self._next = self._next, self._next + 1
        self.sent[corr] = request
        return corr

    def receive(self, now: float) -> list[tuple[int, Any]]:
        got, self.arrived = self.arrived, []
        return got

    def next_due(self, now: float) -> float | None:
        return None

    def forget(self, corr: int) -> None:
        self.forgotten.append(corr)

    def close(self) -> None:
        pass


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def channel_with(client: FakeClient, clock: ManualClock, **kw: Any) -> Channel:
    return Channel(client, clock, 2.0, **kw)  # type: ignore[arg-type]


def test_each_response_reaches_the_callback_of_its_request(clock: ManualClock) -> None:
    client = FakeClient()
    ch = channel_with(client, clock)
    got: list[tuple[str, Any]] = []
    a = ch.send(build.metadata_request(["a"]), lambda r: got.append(("a", r)))
    b = ch.send(build.metadata_request(["b"]), lambda r: got.append(("b", r)))
    assert ch.in_flight == 2 and got == []  # nothing runs inside send()
    client.arrived = [(b, "answer-b"), (a, "answer-a"), (99, "unknown")]
    assert ch.poll() == 2
    assert got == [("b", "answer-b"), ("a", "answer-a")] and ch.in_flight == 0


def test_a_request_unanswered_for_the_timeout_fails_with_request_timed_out(clock: ManualClock) -> None:
    client = FakeClient()
    ch = channel_with(client, clock)
    errors: list[KafkaError] = []
    corr = ch.send(build.metadata_request([]), lambda r: pytest.fail("no response came"), errors.append)
    assert ch.next_due(clock.monotonic()) == clock.monotonic() + 2.0  # the loop wakes for it
    clock.advance(1.999)
    assert ch.poll() == 0 and errors == []
    clock.advance(0.001)
    assert ch.poll() == 1
    assert isinstance(errors[0], RequestTimeoutError) and errors[0].code == ErrorCode.request_timed_out
    assert client.forgotten == [corr] and ch.in_flight == 0  # a late answer is dropped
    client.arrived = [(corr, "late")]
    assert ch.poll() == 0 and ch.next_due(clock.monotonic()) is None


def test_a_request_may_have_its_own_timeout_or_expect_no_answer(clock: ManualClock) -> None:
    client = FakeClient()
    ch = channel_with(client, clock)
    errors: list[KafkaError] = []
    ch.send(build.metadata_request([]), lambda r: None, errors.append, timeout_s=10.0)
    quiet = ch.send(build.metadata_request([]), None)  # acks=0: nothing to wait for
    assert client.forgotten == [quiet] and ch.in_flight == 1
    clock.advance(9.9)
    ch.poll()
    assert errors == []
    clock.advance(0.1)
    ch.poll()
    assert len(errors) == 1


def test_fail_all_fails_what_is_in_flight_at_the_next_poll(clock: ManualClock) -> None:
    client = FakeClient()
    ch = channel_with(client, clock)
    errors: list[KafkaError] = []
    ch.send(build.metadata_request([]), lambda r: None, errors.append)
    ch.send(build.metadata_request([]), lambda r: None)  # no on_error: nothing to tell
    ch.fail_all(KafkaError(ErrorCode.not_controller, "moved on"))
    assert errors == [] and ch.in_flight == 0
    assert ch.next_due(clock.monotonic()) == clock.monotonic()
    assert ch.poll() == 2
    assert [e.code for e in errors] == [ErrorCode.not_controller]


def test_cancel_calls_nothing(clock: ManualClock) -> None:
    client = FakeClient()
    ch = channel_with(client, clock)
    corr = ch.send(build.metadata_request([]), lambda r: pytest.fail("cancelled"), lambda e: pytest.fail("cancelled"))
    ch.cancel(corr)
    client.arrived = [(corr, "answer")]
    clock.advance(10)
    assert ch.poll() == 0 and client.forgotten == [corr]


def test_a_full_send_queue_fails_the_request_without_reentering_the_caller(clock: ManualClock) -> None:
    client = FakeClient()
    client.full = True
    ch = channel_with(client, clock)
    errors: list[KafkaError] = []
    ch.send(build.metadata_request([]), lambda r: None, errors.append)
    assert errors == []
    ch.poll()
    assert [e.code for e in errors] == [ErrorCode.network_exception]


def test_fail_fast_on_cut_fails_at_once_and_sends_nothing(clock: ManualClock) -> None:
    faults = FaultTable()
    faults.cut("controller", "broker-1", one_way=True)  # either direction counts
    client = FakeClient(faults)
    client.node = "broker-1/txn"  # a second channel of broker-1: its cuts apply
    errors: list[KafkaError] = []
    ch = channel_with(client, clock, fail_fast_on_cut=True)
    ch.send(build.metadata_request([]), lambda r: None, errors.append)
    ch.poll()
    assert client.sent == {} and [e.code for e in errors] == [ErrorCode.network_exception]
    faults.heal()
    ch.send(build.metadata_request([]), lambda r: None, errors.append)
    assert len(client.sent) == 1


def test_a_callback_that_raises_does_not_stop_the_others(clock: ManualClock) -> None:
    client = FakeClient()
    ch = channel_with(client, clock)
    got: list[Any] = []
    a = ch.send(build.metadata_request([]), lambda r: 1 / 0)
    b = ch.send(build.metadata_request([]), got.append)
    client.arrived = [(a, "x"), (b, "y")]
    ch.poll()
    assert got == ["y"]


# -- over real sockets, on an event loop -----------------------------------------------------

@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def test_on_an_event_loop_a_response_and_a_timeout_are_delivered(ctx: zmq.Context) -> None:
    faults = FaultTable()
    clock = SystemClock()
    with RpcServer(ctx, "controller", 0, faults) as server:
        ch = Channel(RpcClient(ctx, "broker-1", "controller", server.endpoint, faults), clock, 0.3)
        loop = EventLoop(clock)
        ch.attach(loop)
        answered: list[Any] = []
        timed_out: list[float] = []
        ch.send(build.metadata_request(["a"]), answered.append)
        start = clock.monotonic()
        deadline = start + 5
        while not answered and clock.monotonic() < deadline:
            for env in server.receive(clock.monotonic()):
                server.reply(env, build.metadata_response({}, {}, cluster_id="answered"))
            loop.run_once(0.01)
        assert [r.cluster_id for r in answered] == ["answered"]
        faults.cut("controller", "broker-1", one_way=True)  # the answer is lost: it times out
        sent = clock.monotonic()
        ch.send(build.metadata_request(["b"]), answered.append, lambda e: timed_out.append(clock.monotonic()))
        while not timed_out and clock.monotonic() < sent + 5:
            for env in server.receive(clock.monotonic()):
                server.reply(env, build.metadata_response({}, {}, cluster_id="lost"))
            loop.run_once()  # no max wait: the timeout itself wakes the loop
        assert len(answered) == 1 and timed_out and timed_out[0] - sent >= 0.3
        ch.close()


def test_the_event_loop_runs_its_timers_on_the_clock_it_is_given() -> None:
    clock = ManualClock()
    loop = EventLoop(clock)
    ran: list[float] = []
    loop.call_later(5.0, lambda: ran.append(clock.monotonic()))
    loop.call_every(2.0, lambda: ran.append(-clock.monotonic()))
    start = clock.monotonic()
    loop.run_once(0)
    assert ran == [] and loop.time() == start
    clock.advance(2.0)
    loop.run_once(0)
    clock.advance(3.0)
    loop.run_once(0)
    assert ran == [-(start + 2.0), -(start + 5.0), start + 5.0]  # the every-2-s timer ran late once


def test_manual_clock_moves_both_readings_together_and_never_back() -> None:
    clock = ManualClock(monotonic=10.0, wall_ms=5_000)
    clock.advance(1.5)
    assert (clock.monotonic(), clock.wall_ms()) == (11.5, 6_500)
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(-1)


def test_a_timeout_names_the_link_the_request_and_the_timeout_that_passed(clock: ManualClock) -> None:
    client = FakeClient()
    ch = channel_with(client, clock, timeout_config="request.timeout.ms")
    errors: list[KafkaError] = []
    ch.send(build.metadata_request([]), lambda r: None, errors.append)
    ch.send(build.metadata_request([]), lambda r: None, errors.append, timeout_s=10.0)
    clock.advance(10.0)
    ch.poll()
    assert [str(e).split(": ", 1)[1] for e in errors] == [
        "broker-1 -> controller: no response to MetadataRequest in time (request.timeout.ms=2000)",
        "broker-1 -> controller: no response to MetadataRequest in time (10 s)"]


def test_a_failing_callback_is_logged_or_raised_as_the_channel_was_told(clock: ManualClock) -> None:
    def boom(_response: Any) -> None:
        raise RuntimeError("a bug in the callback")

    for catch in (True, False):
        client = FakeClient()
        ch = channel_with(client, clock, catch_callback_errors=catch)
        got: list[Any] = []
        a = ch.send(build.metadata_request([]), boom)
        b = ch.send(build.metadata_request([]), got.append)
        client.arrived = [(a, "answer-a"), (b, "answer-b")]
        if catch:  # the broker's loop carries on: the next answer still arrives
            assert ch.poll() == 2 and got == ["answer-b"]
        else:  # a client's I/O thread fails loudly
            with pytest.raises(RuntimeError, match="a bug in the callback"):
                ch.poll()
