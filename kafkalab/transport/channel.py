"""Channel: requests to one peer, and the callbacks waiting for their answers.

What Kafka's NetworkClient does for one node, over an RpcClient: `send(request, on_response,
on_error)` remembers the callbacks by correlation id; `poll()` delivers the responses that
arrived (after the fault table's cuts and delays, which the RpcClient applies) and fails the
requests that waited longer than the request timeout with RequestTimeoutError; `fail_all`
gives up on everything in flight (the peer is no longer the one to ask). Every callback runs
from poll(), never from inside send(), so a callback may send again without re-entering its
caller. `next_due` tells the event loop when to wake: a delayed response or the earliest
timeout, so nothing polls on a timer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafkalab.clock import Clock
from kafkalab.protocol.errors import ErrorCode, KafkaError
from kafkalab.transport.rpc import RequestTimeoutError, RpcClient

__all__ = ["Channel", "OnError", "OnResponse"]

log = logging.getLogger(__name__)

OnResponse = Callable[[Any], None]
OnError = Callable[[KafkaError], None]


def _ignore(_response: Any) -> None:
    pass


@dataclass(slots=True)
class _Call:
    request_name: str
    deadline: float
    timeout_s: float | None  # None: the channel's request timeout
    on_response: OnResponse
    on_error: OnError | None


class Channel:
    """Requests from this process to one peer. fail_fast_on_cut: a request on a link the
    fault table cuts (either way) fails at once with NETWORK_EXCEPTION instead of waiting
    for its timeout (a sender that retries on its own schedule, such as the markers).
    timeout_config: the setting request_timeout_s comes from, named in timeout errors.
    catch_callback_errors False: a callback's exception propagates out of poll() (a client's
    I/O thread fails loudly) instead of being logged."""

    def __init__(self, client: RpcClient, clock: Clock, request_timeout_s: float,
                 *, fail_fast_on_cut: bool = False, timeout_config: str = "",
                 catch_callback_errors: bool = True):
        if not request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0 seconds, not {request_timeout_s!r}")
        self.client = client
        self.clock = clock
        self.request_timeout_s = request_timeout_s
        self.fail_fast_on_cut = fail_fast_on_cut
        self.timeout_config = timeout_config
        self.catch_callback_errors = catch_callback_errors
        self._calls: dict[int, _Call] = {}
        self._failed: list[tuple[_Call, KafkaError]] = []  # delivered at the next poll()
        self._next_local_id = -1  # ids of requests that never left (negative: never a wire id)

    @property
    def peer(self) -> str:
        return self.client.peer

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    def send(self, request: Any, on_response: OnResponse | None, on_error: OnError | None = None,
             *, timeout_s: float | None = None) -> int:
        """Send request; on_response(response) when it is answered, or on_error(KafkaError)
        when it times out, cannot be sent or is given up. on_response None: no answer is
        expected (acks=0). timeout_s: this request's own timeout (a JoinGroup waits for a
        whole rebalance). Returns its correlation id."""
        now = self.clock.monotonic()
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        call = _Call(type(request).__name__, now + timeout, timeout_s, on_response or _ignore, on_error)
        error = self._cut_error()
        if error is None:
            try:
                corr = self.client.send(request, now)
            except KafkaError as e:  # the peer's queue is full: it has not read for long
                error = e
            else:
                if on_response is None:
                    self.client.forget(corr)
                else:
                    self._calls[corr] = call
                return corr
        self._failed.append((call, error))
        corr, self._next_local_id = self._next_local_id, self._next_local_id - 1
        return corr

    def cancel(self, correlation_id: int) -> None:
        """Stop waiting for a response, calling nothing (a late answer is dropped)."""
        if self._calls.pop(correlation_id, None) is not None:
            self.client.forget(correlation_id)

    def fail_all(self, error: KafkaError) -> None:
        """Give up on every request in flight: their on_error(error) runs at the next poll."""
        for corr, call in self._calls.items():
            self.client.forget(corr)
            self._failed.append((call, error))
        self._calls.clear()

    def poll(self) -> int:
        """Deliver what is due now: responses, then timeouts and failures. Returns how many."""
        now = self.clock.monotonic()
        delivered = 0
        for corr, response in self.client.receive(now):
            call = self._calls.pop(corr, None)
            if call is not None:
                delivered += 1
                self._run(call.on_response, response, call)
        for corr in [c for c, call in self._calls.items() if call.deadline <= now]:
            call = self._calls.pop(corr)
            self.client.forget(corr)
            self._failed.append((call, RequestTimeoutError(
                f"{self.client.node} -> {self.peer}: no response to {call.request_name} in time "
                f"({self._timeout_text(call.timeout_s)})")))
        failed, self._failed = self._failed, []
        for call, error in failed:
            delivered += 1
            if call.on_error is not None:
                self._run(call.on_error, error, call)
        return delivered

    def next_due(self, now: float) -> float | None:
        """When poll() has something to deliver: a held response, a timeout, a failure."""
        if self._failed:
            return now
        held = self.client.next_due(now)  # asked on every wake-up of the loop: kept lean
        if not self._calls:
            return held
        earliest = min(call.deadline for call in self._calls.values())
        return earliest if held is None or earliest < held else held

    def attach(self, loop: Any, *, wake: bool = True) -> None:
        """Let an EventLoop run poll() when the socket is readable or something is due.
        wake=False: a response alone does not wake the loop; it is delivered at the loop's
        next wake-up for anything else (timeouts and held responses still wake it)."""
        loop.add_socket(self.client.socket, self.poll, wake=wake)
        loop.add_due_source(self.next_due, self.poll)

    def close(self) -> None:
        self._calls.clear()
        self._failed.clear()
        self.client.close()

    def _timeout_text(self, timeout_s: float | None) -> str:
        if timeout_s is None and self.timeout_config:
            return f"{self.timeout_config}={round(self.request_timeout_s * 1000)}"
        return f"{self.request_timeout_s if timeout_s is None else timeout_s:g} s"

    def _cut_error(self) -> KafkaError | None:
        node, peer, faults = self.client.node, self.peer, self.client.faults
        if self.fail_fast_on_cut and (faults.is_cut(node, peer) or faults.is_cut(peer, node)):
            return KafkaError(ErrorCode.network_exception, f"{node} -> {peer}: the link is cut")
        return None

    def _run(self, callback: Callable[[Any], None], arg: Any, call: _Call) -> None:
        if not self.catch_callback_errors:
            callback(arg)
            return
        try:
            callback(arg)
        except Exception:
            log.exception("%s: handling the answer to %s from %s failed", self.client.node,
                          call.request_name, self.peer)
