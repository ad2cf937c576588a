"""The I/O half of a client: one thread's ZeroMQ sockets to the brokers, and its wake-up pipe.

Thin wiring only. A `ClientNetwork` belongs to the client's own thread (ZeroMQ sockets are
not thread-safe): it opens a Channel per broker on first use, sends requests with a callback,
and `poll`s the sockets and the wake-up pipe (other threads write a byte to it when there is
new work); the channels call back with the response or a KafkaError (a timeout, a lost
connection).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from kafkalab.client.context import ClientContext
from kafkalab.client.metadata import MetadataCache
from kafkalab.clock import SYSTEM_CLOCK, Clock
from kafkalab.nodes import broker_node
from kafkalab.protocol.build import metadata_request, metadata_results
from kafkalab.protocol.errors import ErrorCode, KafkaError
from kafkalab.transport.channel import Channel
from kafkalab.transport.rpc import RpcClient

METADATA_RETRY_S = 1.0

Callback = Callable[[Any], None]  # gets the response, or a KafkaError


class Waker:
    """A pipe any thread may write to, to wake the I/O thread out of poll()."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"x")
        except (BlockingIOError, OSError):
            pass  # already full of wake-ups, or closed: either way the thread will look

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class ClientNetwork:
    def __init__(self, ctx: ClientContext, request_timeout_ms: int, waker: Waker):
        if not ctx.brokers:
            raise ValueError("ClientContext.brokers is empty: the client needs at least one "
                             "broker endpoint {node_id: 'tcp://127.0.0.1:port'}")
        self.ctx = ctx
        self.zmq = zmq.Context()
        self.waker = waker
        self.request_timeout_s = request_timeout_ms / 1000.0
        self.clock: Clock = SYSTEM_CLOCK
        self.channels: dict[int, Channel] = {}
        self.metadata = MetadataCache()
        self._metadata_sent_at = float("-inf")
        self._bootstrap_turn = 0
        self._poller = zmq.Poller()
        self._poller.register(waker.read_fd, zmq.POLLIN)
        # A killed broker closes its TCP connections: like a Kafka client seeing its socket
        # drop, fail what was in flight there at once instead of waiting request.timeout.ms.
        self._monitors: dict[Any, int] = {}
        self._down: set[int] = set()  # brokers whose connection dropped and is not back yet

    # ---- sending -----------------------------------------------------------------------
    def channel(self, node_id: int) -> Channel:
        ch = self.channels.get(node_id)
        if ch is None:
            endpoint = self.ctx.brokers.get(node_id)
            if endpoint is None:
                raise KafkaError(ErrorCode.broker_not_available,
                                 f"broker {node_id} has no endpoint in ClientContext.brokers")
            c = RpcClient(self.zmq, self.ctx.node, broker_node(node_id), endpoint, self.ctx.faults)
            # A callback that raises fails the I/O thread loudly, as it did before channels.
            ch = Channel(c, self.clock, self.request_timeout_s, timeout_config="request.timeout.ms",
                         catch_callback_errors=False)
            self.channels[node_id] = ch
            self._poller.register(c.socket, zmq.POLLIN)
            monitor = c.socket.get_monitor_socket(
                zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECTED
                | zmq.EVENT_HANDSHAKE_SUCCEEDED)
            self._monitors[monitor] = node_id
            self._poller.register(monitor, zmq.POLLIN)
        return ch

    def send(self, node_id: int, request: Any, callback: Callback | None, now: float,
             timeout_s: float | None = None) -> int:
        """Send; `callback` gets the response or a KafkaError, from a later poll(). None: no
        response expected. timeout_s: this request's own timeout (JoinGroup waits for a whole
        rebalance). `now` is unused: the channel reads the same monotonic clock itself."""
        ch = self.channel(node_id)
        if node_id in self._down:
            # Kafka's client does not queue for a broker it cannot reach: fail now, so the
            # caller refreshes metadata and finds the new leader.
            err = KafkaError(ErrorCode.network_exception,
                             f"{self.ctx.node}: {broker_node(node_id)} is not reachable")
            if callback is None:
                raise err
            callback(err)
            return -1
        return ch.send(request, callback, callback, timeout_s=timeout_s)

    def in_flight(self, node_id: int) -> int:
        ch = self.channels.get(node_id)
        return ch.in_flight if ch else 0

    def any_broker(self) -> int:
        """A broker to ask for metadata: the bootstrap list, in turn (the next after a timeout)."""
        ids = sorted(self.ctx.brokers)
        for _ in ids:
            self._bootstrap_turn += 1
            node = ids[self._bootstrap_turn % len(ids)]
            if node not in self._down:
                return node
        return ids[self._bootstrap_turn % len(ids)]

    def refresh_metadata(self, topics: list[str] | None, now: float,
                         then: Callable[[Any], None] | None = None) -> bool:
        """Ask for metadata unless a request is already out; `then` gets results or an error."""
        # One request at a time, but a request to a dead broker must not stall failover
        # for request.timeout.ms: after METADATA_RETRY_S ask the next broker as well.
        if now - self._metadata_sent_at < METADATA_RETRY_S:
            return False
        self._metadata_sent_at = now

        def done(resp: Any) -> None:
            self._metadata_sent_at = float("-inf")
            if isinstance(resp, Exception):
                if then:
                    then(resp)
                return
            results = metadata_results(resp)
            self.metadata.update(results, self.clock.monotonic())
            if then:
                then(results)

        try:
            self.send(self.any_broker(), metadata_request(topics, allow_auto_topic_creation=False),
                      done, now)
        except KafkaError as e:
            done(e)
        return True

    # ---- receiving ---------------------------------------------------------------------
    def poll(self, timeout_s: float) -> int:
        """Wait up to timeout_s for responses (or a wake-up), no longer than until a channel
        has something due (a held response, a timeout); run the callbacks. Returns how many ran."""
        now = self.clock.monotonic()
        due = [d for ch in self.channels.values() if (d := ch.next_due(now)) is not None]
        if due:
            timeout_s = min(timeout_s, max(0.0, min(due) - now))
        events = dict(self._poller.poll(max(0, int(timeout_s * 1000))))
        if self.waker.read_fd in events:
            self.waker.drain()
        for monitor, node_id in list(self._monitors.items()):  # a callback may connect anew
            if monitor in events:
                self._on_disconnect(monitor, node_id)
        return sum(ch.poll() for ch in list(self.channels.values()))

    def _on_disconnect(self, monitor: Any, node_id: int) -> None:
        disconnected = False
        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CONNECT_RETRIED):  # dropped, or refused
                disconnected = True
                self._down.add(node_id)
            else:
                self._down.discard(node_id)
        if disconnected:
            self.channels[node_id].fail_all(KafkaError(
                ErrorCode.network_exception, f"{self.ctx.node}: connection to {broker_node(node_id)} lost"))

    def close(self) -> None:
        for monitor in self._monitors:
            monitor.close(linger=0)
        self._monitors.clear()
        for ch in self.channels.values():
            ch.client.socket.disable_monitor()
            ch.close()
        self.channels.clear()
        self.zmq.term()
