"""EventLoop: sockets, timers and due sources in one poll, surviving failing callbacks."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
import zmq

from kafkalab.transport.loop import EventLoop

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
    assert all(b - a >= 0.009 for a, b in zip(ticks, ticks[1:], strict=False))
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

    polls: list[int | None] = []
    real_poll = loop._poller.poll

    def counting_poll(timeout: int | None = None) -> list:
        polls.append(timeout)
        return real_poll(timeout)

    loop._poller.poll = counting_poll  # type: ignore[method-assign]
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


def test_periodic_timers_due_within_their_slack_share_one_wake_up(loop: EventLoop) -> None:
    """Two 100 ms timers set up a few ms apart (a broker's heartbeat and a coordinator's tick)
    run in one wake-up; a one-shot deadline in the same window waits for its own time."""
    ran: list[str] = []
    loop.call_every(0.1, lambda: ran.append("heartbeat"))
    time.sleep(0.006)
    loop.call_every(0.1, lambda: ran.append("tick"))
    time.sleep(0.003)
    loop.call_later(0.1, lambda: ran.append("deadline"))
    assert loop.run_once(None) == 2 and ran == ["heartbeat", "tick"]
    assert loop.run_once(None) == 1 and ran[-1] == "deadline"
