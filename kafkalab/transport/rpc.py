"""Kafka API messages over ZeroMQ: RpcServer (ROUTER), RpcClient (DEALER), fault table sync.

Wire format, one ZeroMQ message per request or response, of one frame:

    [api_key: int16 BE | api_version: int16 BE | correlation_id: int32 BE | body]

or, for a body of BIG_BODY_BYTES or more (a Produce batch, a Fetch response), of two frames,
the 8-byte header and the body, so that the body is not copied to be joined (a ROUTER adds
the peer's identity frame in front). The body is the kio-encoded message, with no Kafka
header. One frame instead of four: an idle cluster's messages are small and many (30
heartbeats a second), and each frame is a send, a receive and a "more?" on both sides. A
DEALER's identity is its
node name, so the server knows who is talking, and the fault table can be applied to the
link sender -> receiver on every receive. Faults are enforced by the receiving side only.

Threading: one zmq.Context per process, and each object here is used by one thread.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
from kio.static.constants import EntityType

from kafkalab.errors import KafkaLabError
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import (
    ZMQ_VERSIONS,
    api_key_of,
    api_name,
    decode_request,
    decode_response,
    encode,
)
from kafkalab.protocol.error_response import error_response
from kafkalab.protocol.errors import ErrorCode, KafkaError
from kafkalab.protocol.kafka_framing import MAX_FRAME_BYTES
from kafkalab.transport.faults import FaultTable
from kafkalab.transport.heartbeat_codec import (
    read_heartbeat_request,
    read_heartbeat_response,
    write_heartbeat,
)
from kafkalab.transport.inbox import Inbox

__all__ = [
    "Envelope",
    "FaultPublisher",
    "FaultSubscriber",
    "RequestTimeoutError",
    "RpcClient",
    "RpcServer",
]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">hhi")  # api key, version, correlation id
# A body this large goes in a frame of its own rather than be copied behind the header.
BIG_BODY_BYTES = 16384
_DRAIN_LIMIT = 1000  # messages per receive(); the socket stays readable for the rest


class RequestTimeoutError(KafkaError):
    """No response within the timeout (Kafka's REQUEST_TIMED_OUT, so it is retriable)."""

    def __init__(self, message: str = ""):
        super().__init__(ErrorCode.request_timed_out, message)

    def __reduce__(self):
        return (type(self), (self.message,))


def _check_node(node: str) -> bytes:
    identity = node.encode() if isinstance(node, str) else b""
    if not identity or len(identity) > 255 or identity[0] == 0:
        raise ValueError(
            f"node name {node!r} cannot be a ZeroMQ identity: use a non-empty name of at "
            "most 255 bytes, such as 'broker-1' or 'client-7'"
        )
    return identity


def _split(frames: list[bytes], first: int) -> tuple[int, int, int, bytes | memoryview]:
    """(api key, version, correlation id, body) of the frames from `first` on: one frame
    (header and body) or two (header, body). ValueError names what does not fit."""
    count = len(frames) - first
    if count == 1:
        frame = frames[first]
        if len(frame) < _HEADER.size:
            raise ValueError(f"a {len(frame)}-byte message, shorter than the {_HEADER.size}-byte header "
                             "(api key int16, version int16, correlation id int32)")
        body: bytes | memoryview = memoryview(frame)[_HEADER.size:]
    elif count == 2:
        frame, body = frames[first], frames[first + 1]
        if len(frame) != _HEADER.size:
            raise ValueError(f"a {len(frame)}-byte header frame, expected {_HEADER.size} "
                             "(api key int16, version int16, correlation id int32)")
    else:
        raise ValueError(f"{count} frames, expected 1 (header and body) or 2 (header, body)")
    api_key, version, corr = _HEADER.unpack_from(frame)
    return api_key, version, corr, body


def _frames(entity: Any, correlation_id: int) -> list[bytes]:
    api_key, version = api_key_of(entity)
    body = None
    if api_key == ApiKey.PRODUCE and version == 9 and entity.__type__ is EntityType.request:
        # The lab producer's hot path: a Produce per batch, written without kio's per-field
        # checks. Imported here: processes that never send one (the controller) skip it.
        from kafkalab.transport.produce_request import write_produce_request
        body = write_produce_request(entity)
    elif api_key == ApiKey.BROKER_HEARTBEAT:  # an idle cluster's most frequent message
        body = write_heartbeat(entity)
    if body is None:
        body = encode(entity)
    header = _HEADER.pack(api_key, version, correlation_id)
    return [header + body] if len(body) < BIG_BODY_BYTES else [header, body]


@dataclass(slots=True)
class Envelope:
    """One request as a server sees it. received_at: when it was delivered (after any delay)."""

    sender: str
    api_key: int
    version: int
    correlation_id: int
    body: Any
    received_at: float

    @property
    def api_name(self) -> str:
        return api_name(self.api_key)


class RpcServer:
    """ROUTER socket on 127.0.0.1 serving Kafka requests to named DEALER peers."""

    def __init__(self, ctx: zmq.Context, node: str, port: int, faults: FaultTable):
        _check_node(node)
        self.node = node
        self.faults = faults
        self.inbox: Inbox[Envelope] = Inbox(faults, node)
        self.malformed = 0  # messages dropped as undecodable, for metrics
        self.request_errors = 0  # requests whose handler raised (answered with an error)
        self.socket = ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted peer takes over its name
        # The frame budget: libzmq drops a peer that sends a larger message before buffering
        # it (Kafka's socket.request.max.bytes default, as on the Kafka listener).
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self.port = _bind_loopback(self.socket, port)
        self.endpoint = f"tcp://127.0.0.1:{self.port}"

    def receive(self, now: float) -> list[Envelope]:
        """Requests deliverable at now: drains the socket without blocking, applies faults."""
        for _ in range(_DRAIN_LIMIT):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            envelope = self._parse(frames, now)
            if envelope is not None:
                self.inbox.offer(envelope.sender, envelope, now)
        delivered = self.inbox.take(now)
        for envelope in delivered:
            envelope.received_at = now
        return delivered

    def serve(self, envelope: Envelope, handle: Callable[[Envelope], Any]) -> bool:
        """handle(envelope), so that one request can never take the process down: if it
        raises, log and count it and answer UNKNOWN_SERVER_ERROR (Kafka's answer to a request
        that failed on the server), so the sender need not wait for its timeout."""
        try:
            handle(envelope)
            return True
        except Exception:
            self.request_errors += 1
            log.exception("%s: failed to handle %s from %s", self.node, envelope.api_name, envelope.sender)
        try:
            self.reply(envelope, error_response(envelope.api_key, envelope.version))
        except Exception:  # the answer failing must not stop the requests behind it
            log.exception("%s: answering %s with an error failed", self.node, envelope.api_name)
        return False

    def _unsupported(self, sender: str, api_key: int, version: int, corr: int) -> None:
        # Lab processes speak one version per API over ZeroMQ (ZMQ_VERSIONS); handlers are
        # written for it. Anything else is answered UNSUPPORTED_VERSION, as Kafka answers a
        # version it does not serve, and never reaches a handler.
        self.malformed += 1
        wanted = ZMQ_VERSIONS.get(api_key)
        log.warning("%s: %s from %s: %s", self.node, f"api {api_key} v{version}", sender,
                    f"not served over ZeroMQ; send version {wanted}" if wanted is not None
                    else "no such API over ZeroMQ")
        try:
            response = error_response(api_key, version, ErrorCode.unsupported_version)
            frames = [sender.encode(), *_frames(response, corr)]
            self.socket.send_multipart(frames, zmq.NOBLOCK)
        except Exception:  # an API or version kio has no schema for: nothing to answer with
            pass

    def reply(self, envelope: Envelope, response: Any) -> None:
        """Send the response to envelope's request back to its sender."""
        api_key, version = api_key_of(response)
        if (api_key, version) != (envelope.api_key, envelope.version) or not type(
            response
        ).__name__.endswith("Response"):
            raise ValueError(
                f"reply to {envelope.api_name} v{envelope.version} must be its response at "
                f"the same version, not {type(response).__name__} v{version}"
            )
        frames = [envelope.sender.encode(), *_frames(response, envelope.correlation_id)]
        try:
            # A ROUTER drops messages to peers that are gone or over their high-water mark.
            self.socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            log.warning("%s: reply to %s dropped (peer queue full)", self.node, envelope.sender)

    def next_due(self, now: float) -> float | None:
        """Absolute time (clock of now) when a held request becomes due, or None."""
        return self.inbox.next_due()

    def close(self) -> None:
        self.socket.close(linger=0)

    def __enter__(self) -> RpcServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _parse(self, frames: list[bytes], now: float) -> Envelope | None:
        # A broker survives any single bad request: log it, count it, drop it.
        sender = "?"
        try:
            sender = frames[0].decode()
            api_key, version, corr, payload = _split(frames, 1)
            if self.faults.is_cut(sender, self.node):
                self.inbox.dropped += 1
                return None
            if ZMQ_VERSIONS.get(api_key) != version:
                self._unsupported(sender, api_key, version, corr)
                return None
            body = None
            if api_key == ApiKey.BROKER_HEARTBEAT:
                body = read_heartbeat_request(payload)  # None: not the common shape, kio reads it
            if body is None:
                body = decode_request(api_key, version, payload)
        except (ValueError, KafkaLabError) as e:  # UnicodeDecodeError is a ValueError
            self.malformed += 1
            log.warning("%s: dropped malformed request from %s: %s", self.node, sender, e)
            return None
        except Exception:  # anything else is a bug here, but still only this message's
            self.malformed += 1
            log.exception("%s: dropped a request from %s that could not be read", self.node, sender)
            return None
        return Envelope(sender, api_key, version, corr, body, now)


class RpcClient:
    """DEALER socket named `node`, talking to the RpcServer of node `peer` at endpoint."""

    def __init__(
        self, ctx: zmq.Context, node: str, peer: str, endpoint: str, faults: FaultTable
    ):
        identity = _check_node(node)
        self.node = node
        self.peer = peer
        self.endpoint = endpoint
        self.faults = faults
        self.inbox: Inbox[tuple[int, Any]] = Inbox(faults, node)
        self._pending: dict[int, tuple[int, int, float]] = {}  # corr -> (api, version, sent_at)
        self._next_corr = 0
        self.unmatched = 0  # responses to no pending request (late, duplicate), for metrics
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.IDENTITY, identity)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 50)  # pick up a restarted server fast
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        try:
            self.socket.connect(endpoint)
        except BaseException:
            self.socket.close(linger=0)
            raise

    @property
    def pending(self) -> int:
        return len(self._pending)

    def send(self, request: Any, now: float | None = None) -> int:
        """Queue a request for the peer; returns its correlation id.

        Raises KafkaError(NETWORK_EXCEPTION) if the send queue is full (the peer has been
        unreachable for a long time). Requests queued while the peer is down are delivered
        when it comes back; their responses, if late, are dropped as unknown ids.
        """
        if not type(request).__name__.endswith("Request"):
            raise TypeError(f"send() takes a kio request, not {type(request).__name__}")
        api_key, version = api_key_of(request)
        corr = self._next_corr
        self._next_corr = (corr + 1) & 0x7FFFFFFF
        frames = _frames(request, corr)
        try:
            if len(frames) == 1:
                self.socket.send(frames[0], zmq.NOBLOCK)
            else:
                self.socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            raise KafkaError(
                ErrorCode.network_exception,
                f"{self.node} -> {self.peer}: send queue full, the peer is not reading",
            ) from None
        self._pending[corr] = (api_key, version, time.monotonic() if now is None else now)
        return corr

    def receive(self, now: float) -> list[tuple[int, Any]]:
        """(correlation_id, response) pairs deliverable at now, faults applied on peer -> node."""
        for _ in range(_DRAIN_LIMIT):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if self.faults.is_cut(self.peer, self.node):
                self.inbox.dropped += 1
                continue
            response = self._parse(frames)
            if response is not None:
                self.inbox.offer(self.peer, response, now)
        return self.inbox.take(now)

    def next_due(self, now: float) -> float | None:
        return self.inbox.next_due()

    def forget(self, correlation_id: int) -> None:
        """Stop waiting for a response; if it arrives it is dropped."""
        self._pending.pop(correlation_id, None)

    def expire(self, now: float, timeout_s: float) -> list[int]:
        """Forget requests sent before now - timeout_s; returns their correlation ids."""
        old = [c for c, (_, _, sent) in self._pending.items() if sent <= now - timeout_s]
        for corr in old:
            del self._pending[corr]
        return old

    def call(self, request: Any, timeout_s: float) -> Any:
        """Send and wait for the response (blocking). Raises RequestTimeoutError.

        Other responses that arrive meanwhile are kept for the next receive().
        """
        start = time.monotonic()
        deadline = start + timeout_s
        corr = self.send(request, now=start)
        others: list[tuple[int, Any]] = []
        try:
            while True:
                now = time.monotonic()
                for got, response in self.receive(now):
                    if got == corr:
                        return response
                    others.append((got, response))
                if now >= deadline:
                    self.forget(corr)
                    raise RequestTimeoutError(
                        f"{self.node} -> {self.peer}: no response to "
                        f"{type(request).__name__} within {timeout_s:g} s; "
                        "is the peer up and the link not cut?"
                    )
                wake = min(deadline, self.inbox.next_due() or deadline)
                self.socket.poll(max(1, int((wake - now) * 1000) + 1), zmq.POLLIN)
        finally:
            self.inbox.put_back(others)

    def close(self) -> None:
        self.socket.close(linger=0)

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _parse(self, frames: list[bytes]) -> tuple[int, Any] | None:
        try:
            api_key, version, corr, payload = _split(frames, 0)
            expected = self._pending.get(corr)
            if expected is None:
                self.unmatched += 1
                log.debug("%s: dropped response with unknown correlation id %d", self.node, corr)
                return None
            if expected[:2] != (api_key, version):
                raise ValueError(
                    f"response {corr} is api {api_key} v{version}, "
                    f"but the request was api {expected[0]} v{expected[1]}"
                )
            del self._pending[corr]
            if api_key == ApiKey.PRODUCE and version == 9:
                # The lab producer's hot path, read by hand (as _frames writes its request).
                from kafkalab.transport.produce_request import read_produce_response
                return corr, read_produce_response(payload)
            if api_key == ApiKey.BROKER_HEARTBEAT:
                response = read_heartbeat_response(payload)
                if response is not None:
                    return corr, response
            return corr, decode_response(api_key, version, payload)
        except (ValueError, KafkaLabError) as e:
            log.warning("%s: dropped malformed response from %s: %s", self.node, self.peer, e)
            return None


# On the fault channel, beside the tables (which are JSON objects): "publish your metric rows now".
PUBLISH_METRICS_NOW = b"publish-metrics"


class FaultPublisher:
    """PUB socket that broadcasts the authoritative FaultTable (the Cluster owns one)."""

    def __init__(self, ctx: zmq.Context, port: int = 0):
        self.socket = ctx.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.port = _bind_loopback(self.socket, port)
        self.endpoint = f"tcp://127.0.0.1:{self.port}"

    def publish(self, table: FaultTable) -> None:
        """Send the table; republish periodically, as a SUB that joins late misses earlier ones."""
        self._send(table.to_json().encode())

    def publish_metrics_now(self) -> None:
        """Ask every process to publish its metric rows now, not at its next tick (a
        `describe_*` call waits for rows newer than itself)."""
        self._send(PUBLISH_METRICS_NOW)

    def _send(self, data: bytes) -> None:
        try:
            self.socket.send(data, zmq.NOBLOCK)
        except zmq.Again:  # PUB drops rather than blocks; kept for safety
            pass

    def close(self) -> None:
        self.socket.close(linger=0)


class FaultSubscriber:
    """SUB socket that keeps `table` up to date with what a FaultPublisher sends, and notes
    when the Cluster asked for metric rows now (`take_publish_request()`)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, table: FaultTable):
        self.table = table
        self._publish_requested = False
        self.socket = ctx.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 50)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            self.socket.connect(endpoint)
        except BaseException:
            self.socket.close(linger=0)
            raise

    def drain(self) -> bool:
        """Apply every update received (older versions are ignored); True if the table changed."""
        changed = False
        while True:
            try:
                data = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return changed
            if data == PUBLISH_METRICS_NOW:
                self._publish_requested = True
                continue
            try:
                changed |= self.table.update_from(FaultTable.from_json(data))
            except ValueError as e:
                log.warning("ignored a bad fault table update: %s", e)

    def take_publish_request(self) -> bool:
        """Whether the Cluster asked for metric rows now since the last call (drain() first)."""
        requested, self._publish_requested = self._publish_requested, False
        return requested

    def close(self) -> None:
        self.socket.close(linger=0)


def _bind_loopback(socket: zmq.Socket, port: int) -> int:
    """Bind to 127.0.0.1:port (0: a free port); returns the port. Closes the socket on failure."""
    try:
        if port == 0:
            return socket.bind_to_random_port("tcp://127.0.0.1")
        _bind_retrying(socket, f"tcp://127.0.0.1:{port}")
        return port
    except BaseException:
        socket.close(linger=0)
        raise


def _bind_retrying(socket: zmq.Socket, endpoint: str, timeout_s: float = 2.0) -> None:
    # A socket closed a moment ago (a restart on the same port) may still hold the port
    # while ZeroMQ's I/O thread tears it down.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.bind(endpoint)
            return
        except zmq.ZMQError as e:
            if e.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                raise zmq.ZMQError(
                    e.errno, f"cannot bind {endpoint}: {e}; pick another port or 0 for a free one"
                ) from e
            time.sleep(0.02)
