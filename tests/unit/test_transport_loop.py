"""EventLoop: sockets, timers and due sources in one poll, surviving failing callbacks."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
import zmq

from kafkalab.clock import long_poll_deadline_ms
from kafkalab.transport.loop import EventLoop, Handle

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def loop() -> EventLoop:
    return EventLoop()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def run_until(loop: EventLoop, condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        loop.run_once(0.05)


def record_polls(loop: EventLoop) -> list[int | None]:
    """The timeout of every poll the loop makes from now on, in order."""
    polls: list[int | None] = []
    real_poll = loop._poller.poll

    def counting_poll(timeout: int | None = None) -> list:
        polls.append(timeout)
        return real_poll(timeout)

    loop._poller.poll = counting_poll  # type: ignore[method-assign]
    return polls


def test_timers_run_in_time_order_and_cancel(loop: EventLoop) -> None:
    ran: list[str] = []
    loop.call_later(0.03, lambda: ran.append("second"))
    loop.call_at(loop.time() + 0.01, lambda: ran.append("first"))
    loop.call_later(0.02, lambda: ran.append("cancelled")).cancel()
    start = time.monotonic()
    run_until(loop, lambda: len(ran) == 2)
    assert ran == ["first", "second"] and time.monotonic() - start >= 0.03


def test_run_once_sleeps_until_the_next_timer(loop: EventLoop) -> None:
    ran: list[float] = []
    loop.call_later(0.05, lambda: ran.append(time.monotonic()))
    start = time.monotonic()
    loop.run_once(None)  # no max wait: the timer bounds the poll
    assert ran and ran[0] - start >= 0.05 and time.monotonic() - start < 1.0


def test_call_every_repeats_until_cancelled(loop: EventLoop) -> None:
    ticks: list[float] = []
    handle = loop.call_every(0.01, lambda: ticks.append(loop.time()))
    run_until(loop, lambda: len(ticks) >= 3)
    # On the interval's grid: after a late run the next may come sooner, but never within
    # half an interval (less the 2 ms a periodic timer may run early to share a wake-up).
    assert all(b - a >= 0.003 for a, b in zip(ticks, ticks[1:], strict=False))
    handle.cancel()
    count = len(ticks)
    end = time.monotonic() + 0.05
    while time.monotonic() < end:
        loop.run_once(0.01)
    assert len(ticks) == count
    with pytest.raises(ValueError, match="interval > 0"):
        loop.call_every(0, lambda: None)


def test_plain_and_zmq_sockets_call_back_when_readable(loop: EventLoop, pair) -> None:
    a, b = pair
    got: list[bytes] = []
    loop.add_socket(b, lambda: got.append(b.recv(100)))
    ctx = zmq.Context()
    try:
        pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
        for s in (pull, push):
            s.setsockopt(zmq.LINGER, 0)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        loop.add_socket(pull, lambda: got.append(pull.recv()))
        a.send(b"plain")
        push.send(b"zmq")
        run_until(loop, lambda: len(got) == 2)
        assert sorted(got) == [b"plain", b"zmq"]
        loop.remove_socket(b)
        loop.remove_socket(b)  # twice is harmless
        a.send(b"unheard")
        loop.run_once(0.05)
        assert len(got) == 2
    finally:
        ctx.destroy(linger=0)


def test_a_failing_callback_is_logged_and_the_loop_goes_on(loop: EventLoop, caplog) -> None:
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("handler bug")

    loop.call_later(0.0, boom)
    loop.call_later(0.001, lambda: ran.append(1))
    with caplog.at_level(logging.ERROR, logger="kafkalab.transport.loop"):
        run_until(loop, lambda: ran)
    assert "handler bug" in caplog.text and "Traceback" in caplog.text


def test_a_due_source_wakes_the_loop_and_calls_back(loop: EventLoop) -> None:
    due = [loop.time() + 0.05]
    fired: list[float] = []

    def on_due() -> None:
        fired.append(loop.time())
        due.clear()

    loop.add_due_source(lambda now: due[0] if due else None, on_due)
    start = loop.time()
    loop.run_once(5.0)  # would sleep 5 s without the due source
    assert fired and 0.05 <= fired[0] - start < 1.0
    assert loop.run_once(0.0) == 0  # nothing due any more


def test_a_failing_due_source_is_skipped(loop: EventLoop, caplog) -> None:
    def broken(now: float) -> float:
        raise ValueError("bad source")

    handle = loop.add_due_source(broken, lambda: None)
    with caplog.at_level(logging.ERROR):
        loop.run_once(0.0)
    assert "bad source" in caplog.text
    handle.cancel()
    caplog.clear()
    loop.run_once(0.0)
    assert "bad source" not in caplog.text


def test_run_forever_until_stop(loop: EventLoop) -> None:
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 3:
            loop.stop()

    loop.call_every(0.005, tick)
    loop.run_forever()
    assert len(ticks) == 3


def test_an_idle_loop_sleeps_until_stop_or_a_timer_from_another_thread(loop: EventLoop) -> None:
    """Nothing registered and nothing due: run_forever polls without a timeout (an idle broker
    costs no wake-ups), and still wakes for a timer set, or stop() called, elsewhere."""
    import threading

    polls = record_polls(loop)
    ran = threading.Event()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        time.sleep(0.3)
        assert polls == [None]  # one poll, no timeout: asleep
        loop.call_later(0, ran.set)  # from this thread, as a signal handler would
        assert ran.wait(2.0)
        loop.stop()
        thread.join(2.0)
        assert not thread.is_alive()
    finally:
        loop.stop()
        thread.join(2.0)
        loop.close()


def test_periodic_timers_fire_at_multiples_of_their_interval_and_share_wake_ups(loop: EventLoop) -> None:
    """Timers of one interval set up apart (a broker's heartbeat and a coordinator's tick, or
    two brokers' heartbeats) fire at the same instants, multiples of the interval on the
    wall clock, so they cost one wake-up; a one-shot deadline waits for its own time."""
    ran: list[str] = []
    heartbeat = loop.call_every(0.05, lambda: ran.append("heartbeat"))
    time.sleep(0.013)
    tick = loop.call_every(0.05, lambda: ran.append("tick"))
    slow = loop.call_every(0.1, lambda: ran.append("publish"))
    def on_grid(handle: Handle) -> bool:
        wall = handle.when + loop.grid_phase
        return abs(wall / handle.interval - round(wall / handle.interval)) < 1e-6

    for handle in (heartbeat, tick, slow):
        assert on_grid(handle)
        assert handle.interval / 2 <= handle.when - loop.time() + 0.02 <= 1.5 * handle.interval + 0.02
    while heartbeat.when != tick.when:  # set up 13 ms apart: at most one beat out of step
        loop.run_once(None)
    for _ in range(4):
        ran.clear()
        loop.run_once(None)
        # Both beats in every wake-up (a late one too); the 100 ms timer only with them.
        assert sorted(ran) in (["heartbeat", "tick"], ["heartbeat", "publish", "tick"])
        assert heartbeat.when == tick.when and on_grid(slow)
    loop.call_later(0.001, lambda: ran.append("deadline"))
    assert loop.run_once(None) == 1 and ran[-1] == "deadline"


def test_run_forever_asks_due_sources_once_per_wake_up_unless_one_ran(loop: EventLoop) -> None:
    """Under run_forever a due source is asked once per wake-up (the answers stay good while
    nothing runs), but again before the next poll once a due source's own callback ran, and
    after a socket's callback, which may have made something due now."""
    asked: list[float] = []
    polls = record_polls(loop)
    flag: list[str] = []
    fired: list[str] = []

    def quiet_source(now: float) -> float | None:
        asked.append(now)
        return None

    def flag_due(now: float) -> float | None:
        return now if flag else None

    def on_flag() -> None:
        fired.append(flag.pop())
        if len(fired) == 1:
            flag.append("second")  # due at once again: must run without a sleep in between
        else:
            loop.stop()

    loop.add_due_source(quiet_source, lambda: fired.append("never"))  # never due
    loop.add_due_source(flag_due, on_flag)
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 4:
            flag.append("first")

    loop.call_every(0.01, tick)
    loop.run_forever()
    assert fired == ["first", "second"]
    assert polls[-1] == 0  # the second source run came from a poll that did not sleep
    assert len(asked) <= len(polls) + 2  # before: twice per wake-up


def test_a_socket_added_without_wake_is_read_at_the_next_wake_up_for_anything_else(loop: EventLoop) -> None:
    ctx = zmq.Context.instance()
    server, client = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client.connect(f"tcp://127.0.0.1:{port}")
        got: list[bytes] = []
        loop.add_socket(server, lambda: got.append(server.recv()), wake=False)
        client.send(b"heartbeat answer")
        loop.call_later(0.3, lambda: None)
        start = time.monotonic()
        assert loop.run_once(None) == 2 and got == [b"heartbeat answer"]  # taken with the timer
        assert time.monotonic() - start >= 0.29  # it arrived at once, but woke no one
        loop.remove_socket(server)
        client.send(b"after removal")
        loop.call_later(0.0, lambda: None)
        time.sleep(0.05)
        loop.run_once(1.0)
        assert got == [b"heartbeat answer"]
        with pytest.raises(TypeError, match="zmq socket"):
            loop.add_socket(5, lambda: None, wake=False)
    finally:
        server.close(linger=0)
        client.close(linger=0)


@pytest.mark.parametrize("max_wait_ms", [500, 501, 2, 1000])
def test_an_internal_long_poll_ends_on_the_grid_of_half_its_max_wait(max_wait_ms: int) -> None:
    step = max_wait_ms // 2
    for now in range(0, 3 * max_wait_ms, 7):
        end = long_poll_deadline_ms(now, max_wait_ms)
        assert end % step == 0 and now + max_wait_ms - step < end <= now + max_wait_ms
    # Parked apart within one half-window, two polls end together.
    assert long_poll_deadline_ms(1_010, 500) == long_poll_deadline_ms(1_240, 500) == 1_500
    assert long_poll_deadline_ms(5, 1) == 6  # too short to split: exact
